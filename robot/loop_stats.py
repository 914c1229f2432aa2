"""Timing statistics and the end-of-run summary of the control loop."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Percentiles:
    """p50, p99 and max of a duration, µs."""

    p50_us: float
    p99_us: float
    max_us: float

    def __str__(self) -> str:
        return f"p50 {self.p50_us:.0f} µs, p99 {self.p99_us:.0f} µs, max {self.max_us:.0f} µs"


class LatencyHistogram:
    """Constant-memory percentiles of durations: 1 µs bins up to ``max_s``, exact max.

    Adding a sample is O(1) and allocates nothing, so a loop can record every tick for hours.

    Args:
        max_s: Largest binned duration, s; longer samples land in the last bin (the exact max
            is kept separately).
    """

    def __init__(self, max_s: float = 0.2) -> None:
        self._bins = np.zeros(int(max_s * 1e6) + 1, dtype=np.int64)
        self._last = self._bins.shape[0] - 1
        self.count = 0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        """Record one duration, s (negative values count as 0)."""
        us = int(seconds * 1e6)
        self._bins[min(max(us, 0), self._last)] += 1
        self.count += 1
        if seconds > self.max_s:
            self.max_s = seconds

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0..1), µs, at 1 µs resolution; 0 when empty."""
        if self.count == 0:
            return 0.0
        cum = np.cumsum(self._bins)
        return float(np.searchsorted(cum, q * self.count, side="left"))

    def percentiles(self) -> Percentiles:
        """p50, p99 and max, µs."""
        return Percentiles(self.quantile(0.5), self.quantile(0.99), self.max_s * 1e6)


@dataclass(frozen=True)
class EpisodeOutcome:
    """How one episode ended.

    Attributes:
        index: Episode number.
        command: The command it ran with, e.g. target xyz in m.
        success: Judged by the evaluator (None when nobody could see the plant).
    """

    index: int
    command: list[float]
    success: bool | None


#: ``karakuri deploy``'s exit code by what stopped the loop.  Stable: scripts, the fault
#: suite and supervisors rely on them (docs/control-loop.md lists them).
EXIT_CODES: dict[str, int] = {
    "ok": 0,            # normal end, duration, episodes done, Ctrl-C / SIGTERM / SIGHUP
    "fault": 1,         # the policy or the filter: non-finite output, a policy that raised
    "cannot_start": 2,  # bad launch file, policy refused by the envelope, port in use, no link
    "robot": 3,         # the robot: FAULT message or bits, WATCHDOG, left ARMED, did not arm
    "state": 4,         # bad STATE: NaN, outside the limits, non-physical speed or jump
    "stale": 5,         # STATE too old (judged on the MCU's clock) or none for too long
    "link": 6,          # the link refused a command (port lost for good)
}
#: Link faults kept in a summary (the rest are counted).
MAX_LINK_FAULTS = 10


