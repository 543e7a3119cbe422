"""Why a TLS connection to a gateway fails, in words a user can act on.

gRPC reports every failed handshake as UNAVAILABLE ("failed to connect to all addresses ... Socket closed"), the
same as a gateway that is not running. After such a failure the client library asks `diagnose`, which makes
one plain TLS handshake with the same trust and the same client certificate (or none, with a token) and says
which of these it is: the client's own certificate expired or not yet valid; the gateway's certificate expired,
issued by another CA than the one trusted, or not naming the host dialled; the gateway refusing the client's
certificate (expired, another CA's), or wanting one at all (a token sent to the mTLS port). Nothing but the
handshake is sent.

Owns: that one probe and the words for each failure. It does not decide what to retry (`client_channel` does)
or what exit code a command returns (`gateway.cli.connect` does).
"""

from __future__ import annotations

import socket
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

PROBE_TIMEOUT_S = 5.0
ALERT_WAIT_S = 1.0
"""After a handshake the client sees as done, how long to wait for the gateway's alert refusing our
certificate (TLS 1.3 sends it after the client's Finished); a gateway that accepts sends nothing."""

# OpenSSL verify codes (X509_V_ERR_*) the handshake reports for the gateway's certificate.
_EXPIRED, _NOT_YET_VALID = 10, 9
_HOSTNAME_MISMATCH, _IP_MISMATCH = 62, 64
_UNKNOWN_ISSUER = frozenset({2, 18, 19, 20, 21})


@dataclass(frozen=True)
class TlsProblem:
    """One diagnosed failure: a stable `reason` (TLS_...) and a message that says what to do."""

    reason: str
    message: str


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def own_certificate_problem(cert_pem: bytes, now: datetime | None = None) -> TlsProblem | None:
    """The client's certificate outside its validity period, which the gateway would refuse."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    now = now or datetime.now(UTC)
    if now > cert.not_valid_after_utc:
        return TlsProblem(
            "TLS_CLIENT_CERT_EXPIRED",
            f"your certificate expired at {_when(cert.not_valid_after_utc)}; ask your federation admin for a new one"
            " (`fedgate ca issue`), or renew before expiry next time (`fedgate creds renew`)",
        )
    if now < cert.not_valid_before_utc:
        return TlsProblem(
            "TLS_CERT_NOT_YET_VALID",
            f"your certificate is not valid before {_when(cert.not_valid_before_utc)}; check this machine's clock",
        )
    return None


def _names(der: bytes | None) -> list[str]:
    if not der:
        return []
    try:
        sans = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return []
    return [str(n) for n in sans.value.get_values_for_type(x509.DNSName)] + [
        str(ip) for ip in sans.value.get_values_for_type(x509.IPAddress)
    ]


def _server_certificate(host: str, port: int, timeout: float) -> bytes | None:
    """The gateway's leaf certificate, read without verifying it (only to name what it says)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, context.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)
    except OSError:
        return None


def _verify_problem(exc: ssl.SSLCertVerificationError, target: str, host: str, port: int) -> TlsProblem:
    code = exc.verify_code
    if code in {_HOSTNAME_MISMATCH, _IP_MISMATCH}:
        names = _names(_server_certificate(host, port, PROBE_TIMEOUT_S))
        return TlsProblem(
            "TLS_HOSTNAME_MISMATCH",
            f"the gateway's certificate does not name {host!r} (it names {', '.join(names) or 'nothing usable'});"
            f" dial one of those names, or reissue it with `fedgate ca issue --server --host {host}`",
        )
    if code == _EXPIRED:
        return TlsProblem(
            "TLS_SERVER_CERT_EXPIRED",
            f"the gateway at {target} presents an expired certificate; its operator must issue a new one"
            " (`fedgate ca issue --server`) and restart it",
        )
    if code == _NOT_YET_VALID:
        return TlsProblem(
            "TLS_CERT_NOT_YET_VALID",
            f"the gateway's certificate at {target} is not valid yet; check the clocks of this machine and the gateway",
        )
    if code in _UNKNOWN_ISSUER:
        return TlsProblem(
            "TLS_UNKNOWN_CA",
            f"the gateway at {target} presents a certificate not issued by the CA you trust (ca.pem / --ca):"
            " wrong federation or wrong CA file; get the federation's ca.pem from its admin",
        )
    return TlsProblem(
        "TLS_VERIFY_FAILED", f"the gateway's certificate at {target} fails verification: {exc.verify_message}"
    )


