"""The federation's policy: the language (`model`), strict loading (`document`, `schema`), evaluation
(`engine`). The policy in force and its reloads are `gateway.policy.holder` (not imported here: it does I/O)."""

from gateway.policy.document import (
    FederationPolicy,
    Member,
    Tenant,
    load_catalogue,
    load_policy,
    parse_policy,
)

__all__ = [
    "FederationPolicy",
    "Member",
    "Tenant",
    "load_catalogue",
    "load_policy",
    "parse_policy",
]
