"""DIAGNOSE: analyzers per failure mode and their ranking (see engine.py)."""
