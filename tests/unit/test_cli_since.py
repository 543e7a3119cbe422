"""`fedgate usage --since` and `fedgate job usage --since` take the same words: a duration ago or an ISO time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.cli import job as job_cli
from gateway.cli import usage as usage_cli
from gateway.errors import ConfigError

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("24h", NOW - timedelta(hours=24)),
        ("1h30m", NOW - timedelta(minutes=90)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:00:00Z", datetime(2026, 11, 1, 8, tzinfo=UTC)),
        ("2026-11-01T16:00:00+08:00", datetime(2026, 11, 1, 8, tzinfo=UTC)),
    ],
)
def test_since_takes_a_duration_ago_or_an_iso_time(text: str, moment: datetime) -> None:
    assert usage_cli.parse_time(text, "--since", NOW) == moment


def test_both_usage_commands_read_since_the_same_way() -> None:
    assert vars(job_cli)["parse_time"] is usage_cli.parse_time


def test_a_since_that_is_neither_says_both_forms() -> None:
    with pytest.raises(ConfigError, match="neither a duration ago like 7d or 24h nor an ISO-8601 time"):
        usage_cli.parse_time("last tuesday", "--since", NOW)
