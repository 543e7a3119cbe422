"""Policy documents written as text in tests: the refusal of one, and the line its message names."""

from __future__ import annotations

import re

import pytest

from gateway.errors import ConfigError
from gateway.policy import parse_policy


def refused(text: str, source: str) -> ConfigError:
    """The ConfigError `parse_policy` raises for `text` (read as the file `source`)."""
    with pytest.raises(ConfigError) as refusal:
        parse_policy(text.encode(), source)
    return refusal.value


def error_line(error: ConfigError, source: str) -> int:
    """The line an error's `source:line: problem` message names (it must name one)."""
    found = re.match(rf"^{re.escape(source)}:(\d+): ", error.message)
    assert found, f"no file:line in {error.message!r}"
    return int(found.group(1))
