"""When a site renews its certificate, and how often it looks.

Owns: the renewal point (two thirds into a certificate's validity, so that a third of its life is left for
retries while the gateway is away) and the settings of the renewal loop. Pure: the clock is passed in; the
loop itself, which calls the gateway, lives in `agents.transport.renewal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

RENEW_AT = 2 / 3
"""Fraction of a certificate's validity after which it is renewed."""


def renewal_time(not_before: datetime, not_after: datetime) -> datetime:
    """`not_before + 2/3 * (not_after - not_before)`."""
    return not_before + (not_after - not_before) * RENEW_AT


def renewal_due(certificate: x509.Certificate, now: datetime) -> bool:
    """True once `now` has reached the certificate's renewal time (also when it has already expired)."""
    return now >= renewal_time(certificate.not_valid_before_utc, certificate.not_valid_after_utc)


def seconds_until_renewal(certificate: x509.Certificate, now: datetime) -> float:
    """How long until the renewal time, 0 when it is due."""
    due = renewal_time(certificate.not_valid_before_utc, certificate.not_valid_after_utc)
    return max(0.0, (due - now).total_seconds())


@dataclass(frozen=True)
class RenewalSettings:
    """How the running agent keeps its certificate fresh."""

    check_interval_s: float = 30.0
    """Seconds between checks of the current certificate while connected (also checked on every connect)."""
    retry_base_s: float = 5.0
    """Ceiling of the first delay after a failed renewal; it doubles on each failure."""
    retry_cap_s: float = 300.0
    """The retry delay never grows beyond this."""
    rpc_timeout_s: float = 20.0
    """Deadline of one RenewCertificate call."""
