"""The research tier: `ratchet research REPO` improves a repository's metric with the loop engine.

config.py reads [research]; metric.py reads a metric from output; command.py runs one trial in the
sandbox; arena.py is the engine's arena over seeds; proposers.py and run.py wire it into the engine;
report.py renders results in the metric's units.
"""
