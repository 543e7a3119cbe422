"""The `kubernetes` backend: one batch/v1 Job per attempt, through the official client."""
