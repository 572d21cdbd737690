"""The data flywheel: generate -> verify -> filter -> train -> evaluate -> promote (see docs/flywheel.md)."""
