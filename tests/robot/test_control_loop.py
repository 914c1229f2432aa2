"""ControlLoop logic against an in-process fake Link (the pty end-to-end lives with the bridge).

The loop runs on :class:`FakeClock` (its :class:`~karakuri.robot.loop_clock.Clock` seam): a wait
jumps to the deadline and a tick takes no time unless a test says how long, so tick counts,
deadlines, lateness and missed deadlines are exact.  Tests at ``RATE`` = 256 Hz have a period
(1/256 s) that binary floating point holds exactly, so ``t0 + k * period`` has no rounding.
"""

import os
import signal
import threading

import numpy as np
import pytest

from karakuri.robot.control_loop import ControlLoop, LoopConfig, LoopError
from karakuri.robot.link import (
    CommandMode,
    JointState,
    LinkCounters,
    LinkError,
    StatusBits,
)
from karakuri.robot.loop_clock import Clock
from karakuri.robot.loop_commands import BoxTargets, Episode, FixedTargets
from karakuri.robot.loop_stats import LatencyHistogram
from karakuri.robot.realtime import RealtimeConfig
from karakuri.robot.safety import SafetyFilter, SafetyLimits
from karakuri.robot.spec import RobotSpec

N = 2
RT_OFF = RealtimeConfig(sched_fifo_priority=0, mlockall=False, timer_slack=False)
RATE = 256.0  # Hz; its period 1/256 s is exact in binary floating point
T0 = 1000.0  # the fake clock's start, s


class FakeClock:
    """Deterministic monotonic time: ``sleep_until`` jumps there; ``advance`` is work done."""

    def __init__(self, t0: float = T0):
        self.t = t0
        self.waits: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.waits.append(t)
        self.t = max(self.t, t)

    def advance(self, dt: float) -> None:
        self.t += dt


def make_spec() -> RobotSpec:
    return RobotSpec(
        name="toy", joint_names=("a", "b"), lower=np.array([-1.0, -1.0]),
        upper=np.array([1.0, 1.0]), velocity_limit=np.array([2.0, 2.0]),
        effort_limit=np.ones(N), accel_limit=np.array([50.0, 50.0]),
        default_pose=np.zeros(N), kp=np.ones(N), kd=np.ones(N), arm_joints=("a", "b"))


class FakeLink:
    """Implements the Link protocol in memory: the plant tracks POSITION targets instantly."""

    def __init__(self, q0=(0.3, -0.2), clock: FakeClock | None = None):
        self.clock = clock or FakeClock()  # states are stamped on the loop's clock
        self.q = np.array(q0, dtype=np.float64)
        self.sent: list[tuple[np.ndarray, CommandMode]] = []
        self.sent_at: list[float] = []
        self.frozen_at: float | None = None  # stamp stops advancing: stale state
        self.status = StatusBits.ARMED
        self.estops = self.rearms = 0
        self.on_send = None
        self.fail_send = False

    def connect(self):
        pass

    def close(self):
        pass

    @property
    def is_connected(self):
        return True

    def latest_state(self):
        stamp = self.frozen_at if self.frozen_at is not None else self.clock.now()
        return JointState(self.q.copy(), np.zeros(N), np.zeros(N), stamp, status=self.status)

    def send_command(self, q_target, mode=CommandMode.POSITION):
        if self.fail_send:
            raise LinkError("port vanished")
        self.sent.append((np.array(q_target), CommandMode(mode)))
        self.sent_at.append(self.clock.now())
        if mode == CommandMode.POSITION:
            self.q = np.array(q_target, dtype=np.float64)
        if self.on_send is not None:
            self.on_send(len(self.sent))

    def estop(self):
        self.estops += 1

    def rearm(self):
        self.rearms += 1

    def faults(self):
        return []

    def counters(self):
        return LinkCounters(frames_tx=len(self.sent))


class FakePolicy:
    input_names = ("joint_pos", "joint_vel", "command", "last_action")

    def __init__(self, target=(0.5, 0.5), nan_at: int | None = None):
        self.target = np.array([target], dtype=np.float32)
        self.calls = self.resets = 0
        self.nan_at = nan_at
        self.commands: list[np.ndarray] = []
        self.hook = None

    def act(self, signals):
        self.calls += 1
        assert signals["joint_pos"].shape == (1, N) and signals["joint_pos"].dtype == np.float32
        self.commands.append(signals["command"].copy())
        if self.hook is not None:
            self.hook(self.calls)
        if self.nan_at is not None and self.calls >= self.nan_at:
            return np.full((1, N), np.nan, np.float32)
        return self.target

    def reset(self):
        self.resets += 1


