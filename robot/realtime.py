"""Real-time setup for the control loop: each measure tried, reported in one line, undone.

Measures, in order:

- ``gc``: collect, ``gc.freeze()`` and ``gc.disable()``, so no collection pauses a tick;
- ``timer_slack``: ``prctl(PR_SET_TIMERSLACK, 1 ns)``, so sleeps wake on time (Linux);
- ``gil_switch``: ``sys.setswitchinterval``, so a link's reader thread (or an in-process
  virtual MCU) hands the interpreter back to a woken loop within that time, not 5 ms;
- ``affinity``: ``os.sched_setaffinity`` to the CPUs asked for (off unless asked);
- ``sched_fifo``: ``os.sched_setscheduler(SCHED_FIFO, priority)`` (needs ``CAP_SYS_NICE``
  or an ``rtprio`` limit, e.g. ``@realtime - rtprio 90`` in ``/etc/security/limits.conf``);
- ``mlockall``: ``mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`` through ctypes (needs
  ``CAP_IPC_LOCK`` or a large enough ``memlock`` limit): resident pages are never paged out.
  ``MCL_ONFAULT`` (Linux >= 4.4) locks the rest as it is touched instead of populating the
  whole address space up front, which stalls every thread of the process for ~50 ms or more;
  on older kernels the flag is dropped.

Nothing here raises when the system refuses: the refusal and its reason go into the line.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import sys
from dataclasses import dataclass, field
from types import TracebackType

_MCL_CURRENT, _MCL_FUTURE, _MCL_ONFAULT = 1, 2, 4
_PR_SET_TIMERSLACK, _PR_GET_TIMERSLACK = 29, 30


@dataclass(frozen=True)
class RealtimeConfig:
    """Which real-time measures to try.

    Attributes:
        gc_freeze: Freeze and disable the garbage collector during the loop.
        timer_slack: Set the thread's timer slack to 1 ns (Linux) so sleeps end on time.
        gil_switch_interval_s: Python's thread switch interval during the loop, s; 0 leaves
            it (5 ms by default).
        sched_fifo_priority: SCHED_FIFO priority 1..99, or 0 to stay on the normal scheduler.
        mlockall: Lock resident and future memory so no page is swapped out under a tick.
        cpus: CPUs to pin the loop's process to; empty leaves the affinity alone.
    """

    gc_freeze: bool = True
    timer_slack: bool = True
    gil_switch_interval_s: float = 0.0005
    sched_fifo_priority: int = 80
    mlockall: bool = True
    cpus: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.sched_fifo_priority <= 99:
            raise ValueError(
                f"sched_fifo_priority: {self.sched_fifo_priority} is not in 0..99 "
                f"(0 keeps the normal scheduler)")
        if self.gil_switch_interval_s < 0:
            raise ValueError(f"gil_switch_interval_s: {self.gil_switch_interval_s} must be >= 0 s")
        if any(c < 0 for c in self.cpus):
            raise ValueError(f"cpus: {list(self.cpus)} has a negative CPU number")


@dataclass
class RealtimeReport:
    """What :class:`RealtimeSetup` applied and what the system refused, with reasons."""

    applied: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the console, e.g. ``realtime: applied gc, sched_fifo(80); refused ...``."""
        parts = [f"applied {', '.join(self.applied) or 'nothing'}"]
        if self.refused:
            parts.append(f"refused {'; '.join(self.refused)}")
        if self.skipped:
            parts.append(f"not asked {', '.join(self.skipped)}")
        return "realtime: " + "; ".join(parts)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


def _errno_text() -> str:
    err = ctypes.get_errno()
    return f"{os.strerror(err)} (errno {err})"


