"""Durable state of the gateway behind one narrow contract (`Store`), chosen by URL with `open_store`."""

from gateway.store.base import JobPage, Store, open_store

__all__ = ["JobPage", "Store", "open_store"]