def make_loop(link, policy, rate=200.0, duration=0.3, commands=None, soft_start_s=0.0,
              clock: Clock | None = None, **kw):
    """A loop on the link's fake clock (``clock=`` overrides it, e.g. a :class:`WallClock`)."""
    spec = make_spec()
    safety = SafetyFilter(SafetyLimits.from_spec(spec), 1.0 / rate, soft_start_s)
    commands = commands or FixedTargets(((0.1, 0.2, 0.3),), hold_s=10.0, reset_s=0.0)
    return ControlLoop(link, policy, safety, LoopConfig(rate, duration, **kw), commands=commands,
                       reset_pose=spec.default_pose, realtime=RT_OFF, log=lambda s: None,
                       clock=clock or link.clock)


def run_loop(link, policy, duration=0.25, **kw):
    """Run a :data:`RATE` loop on the link's fake clock; returns the summary."""
    return make_loop(link, policy, rate=RATE, duration=duration, **kw).run()


def test_runs_on_exact_deadlines_within_limits_and_ends_holding():
    link, policy = FakeLink(), FakePolicy(target=(5.0, 0.5))  # 5.0 is outside the limits
    s = run_loop(link, policy)
    assert s.ticks == 64 and s.stopped_by == "duration 0.25 s reached"  # 0.25 s x 256 Hz
    assert s.late == 0 and s.missed == 0 and s.duration_s == 0.25
    np.testing.assert_array_equal(link.sent_at[:-1], T0 + np.arange(64) / RATE)
    assert link.sent_at[-1] == T0 + 0.25 and link.sent[-1][1] == CommandMode.HOLD
    assert link.clock.waits[-65:] == list(T0 + np.arange(65) / RATE)  # one wait per deadline
    targets = np.array([q for q, _ in link.sent])
    assert np.all(np.abs(targets) <= 1.0)
    assert np.all(np.abs(np.diff(targets, axis=0)) <= 2.0 / RATE + 1e-9)
    assert s.interventions["clip"] > 0 and s.fault is None
    assert s.period_error.max_us == s.compute.max_us == 0.0
    assert "ticks" in s.format() and '"ticks"' in s.to_json()
    np.testing.assert_allclose(policy.commands[0], [[0.1, 0.2, 0.3]])


def test_episodes_reset_evaluate_and_report_success():
    link, policy = FakeLink(), FakePolicy()
    seen: list[Episode] = []
    started: list[int] = []

    def evaluator(ep):
        seen.append(ep)
        return ep.index == 0

    spec = make_spec()
    cmds = FixedTargets(((0.1, 0.0, 0.2), (0.3, 0.0, 0.2)), hold_s=0.125, reset_s=0.0625)
    loop = ControlLoop(link, policy, SafetyFilter(SafetyLimits.from_spec(spec), 1 / RATE, 0.0),
                       LoopConfig(RATE, 2.0), commands=cmds, reset_pose=spec.default_pose,
                       evaluator=evaluator, on_episode_start=lambda ep: started.append(ep.index),
                       realtime=RT_OFF, log=lambda s: None, clock=link.clock)
    s = loop.run()
    assert s.stopped_by == "all 2 episodes done"
    assert [e.index for e in seen] == [0, 1] and started == [0, 1]
    assert s.success_rate == 0.5 and policy.resets == 2
    np.testing.assert_allclose(policy.commands[-1], [[0.3, 0.0, 0.2]])
    # each episode: 16 ticks of reset, 32 of run; the 97th tick sees the last one end (and
    # still sends the policy's command before the final hold)
    assert s.ticks == 2 * (16 + 32) + 1 and policy.calls == 2 * 32 + 1


