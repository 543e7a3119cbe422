"""Who may read which settled usage receipts: the listing behind `JobService.ListUsageReceipts`.

Owns: the authorisation of receipt listings, exactly as for usage and jobs (an admin reads every receipt; a
tenant user reads its own tenant's and those of the joint projects it is in, a viewer too since reading is
all there is; a member scoped to some projects reads only those) and page checks. A listing judges each
receipt by the record its site signed (parsed from the signed bytes by the `signed` function the transport
gives), never by the store's columns: a row whose columns no longer say what was signed (a tenant or project
changed in the database) is logged and shown only to whom the signed record allows (an admin, or the tenant the
site signed for, who does not find it under its own tenant and whose `fedgate usage` names the attempt as ended
without a receipt). It does not verify signatures: whoever reads receipts verifies them
(`fedgate usage`, with `gateway.usage.receipts`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from gateway.errors import InvalidArgument
from gateway.identity.principal import Principal
from gateway.policy import FederationPolicy
from gateway.store import Store
from gateway.store.receipts import ReceiptPage
from gateway.trust import access
from gateway.trust.pages import page_size as page_size_of
from gateway.trust.pagetokens import PageTokens
from gateway.usage.receipts import SettledReceipt, UsageRecord

log = logging.getLogger("fedgate.gateway.usage")
SignedRecord = Callable[[bytes], UsageRecord | None]
"""The record a receipt's signed bytes hold (None: they do not parse)."""


def list_receipts(
    store: Store,
    policy: FederationPolicy,
    caller: Principal,
    start: datetime,
    end: datetime | None,
    project: str = "",
    page_size: int = 0,
    page_token: str = "",
    *,
    now: datetime,
    tokens: PageTokens,
    signed: SignedRecord | None = None,
) -> ReceiptPage:
    """The receipts of attempts that ended in [start, end) (end None: `now`) that `caller` may read, one page of
    them in settlement order. The page token is bound to the period as asked (an open end stays open)."""
    access.require_role(caller, "user", "admin")
    size = page_size_of(page_size)
    listing = receipt_listing(caller, start, end, project)
    after = tokens.open(listing, page_token)  # sealed for this caller and period: BAD_PAGE_TOKEN otherwise
    if after and not after.isdigit():
        raise InvalidArgument("page_token is not one this gateway issued; start again without it")
    end = end or now
    if end <= start:
        raise InvalidArgument(f"the period is empty: it ends ({end.isoformat()}) before it starts")
    tenants = access.visible_tenants(caller, "")
    joint = access.joint_projects_of(caller, policy) if tenants is not None else ()
    page = store.list_receipts(tenants, start, end, project, size, after, or_projects=joint)
    positions = page.positions or ("",) * len(page.receipts)
    readable = [
        (r, position)
        for r, position in zip(page.receipts, positions, strict=True)
        if (record := _as_signed(r, signed)) is not None
        and access.role_in(caller, policy, record.tenant, record.project) is not None
    ]
    return ReceiptPage(
        tuple(r for r, _ in readable), tokens.seal(listing, page.next_page_token), tuple(p for _, p in readable)
    )


def receipt_listing(caller: Principal, start: datetime, end: datetime | None, project: str) -> str:
    """What a receipt page token is bound to: who lists, and the period and project asked."""
    return "\n".join(("receipts", caller.uri, start.isoformat(), end.isoformat() if end else "", project))


def _as_signed(receipt: SettledReceipt, signed: SignedRecord | None) -> UsageRecord | None:
    """The record `receipt` stands for: what its site signed (None when that does not parse). A row whose columns
    say otherwise (changed after settlement) is logged, naming what differs: its listing follows the signature."""
    if signed is None:  # no parser (unit tests of the listing rules): the columns
        return receipt.record
    record = signed(receipt.receipt.record_bytes)
    if record is not None and receipt.record is not None and record != receipt.record:
        fields = [f for f in record.__dataclass_fields__ if getattr(record, f) != getattr(receipt.record, f)]
        log.error(
            "receipt of job %s epoch %d at %s: the store's columns differ from the record the site signed (%s); "
            "listed by the signed record; restore the row from a backup",
            record.job_id,
            record.epoch,
            record.site,
            ", ".join(fields),
        )
    return record
