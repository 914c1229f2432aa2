"""``karakuri bench loop``: the ControlLoop's timing next to a naive ``time.sleep`` loop.

Both loops run the same tick work (a small MLP in numpy, the size of a reach policy) at the
same rate for the same time, one after the other in this run.  The ControlLoop runs for real
(state, policy, safety filter, send) against an in-memory loopback link, with its real-time
setup; the naive loop is what one writes first: ``work(); time.sleep(period)``.

What is measured:

- *period error*: for the ControlLoop, tick start minus its absolute deadline; for the naive
  loop, which has no deadlines, each interval minus the period (its error as it sees it);
- *interval jitter*: |interval between tick starts - period|, the same metric for both;
- *missed*: for the ControlLoop, deadlines skipped; for the naive loop, the ticks it fell
  behind a fixed-rate schedule (``seconds * rate - ticks``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from karakuri.launch.cli_config import add_dataclass_args, dataclass_from_args
from karakuri.robot.control_loop import ControlLoop, LoopConfig
from karakuri.robot.link import CommandMode, JointState, LinkCounters
from karakuri.robot.loop_stats import LatencyHistogram, LoopSummary, Percentiles
from karakuri.robot.realtime import RealtimeConfig
from karakuri.robot.safety import SafetyFilter, SafetyLimits
from karakuri.robot.spec import RobotSpec

N_JOINTS = 7


@dataclass(frozen=True)
class BenchLoopConfig:
    """Settings of ``karakuri bench loop``.

    Attributes:
        seconds: How long each loop runs, s.
        rate_hz: Tick rate, Hz.
        hidden: Hidden width of the tick work's two-layer MLP.
        spin_us: The ControlLoop's busy-wait before each deadline, µs.
        realtime: Try SCHED_FIFO, mlockall and frozen GC for the ControlLoop.
        telemetry: Also write MCAP telemetry from the ControlLoop to this file.
    """

    seconds: float = 60.0
    rate_hz: float = 500.0
    hidden: int = 64
    spin_us: float = 300.0
    realtime: bool = True
    telemetry: Path | None = None

    def __post_init__(self) -> None:
        if not (self.seconds > 0 and self.rate_hz > 0 and self.hidden > 0 and self.spin_us >= 0):
            raise ValueError(f"seconds, rate_hz, hidden must be > 0 and spin_us >= 0; got {self}")


class _LoopbackLink:
    """An in-memory Link: the state is whatever was last commanded; stamps every tick start."""

    def __init__(self, n: int, capacity: int) -> None:
        self.q = np.zeros(n)
        self.starts = np.zeros(capacity)
        self.k = 0
        self.sent = 0

    def connect(self) -> None: ...

    def close(self) -> None: ...

    @property
    def is_connected(self) -> bool:
        return True

    def latest_state(self) -> JointState:
        now = time.monotonic()
        if self.k < self.starts.shape[0]:
            self.starts[self.k] = now
            self.k += 1
        return JointState(self.q, np.zeros_like(self.q), np.zeros_like(self.q), now)

    def send_command(self, q_target: np.ndarray, mode: CommandMode = CommandMode.POSITION) -> None:
        self.q = q_target
        self.sent += 1

    def estop(self) -> None: ...

    def rearm(self) -> None: ...

    def faults(self) -> list[str]:
        return []

    def counters(self) -> LinkCounters:
        return LinkCounters(frames_tx=self.sent)


class _MlpPolicy:
    """A fixed two-layer tanh MLP: joint_pos, joint_vel (1, n) -> joint_target (1, n)."""

    input_names = ("joint_pos", "joint_vel")

    def __init__(self, n: int, hidden: int) -> None:
        rng = np.random.default_rng(0)
        self.w1 = rng.normal(0, 0.1, (2 * n, hidden)).astype(np.float32)
        self.w2 = rng.normal(0, 0.1, (hidden, n)).astype(np.float32)

    def act(self, signals: dict[str, np.ndarray]) -> np.ndarray:
        x = np.concatenate([signals["joint_pos"], signals["joint_vel"]], axis=1)
        return 0.1 * np.tanh(np.tanh(x @ self.w1) @ self.w2)

    def reset(self) -> None: ...


def _spec() -> RobotSpec:
    n = N_JOINTS
    return RobotSpec(name="bench", joint_names=tuple(f"j{i}" for i in range(n)),
                     lower=-np.full(n, 3.0), upper=np.full(n, 3.0),
                     velocity_limit=np.full(n, 3.0), effort_limit=np.ones(n),
                     accel_limit=np.full(n, 20.0), default_pose=np.zeros(n), kp=np.ones(n),
                     kd=np.ones(n), arm_joints=tuple(f"j{i}" for i in range(n)))


def _jitter(starts: np.ndarray, period: float) -> Percentiles:
    h = LatencyHistogram()
    for d in np.abs(np.diff(starts) - period):
        h.add(float(d))
    return h.percentiles()


def run_control_loop(cfg: BenchLoopConfig) -> tuple[LoopSummary, Percentiles]:
    """The ControlLoop for ``cfg.seconds``; its summary and its interval jitter."""
    spec = _spec()
    link = _LoopbackLink(spec.n_joints, int(cfg.seconds * cfg.rate_hz) + 16)
    policy = _MlpPolicy(spec.n_joints, cfg.hidden)
    safety = SafetyFilter(SafetyLimits.from_spec(spec), 1.0 / cfg.rate_hz, 0.0)
    rt = RealtimeConfig() if cfg.realtime else RealtimeConfig(
        gc_freeze=False, timer_slack=False, sched_fifo_priority=0, mlockall=False)
    telemetry = None
    if cfg.telemetry is not None:
        from karakuri.robot.telemetry import McapTelemetry

        telemetry = McapTelemetry(cfg.telemetry)
    loop = ControlLoop(link, policy, safety,  # type: ignore[arg-type]
                       LoopConfig(cfg.rate_hz, cfg.seconds, spin_s=cfg.spin_us * 1e-6),
                       telemetry=telemetry, realtime=rt, log=lambda s: None)
    summary = loop.run()
    if telemetry is not None:
        telemetry.close()
    return summary, _jitter(link.starts[: link.k - 1], 1.0 / cfg.rate_hz)


def run_naive_loop(cfg: BenchLoopConfig) -> tuple[int, Percentiles, int]:
    """``work(); time.sleep(period)`` for ``cfg.seconds``: ticks, interval error, ticks behind."""
    spec = _spec()
    link = _LoopbackLink(spec.n_joints, int(cfg.seconds * cfg.rate_hz) + 16)
    policy = _MlpPolicy(spec.n_joints, cfg.hidden)
    period = 1.0 / cfg.rate_hz
    sig = {k: np.zeros((1, spec.n_joints), np.float32) for k in policy.input_names}
    t0 = time.monotonic()
    end = t0 + cfg.seconds
    while time.monotonic() < end:
        state = link.latest_state()
        sig["joint_pos"][0] = state.position
        link.send_command(policy.act(sig)[0].astype(np.float64))
        time.sleep(period)
    ticks = link.k
    behind = max(int(cfg.seconds * cfg.rate_hz) - ticks, 0)
    return ticks, _jitter(link.starts[:ticks], period), behind


def _row(name: str, p: Percentiles, late: str, missed: int, ticks: int) -> str:
    return (f"  {name:<26} {p.p50_us:>8.0f} {p.p99_us:>8.0f} {p.max_us:>9.0f} {late:>7} "
            f"{missed:>7} {ticks:>8}")


def run(args: argparse.Namespace) -> int:
    """Run both loops and print the table and the ratio of their p99 period errors."""
    cfg = dataclass_from_args(BenchLoopConfig, args)
    print(f"bench loop: {cfg.rate_hz:g} Hz for {cfg.seconds:g} s each; tick work: state -> "
          f"{2 * N_JOINTS}-{cfg.hidden}-{N_JOINTS} MLP -> safety filter -> send (loopback)")
    summary, ctl_jitter = run_control_loop(cfg)
    print(summary.realtime)
    ticks, naive_err, behind = run_naive_loop(cfg)
    print(f"  {'period error, µs':<26} {'p50':>8} {'p99':>8} {'max':>9} {'late':>7} "
          f"{'missed':>7} {'ticks':>8}")
    print(_row("ControlLoop (deadline)", summary.period_error, str(summary.late),
               summary.missed, summary.ticks))
    print(_row("naive time.sleep (interval)", naive_err, "-", behind, ticks))
    print(f"  interval jitter p99: ControlLoop {ctl_jitter.p99_us:.0f} µs, naive "
          f"{naive_err.p99_us:.0f} µs; ControlLoop compute: {summary.compute}")
    ratio = naive_err.p99_us / max(summary.period_error.p99_us, 1.0)
    print(f"p99 period error: ControlLoop {summary.period_error.p99_us:.0f} µs vs naive "
          f"{naive_err.p99_us:.0f} µs -> naive / ControlLoop = {ratio:.1f}x; missed ticks: "
          f"{summary.missed} vs {behind} behind schedule")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench loop``."""
    p = sub.add_parser("loop", help="ControlLoop timing at 500 Hz next to a naive sleep loop",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(p, BenchLoopConfig)
    p.set_defaults(func=run)
