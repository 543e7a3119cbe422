"""Backends: the one place where the agent touches a centre's scheduler (a plain machine, Kubernetes, Slurm).

Each backend implements the narrow `agents.backends.base.Backend` protocol; `agents.backends.registry`
picks one by the config's `backend: {type: ...}`. Backends speak plain dataclasses, never gRPC.
"""
