"""The page rules every listing shares: sizes, key order that holds while rows are added, byte cuts, and tokens
that are refused when garbage, foreign or expired."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidArgument
from gateway.trust.pages import Page, cut_to_bytes, page_after, page_size
from gateway.trust.pagetokens import TOKEN_LIFETIME, PageTokens


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def follow(items: list[str], tokens: PageTokens, size: int, listing: str = "names\nalice") -> list[list[str]]:
    pages, token = [], ""
    while True:
        page = page_after(items, lambda s: s, listing, size, token, tokens=tokens)
        pages.append(list(page.items))
        token = page.next_page_token
        if not token:
            return pages


def test_page_size_zero_means_the_default_and_larger_asks_get_the_maximum() -> None:
    assert page_size(0) == 100 and page_size(7) == 7 and page_size(10_000) == 500
    assert page_size(0, default=100, most=1000) == 100 and page_size(5000, most=1000) == 1000
    with pytest.raises(InvalidArgument):
        page_size(-1)


def test_pages_follow_the_key_order_and_together_are_the_whole_listing() -> None:
    tokens = PageTokens.ephemeral()
    names = ["delta", "alpha", "charlie", "bravo", "echo"]
    assert follow(names, tokens, 2) == [["alpha", "bravo"], ["charlie", "delta"], ["echo"]]
    assert follow(names, tokens, 5) == [sorted(names)]


def test_a_row_added_during_a_listing_comes_once_if_it_sorts_after_the_token_and_none_twice() -> None:
    tokens = PageTokens.ephemeral()
    rows = ["a", "c", "e"]
    first = page_after(rows, lambda s: s, "l", 2, "", tokens=tokens)
    rows += ["b", "f"]  # "b" sorts before the token: this listing has passed it; "f" comes later
    second = page_after(rows, lambda s: s, "l", 2, first.next_page_token, tokens=tokens)
    assert list(first.items) == ["a", "c"] and list(second.items) == ["e", "f"]
    assert not second.next_page_token


def test_a_token_opens_only_for_its_listing_its_key_and_its_lifetime() -> None:
    clock = Clock()
    tokens = PageTokens.ephemeral(clock)
    token = page_after(["a", "b"], lambda s: s, "names\nalice", 1, "", tokens=tokens).next_page_token
    assert tokens.open("names\nalice", token) == "a"
    for listing, keyring in (("names\nbob", tokens), ("names\nalice", PageTokens.ephemeral(clock))):
        with pytest.raises(InvalidArgument) as refused:
            keyring.open(listing, token)
        assert refused.value.reason == "BAD_PAGE_TOKEN"
    for garbage in ("garbage", "a", token[:-3], "x" * 5000):
        with pytest.raises(InvalidArgument) as refused:
            tokens.open("names\nalice", garbage)
        assert refused.value.reason == "BAD_PAGE_TOKEN"
    clock.now += TOKEN_LIFETIME + 1
    with pytest.raises(InvalidArgument) as refused:
        tokens.open("names\nalice", token)
    assert refused.value.reason == "BAD_PAGE_TOKEN" and refused.value.metadata["expired"] == "true"


def test_a_page_cut_to_bytes_ends_after_the_last_item_that_fits_and_continues_from_it() -> None:
    tokens = PageTokens.ephemeral()
    page = Page(("a", "b", "c"), tokens.seal("l", "c"))
    cut = cut_to_bytes(page, ["a", "b", "c"], lambda s: 40, 100, "l", tokens=tokens)
    assert cut.items == ("a", "b") and tokens.open("l", cut.next_page_token) == "b"
    alone = cut_to_bytes(page, ["a", "b", "c"], lambda s: 1000, 100, "l", tokens=tokens)
    assert alone.items == ("a",), "an item larger than the budget is still listed, alone"
    assert cut_to_bytes(page, ["a", "b", "c"], lambda s: 1, 100, "l", tokens=tokens) is page
