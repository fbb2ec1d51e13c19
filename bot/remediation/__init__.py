"""PLAN, ACT, VERIFY: runbook catalog, typed operations, the executor and its verification."""
