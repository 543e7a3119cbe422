"""The federation certificate authority: create it, load it, issue credentials directories, sign CSRs.

Owns: the CA's files (`ca.pem`, and `ca-key.pem` at mode 0600), refusing to overwrite an existing CA,
checking that every principal it certifies belongs to its federation, and writing credentials directories
(`cert.pem`, `key.pem` at 0600, `ca.pem`). What each certificate looks like is `profiles`' business. It does
not track revocation, keep an inventory of what it issued, or encrypt the CA key at rest (protect the
directory; a KMS or HSM is future work).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import AlreadyExists, ConfigError, IdentityError, InvalidArgument
from gateway.identity import profiles
from gateway.identity.principal import Principal, federation_uri, gateway_uri, spiffe_uri_of

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
CERT = "cert.pem"
KEY = "key.pem"
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a key, with `mode` from the start."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class CertificateAuthority:
    """A loaded federation CA. Issue with `issue` (principals), `issue_server` (the gateway), `sign_csr`."""

    directory: Path
    federation: str
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return profiles.cert_pem(self.certificate)

    @classmethod
    def load(cls, directory: str | Path) -> CertificateAuthority:
        """Load `ca.pem` and `ca-key.pem`; ConfigError naming the file and the fix when either is unusable."""
        directory = Path(directory)
        fix = (
            f"create one with `fedgate ca init --dir {directory} --federation <name>`, "
            "or point --ca-dir at the directory that holds ca.pem and ca-key.pem"
        )
        try:
            cert_bytes = (directory / CA_CERT).read_bytes()
            key_bytes = (directory / CA_KEY).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the CA: {exc.filename}: {exc.strerror}; {fix}") from None
        try:
            certificate = x509.load_pem_x509_certificate(cert_bytes)
            key = serialization.load_pem_private_key(key_bytes, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"the CA in {directory} is not readable ({exc}); {fix}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != certificate.public_key():
            raise ConfigError(f"{directory / CA_KEY} is not the key of {directory / CA_CERT}; {fix}")
        try:
            federation = spiffe_uri_of(certificate).removeprefix("spiffe://")
        except IdentityError:
            raise ConfigError(f"{directory / CA_CERT} is not a fedgate CA (no federation URI); {fix}") from None
        return cls(directory, federation, certificate, key)

    def certificate_for(
        self,
        principal: Principal,
        public_key: profiles.PublicKey,
        valid_days: int = 90,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> x509.Certificate:
        """A client certificate for `principal` over `public_key`: one URI SAN, clientAuth (+ serverAuth)."""
        if principal.federation != self.federation:
            raise IdentityError(
                f"{principal.uri} belongs to federation {principal.federation!r}; "
                f"this CA issues for {self.federation!r}",
                reason="FOREIGN_FEDERATION",
            )
        return profiles.leaf_certificate(
            issuer=self.certificate,
            issuer_key=self.private_key,
            common_name=principal.name,
            public_key=public_key,
            sans=[x509.UniformResourceIdentifier(principal.uri)],
            usages=profiles.CLIENT_USAGES,
            validity=profiles.Validity.of(valid_days, not_before, not_after),
        )

    def issue(
        self,
        principal: Principal,
        out_dir: str | Path,
        valid_days: int = 90,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Path:
        """Make a key and certificate for `principal` and write a credentials directory; returns it.
        Re-issuing into the same directory replaces the credentials (that is how they rotate)."""
        key = profiles.new_key()
        cert = self.certificate_for(principal, key.public_key(), valid_days, not_before=not_before, not_after=not_after)
        return self._write_credentials(Path(out_dir), cert, key)

    def issue_server(
        self,
        out_dir: str | Path,
        hosts: Sequence[str] = DEFAULT_HOSTS,
        valid_days: int = 365,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Path:
        """The gateway's serving credentials: DNS/IP SANs for `hosts`, the gateway URI, serverAuth."""
        if not hosts:
            raise IdentityError("a server certificate needs at least one host name or IP address")
        key = profiles.new_key()
        cert = profiles.leaf_certificate(
            issuer=self.certificate,
            issuer_key=self.private_key,
            common_name="fedgate gateway",
            public_key=key.public_key(),
            sans=[*profiles.host_sans(hosts), x509.UniformResourceIdentifier(gateway_uri(self.federation))],
            usages=profiles.SERVER_USAGES,
            validity=profiles.Validity.of(valid_days, not_before, not_after),
        )
        return self._write_credentials(Path(out_dir), cert, key)

    def sign_csr(
        self,
        csr_pem: bytes,
        principal: Principal,
        valid_days: int = 90,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> bytes:
        """Certificate PEM for an enrolment CSR. Only the CSR's key is used: its subject and SANs are ignored,
        the identity is `principal` (which the caller took from the join token, never from the CSR)."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise IdentityError(f"not a readable PEM certificate request: {exc}") from None
        try:  # a corrupted key (a point off its curve, say) is the caller's fault, not an internal error
            valid, public = csr.is_signature_valid, csr.public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InvalidArgument(
                f"the certificate request's public key cannot be read ({exc}); generate a new key and CSR",
                reason="BAD_CSR",
            ) from None
        if not valid:
            raise IdentityError("the certificate request's signature does not verify")
        public_key = profiles.check_csr_key(public)
        return profiles.cert_pem(
            self.certificate_for(principal, public_key, valid_days, not_before=not_before, not_after=not_after)
        )

    def _write_credentials(self, out_dir: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write(out_dir / KEY, profiles.key_pem(key), 0o600)
        _write(out_dir / CERT, profiles.cert_pem(cert), 0o644)
        _write(out_dir / CA_CERT, self.cert_pem, 0o644)
        return out_dir


def init_ca(
    directory: str | Path,
    federation: str,
    valid_days: int = 3650,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> CertificateAuthority:
    """Create a new federation CA in `directory`. Refuses (AlreadyExists) if a CA is already there."""
    uri = federation_uri(federation)
    directory = Path(directory)
    existing = [name for name in (CA_CERT, CA_KEY) if (directory / name).exists()]
    if existing:
        raise AlreadyExists(
            f"{directory} already holds a CA ({', '.join(existing)}); refusing to overwrite it. Use it with "
            f"--ca-dir {directory}, or pick an empty --dir for a new federation",
            reason="CA_EXISTS",
        )
    key = profiles.new_key()
    cert = profiles.ca_certificate(key, federation, uri, profiles.Validity.of(valid_days, not_before, not_after))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Key first: a directory with a key but no ca.pem is refused by `init` and by `load`, never half-used.
    _write(directory / CA_KEY, profiles.key_pem(key), 0o600)
    _write(directory / CA_CERT, profiles.cert_pem(cert), 0o644)
    return CertificateAuthority(directory, federation, cert, key)
