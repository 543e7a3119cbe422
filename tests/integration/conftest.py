"""Integration tests use the shared fixtures of tests/conftest.py (pki, loop, gateway)."""
