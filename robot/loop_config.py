"""The control loop's configuration, its start error and its stop signals.

Split from :mod:`karakuri.robot.control_loop`, which re-exports every name here.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop the loop in a controlled way: Ctrl-C, ``kill``/systemd/docker, a closed
terminal.  Each is a stop request (the tick in progress completes, then the final HOLD)."""


def stop_reason(signum: int) -> str:
    """The summary's ``stopped by`` for a stop signal, e.g. ``terminated (SIGTERM)``."""
    if signum == signal.SIGINT:
        return "interrupted (Ctrl-C)"
    name = signal.Signals(signum).name
    return f"{'terminated' if signum == signal.SIGTERM else 'hung up'} ({name})"


class LoopError(RuntimeError):
    """The loop cannot start (no state, a policy input it cannot provide); names the fix."""


@dataclass(frozen=True)
class LoopConfig:
    """Timing and fault thresholds of :class:`ControlLoop`.

    Attributes:
        rate_hz: Tick rate, Hz.
        duration_s: Stop after this long, s; None runs until the episodes end or a stop.
        spin_s: Busy-wait this long before each deadline instead of sleeping, s.
        late_s: A tick starting this long after its deadline is late, s; None: 10 % of the
            period.
        stale_periods: State older than this many periods is stale: hold, count.
        stale_fault_s: State older than this (or none for this long) is a fault: stop, s.
        first_state_timeout_s: How long :meth:`ControlLoop.run` waits for the first state, s.
        arm_on_start: Call ``link.rearm()`` just before the first tick, for a link connected
            without arming: the MCU watchdog then starts with the loop, not before it.
        arm_timeout_s: After arming (at start or :meth:`ControlLoop.rearm`), how long the
            robot may take to report ARMED without ESTOP/FAULT/WATCHDOG; the loop sends HOLD
            meanwhile, then faults, s.
    """

    rate_hz: float
    duration_s: float | None = None
    spin_s: float = 0.0003
    late_s: float | None = None
    stale_periods: int = 3
    stale_fault_s: float = 0.25
    first_state_timeout_s: float = 3.0
    arm_on_start: bool = False
    arm_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz: {self.rate_hz} must be > 0 Hz")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration_s: {self.duration_s} must be > 0 s (or None)")
        if self.stale_periods < 1:
            raise ValueError(f"stale_periods: {self.stale_periods} must be >= 1")
        if self.stale_fault_s <= self.stale_periods / self.rate_hz:
            raise ValueError(
                f"stale_fault_s: {self.stale_fault_s} s must exceed stale_periods / rate_hz = "
                f"{self.stale_periods / self.rate_hz:.4f} s")

    @property
    def period(self) -> float:
        """Tick period, s."""
        return 1.0 / self.rate_hz


__all__ = ["STOP_SIGNALS", "LoopConfig", "LoopError", "stop_reason"]
