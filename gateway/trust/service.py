"""The gateway's trust services: who a caller is, whether that still holds, and the record of it all.

Owns: authenticating certificates and tokens into `Credential`s (with revocation, expiry and replay checks),
enrolment with join tokens, certificate renewal, token issuance, revocation, and the audit log. Every
security-relevant act and every refusal is audited, refusals coalesced (`gateway.trust.coalesce`: the first of a
kind from a source for a method and reason in a window is written, the rest counted into one `audit.coalesced` row), so
that a flood writes a bounded number of rows. It never speaks gRPC; the transport layer calls one
method per RPC and hands in only what the TLS layer has already verified.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from gateway.errors import ConfigError, InvalidArgument, NotLeader, PermissionDenied, Unauthenticated
from gateway.identity.authority import Authority
from gateway.identity.join import check_join_token, new_join_token, parse_join_token
from gateway.identity.principal import Principal, load_certificate, peer_certificate
from gateway.identity.profiles import BACKDATE
from gateway.identity.revocation import Credential, Revocation, RevocationList, canonical_serial
from gateway.identity.tokens import ROLES, TokenClaims, issue_token, new_token_id, principal_of, verify_token
from gateway.store import Store
from gateway.trust import access
from gateway.trust.audit import AuditEntry, AuditVerdict, seal, verify_chain
from gateway.trust.checkpoint import (
    RecordsTampered,
    check_store,
    checkpoint_now,
    describe_missing,
    missing_revocations,
    read_checkpoint,
    revocation_key,
    write_checkpoint,
)
from gateway.trust.coalesce import DenialCoalescer
from gateway.trust.pages import Page, cut_to_bytes
from gateway.trust.pages import page_size as page_size_of
from gateway.trust.pagetokens import PageTokens

log = logging.getLogger("fedgate.gateway.trust")
MAX_JOIN_TOKEN_TTL = timedelta(days=7)
MAX_TOKEN_TTL = timedelta(hours=24)
DENIAL_WINDOW_S = 60.0
"""Refusals of one kind, source and reason within this many seconds are written once and then counted."""
DENIAL_KEYS = 256
MAX_AUDIT_PAGE = 1000
"""(kind, source, reason) keys a window tracks; refusals of further sources are counted under source `*`."""


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: bytes
    bundle_pem: bytes
    expire_time: datetime


class Trust:
    def __init__(
        self,
        store: Store,
        authority: Authority,
        federation: str,
        clock: Callable[[], datetime],
        *,
        audience: str = "",
        certificate_lifetime: timedelta = timedelta(days=90),
        checkpoint: Path | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`checkpoint`: where the signed checkpoint of the audit chain's end and of the revocation list lives
        (`gateway.trust.checkpoint`); the store is checked against it here (RecordsTampered: refuse to start)
        and it is rewritten after every audit entry. None: no checkpoint (unit tests)."""
        self.store = store
        self.authority = authority
        self.federation = federation
        self.clock = clock
        self.audience = audience or f"fedgate://{federation}"
        self.certificate_lifetime = certificate_lifetime
        self._page_tokens = PageTokens.derived(authority.token_key, lambda: self.clock().timestamp())
        revocations = store.revocations()
        self.revocations = RevocationList(revocations)
        self._revocation_keys = {revocation_key(r) for r in revocations}
        self._last_audit = store.last_audit()
        self._checkpoint = checkpoint
        self.checkpoint_state = "off"  # off | checked | created (recorded in gateway.started)
        if checkpoint is not None:
            found = check_store(store, checkpoint, authority.audit_key.public_key())
            self.checkpoint_state = "checked" if found is not None else "created"
            if found is None and self._last_audit is not None:
                log.warning(
                    "no audit checkpoint at %s: the log (%d entries) and the revocation list are anchored as they are",
                    checkpoint,
                    self._last_audit.sequence,
                )
        self._denials = DenialCoalescer(window_s=DENIAL_WINDOW_S, max_keys=DENIAL_KEYS, clock=monotonic)

    # ---- audit ----------------------------------------------------------------------------------------------
    def audit(self, kind: str, principal: str, details: Mapping[str, str] | None = None) -> AuditEntry:
        entry = seal(self._last_audit, self.clock(), kind, principal, details or {}, self.authority.audit_key)
        self.store.append_audit(entry)
        self._last_audit = entry
        if self._checkpoint is not None:
            self._write_checkpoint(entry)
        return entry

    def _write_checkpoint(self, entry: AuditEntry) -> None:
        assert self._checkpoint is not None
        checkpoint = checkpoint_now(entry.sequence, entry.hash, self._revocation_keys, entry.time)
        try:
            write_checkpoint(self._checkpoint, checkpoint, self.authority.audit_key)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the audit checkpoint {self._checkpoint}: {exc}; the gateway needs a writable "
                "`audit_checkpoint` (by default in its authority directory)"
            ) from None

    def audit_page(
        self,
        caller: Principal,
        page_size: int = 0,
        page_token: str = "",
        *,
        size_of: Callable[[AuditEntry], int] = lambda entry: 0,
        budget: int = 0,
    ) -> Page[AuditEntry]:
        """One page of the audit log by sequence (admins): 0 means 100 entries, at most 1,000; with a `budget`,
        at most that many bytes of entries as `size_of` counts them. Tokens are sealed like every listing's."""
        access.require_role(caller, "admin")
        size = page_size_of(page_size, most=MAX_AUDIT_PAGE)
        tokens = self._page_tokens
        listing = "\n".join(("audit", caller.uri))
        after = tokens.open(listing, page_token)
        if after and not after.isdigit():
            raise InvalidArgument("page_token is not one this gateway gave out; start again without it")
        entries = self.store.audit_entries(int(after or 0), size + 1)
        keys = [str(e.sequence) for e in entries[:size]]
        page = Page(entries[:size], tokens.seal(listing, keys[-1] if len(entries) > size else ""))
        return cut_to_bytes(page, keys, size_of, budget, listing, tokens=tokens) if budget else page

    def verify_audit(self, caller: Principal) -> AuditVerdict:
        access.require_role(caller, "admin")
        return verify_audit_store(self.store, self.authority, self._checkpoint)

    def denied(self, principal: str, method: str, reason: str, message: str, source: str = "") -> None:
        """Audit a refused call (coalesced per source and reason: see the module's docstring)."""
        details = {"method": method, "reason": reason, "message": message[:300], "source": source}
        self._refused("call.denied", principal, source, reason, details, method)

    def flush_refusals(self, *, force: bool = False) -> None:
        """Write the counts of refusals a window that has ended (or, with `force`, the current one) did not
        write. Called with each refusal, and by the gateway on a period and when it stops."""
        try:
            for summary in self._denials.ended(force=force):
                self.audit(
                    "audit.coalesced",
                    "gateway",
                    {
                        "refused_kind": summary.kind,
                        "source": summary.source,
                        "reason": summary.reason,
                        "method": summary.method,
                        "count": str(summary.count),
                        "window_s": f"{summary.window_s:g}",
                    },
                )
        except NotLeader:
            pass

    def _refused(
        self, kind: str, principal: str, source: str, reason: str, details: Mapping[str, str], method: str = ""
    ) -> None:
        try:
            self.flush_refusals()
            if self._denials.note(kind, source or principal, reason, method):
                self.audit(kind, principal, details)
        except NotLeader:  # a standby writes no audit (the leader's chain is the one log); it logs instead
            log.warning("refused %s (%s): %s", principal, source, dict(details))

    def reload_revocations(self) -> None:
        """Read the revocations again: a standby sees those the leader records (the leader holds its own)."""
        revocations = self.store.revocations()
        self.revocations = RevocationList(revocations)
        self._revocation_keys = {revocation_key(r) for r in revocations}

    # ---- authentication ------------------------------------------------------------------------------------
    def authenticate_certificate(self, cert_pem: bytes) -> Credential:
        peer = peer_certificate(cert_pem, self.federation)
        credential = Credential(peer.principal, "certificate", f"{peer.serial:x}", peer.not_before, peer.not_after)
        self.revocations.check(credential, self.clock())
        return credential

    def authenticate_token(self, token: str) -> Credential:
        now = self.clock()
        claims = verify_token(token, self.authority.token_key.public_key(), self.audience, now)
        principal = principal_of(claims, self.federation)
        credential = Credential(principal, "token", claims.token_id, claims.issued_at, claims.expires_at)
        self.revocations.check(credential, now)
        if claims.single_use and not self.store.record_token_use(claims.token_id, now):
            raise Unauthenticated("token refused: this single-use token was already used", reason="TOKEN_REPLAYED")
        return credential

    def check(self, credential: Credential) -> None:
        """Re-check a credential an open stream was opened with (revoked or expired since?)."""
        self.revocations.check(credential, self.clock())

    # ---- enrolment and renewal -----------------------------------------------------------------------------
    def create_join_token(self, caller: Principal, site: str, ttl: timedelta) -> tuple[str, datetime, str]:
        access.require_role(caller, "admin")
        if not timedelta(0) < ttl <= MAX_JOIN_TOKEN_TTL:
            raise InvalidArgument(f"a join token lives more than 0 and at most {MAX_JOIN_TOKEN_TTL.days} days")
        Principal.site(self.federation, site)  # validates the site name
        now = self.clock()
        token, record = new_join_token(site, caller.uri, now, now + ttl)
        self.store.add_join_token(record)
        self.audit(
            "join_token.created",
            caller.uri,
            {"site": site, "token_id": record.token_id, "expire_time": record.expire_time.isoformat()},
        )
        return token, record.expire_time, self.authority.ca_fingerprint

    def enroll(self, token: str, csr_pem: bytes, site: str, source: str = "") -> IssuedCertificate:
        """Sign a site's CSR if its one-time token allows it. A refusal leaves the token as it was, and is
        audited once as `enrolment.refused` (coalesced per `source`, the caller's address)."""
        now = self.clock()
        try:
            token_id, secret = parse_join_token(token)
            record = check_join_token(self.store.join_token(token_id), secret, site, now)
            principal = Principal.site(self.federation, site)
            certificate = self._sign(csr_pem, principal, now)
            if not self.store.consume_join_token(record.token_id, now):
                raise PermissionDenied("this join token was just used by another enrolment", reason="JOIN_TOKEN_USED")
        except (Unauthenticated, PermissionDenied, InvalidArgument) as exc:
            details = {"site": site[:64], "reason": exc.reason, "source": source}
            self._refused("enrolment.refused", "anonymous", source, exc.reason, details)
            raise
        issued = self._issued(certificate)
        self.audit("enrolment", principal.uri, {"token_id": record.token_id, "serial": _serial(certificate)})
        return issued

    def renew(self, credential: Credential, csr_pem: bytes) -> IssuedCertificate:
        if credential.kind != "certificate":
            raise PermissionDenied("only a certificate can be renewed, not a token", reason="WRONG_CREDENTIAL")
        self.check(credential)
        certificate = self._sign(csr_pem, credential.principal, self.clock())
        self.audit(
            "certificate.renewed",
            credential.principal.uri,
            {"old_serial": credential.credential_id, "serial": _serial(certificate)},
        )
        return self._issued(certificate)

    def _sign(self, csr_pem: bytes, principal: Principal, now: datetime) -> bytes:
        """Sign for `principal`. Certificates are backdated a little against clock skew, but never to before a
        revocation of the principal: a site re-enrolled after one must not be caught by it."""
        not_before = None
        revoked_at = self.revocations.principal_revoked_at(principal.uri)
        if revoked_at is not None and now - BACKDATE <= revoked_at:
            not_before = revoked_at.replace(microsecond=0) + timedelta(seconds=1)
        return self.authority.ca.sign_csr(
            csr_pem, principal, not_before=not_before, not_after=now + self.certificate_lifetime
        )

    def _issued(self, certificate_pem: bytes) -> IssuedCertificate:
        expires = load_certificate(certificate_pem).not_valid_after_utc
        return IssuedCertificate(certificate_pem, self.authority.bundle_pem, expires)

    # ---- tokens and revocation -----------------------------------------------------------------------------
    def issue_token(
        self, caller: Principal, tenant: str, user: str, role: str, ttl: timedelta, single_use: bool
    ) -> tuple[str, TokenClaims]:
        access.require_role(caller, "admin")
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {', '.join(ROLES)}")
        if not timedelta(0) < ttl <= MAX_TOKEN_TTL:
            raise InvalidArgument(f"a token lives more than 0 and at most {MAX_TOKEN_TTL}")
        subject = Principal.user(self.federation, tenant, user)
        now = self.clock()
        claims = TokenClaims(
            issuer=f"spiffe://{self.federation}/gateway",
            subject=subject.uri,
            audience=self.audience,
            issued_at=now.replace(microsecond=0),
            expires_at=(now + ttl).replace(microsecond=0),
            token_id=new_token_id(),
            role=role,
            single_use=single_use,
        )
        token = issue_token(self.authority.token_key, claims)
        self.audit(
            "token.issued",
            caller.uri,
            {
                "subject": subject.uri,
                "token_id": claims.token_id,
                "role": role,
                "single_use": str(single_use).lower(),
                "expire_time": claims.expires_at.isoformat(),
            },
        )
        return token, claims

    def revoke(self, caller: Principal, kind: str, value: str, reason: str) -> Revocation:
        access.require_role(caller, "admin")
        if kind == "principal":
            from gateway.identity.principal import principal_from_uri

            value = principal_from_uri(value, self.federation).uri
        if kind == "serial":
            value = canonical_serial(value)
        revocation = Revocation(kind, value, self.clock(), reason[:300], caller.uri)
        self.store.add_revocation(revocation)
        self.revocations.add(revocation)
        self._revocation_keys.add(revocation_key(revocation))  # in the checkpoint the audit entry below writes
        self.audit("credential.revoked", caller.uri, {"kind": kind, "value": value, "reason": reason[:300]})
        log.warning("revoked %s %s: %s", kind, value, reason)
        return revocation


