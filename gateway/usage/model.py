"""Usage totals as the admins and vendors read them.

Owns: the `UsageRow` shape. No I/O."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UsageRow:
    """What one tenant's project used of one class over a period. card_hours: cards x hours of ended attempts;
    normalised: card-hours x the class's dense BF16 PFLOPS."""

    tenant: str
    project: str
    accelerator_class: str
    card_hours: float
    normalised_pflops_hours: float = 0.0
    attempts: int = 0
