"""Dataset transfer: where a job that names a dataset should run, counting the copy of the dataset there.

Owns: the rule that weighs transfer time against fit for a one-site job that names a dataset, and the
DATASET_TRANSFER reason that explains it. Among the sites where the job fits now, the near ones are those whose
estimated transfer (`gateway.policy.network.DatasetSource.transfer_s`: 0 at the dataset's own site) is within
`NEAR_SLACK_S` seconds or `NEAR_SLACK_SHARE` of the shortest; best fit (the caller's key) chooses among them,
so the fit decides only between sites the copy makes equal. A job that fits only far away still runs there: a
known transfer beats an unknown wait. Jobs that name no dataset never come here. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from fedgate.common.reasons import ReasonCode
from gateway.jobs.model import Reason
from gateway.policy.network import DatasetSource, duration_text

T = TypeVar("T")

NEAR_SLACK_S = 60.0
"""Transfers within this many seconds of the shortest count as equally near (then best fit chooses)."""
NEAR_SLACK_SHARE = 0.1
"""... or within this share of the shortest, when that is longer."""


def nearest(options: Sequence[T], site_of: Callable[[T], str], key: Callable[[T], Any], source: DatasetSource) -> T:
    """The option the job should take: the best by `key` (smaller is better) among those whose site is near
    the dataset. `options` is not empty."""
    times = [source.transfer_s(site_of(option)) for option in options]
    shortest = min(times)
    limit = shortest + max(NEAR_SLACK_S, shortest * NEAR_SLACK_SHARE)  # all unknown (inf): all equally near
    return min((o for o, t in zip(options, times, strict=True) if t <= limit), key=key)


def transfer_reason(source: DatasetSource, site: str, fitting: Collection[str]) -> Reason:
    """DATASET_TRANSFER for a job placed on `site`, where `fitting` are the sites it fitted on now."""
    dataset = source.dataset
    what = f"dataset {dataset.name} ({dataset.size_gb:g} GB) is on {dataset.site}"
    if site == dataset.site:
        return Reason("capacity", ReasonCode.DATASET_TRANSFER, f"{what}, where the job runs: no transfer", site)
    seconds = source.transfer_s(site)
    link = source.network.link(dataset.site, site)
    over = f" over {link.text()}" if link is not None else " (no link stated between them)"
    message = f"{what}; placed on {site}, estimated transfer {duration_text(seconds)}{over}"
    if dataset.site not in fitting:
        message += f" ({dataset.site} has no room for the job now; the transfer is shorter than an unknown wait)"
    else:
        message += f" (as near as running at {dataset.site}, within {NEAR_SLACK_S:g} s; best fit chose {site})"
    return Reason("capacity", ReasonCode.DATASET_TRANSFER, message, site)
