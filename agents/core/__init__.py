"""The agent's core: gateway commands to backend calls and job updates, attempts, devices, holds."""
