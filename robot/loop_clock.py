"""The control loop's clock: a seam between the loop's schedule and the machine's time.

:class:`~karakuri.robot.control_loop.ControlLoop` reads time only through a :class:`Clock`.
The default, :class:`WallClock`, is the host's monotonic clock with a sleep-then-spin wait
(the loop's timing model, docs/control-loop.md).  A test passes a clock whose ``sleep_until``
jumps to the deadline, so tick counts, deadlines and overruns are exact rather than bounded.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Monotonic time for the loop, s (the clock :attr:`JointState.stamp` is measured on)."""

    def now(self) -> float:
        """The current monotonic time, s."""

    def sleep_until(self, t: float) -> None:
        """Return at monotonic time ``t``, s (or just after it); at once when ``t`` is past."""


class WallClock:
    """The host's monotonic clock; waits sleep, then spin the last ``spin_s`` before ``t``.

    Args:
        spin_s: Busy-wait this long before each deadline instead of sleeping, s (>= 0): the
            OS wakes a sleeper late by up to a timer slack, a spin does not.
    """

    def __init__(self, spin_s: float = 0.0) -> None:
        if not spin_s >= 0.0:
            raise ValueError(f"spin_s must be >= 0 s, got {spin_s}")
        self.spin_s = float(spin_s)

    def now(self) -> float:
        """``time.monotonic()``, s."""
        return time.monotonic()

    def sleep_until(self, t: float) -> None:
        """Sleep until ``spin_s`` before ``t``, then spin on the monotonic clock until ``t``."""
        remaining = t - time.monotonic() - self.spin_s
        if remaining > 0:
            time.sleep(remaining)
        while time.monotonic() < t:
            pass
