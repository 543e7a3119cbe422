"""Enrolling a site with a join token: `fedgate agent enroll`, minus the command line and the network.

Owns: the order that keeps the token and the key safe. (1) Check the request and refuse to replace an
existing certificate without `force`. (2) Fetch the chain the gateway's public port presents and find the
pinned federation CA in it; on a mismatch stop, having sent nothing. (3) Make the key here and write it at
0600 before anything is sent; it never leaves the machine. (4) Send the token and a CSR over TLS verified
against the pinned CA only. (5) Check what came back, then write the certificate and the CA bundle
atomically. A failure after (3) puts back the key that was there before (or removes the new one), so a
failed `--force` leaves a working directory as it was. The network sits behind `EnrollmentGateway`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.serialization import Encoding

from agents.core.config import SITE_NAME, valid_target
from agents.errors import CredentialsError, CredentialsExist, UsageError
from agents.identity.credentials import (
    KEY_MODE,
    CredentialFiles,
    IssuedCertificate,
    check_issued,
    install_credentials,
    new_site_key,
    principal_of,
    utc_now,
    write_atomically,
)
from agents.identity.pinning import CaPin, pinned_ca

REFUSAL_HINTS: dict[str, str] = {
    "JOIN_TOKEN_UNKNOWN": "check that the token was copied whole, or ask the federation admin for a new one",
    "JOIN_TOKEN_MALFORMED": "copy the whole token (fgj_<id>.<secret>) the admin created for this site",
    "JOIN_TOKEN_USED": "a join token works once; ask the federation admin for a new one",
    "JOIN_TOKEN_EXPIRED": "ask the federation admin for a new join token and use it before it expires",
    "JOIN_TOKEN_WRONG_SITE": "--site must be the site the admin created the token for; check both with the admin",
}
"""What the operator can do about each refusal reason the gateway gives for Enroll."""


class EnrollmentGateway(Protocol):
    """The two network steps of enrolment; `agents.transport.enrollment` implements them over TLS/gRPC."""

    def server_chain(self, gateway: str) -> list[bytes]:
        """The certificates (DER, leaf first) the server at `gateway` presents, fetched WITHOUT verifying
        them and without sending anything of ours. Raises GatewayUnreachable."""
        ...

    def enroll(self, gateway: str, ca_pem: bytes, join_token: str, csr_pem: bytes, site: str) -> IssuedCertificate:
        """EnrollmentService.Enroll over TLS that trusts only `ca_pem`. Raises EnrollmentRefused (the
        gateway said no) or GatewayUnreachable."""
        ...


@dataclass(frozen=True)
class EnrollmentRequest:
    gateway: str
    """The gateway's public (enrolment) address, host:port."""
    join_token: str
    pin: CaPin
    """The federation CA's fingerprint, from the admin, over a channel other than this one."""
    site: str
    out_dir: Path
    force: bool = False
    """Replace a certificate already in `out_dir`."""


@dataclass(frozen=True)
class Enrolled:
    """A finished enrolment: what was written and what it says."""

    site: str
    principal: str
    """The identity the certificate carries, e.g. spiffe://fed/site/centre-a."""
    files: CredentialFiles
    not_after: datetime
    ca_fingerprint: CaPin

    def tls_snippet(self) -> str:
        """The `tls:` section of an agent.yaml that uses these files."""
        return f"tls:\n  ca: {self.files.ca}\n  cert: {self.files.cert}\n  key: {self.files.key}\n"


def credential_files(out_dir: Path) -> CredentialFiles:
    return CredentialFiles(key=out_dir / "key.pem", cert=out_dir / "cert.pem", ca=out_dir / "ca.pem")


def check_request(request: EnrollmentRequest) -> None:
    """UsageError (nothing touched, nothing sent) when the request cannot be carried out as given."""
    if not SITE_NAME.fullmatch(request.site):
        raise UsageError(
            f"site {request.site!r} is not a valid site name; use 1-63 lowercase letters, digits and '-', "
            "the name the admin created the join token for"
        )
    if not valid_target(request.gateway):
        raise UsageError(f"--gateway {request.gateway!r} must be host:port, e.g. gateway.example.org:7444")
    if not request.join_token.strip():
        raise UsageError("the join token is empty; pass the token the admin created for this site")
    if request.out_dir.exists() and not request.out_dir.is_dir():
        raise UsageError(f"--out {request.out_dir} is a file; give a directory for key.pem, cert.pem and ca.pem")
    cert = credential_files(request.out_dir).cert
    if cert.exists() and not request.force:
        raise CredentialsExist(
            f"{cert} already exists: this directory holds a site certificate. Pass --force to replace it "
            "with a new enrolment, or choose another --out"
        )


def enroll_site(
    request: EnrollmentRequest, gateway: EnrollmentGateway, *, clock: Callable[[], datetime] = utc_now
) -> Enrolled:
    """Enrol `request.site`; returns what was written. Raises UsageError, CaPinMismatch (nothing sent),
    GatewayUnreachable, EnrollmentRefused or CredentialsError."""
    check_request(request)
    ca = pinned_ca(gateway.server_chain(request.gateway), request.pin, request.gateway)
    ca_pem = ca.public_bytes(Encoding.PEM)

    files = credential_files(request.out_dir)
    request.out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    previous_key = files.key.read_bytes() if files.key.is_file() else None
    site_key = new_site_key(request.site)
    write_atomically(files.key, site_key.key_pem, KEY_MODE)  # on disk before anything is sent
    try:
        issued = gateway.enroll(request.gateway, ca_pem, request.join_token.strip(), site_key.csr_pem, request.site)
        try:
            certificate = check_issued(issued, site_key, request.site, clock())
        except CredentialsError as exc:
            raise CredentialsError(
                f"{exc.message}. Nothing was written; the gateway has used up the join token, so ask the admin "
                "for a new one once this is fixed"
            ) from None
    except BaseException:
        _put_back(files.key, previous_key)
        raise
    install_credentials(files, site_key.key_pem, issued.certificate_chain_pem, issued.ca_bundle_pem)
    return Enrolled(
        site=request.site,
        principal=principal_of(certificate),
        files=files,
        not_after=certificate.not_valid_after_utc,
        ca_fingerprint=request.pin,
    )


def _put_back(key: Path, previous: bytes | None) -> None:
    """Undo writing the new key: the old key goes back (it matches the old certificate), or the new one goes."""
    if previous is not None:
        write_atomically(key, previous, KEY_MODE)
    else:
        with contextlib.suppress(FileNotFoundError):
            key.unlink()
