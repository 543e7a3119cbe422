"""Durable state of the gateway behind one narrow contract (`Store`), chosen by URL with `open_store`; and the
leader lease of gateways that share a store (`open_leader_lease`)."""

from gateway.store.base import (
    STANDBY,
    JobPage,
    LeaderLease,
    LeaderRecord,
    Store,
    open_leader_lease,
    open_store,
    resolve_store_url,
)

__all__ = [
    "STANDBY",
    "JobPage",
    "LeaderLease",
    "LeaderRecord",
    "Store",
    "open_leader_lease",
    "open_store",
    "resolve_store_url",
]
