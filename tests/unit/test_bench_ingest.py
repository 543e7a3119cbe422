"""The ingest benchmark's pieces that can be wrong without timing: the reports it sends, the figures and the
summary's keys. No benchmark runs here."""

from __future__ import annotations

from bench import ingest, sitestreams


def test_only_the_last_report_carries_the_final_free_count() -> None:
    reports = sitestreams.capacity_reports(20, "ascend-910b", 16)
    frees = [r.capacity.pools[0].free for r in reports]
    assert frees[-1] == sitestreams.final_free(16)
    assert sitestreams.final_free(16) not in frees[:-1]
    assert all(r.capacity.full and r.capacity.pools[0].total == 16 for r in reports)
    assert all(0 <= f <= 16 for f in frees)


def test_a_single_report_is_the_final_one() -> None:
    (report,) = sitestreams.capacity_reports(1, "ascend-910b", 16)
    assert report.capacity.pools[0].free == sitestreams.final_free(16)


def _run(applied: int, seconds: float, sent: int = 20_000) -> ingest.IngestRun:
    return ingest.IngestRun(1000, 3.0, sent, seconds, 1000, applied, seconds / 2)


def test_the_rate_counts_what_the_gateway_applied_not_what_was_sent() -> None:
    assert _run(10_000, 2.0).reports_per_s == 5000.0
    assert _run(10_000, 2.0).per_cpu_s == 10_000.0
    result = ingest.IngestResult(ingest.Plan(), _run(10_000, 2.0), _run(20_000, 1.0))
    assert not result.met  # half the reports unaccounted for: not met whatever the rate
    assert ingest.IngestResult(ingest.Plan(), _run(20_000, 4.0), _run(20_000, 1.0)).met


def test_the_summary_names_only_the_ingest_rate() -> None:
    result = ingest.IngestResult(ingest.Plan(), _run(20_000, 4.0), _run(20_000, 2.0))
    assert result.summary() == {"ingest.reports_per_s": 5000.0}
    assert "stream echo" in result.render() and "50%" in result.render()


def test_cpu_seconds_of_this_process_are_read_from_proc() -> None:
    import os

    from bench import fleet

    assert fleet.cpu_seconds(os.getpid()) > 0
