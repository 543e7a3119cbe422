"""The rules both sides of the federation apply, defined once: imported by `gateway` and `agents`, owned by neither.

It imports neither package (an import-linter contract checks it), so an agent image carries no gateway code.
"""
