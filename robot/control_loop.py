"""The fixed-rate control loop: state -> policy -> safety filter -> link, on absolute deadlines.

Timing model: tick ``k`` is due at ``t0 + k / rate_hz``.  The loop spends the idle part of a
period writing buffered telemetry, then waits on its :class:`~karakuri.robot.loop_clock.Clock`
(by default the monotonic clock: sleep until ``spin_s`` before the deadline, then spin).
A tick that starts more than ``late_s`` after its deadline is *late*; a tick that overran
whole periods skips those deadlines, which are counted as *missed* (the schedule never
drifts).  Each tick:

1. ``link.latest_state()`` (never blocks); robot status bits ESTOP/FAULT/WATCHDOG latch;
2. staleness: state older than ``stale_periods`` periods -> hold and count; older than
   ``stale_fault_s`` (or none at all for that long) -> fault and stop;
3. the policy (or, in an episode's reset phase, the reset pose);
4. the :class:`~karakuri.robot.safety.SafetyFilter`;
5. ``link.send_command`` (HOLD mode while latched or stale);
6. telemetry (an append; written later in the idle time).

Stops: duration reached, all episodes done, :meth:`ControlLoop.stop`, Ctrl-C, SIGTERM or SIGHUP
(each turned into a stop request, so the tick in progress completes), or a fault.  Every stop sends
a final HOLD at the measured pose, so the MCU is left holding.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from karakuri.robot.link import CommandMode, JointState, Link, LinkError, StatusBits
from karakuri.robot.loop_clock import Clock, WallClock
from karakuri.robot.loop_commands import CommandSource, Episode, EpisodeSchedule
from karakuri.robot.loop_config import STOP_SIGNALS, LoopConfig, LoopError, stop_reason
from karakuri.robot.loop_stats import EpisodeOutcome, LatencyHistogram, LoopSummary
from karakuri.robot.policy import Policy
from karakuri.robot.realtime import RealtimeConfig, RealtimeSetup
from karakuri.robot.safety import SafetyFilter
from karakuri.robot.state_check import LoopGuard, StateBounds
from karakuri.robot.telemetry import McapTelemetry

_FATAL_STATUS = StatusBits.FAULT | StatusBits.WATCHDOG
_LOOP_INPUTS = ("joint_pos", "joint_vel", "command")


class ControlLoop:
    """Drive one robot through a :class:`Link` with a :class:`Policy` and a safety filter.

    Args:
        link: A connected link (the loop never connects or closes it).
        policy: Maps ``joint_pos`` (1, n), ``joint_vel`` (1, n), ``command`` (1, k) to
            ``joint_target`` (1, n), rad; it keeps ``last_action`` itself.
        safety: The filter; :meth:`run` resets it to the first measured pose.
        config: Rate and thresholds.
        commands: Episodes (task command and duration); None for one endless episode with an
            empty command (only for policies without a ``command`` input).
        reset_pose: Pose driven to in each episode's reset phase, rad. Shape: (n,).
        telemetry: Where per-tick messages go (None: nowhere).
        evaluator: Called at each episode's end; returns success (or None when unknown).
        on_episode_start: Called when an episode's run phase begins.
        realtime: Real-time measures to try during :meth:`run`.
        log: Where the loop prints its realtime line and notices.
        state_bounds: What a plausible state keeps (limits, margin, speed); default: the
            filter's limits.  ``karakuri deploy`` passes the robot's envelope.
        clock: Where the loop reads time and waits for deadlines (the clock the link stamps
            states on); default :class:`WallClock` with ``config.spin_s``.
    """

    def __init__(self, link: Link, policy: Policy, safety: SafetyFilter, config: LoopConfig, *,
                 commands: CommandSource | None = None, reset_pose: np.ndarray | None = None,
                 telemetry: McapTelemetry | None = None,
                 evaluator: Callable[[Episode], bool | None] | None = None,
                 on_episode_start: Callable[[Episode], None] | None = None,
                 realtime: RealtimeConfig | None = None,
                 log: Callable[[str], None] = print,
                 state_bounds: StateBounds | None = None, clock: Clock | None = None) -> None:
        extra = [s for s in policy.input_names if s not in (*_LOOP_INPUTS, "last_action")]
        if extra:
            raise LoopError(f"policy input(s) {extra} are not provided by the control loop; it "
                            f"provides {list(_LOOP_INPUTS)} (last_action is the policy's own)")
        if "command" in policy.input_names and commands is None:
            raise LoopError("the policy has a 'command' input but no command source was given; "
                            "pass commands= (launch file: the 'command' section)")
        self.link, self.policy, self.safety, self.config = link, policy, safety, config
        self.commands, self.telemetry = commands, telemetry
        self.evaluator, self.on_episode_start, self.log = evaluator, on_episode_start, log
        self.realtime = realtime or RealtimeConfig()
        self.clock: Clock = clock if clock is not None else WallClock(config.spin_s)
        n = safety.limits.lower.shape[0]
        self.reset_pose = None if reset_pose is None else np.asarray(reset_pose, np.float64)
        self._n = n
        lim = safety.limits
        self.state_bounds = state_bounds or StateBounds.from_limits(
            tuple(f"joint {i}" for i in range(n)), lim.lower, lim.upper, lim.velocity_limit)
        self._sig: dict[str, np.ndarray] = {}
        self._stop_reason: str | None = None
        self._requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ thread-safe controls
    def stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to stop after the current tick (safe from any thread or a handler)."""
        self._stop_reason = self._stop_reason or reason

    def estop(self, reason: str = "operator e-stop") -> None:
        """Latch an e-stop at the next tick: ``link.estop()``, then hold until :meth:`rearm`."""
        with self._lock:
            self._requests.append(("estop", reason))

    def rearm(self) -> None:
        """Clear a latched e-stop at the next tick; motion resumes with a soft start."""
        with self._lock:
            self._requests.append(("rearm", ""))

    # ------------------------------------------------------------------ run
    def run(self) -> LoopSummary:
        """Run until a stop; returns the summary (also when stopped by Ctrl-C or a fault).

        Raises:
            LoopError: no state arrived within ``first_state_timeout_s``.
        """
        old_handlers = {}
        if threading.current_thread() is threading.main_thread():
            old_handlers = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        rt = RealtimeSetup(self.realtime)
        self._started = self._finishing = False
        self._guard = LoopGuard(self.safety, self.link, self.state_bounds)
        try:
            with rt as report:  # first: mlockall may take a while, before any command
                self.log(report.line())
                state = self._wait_first_state()
                self.safety.reset(state.position)
                self._init_run(state)
                if self.config.arm_on_start:
                    self._arm(self.clock.now())
                self._started = True
                self._run_ticks()
        except KeyboardInterrupt:
            self.stop("interrupted (Ctrl-C)")
        finally:
            self._finishing = True  # a signal now only records itself: the hold goes out
            if self._started:
                self._final_hold()
            if self.telemetry is not None:
                self.telemetry.drain()
            for sig, old in old_handlers.items():
                signal.signal(sig, old)
        if not self._started:
            raise LoopError("interrupted before the first state arrived")
        return self._summary(rt.report.line())

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_reason is not None and not self._finishing:
            raise KeyboardInterrupt  # a second signal: leave now (the final hold still runs)
        self.stop(stop_reason(signum))

    def _wait_first_state(self) -> JointState:
        clock = self.clock
        deadline = clock.now() + self.config.first_state_timeout_s
        fresh_s = self.config.stale_periods * self.config.period
        while clock.now() < deadline and self._stop_reason is None:
            state = self.link.latest_state()
            if state is not None and clock.now() - state.stamp <= fresh_s:
                bad = self._guard.monitor.check(state)
                if bad is not None:
                    raise LoopError(f"{bad}; refusing to start")
                return state
            clock.sleep_until(clock.now() + 0.002)
        if self._stop_reason is not None:
            raise LoopError(f"stopped before the first state arrived: {self._stop_reason}")
        raise LoopError(
            f"no fresh state from the robot within {self.config.first_state_timeout_s} s; check "
            f"the link (counters: {self.link.counters().as_dict()}, faults: {self.link.faults()})")

    def _init_run(self, state: JointState) -> None:
        n = self._n
        self._sig = {k: np.zeros((1, n), np.float32) for k in ("joint_pos", "joint_vel")}
        self._schedule = EpisodeSchedule(self.commands, self.reset_pose is not None)
        self._outcomes: list[EpisodeOutcome] = []
        self._err, self._compute = LatencyHistogram(), LatencyHistogram()
        self.ticks = self.late = self.missed = self.stale = 0
        self._last_fresh = self.clock.now()
        self._last_state = state
        self._arming_until: float | None = None
        self._safety_seen: dict[str, int] = {}
        self._guard.armed_seen = bool(StatusBits(state.status) & StatusBits.ARMED)

    def _run_ticks(self) -> None:
        cfg, clock = self.config, self.clock.now
        period = cfg.period
        late_s = cfg.late_s if cfg.late_s is not None else 0.1 * period
        t0 = clock()
        self._t0 = t0
        end = t0 + cfg.duration_s if cfg.duration_s else np.inf
        due = 0  # index of the next deadline: t0 + due * period (no drift from summing)
        while self._stop_reason is None:
            deadline = t0 + due * period
            self._wait_until(deadline)
            start = clock()
            err = start - deadline
            missed = int(err // period) if err >= period else 0
            self.missed += missed
            self.late += err > late_s
            if start >= end:
                self.stop(f"duration {cfg.duration_s} s reached")
                break
            self._tick(start)
            compute = clock() - start
            self._err.add(err)
            self._compute.add(compute)
            if self.telemetry is not None:
                self.telemetry.record("/timing", {
                    "tick": self.ticks, "period_error_us": err * 1e6, "compute_us": compute * 1e6,
                    "late": int(err > late_s), "missed": missed}, start)
            self.ticks += 1
            due += missed + 1

    def _wait_until(self, deadline: float) -> None:
        if self.telemetry is not None:
            self.telemetry.drain(until=deadline - self.config.spin_s - 0.0005)
        self.clock.sleep_until(deadline)

    # ------------------------------------------------------------------ one tick
    def _tick(self, now: float) -> None:
        self._handle_requests()
        state = self.link.latest_state()
        fresh = self._check_state(state, now) and self._check_status(state, now)  # type: ignore[arg-type]
        if fresh and not self.safety.latched:
            self._advance_phase(now)
        policy_q = None
        if not fresh or self.safety.latched:
            target, mode = self.safety.filter(self.safety.hold_target()), CommandMode.HOLD
        else:
            policy_q = self._want(state)  # type: ignore[arg-type]
            target = self.safety.filter(policy_q)
            mode = CommandMode.HOLD if self.safety.latched else CommandMode.POSITION
        try:
            self.link.send_command(target, mode)
            self._guard.sent(self.clock.now())
        except LinkError as e:
            self._guard.fault("link", f"link refused a command: {e}")
        if self.safety.fault is not None:
            self.stop(f"fault: {self.safety.fault}")
        if self.telemetry is not None:
            self._record(state, now, policy_q, target, mode)

    def _check_status(self, state: JointState, now: float) -> bool:
        """Robot status bits; False (hold) while waiting for the robot to arm."""
        status = StatusBits(state.status)
        if self._arming_until is not None:
            if status & StatusBits.ARMED and not status & (_FATAL_STATUS | StatusBits.ESTOP):
                self._arming_until = None
                self.safety.reset(state.position)  # soft start from where the robot is now
                return True
            if now > self._arming_until:
                self._guard.fault("robot", f"robot did not arm within "
                                           f"{self.config.arm_timeout_s} s (status {status!r})"
                                           f"{self._guard.link_note()}")
            return False
        self._guard.status_ok(status)
        return True

    def _arm(self, now: float) -> None:
        self.link.rearm()
        self._arming_until = now + self.config.arm_timeout_s

    def _check_state(self, state: JointState | None, now: float) -> bool:
        if state is not None:
            if not self._guard.state_ok(state):
                return False  # hold at the last good pose; the fault stops the loop
            self._last_state = state
        age = np.inf if state is None else now - state.stamp
        if age <= self.config.stale_periods * self.config.period:
            self._last_fresh = now
            return True
        self.stale += 1
        if now - self._last_fresh > self.config.stale_fault_s:
            self._guard.fault("stale", (
                f"stale STATE: no fresh state for {(now - self._last_fresh) * 1e3:.0f} ms "
                f"(limit {self.config.stale_fault_s * 1e3:.0f} ms; the newest is "
                f"{'none' if state is None else f'{age * 1e3:.0f} ms old'} by the robot's "
                f"clock){self._guard.link_note()}"))
        return False

    def _want(self, state: JointState) -> np.ndarray:
        if self._schedule.phase == "reset" and self.reset_pose is not None:
            return self.reset_pose
        sig = self._sig
        sig["joint_pos"][0] = state.position
        sig["joint_vel"][0] = state.velocity
        try:
            out = np.asarray(self.policy.act(sig), dtype=np.float64)
        except Exception as e:  # any policy failure must end in a hold, not a crash
            self.safety.latch_fault(f"policy raised {type(e).__name__}: {e}")
            return self.safety.hold_target()
        if out.shape != (1, self._n):
            self.safety.latch_fault(f"policy returned shape {out.shape}, expected (1, {self._n})")
            return self.safety.hold_target()
        return out[0]

    def _handle_requests(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        for kind, reason in requests:
            if kind == "estop":
                self.link.estop()
                self.safety.estop(reason)
            elif self.safety.fault is None:  # rearm never clears a fault: restart instead
                self.safety.reset(self._last_state.position)
                self._arm(self.clock.now())

    # ------------------------------------------------------------------ episodes
    def _advance_phase(self, now: float) -> None:
        change = self._schedule.advance(now)
        if change is None:
            return
        if change.ended is not None:
            ep = change.ended
            success = self.evaluator(ep) if self.evaluator is not None else None
            self._outcomes.append(EpisodeOutcome(ep.index, ep.command.tolist(), success))
            if self.telemetry is not None:
                self.telemetry.record("/episode", {"index": ep.index, "command": ep.command,
                                                   "success": success})
        if change.done:
            self.stop(f"all {len(self._outcomes)} episodes done")
        if change.started is not None:
            if change.reset_policy:
                self.policy.reset()
            self._sig["command"] = change.started.command.astype(np.float32)[None, :]
            if self.on_episode_start is not None:
                self.on_episode_start(change.started)

    # ------------------------------------------------------------------ end
    def _final_hold(self) -> None:
        q = self._guard.final_pose(self.link.latest_state(), self.clock.now(),
                                   self.config.stale_fault_s, self.safety.hold_target())
        lim = self.safety.limits  # the MCU holds where it is; no target leaves the limits
        q = np.minimum(np.maximum(q, lim.lower), lim.upper)
        try:
            self.link.send_command(np.asarray(q, np.float64), CommandMode.HOLD)
        except LinkError as e:
            self.log(f"final hold not sent ({e}); the MCU watchdog will stop the robot")

    def _record(self, state: JointState | None, now: float, policy_q: np.ndarray | None,
                target: np.ndarray, mode: CommandMode) -> None:
        tel, ep, safety = self.telemetry, self._schedule.episode, self.safety
        if tel is None:
            return
        tel.record_tick(now, state, policy_q, target, int(mode),
                        ep.command if ep is not None else None,
                        ep.index if ep is not None else -1, self._schedule.phase)
        if safety.interventions != self._safety_seen or (safety.latched and self.ticks % 50 == 0):
            self._safety_seen = dict(safety.interventions)
            tel.record("/safety", {**safety.interventions, "latched": safety.latched,
                                   "reason": safety.fault or safety.estop_reason}, now)

    def _summary(self, realtime_line: str) -> LoopSummary:
        counters = self.link.counters().as_dict()
        faults = list(self.link.faults())
        watchdog = getattr(self.link, "watchdog_s", None)
        return LoopSummary(
            rate_hz=self.config.rate_hz, ticks=self.ticks, late=self.late, missed=self.missed,
            stale=self.stale, duration_s=self.clock.now() - getattr(self, "_t0", self.clock.now()),
            period_error=self._err.percentiles(), compute=self._compute.percentiles(),
            link=counters, link_faults=faults,
            link_faults_total=len(faults) + counters.get("faults_dropped", 0),
            interventions=dict(self.safety.interventions),
            stopped_by=self._stop_reason or "unknown", fault=self.safety.fault,
            realtime=realtime_line, episodes=list(self._outcomes),
            telemetry_dropped=self.telemetry.dropped if self.telemetry is not None else 0,
            fault_kind=(self._guard.kind or "fault") if self.safety.fault else None,
            max_command_gap_s=self._guard.max_gap_s,
            watchdog_s=watchdog if isinstance(watchdog, float) else None)


__all__ = ["STOP_SIGNALS", "ControlLoop", "LoopConfig", "LoopError", "stop_reason"]
