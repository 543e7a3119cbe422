"""Pure placement algorithms: where a job fits now, fair share, backfill and preemption."""
