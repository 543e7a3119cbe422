"""The agent's journal of unacknowledged updates and started attempts (memory and SQLite)."""