def test_stale_state_holds_then_faults():
    link, policy = FakeLink(), FakePolicy()
    link.on_send = lambda n: setattr(link, "frozen_at", link.clock.now()) if n == 20 else None
    s = run_loop(link, policy, duration=2.0, stale_fault_s=0.1)  # stale after 3 periods
    assert "no fresh state for 102 ms" in s.stopped_by  # 26 periods: the first > 100 ms
    modes = [m for _, m in link.sent]
    # tick 19 sent the 20th command; ticks 20-22 see a state <= 3 periods old
    assert all(m == CommandMode.POSITION for m in modes[:23])
    assert all(m == CommandMode.HOLD for m in modes[23:])
    # the last fresh tick is 22; the fault comes at the first tick > 0.1 s later: 22 + 26
    assert s.ticks == 49 and s.stale == 49 - 23


def test_sigint_is_a_controlled_stop():
    link, policy = FakeLink(), FakePolicy()
    link.on_send = lambda n: os.kill(os.getpid(), signal.SIGINT) if n == 10 else None
    s = run_loop(link, policy, duration=5.0)
    assert s.stopped_by == "interrupted (Ctrl-C)" and s.ticks == 10
    assert link.sent[-1][1] == CommandMode.HOLD
    np.testing.assert_allclose(link.sent[-1][0], link.q)  # holds where the robot is


def test_keyboard_interrupt_inside_a_tick_still_holds():
    link, policy = FakeLink(), FakePolicy()

    def boom(n):
        if n == 5:
            raise KeyboardInterrupt

    policy.hook = boom
    s = run_loop(link, policy, duration=5.0)
    assert s.stopped_by == "interrupted (Ctrl-C)" and s.ticks == 4  # the 5th never finished
    assert link.sent[-1][1] == CommandMode.HOLD and len(link.sent) == 5


def test_nonfinite_policy_output_holds_and_faults():
    link, policy = FakeLink(), FakePolicy(nan_at=10)
    s = make_loop(link, policy, duration=2.0).run()
    assert "non-finite" in s.fault and s.stopped_by.startswith("fault")
    assert s.ticks == 10
    last_good = link.sent[8][0]
    for q, _mode in link.sent[9:]:
        np.testing.assert_allclose(q, last_good)
    assert link.sent[9][1] == CommandMode.HOLD
    assert s.interventions["nonfinite"] == 1


def test_estop_latches_and_rearm_starts_from_measured_pose():
    link, policy = FakeLink(), FakePolicy(target=(0.9, 0.9))
    loop = make_loop(link, policy, duration=0.4, soft_start_s=0.1)

    def ops(n):
        if n == 10:
            loop.estop("operator")
        if n == 16:
            link.q = link.q + 0.01  # the arm settles a little while stopped
        if n == 30:
            loop.rearm()

    link.on_send = ops
    s = loop.run()
    assert link.estops == 1 and link.rearms == 1
    held = link.sent[10][0]
    for q, mode in link.sent[10:30]:
        assert mode == CommandMode.HOLD
        np.testing.assert_allclose(q, held)
    q_first, mode = link.sent[30]
    assert mode == CommandMode.POSITION
    np.testing.assert_allclose(q_first, held + 0.01, atol=1e-9)  # no jump on rearm
    assert s.interventions["latched"] == 20 and s.fault is None  # ticks 10-29 held


def test_robot_fault_status_stops():
    link, policy = FakeLink(), FakePolicy()
    link.on_send = lambda n: setattr(link, "status", StatusBits.WATCHDOG) if n == 5 else None
    s = make_loop(link, policy, duration=2.0).run()
    assert "WATCHDOG" in s.fault and s.ticks == 6  # seen by the tick after the 5th send


def test_link_error_is_a_fault_not_a_crash():
    link, policy = FakeLink(), FakePolicy()
    link.on_send = lambda n: setattr(link, "fail_send", True) if n == 5 else None
    s = make_loop(link, policy, duration=2.0).run()
    assert "port vanished" in s.fault and s.ticks == 6


def test_policy_input_the_loop_cannot_provide():
    policy = FakePolicy()
    policy.input_names = ("joint_pos", "imu")
    with pytest.raises(LoopError, match="imu"):
        make_loop(FakeLink(), policy)


def test_no_state_is_a_clear_error():
    link = FakeLink()
    link.latest_state = lambda: None
    with pytest.raises(LoopError, match=r"no fresh state from the robot within 0\.05 s"):
        make_loop(link, FakePolicy(), first_state_timeout_s=0.05).run()
    assert link.clock.now() - T0 == pytest.approx(0.05, abs=0.002)  # polled every 2 ms