class RealtimeSetup:
    """Context manager applying :class:`RealtimeConfig` on enter and undoing it on exit.

    Args:
        config: What to try.

    Example:
        >>> with RealtimeSetup(RealtimeConfig(sched_fifo_priority=0)) as report:
        ...     print(report.line())  # doctest: +SKIP
    """

    def __init__(self, config: RealtimeConfig | None = None) -> None:
        self.config = config or RealtimeConfig()
        self.report = RealtimeReport()
        self._undo: list[tuple[str, object]] = []
        self._libc = _libc()

    def __enter__(self) -> RealtimeReport:
        c = self.config
        for name, wanted, fn in (("gc", c.gc_freeze, self._gc),
                                 ("timer_slack", c.timer_slack, self._slack),
                                 ("gil_switch", c.gil_switch_interval_s > 0, self._switch),
                                 ("affinity", bool(c.cpus), self._affinity),
                                 ("sched_fifo", c.sched_fifo_priority > 0, self._fifo),
                                 ("mlockall", c.mlockall, self._mlock)):
            if not wanted:
                self.report.skipped.append(name)
                continue
            try:
                label = fn()
            except (OSError, AttributeError, ValueError) as e:
                self.report.refused.append(f"{name} ({e})")
            else:
                self.report.applied.append(label)
        return self.report

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for name, prev in reversed(self._undo):
            # Best effort: the process is leaving the loop either way.
            with contextlib.suppress(OSError, AttributeError):
                self._restore(name, prev)
        self._undo.clear()

    # -- each measure returns its label or raises OSError with the reason -----------------
    def _gc(self) -> str:
        gc.collect()
        gc.freeze()
        was = gc.isenabled()
        gc.disable()
        self._undo.append(("gc", was))
        return "gc.freeze"

    def _slack(self) -> str:
        if self._libc is None or not hasattr(self._libc, "prctl"):
            raise OSError("no prctl on this system")
        prev = self._libc.prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)
        if self._libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0) != 0:
            raise OSError(_errno_text())
        self._undo.append(("timer_slack", prev))
        return "timer_slack(1ns)"

    def _switch(self) -> str:
        self._undo.append(("gil_switch", sys.getswitchinterval()))
        sys.setswitchinterval(self.config.gil_switch_interval_s)
        return f"gil_switch({self.config.gil_switch_interval_s * 1e6:.0f}us)"

    def _affinity(self) -> str:
        prev = os.sched_getaffinity(0)
        os.sched_setaffinity(0, set(self.config.cpus))
        self._undo.append(("affinity", prev))
        return f"affinity{sorted(self.config.cpus)}"

    def _fifo(self) -> str:
        prio = self.config.sched_fifo_priority
        prev = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
        except PermissionError as e:
            raise OSError(f"{e.strerror}: needs CAP_SYS_NICE or an rtprio limit >= {prio}") from e
        self._undo.append(("sched_fifo", prev))
        return f"sched_fifo({prio})"

    def _mlock(self) -> str:
        if self._libc is None:
            raise OSError("libc not found")
        label = "mlockall(onfault)"
        if self._libc.mlockall(_MCL_CURRENT | _MCL_FUTURE | _MCL_ONFAULT) != 0:
            label = "mlockall"  # kernels before 4.4 reject MCL_ONFAULT with EINVAL
            if self._libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
                raise OSError(f"{_errno_text()}: needs CAP_IPC_LOCK or a larger memlock limit "
                              f"(ulimit -l)")
        self._undo.append(("mlockall", None))
        return label

    def _restore(self, name: str, prev: object) -> None:
        if name == "gc":
            gc.unfreeze()
            if prev:
                gc.enable()
        elif name == "timer_slack" and self._libc is not None:
            self._libc.prctl(_PR_SET_TIMERSLACK, int(prev), 0, 0, 0)  # type: ignore[call-overload]
        elif name == "gil_switch":
            sys.setswitchinterval(float(prev))  # type: ignore[arg-type]
        elif name == "affinity":
            os.sched_setaffinity(0, prev)  # type: ignore[arg-type]
        elif name == "sched_fifo":
            policy, prio = prev  # type: ignore[misc]
            os.sched_setscheduler(0, policy, os.sched_param(prio))
        elif name == "mlockall" and self._libc is not None:
            self._libc.munlockall()