@dataclass(frozen=True)
class LoopSummary:
    """What a run of the control loop did; printed at the end.

    Attributes:
        rate_hz: Tick rate, Hz.
        ticks: Ticks run.
        late: Ticks that started more than ``late_s`` after their deadline.
        missed: Deadlines skipped because a tick overran whole periods.
        stale: Ticks that held because the state was stale.
        duration_s: Wall time of the run, s.
        period_error: Tick start minus deadline.
        compute: Tick start to the end of the tick's work (state to telemetry).
        link: The link's counters at the end.
        link_faults: Faults the robot reported.
        interventions: Safety-filter interventions per kind.
        stopped_by: Why the loop stopped.
        fault: The latched fault, if any.
        realtime: The line saying which real-time measures were applied.
        episodes: Episode outcomes in order.
        telemetry_dropped: Telemetry messages dropped because the buffer was full.
        fault_kind: What latched the fault, a key of :data:`EXIT_CODES` (None: no fault).
        max_command_gap_s: Longest time between two COMMANDs the loop sent, s.
        watchdog_s: The robot's watchdog timeout (MCU CAPS), s; None where unknown.
        link_faults_total: Link faults reported in all (``link_faults`` keeps the first
            :data:`MAX_LINK_FAULTS`).
    """

    rate_hz: float
    ticks: int
    late: int
    missed: int
    stale: int
    duration_s: float
    period_error: Percentiles
    compute: Percentiles
    link: dict[str, int] = field(default_factory=dict)
    link_faults: list[str] = field(default_factory=list)
    interventions: dict[str, int] = field(default_factory=dict)
    stopped_by: str = ""
    fault: str | None = None
    realtime: str = ""
    episodes: list[EpisodeOutcome] = field(default_factory=list)
    telemetry_dropped: int = 0
    fault_kind: str | None = None
    max_command_gap_s: float | None = None
    watchdog_s: float | None = None
    link_faults_total: int = 0

    def __post_init__(self) -> None:
        total = max(self.link_faults_total, len(self.link_faults))
        object.__setattr__(self, "link_faults_total", total)
        object.__setattr__(self, "link_faults", list(self.link_faults[:MAX_LINK_FAULTS]))

    @property
    def exit_code(self) -> int:
        """``karakuri deploy``'s exit code (:data:`EXIT_CODES`): 0 unless a fault stopped it."""
        if self.fault is None:
            return EXIT_CODES["ok"]
        return EXIT_CODES.get(self.fault_kind or "fault", EXIT_CODES["fault"])

    @property
    def watchdog_margin_s(self) -> float | None:
        """Watchdog timeout minus the largest command gap, s (< 0: the watchdog could trip)."""
        if self.watchdog_s is None or self.max_command_gap_s is None:
            return None
        return self.watchdog_s - self.max_command_gap_s

    @property
    def success_rate(self) -> float | None:
        """Fraction of judged episodes that succeeded; None when none was judged."""
        judged = [e.success for e in self.episodes if e.success is not None]
        return sum(judged) / len(judged) if judged else None

    def to_json(self) -> str:
        """The summary as JSON (with ``success_rate``)."""
        d = asdict(self)
        d["success_rate"] = self.success_rate
        d["exit_code"] = self.exit_code
        d["watchdog_margin_s"] = self.watchdog_margin_s
        return json.dumps(d, indent=2)

    def format(self) -> str:
        """A few lines for the console."""
        hit = {k: v for k, v in self.interventions.items() if v}
        lines = [
            f"loop: {self.ticks} ticks at {self.rate_hz:g} Hz in {self.duration_s:.1f} s; "
            f"late {self.late}, missed {self.missed}, stale {self.stale}; "
            f"stopped by: {self.stopped_by}",
            f"  period error: {self.period_error}",
            f"  compute:      {self.compute}",
            f"  link: {self.link}",
            f"  safety interventions: {hit or 'none'}" + (
                f"; FAULT ({self.fault_kind or 'fault'}, exit {self.exit_code})" + (
                    "" if self.fault in self.stopped_by else f": {self.fault}")
                if self.fault else ""),
            f"  {self.realtime}",
        ]
        if self.max_command_gap_s is not None:
            gap = f"  commands: largest gap {self.max_command_gap_s * 1e3:.1f} ms"
            margin = self.watchdog_margin_s
            gap += (f"; watchdog {self.watchdog_s * 1e3:.1f} ms, margin {margin * 1e3:.1f} ms"
                    if margin is not None and self.watchdog_s is not None
                    else "; watchdog unknown")
            lines.append(gap)
        if self.link_faults:
            lines.append(f"  link faults ({self.link_faults_total}):")
            lines += [f"    {f}" for f in self.link_faults]
            more = self.link_faults_total - len(self.link_faults)
            if more > 0:
                lines.append(f"    ... and {more} more")
        if self.telemetry_dropped:
            lines.append(f"  telemetry: {self.telemetry_dropped} messages dropped (buffer full)")
        rate = self.success_rate
        if self.episodes:
            judged = sum(e.success is not None for e in self.episodes)
            lines.append(f"  episodes: {len(self.episodes)}" + (
                f"; success {rate:.1%} of {judged} judged" if rate is not None
                else " (success not judged: no view of the plant)"))
        return "\n".join(lines)
