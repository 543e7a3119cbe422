"""Trust: who a caller is, what they may see and touch, credentials, and the audit log."""
