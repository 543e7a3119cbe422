"""The gateway's `fedgate` command groups (job, sites, admin, gateway, ca, demo) and their shared output.

Owns: argument parsing and printing for each group, as thin shells over the client library and the CA; the
top-level dispatcher (`fedgate.cli`) imports a group only when it is called. It does not speak gRPC itself.
"""
