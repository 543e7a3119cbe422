"""One page of a listing, by the rules every List RPC shares (AIP-158).

Owns: `page_size` (0 means the listing's default, more than its maximum means the maximum, negative is
INVALID_ARGUMENT), `page_after` (one page of a listing the gateway holds in memory, in the order of a key unique
to each item: the page token seals the last key given, so an item added during a listing is given once, on a
later page, if its key sorts after that) and `cut_to_bytes` (a page ended early so that its items stay under a
byte budget, the transport's message limit, with a token for the rest). Tokens are `PageTokens`: sealed for
one caller and one set of filters. It knows nothing of gRPC: sizes come from the transport's `size_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.errors import InvalidArgument
from gateway.trust.pagetokens import PageTokens

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    """Items of one page and the sealed token of the next ("" on the last page)."""

    items: tuple[T, ...]
    next_page_token: str


def page_size(requested: int, default: int = DEFAULT_PAGE_SIZE, most: int = MAX_PAGE_SIZE) -> int:
    """The page size a request asks for: 0 means `default`, more than `most` means `most`."""
    if requested < 0:
        raise InvalidArgument(f"page_size must not be negative (0 means {default}, at most {most})")
    return min(requested or default, most)


def page_after(
    items: Iterable[T], key: Callable[[T], str], listing: str, size: int, page_token: str, *, tokens: PageTokens
) -> Page[T]:
    """The `size` items of `items` that follow the sealed `page_token` in `key` order (all of them for the
    first page). `key` MUST be unique per item and stable: it is what the next token remembers."""
    after = tokens.open(listing, page_token)
    ordered = sorted((item for item in items if not after or key(item) > after), key=key)
    page = ordered[:size]
    last = key(page[-1]) if len(ordered) > size else ""
    return Page(tuple(page), tokens.seal(listing, last))


def cut_to_bytes(
    page: Page[T],
    keys: Sequence[str],
    size_of: Callable[[T], int],
    budget: int,
    listing: str,
    *,
    tokens: PageTokens,
) -> Page[T]:
    """`page` ended early when its items' `size_of` add up to more than `budget` (at least one item is kept);
    the next page then starts after the last item kept, whose store key is its entry in `keys`."""
    kept: list[T] = []
    total = 0
    if len(keys) != len(page.items):
        raise ValueError(f"{len(keys)} keys for {len(page.items)} items")
    for item in page.items:
        size = size_of(item)
        if kept and total + size > budget:
            return Page(tuple(kept), tokens.seal(listing, keys[len(kept) - 1]))
        kept.append(item)
        total += size
    return page
