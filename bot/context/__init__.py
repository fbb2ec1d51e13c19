"""GATHER: evidence about an incident from Kubernetes, its logs and Prometheus (see gather.py)."""