def verify_audit_store(store: Store, authority: Authority, checkpoint: Path | None = None) -> AuditVerdict:
    """Verify the whole audit chain in the store, in pages; with `checkpoint`, also that the chain still
    reaches the signed checkpoint's end (nothing removed from the end) and that the revocation list still holds
    every revocation it records. A missing checkpoint file is itself a finding: nothing anchors the end."""
    key = authority.audit_key.public_key()
    anchor = None
    if checkpoint is not None:
        try:
            found = read_checkpoint(checkpoint, key)
        except RecordsTampered as exc:
            return AuditVerdict(False, 0, 1, exc.message)
        if found is None:
            return AuditVerdict(
                False,
                0,
                1,
                f"there is no signed checkpoint at {checkpoint}: removed entries at the end cannot be found",
            )
        anchor = (found.count, found.head)
        if missing := missing_revocations(found, store.revocations()):
            return AuditVerdict(False, 0, 1, describe_missing(missing, checkpoint))

    def entries() -> Iterator[AuditEntry]:
        after = 0
        while page := store.audit_entries(after, 1000):
            yield from page
            after = page[-1].sequence

    return verify_chain(entries(), key, anchor=anchor)


def _serial(certificate_pem: bytes) -> str:
    return f"{load_certificate(certificate_pem).serial_number:x}"
