"""Who may read which settled usage receipts: the listing behind `JobService.ListUsageReceipts`.

Owns: the authorisation of receipt listings, exactly as for usage and jobs (an admin reads every receipt; a
tenant user reads its own tenant's and those of the joint projects it is in, a viewer too since reading is
all there is; a member scoped to some projects reads only those) and page checks. It does not verify
signatures: whoever reads receipts verifies them (`fedgate usage`, with `gateway.usage.receipts`).
"""

from __future__ import annotations

from datetime import datetime

from gateway.errors import InvalidArgument
from gateway.identity.principal import Principal
from gateway.policy import FederationPolicy
from gateway.store import Store
from gateway.store.receipts import ReceiptPage
from gateway.trust import access
from gateway.trust.pagetokens import PageTokens

MAX_PAGE_SIZE = 500


def list_receipts(
    store: Store,
    policy: FederationPolicy,
    caller: Principal,
    start: datetime,
    end: datetime,
    project: str = "",
    page_size: int = 0,
    page_token: str = "",
    *,
    tokens: PageTokens,
) -> ReceiptPage:
    """The receipts of attempts that ended in [start, end) that `caller` may read, one page of them."""
    access.require_role(caller, "user", "admin")
    if page_size < 0:
        raise InvalidArgument("page_size must not be negative")
    listing = "\n".join(("receipts", caller.uri, start.isoformat(), end.isoformat(), project))
    after = tokens.open(listing, page_token)  # sealed for this caller and period: BAD_PAGE_TOKEN otherwise
    if after and not after.isdigit():
        raise InvalidArgument("page_token is not one this gateway issued; start again without it")
    if end <= start:
        raise InvalidArgument(f"the period is empty: it ends ({end.isoformat()}) before it starts")
    tenants = access.visible_tenants(caller, "")
    joint = access.joint_projects_of(caller, policy) if tenants is not None else ()
    size = min(page_size or 100, MAX_PAGE_SIZE)
    page = store.list_receipts(tenants, start, end, project, size, after, or_projects=joint)
    readable = tuple(
        r
        for r in page.receipts
        if r.record is not None and access.role_in(caller, policy, r.record.tenant, r.record.project) is not None
    )
    return ReceiptPage(readable, tokens.seal(listing, page.next_page_token))