def _refusal(exc: OSError | None, target: str, sent_certificate: bool) -> TlsProblem:
    reason = getattr(exc, "reason", None) or ""
    if not sent_certificate:
        return TlsProblem(
            "TLS_CLIENT_CERT_REQUIRED",
            f"{target} is a port that wants a client certificate (the gateway's mTLS `listen`); a token goes to"
            " its public port (`public_listen`), or use --creds DIR instead of --token",
        )
    if "EXPIRED" in reason:
        why = "it says your certificate expired"
    elif "UNKNOWN_CA" in reason:
        why = "it does not know the CA that issued your certificate (another federation's?)"
    elif "REVOKED" in reason:
        why = "it says your certificate is revoked"
    else:
        why = "your certificate is not one it accepts (expired, revoked, or another federation's)"
    return TlsProblem(
        "TLS_CLIENT_CERT_REFUSED",
        f"the gateway at {target} refused your certificate: {why}; ask your admin for a new one",
    )


def diagnose(
    target: str, ca_pem: bytes, cert_pem: bytes = b"", key_pem: bytes = b"", timeout: float = PROBE_TIMEOUT_S
) -> TlsProblem | None:
    """What is wrong with TLS to `target` (host:port), or None when the handshake succeeds or no connection can
    be made at all (then "unreachable" is the true answer). With `cert_pem`/`key_pem` the probe presents that
    client certificate, as an mTLS call would; without, it presents none, as a token call does."""
    if cert_pem and (own := own_certificate_problem(cert_pem)) is not None:
        return own
    try:
        host, port = _split(target)
    except ValueError:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_alpn_protocols(["h2"])
    try:
        context.load_verify_locations(cadata=ca_pem.decode("ascii", "replace"))
    except ssl.SSLError:
        return TlsProblem("TLS_VERIFY_FAILED", "the CA bundle (ca.pem / --ca) holds no readable certificate")
    if cert_pem:
        with tempfile.TemporaryDirectory(prefix="fedgate-tls-") as scratch:
            cert_path, key_path = Path(scratch) / "cert.pem", Path(scratch) / "key.pem"
            cert_path.write_bytes(cert_pem)
            key_path.touch(0o600)
            key_path.write_bytes(key_pem)
            context.load_cert_chain(cert_path, key_path)
    return _handshake(context, target, host, port, timeout, sent_certificate=bool(cert_pem))


def _handshake(
    context: ssl.SSLContext, target: str, host: str, port: int, timeout: float, *, sent_certificate: bool
) -> TlsProblem | None:
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    with raw:
        try:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.settimeout(ALERT_WAIT_S)
                try:
                    data = tls.recv(1)
                except TimeoutError:
                    return None  # the gateway accepted us and waits for our first request
                except ssl.SSLError as exc:
                    return _refusal(exc, target, sent_certificate)
                except OSError:  # reset: the gateway dropped us after the handshake
                    return _refusal(None, target, sent_certificate)
                return None if data else _refusal(None, target, sent_certificate)
        except ssl.SSLCertVerificationError as exc:
            return _verify_problem(exc, target, host, port)
        except ssl.SSLError as exc:  # TLS 1.2: the gateway's alert arrives inside the handshake
            return _refusal(exc, target, sent_certificate)
        except OSError:
            return None
