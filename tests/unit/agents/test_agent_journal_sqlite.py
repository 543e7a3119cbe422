"""The durable journal: what it holds survives closing and reopening the file, in order, and its counters
never go backwards; started attempts are kept until their final update goes in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.core.commands import Launch
from agents.core.config import AgentConfig
from agents.core.model import JobState, JobUpdate
from agents.journal.base import MemoryJournal, StartedAttempt, UpdateJournal
from agents.journal.sqlite import SqliteJournal

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def update(sequence: int, state: JobState = JobState.RUNNING, job: str = "j1", **extra: object) -> JobUpdate:
    return JobUpdate(job, 1, state, sequence, T0, **extra)  # type: ignore[arg-type]


def started(job: str = "j1", epoch: int = 1) -> StartedAttempt:
    launch = Launch(
        job, epoch, 2, "nvidia-h100", 2, ("python3", "-c", "x"), stack="cuda", tenant="t", project="p",
        max_runtime_s=60.0, env={"A": "1"}, labels={"k": "v"},
    )  # fmt: skip
    return StartedAttempt(launch, (2, 3), T0)


@pytest.fixture(params=["memory", "sqlite"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> UpdateJournal:
    return MemoryJournal() if request.param == "memory" else SqliteJournal(tmp_path / "journal.db")


def test_both_journals_keep_updates_in_sequence_order_and_refuse_going_back(journal: UpdateJournal) -> None:
    for sequence in (1, 2, 5):
        journal.append(update(sequence))
    with pytest.raises(ValueError, match="not above 5"):
        journal.append(update(5))
    assert [u.sequence for u in journal.pending()] == [1, 2, 5]
    assert [u.sequence for u in journal.pending(after=1)] == [2, 5]
    journal.acknowledge(2)
    journal.discard(5)
    assert journal.pending() == [] and journal.last_sequence() == 5


def test_both_journals_forget_a_started_attempt_once_it_ended(journal: UpdateJournal) -> None:
    journal.record_started(started("j1"))
    journal.record_started(started("j2"))
    journal.record_ended("j2", 1)
    assert [s.key for s in journal.started()] == [("j1", 1)]


def test_updates_receipts_and_counters_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.db"
    first = SqliteJournal(path)
    first.append(update(1))
    first.append(update(2, JobState.SUCCEEDED, receipt_record=b"\x0arecord", receipt_signature=b"sig"))
    first.advance_cursor(7)
    first.advance_cursor(3)  # lower: ignored
    first.close()

    again = SqliteJournal(path)
    assert again.pending() == [
        update(1),
        update(2, JobState.SUCCEEDED, receipt_record=b"\x0arecord", receipt_signature=b"sig"),
    ]
    assert (again.last_sequence(), again.cursor()) == (2, 7)


def test_sequence_never_goes_back_after_everything_was_acknowledged_and_reopened(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    first = SqliteJournal(path)
    first.append(update(1))
    first.append(update(2))
    first.acknowledge(2)
    first.close()
    again = SqliteJournal(path)
    assert again.pending() == [] and again.last_sequence() == 2
    with pytest.raises(ValueError):
        again.append(update(2))


def test_started_attempt_survives_reopening_with_its_launch(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    first = SqliteJournal(path)
    first.record_started(started())
    first.close()
    (restored,) = SqliteJournal(path).started()
    assert restored == started()


def test_final_update_forgets_the_attempt_in_the_same_write(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "journal.db")
    journal.record_started(started())
    journal.append(update(1, JobState.RUNNING))
    assert len(journal.started()) == 1
    journal.append(update(2, JobState.PREEMPTED))
    assert journal.started() == []


def test_unwritable_state_dir_is_a_config_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    from agents.errors import ConfigError

    with pytest.raises(ConfigError, match="state_dir"):
        SqliteJournal.in_directory(blocker / "state")


def test_state_dir_defaults_to_state_next_to_the_config_and_resolves_relative_paths(
    make_config: Callable[..., AgentConfig], tmp_path: Path
) -> None:
    assert make_config().state_dir == tmp_path / "state"
    assert make_config(extra="state_dir: var/agent\n").state_dir == tmp_path / "var" / "agent"
