"""Signed usage: receipts checked and countersigned, and who may read them."""
