"""Loading a harness dir, its params, the runtime context, skills and trajectories."""
