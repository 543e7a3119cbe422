"""Keeping the running agent's certificate fresh, over the connection it already has.

Owns: the loop that runs beside each welcomed stream: on connect and then every check interval it asks
`agents.identity.renewal` whether the certificate this connection uses is due; when it is, it makes a new key and
CSR, calls RenewCertificate on the same mTLS channel, checks the answer and replaces the key, certificate
and CA files atomically. A failure is logged and retried with backoff; the files in use are never touched
until a complete, checked replacement is ready. It does not reconnect: it tells the link, which re-dials
the stream (the runtime and its jobs are not touched).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import grpc.aio
from cryptography import x509

from agents.core.config import TlsFiles
from agents.errors import AgentError
from agents.identity.credentials import CredentialFiles, check_issued, install_credentials, new_site_key
from agents.identity.renewal import RenewalSettings, renewal_due, renewal_time, seconds_until_renewal
from agents.transport.backoff import Backoff
from agents.transport.enrollment import renew_certificate

log = logging.getLogger(__name__)


class CertificateKeeper:
    """Renews one site's certificate files when due. One per agent; `keep_fresh` runs once per stream."""

    def __init__(self, site: str, tls: TlsFiles, settings: RenewalSettings, clock: Callable[[], datetime]) -> None:
        self._site = site
        self._files = CredentialFiles(key=tls.key, cert=tls.cert, ca=tls.ca)
        self._settings = settings
        self._clock = clock
        # Kept across streams so that a gateway refusing renewals is not asked again on every reconnect.
        self._backoff = Backoff(base_s=settings.retry_base_s, cap_s=settings.retry_cap_s)

    async def keep_fresh(
        self, channel: grpc.aio.Channel, certificate: x509.Certificate, connected: asyncio.Event
    ) -> None:
        """Once `connected` is set, renew `certificate` (the one this channel presents) when due. Returns
        after new credentials are on disk; the caller then re-dials. Runs until cancelled otherwise."""
        await connected.wait()
        while True:
            now = self._clock()
            if renewal_due(certificate, now):
                if await self._renew(channel, certificate):
                    return
                delay = self._backoff.next_delay()
                log.info("next certificate renewal attempt in %.0fs", delay)
            else:
                delay = min(self._settings.check_interval_s, seconds_until_renewal(certificate, now))
            await asyncio.sleep(delay)

    async def _renew(self, channel: grpc.aio.Channel, current: x509.Certificate) -> bool:
        log.info(
            "renewing the site certificate (serial %x, renewal time %s, expires %s)",
            current.serial_number,
            renewal_time(current.not_valid_before_utc, current.not_valid_after_utc).isoformat(timespec="seconds"),
            current.not_valid_after_utc.isoformat(timespec="seconds"),
        )
        site_key = new_site_key(self._site)
        try:
            issued = await renew_certificate(channel, site_key.csr_pem, self._settings.rpc_timeout_s)
            fresh = check_issued(issued, site_key, self._site, self._clock())
            install_credentials(self._files, site_key.key_pem, issued.certificate_chain_pem, issued.ca_bundle_pem)
        except AgentError as exc:
            log.warning("certificate renewal failed (%s): %s; the current certificate stays in use", exc.reason, exc)
            return False
        except OSError as exc:
            log.warning(
                "certificate renewal failed: cannot write %s (%s); the current certificate stays in use",
                exc.filename,
                exc.strerror,
            )
            return False
        except Exception:  # a bug must not end renewal for good: log it with its traceback and try again later
            log.exception("certificate renewal failed unexpectedly; the current certificate stays in use")
            return False
        self._backoff.reset()
        log.info(
            "renewed the site certificate: serial %x valid until %s; reconnecting with it",
            fresh.serial_number,
            fresh.not_valid_after_utc.isoformat(timespec="seconds"),
        )
        return True