def test_stop_from_another_thread():
    link, policy = FakeLink(), FakePolicy()
    loop = make_loop(link, policy, duration=5.0)

    def stop_from_a_thread():
        t = threading.Thread(target=loop.stop)
        t.start()
        t.join()

    link.on_send = lambda n: stop_from_a_thread() if n == 5 else None
    s = loop.run()
    assert s.stopped_by == "stop requested" and s.ticks == 5
    assert link.sent[-1][1] == CommandMode.HOLD


def test_box_targets_seeded_and_inside():
    box = BoxTargets((0.3, -0.2, 0.1), (0.6, 0.2, 0.4), count=20, seed=3, hold_s=1.0)
    a = np.array([e.command for e in box.episodes()])
    b = np.array([e.command for e in box.episodes()])
    assert np.array_equal(a, b) and a.shape == (20, 3)
    assert np.all(a >= box.lower) and np.all(a <= box.upper)
    with pytest.raises(ValueError, match="hold_s"):
        BoxTargets((0,), (1,), count=1, seed=0, hold_s=0)


def test_loop_config_checks():
    with pytest.raises(ValueError, match="stale_fault_s"):
        LoopConfig(50.0, stale_periods=10, stale_fault_s=0.1)
    with pytest.raises(ValueError, match="rate_hz"):
        LoopConfig(0.0)


def test_latency_histogram_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.exponential(50e-6, 10_000)
    h = LatencyHistogram()
    for v in x:
        h.add(v)
    p = h.percentiles()
    assert abs(p.p99_us - np.quantile(x, 0.99) * 1e6) <= 1.5
    assert p.max_us == pytest.approx(x.max() * 1e6)


def test_loop_telemetry_has_every_channel(tmp_path):
    from mcap.reader import make_reader

    from karakuri.robot.telemetry import McapTelemetry

    link, policy = FakeLink(), FakePolicy(target=(5.0, 0.0))
    tel = McapTelemetry(tmp_path / "loop.mcap", clock=link.clock.now)
    spec = make_spec()
    loop = ControlLoop(link, policy, SafetyFilter(SafetyLimits.from_spec(spec), 0.005, 0.0),
                       LoopConfig(200.0, 1.0), telemetry=tel, reset_pose=spec.default_pose,
                       commands=FixedTargets(((0.1, 0.2, 0.3),), hold_s=0.1, reset_s=0.05),
                       evaluator=lambda ep: True, realtime=RT_OFF, log=lambda s: None,
                       clock=link.clock)
    s = loop.run()
    tel.close()
    with open(tmp_path / "loop.mcap", "rb") as f:
        counts: dict[str, int] = {}
        for _, ch, _ in make_reader(f).iter_messages():
            counts[ch.topic] = counts.get(ch.topic, 0) + 1
    assert counts["/timing"] == s.ticks and counts["/command"] == s.ticks
    assert counts["/state"] == s.ticks and counts["/episode"] == 1 and counts["/safety"] >= 1


def test_arm_on_start_waits_for_armed_and_clears_stale_fault_bits():
    link, policy = FakeLink(), FakePolicy(target=(0.9, 0.9))
    link.status = StatusBits.FAULT | StatusBits.WATCHDOG  # left over from the previous run
    arm_tick = 6

    def rearm():
        link.rearms += 1
        link.arm_at = len(link.sent) + arm_tick

    link.rearm = rearm
    link.on_send = lambda n: setattr(link, "status", StatusBits.ARMED) if n == link.arm_at else None
    s = make_loop(link, policy, duration=0.3, arm_on_start=True).run()
    assert link.rearms == 1 and s.fault is None
    modes = [m for _, m in link.sent]
    assert all(m == CommandMode.HOLD for m in modes[:arm_tick])
    assert modes[arm_tick] == CommandMode.POSITION


def test_arm_timeout_is_a_fault_naming_the_status():
    link, policy = FakeLink(), FakePolicy()
    link.status = StatusBits.ESTOP
    s = make_loop(link, policy, duration=2.0, arm_on_start=True, arm_timeout_s=0.1).run()
    assert "did not arm within 0.1 s" in s.fault and "ESTOP" in s.fault
    assert all(m == CommandMode.HOLD for _, m in link.sent)
