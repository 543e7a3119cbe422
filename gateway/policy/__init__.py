"""The federation's policy: the language (`model`), strict loading (`document`, `schema`), evaluation
(`engine`) and the policy in force (`PolicyHolder`)."""

from gateway.policy.document import (
    FederationPolicy,
    Member,
    Tenant,
    load_catalogue,
    load_policy,
    parse_policy,
)
from gateway.policy.holder import PolicyHolder, PolicyStatus

__all__ = [
    "FederationPolicy",
    "Member",
    "PolicyHolder",
    "PolicyStatus",
    "Tenant",
    "load_catalogue",
    "load_policy",
    "parse_policy",
]
