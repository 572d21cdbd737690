"""The one loop engine: archive, proposers, guardrails, decision, holdout, analysis, memory."""
