"""Who is calling: the `Principal` and its SPIFFE URI, parsed strictly from a URI or a peer certificate.

Owns: the three principal kinds (site, user, admin), their URI shapes
(`spiffe://<federation>/site/<site>`, `spiffe://<federation>/tenant/<tenant>/user/<name>`,
`spiffe://<federation>/admin/<name>`), the naming rules, and the fingerprint-keyed cache that makes reading a
peer certificate cheap on every RPC. It does not verify certificate chains or validity periods (the TLS
handshake does), check revocation, or decide what a principal may do (`gateway.trust.access` does).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gateway.errors import IdentityError

KINDS = ("site", "user", "admin")
SCHEME = "spiffe://"
NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
NAME_RULE = "1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
# A SPIFFE trust domain, kept to lowercase DNS-like characters.
FEDERATION = re.compile(r"[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?")
FEDERATION_RULE = "lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit"


def _check_name(what: str, value: str) -> None:
    if not NAME.fullmatch(value):
        raise IdentityError(f"{what} {value!r} is not a valid name: use {NAME_RULE}", reason="BAD_NAME")


def check_federation(federation: str) -> None:
    if not FEDERATION.fullmatch(federation):
        raise IdentityError(f"federation {federation!r} is not a valid name: use {FEDERATION_RULE}", reason="BAD_NAME")


@dataclass(frozen=True)
class Principal:
    """An authenticated identity. `tenant` is set for users only."""

    kind: str
    federation: str
    name: str
    tenant: str = ""
    # True for a principal that may read but not act (a token issued with the viewer role). Not part of the
    # identity: the URI is the same.
    read_only: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise IdentityError(f"principal kind {self.kind!r} is not one of {', '.join(KINDS)}")
        check_federation(self.federation)
        _check_name(f"{self.kind} name", self.name)
        if self.kind == "user":
            _check_name("tenant", self.tenant)
        elif self.tenant:
            raise IdentityError(f"a {self.kind} principal has no tenant (got {self.tenant!r})")

    @classmethod
    def site(cls, federation: str, name: str) -> Principal:
        return cls("site", federation, name)

    @classmethod
    def user(cls, federation: str, tenant: str, name: str) -> Principal:
        return cls("user", federation, name, tenant)

    @classmethod
    def admin(cls, federation: str, name: str) -> Principal:
        return cls("admin", federation, name)

    @property
    def uri(self) -> str:
        base = f"{SCHEME}{self.federation}"
        if self.kind == "user":
            return f"{base}/tenant/{self.tenant}/user/{self.name}"
        return f"{base}/{self.kind}/{self.name}"

    @property
    def share(self) -> str:
        """Whose share of a shared resource (log streams, watches) this principal draws on: its tenant for a
        user (a tenant's users share one share), its own URI for an admin or a site."""
        return f"tenant/{self.tenant}" if self.kind == "user" else self.uri

    def __str__(self) -> str:
        return self.uri


def federation_uri(federation: str) -> str:
    """The federation CA's own URI (its trust domain)."""
    check_federation(federation)
    return f"{SCHEME}{federation}"


def gateway_uri(federation: str) -> str:
    """The URI in the gateway's server certificate. It is not a Principal: the gateway never calls itself."""
    return f"{federation_uri(federation)}/gateway"


def principal_from_uri(uri: str, federation: str | None = None) -> Principal:
    """Parse a SPIFFE URI into a Principal. Strict: exact path shapes, valid names, no query, fragment,
    port, user info, percent-encoding or trailing slash. With `federation`, a URI of any other federation is
    refused naming both."""
    if not uri.startswith(SCHEME):
        raise IdentityError(f"identity {uri!r} is not a spiffe:// URI")
    rest = uri[len(SCHEME) :]
    if any(ch in rest for ch in "?#%@:") or any(ch.isspace() for ch in rest):
        raise IdentityError(f"identity {uri!r} has characters a fedgate URI never has (?#%@: or spaces)")
    domain, _, path = rest.partition("/")
    if not FEDERATION.fullmatch(domain):
        raise IdentityError(f"identity {uri!r} has an invalid federation (trust domain) {domain!r}")
    if federation is not None and domain != federation:
        raise IdentityError(
            f"identity {uri!r} belongs to federation {domain!r}, not to this federation {federation!r}",
            reason="FOREIGN_FEDERATION",
        )
    parts = path.split("/")
    try:
        if len(parts) == 2 and parts[0] in {"site", "admin"}:
            return Principal(parts[0], domain, parts[1])
        if len(parts) == 4 and parts[0] == "tenant" and parts[2] == "user":
            return Principal("user", domain, parts[3], parts[1])
    except IdentityError as exc:
        raise IdentityError(f"identity {uri!r}: {exc.message}", reason=exc.reason) from None
    raise IdentityError(
        f"identity {uri!r} is not a site, user or admin URI; expected {SCHEME}{domain}/site/<site>, "
        f"{SCHEME}{domain}/tenant/<tenant>/user/<name> or {SCHEME}{domain}/admin/<name>"
    )


@dataclass(frozen=True)
class PeerCertificate:
    """What the gateway keeps from a verified peer certificate. `fingerprint` is sha256 of the DER, hex."""

    principal: Principal
    fingerprint: str
    serial: int
    not_after: datetime
    not_before: datetime


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes; IdentityError if it is neither."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise IdentityError(f"not a readable X.509 certificate: {exc}") from None


def spiffe_uri_of(cert: x509.Certificate) -> str:
    """The certificate's one URI SAN (an X.509-SVID has exactly one)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise IdentityError("certificate has no subjectAltName; fedgate identities are URI SANs") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        found = ", ".join(uris) or "none"
        raise IdentityError(f"certificate must carry exactly one URI SAN, found {len(uris)} ({found})")
    return uris[0]


class _Cache:
    """A small thread-safe LRU of (fingerprint, federation) -> PeerCertificate. Failures are not cached."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[bytes, str], PeerCertificate] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[bytes, str]) -> PeerCertificate | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[bytes, str], item: PeerCertificate) -> None:
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache = _Cache(1024)


def peer_certificate(cert_pem: bytes, federation: str) -> PeerCertificate:
    """Principal, fingerprint, serial and expiry of a peer certificate (PEM or DER), cached by the bytes'
    sha256 so that the common case (a known peer) costs one hash per RPC."""
    key = (hashlib.sha256(cert_pem).digest(), federation)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    cert = load_certificate(cert_pem)
    peer = PeerCertificate(
        principal=principal_from_uri(spiffe_uri_of(cert), federation),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
        not_before=cert.not_valid_before_utc,
    )
    _cache.put(key, peer)
    return peer


def principal_from_certificate(cert_pem: bytes, federation: str) -> Principal:
    """The Principal named by a peer certificate's single SPIFFE URI SAN; IdentityError otherwise."""
    return peer_certificate(cert_pem, federation).principal


def clear_certificate_cache() -> None:
    _cache.clear()
