"""Page tokens the caller can neither read nor forge nor carry to another listing.

Owns: `PageTokens`, which seals a store's own page token (the last id of a page, which may be the id of an object
the caller may not see) with AES-GCM under a key derived from the gateway's token key, bound as associated data
to the listing it belongs to (who asks, what is listed, with which filters), with the time it was sealed, and
opens it again; a token that does not open (garbage, changed, another caller's or another listing's, sealed under
another key) or is older than `TOKEN_LIFETIME` is INVALID_ARGUMENT (BAD_PAGE_TOKEN), never page one. Every
gateway of a federation derives the same key from the authority directory they share, so a standby continues
a leader's listing. It does no I/O and knows nothing of gRPC.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import InvalidArgument

_INFO = b"fedgate page tokens v1"
_NONCE = 12
MAX_TOKEN = 1024  # characters: a sealed store token is far shorter; anything longer is not ours
TOKEN_LIFETIME = 24 * 3600.0
"""Seconds a page token stays good: a listing is followed within minutes; a day-old token is a stale script's."""


class PageTokens:
    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self._aead = AESGCM(key)
        self._clock = clock  # seconds since the epoch: when a token is sealed, and whether it has expired

    @classmethod
    def derived(cls, token_key: Ed25519PrivateKey, clock: Callable[[], float] = time.time) -> PageTokens:
        """The federation's page-token key, derived (HKDF-SHA256) from the gateway's token signing key."""
        secret = token_key.private_bytes_raw()
        return cls(HKDF(hashes.SHA256(), 32, salt=None, info=_INFO).derive(secret), clock)

    @classmethod
    def ephemeral(cls, clock: Callable[[], float] = time.time) -> PageTokens:
        """A key of this process only (tests and tools that build a core without an authority)."""
        return cls(AESGCM.generate_key(bit_length=256), clock)

    def seal(self, listing: str, store_token: str) -> str:
        """The opaque token for the next page of `listing` ("" stays "": there is no next page)."""
        if not store_token:
            return ""
        nonce = os.urandom(_NONCE)
        plain = f"{int(self._clock())}\n{store_token}".encode()
        sealed = self._aead.encrypt(nonce, plain, listing.encode())
        return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, listing: str, token: str) -> str:
        """The store's token inside `token` ("" for the first page); BAD_PAGE_TOKEN when it is not ours for
        `listing`."""
        if not token:
            return ""
        try:
            if len(token) > MAX_TOKEN:
                raise ValueError("too long")
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            if len(raw) <= _NONCE:
                raise ValueError("too short")
            sealed_at, store_token = (
                self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], listing.encode()).decode().split("\n", 1)
            )
            age = self._clock() - int(sealed_at)
        except (ValueError, binascii.Error, InvalidTag, UnicodeError):
            raise InvalidArgument(
                "page_token is not one this gateway gave for this listing; send the previous page's "
                "next_page_token unchanged with the same filters, or none for the first page",
                reason="BAD_PAGE_TOKEN",
            ) from None
        if age > TOKEN_LIFETIME:
            raise InvalidArgument(
                f"page_token has expired (page tokens are good for {TOKEN_LIFETIME / 3600:.0f} h); list again from "
                "the first page",
                reason="BAD_PAGE_TOKEN",
                metadata={"expired": "true"},
            )
        return store_token
