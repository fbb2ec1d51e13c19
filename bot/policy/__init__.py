"""GATE: the policy model and the deterministic, fail-closed gate pipeline (see engine.py)."""
