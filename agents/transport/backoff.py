"""How long to wait before the next attempt to reach the gateway.

Owns: exponential backoff with jitter (a random delay between floor * ceiling and the ceiling, base * 2^n capped;
full jitter with floor 0), so that a thousand agents cut off by one gateway restart do not all come back in the
same instant, and an agent the gateway keeps refusing waits longer each time. Pure: the random
source is injected, nothing sleeps here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for consecutive failures: jitter over [floor, 1] * min(cap, base * 2^failures)."""

    base_s: float = 0.2
    """Ceiling of the first delay, in seconds."""
    cap_s: float = 10.0
    """The ceiling never grows beyond this, in seconds."""
    floor: float = 0.0
    """The least fraction of the ceiling waited: 0 is full jitter; above 0 the wait surely grows with failures."""
    uniform: Callable[[], float] = field(default=random.random)
    """Uniform source in [0, 1); injected so tests can pin it."""
    failures: int = 0

    def ceiling(self) -> float:
        # min() before the power would overflow after ~1,000 failures; the exponent is capped instead.
        return min(self.cap_s, self.base_s * (1 << min(self.failures, 64)))

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        delay = (self.floor + (1.0 - self.floor) * self.uniform()) * self.ceiling()
        self.failures += 1
        return delay

    def reset(self) -> None:
        """A connection got through: the next failure starts again from `base_s`."""
        self.failures = 0
