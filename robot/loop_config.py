"""The control loop's configuration, its start error and its stop signals.

Split from :mod:`karakuri.robot.control_loop`, which re-exports every name here.
"""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass
from typing import Any

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
        check_thresholds(self, self.rate_hz)

    @property
    def period(self) -> float:
        """Tick period, s."""
        return 1.0 / self.rate_hz


def check_thresholds(cfg: Any, rate_hz: float | None = None) -> None:
    """The rules of :class:`LoopConfig`'s thresholds, for it and for sections holding them.

    Every time is a finite number of seconds, > 0 (``spin_s``: >= 0); ``stale_periods`` >= 1.
    With ``rate_hz``, also: ``stale_fault_s`` exceeds ``stale_periods`` periods, so that state
    goes stale (the loop holds) before it is old enough to be a fault (the loop stops).

    Args:
        cfg: Anything with the fields ``spin_s``, ``late_s``, ``stale_periods``,
            ``stale_fault_s`` and ``first_state_timeout_s``.
        rate_hz: The loop rate, Hz; None: not known yet.

    Raises:
        ValueError: naming the key, the value and the bound.
    """
    for key in ("spin_s", "late_s", "stale_fault_s", "first_state_timeout_s"):
        v, zero_ok = getattr(cfg, key), key == "spin_s"
        if v is not None and not (math.isfinite(v) and (v >= 0 if zero_ok else v > 0)):
            raise ValueError(f"{key}: {v} must be a finite number {'>= 0' if zero_ok else '> 0'} s")
    if cfg.stale_periods < 1:
        raise ValueError(f"stale_periods: {cfg.stale_periods} must be >= 1")
    if rate_hz is None:
        return
    bound = cfg.stale_periods / rate_hz
    if not cfg.stale_fault_s > bound:
        raise ValueError(
            f"stale_fault_s: {cfg.stale_fault_s} s is too small: it must exceed "
            f"stale_periods / rate = {cfg.stale_periods} / {rate_hz:g} Hz = {bound:.4g} s "
            f"(state is stale after stale_periods periods and a fault only after "
            f"stale_fault_s); raise it or lower loop.stale_periods")


__all__ = ["STOP_SIGNALS", "LoopConfig", "LoopError", "check_thresholds", "stop_reason"]
