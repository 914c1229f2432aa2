"""Is a STATE physically plausible?  The control loop stops on any it cannot vouch for.

A state is *bad* when a value is not finite, a joint lies outside its position limits by more
than a margin, the position jumped further since the previous state than ``speed_factor``
times its speed limit allows over the time between them (judged on the robot's own clock,
``device_time_us``, where the link has one), or a reported velocity exceeds
``report_factor`` times the limit.  Reported velocities get the wider bound: in contact a
gripper's measured speed spikes (2.2 x its limit when the care arm's fingers settle on a
cup) while its position barely moves; motion itself is judged by the position.  The loop
holds at the last *good* pose and stops with ``bad STATE: ...`` (exit code 4).
:class:`LoopGuard` gathers what the loop checks each tick besides staleness: state, robot
status (a robot that leaves ARMED or reports a fault stops the loop) and command gaps.

numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from karakuri.robot.link import JointState, StatusBits

_WRAP_US = 1 << 32  # the wire's time_us wraps at 2**32 µs


@dataclass(frozen=True)
class StateBounds:
    """What a plausible state looks like, per joint in command order.

    Attributes:
        joint_names: Joints in command order.
        lower: Lower position limits, rad (m). Shape: (n,).
        upper: Upper position limits, rad (m). Shape: (n,).
        velocity_limit: Speed limits, rad/s (m/s). Shape: (n,).
        margin: Tolerance outside the position limits (servo overshoot, soft joint stops),
            rad (m). Shape: (n,).
        speed_factor: Moving faster than ``speed_factor * velocity_limit`` (position change
            over time) is not physical for this robot.
        report_factor: A *reported* velocity above ``report_factor * velocity_limit`` is not.
    """

    joint_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity_limit: np.ndarray
    margin: np.ndarray
    speed_factor: float = 2.0
    report_factor: float = 5.0

    @classmethod
    def from_limits(cls, joint_names: tuple[str, ...], lower: np.ndarray, upper: np.ndarray,
                    velocity_limit: np.ndarray, speed_factor: float = 2.0) -> StateBounds:
        """Bounds with the default margin: 5 % of each joint's range, at most 0.05 rad."""
        lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
        margin = np.minimum(0.05 * (upper - lower), 0.05)
        return cls(tuple(joint_names), lower, upper, np.asarray(velocity_limit, np.float64),
                   margin, speed_factor)


class StateMonitor:
    """Checks each new state against :class:`StateBounds` and keeps the last good one.

    Args:
        bounds: The limits a plausible state keeps.
    """

    def __init__(self, bounds: StateBounds) -> None:
        self.bounds = bounds
        self.last_good: JointState | None = None
        self._max_speed = bounds.speed_factor * bounds.velocity_limit
        self._max_report = bounds.report_factor * bounds.velocity_limit

    def check(self, state: JointState) -> str | None:
        """None when ``state`` is plausible (it becomes :attr:`last_good`), else the reason.

        The reason starts with ``bad STATE:`` and names the joint, the value and the bound.
        """
        b, names = self.bounds, self.bounds.joint_names
        for what, arr in (("position", state.position), ("velocity", state.velocity),
                          ("effort", state.effort)):
            a = np.asarray(arr, np.float64)
            if a.shape != b.lower.shape:
                return f"bad STATE: {what} has shape {a.shape}, expected {b.lower.shape}"
            bad = np.flatnonzero(~np.isfinite(a))
            if bad.size:
                i = int(bad[0])
                return f"bad STATE: {what} of joint {names[i]!r} is {a[i]} (seq {state.seq})"
        q, dq = np.asarray(state.position, np.float64), np.asarray(state.velocity, np.float64)
        out = np.flatnonzero((q < b.lower - b.margin) | (q > b.upper + b.margin))
        if out.size:
            i = int(out[0])
            return (f"bad STATE: joint {names[i]!r} at {q[i]:.4g} is outside its limits "
                    f"[{b.lower[i]:.4g}, {b.upper[i]:.4g}] (margin {b.margin[i]:.3g})")
        fast = np.flatnonzero(np.abs(dq) > self._max_report)
        if fast.size:
            i = int(fast[0])
            return (f"bad STATE: joint {names[i]!r} reports {dq[i]:.4g}/s, more than "
                    f"{b.report_factor:g} x its limit {b.velocity_limit[i]:.4g}/s")
        prev = self.last_good
        if prev is not None:
            dt = _elapsed_s(prev, state)
            if dt > 0:
                jump = np.abs(q - prev.position)
                allowed = self._max_speed * dt + 0.5 * b.margin
                over = np.flatnonzero(jump > allowed)
                if over.size:
                    i = int(over[0])
                    return (f"bad STATE: joint {names[i]!r} jumped {jump[i]:.4g} in "
                            f"{dt * 1e3:.1f} ms ({prev.position[i]:.4g} -> {q[i]:.4g}); "
                            f"{b.speed_factor:g} x its speed limit allows {allowed[i]:.4g}")
        self.last_good = state
        return None


def _elapsed_s(prev: JointState, state: JointState) -> float:
    """Time between two samples, s: on the robot's clock when both carry it, else the host's."""
    if prev.device_time_us and state.device_time_us:
        d = (state.device_time_us - prev.device_time_us) % _WRAP_US
        return (d - _WRAP_US if d >= _WRAP_US // 2 else d) * 1e-6
    return state.stamp - prev.stamp


class LoopGuard:
    """What the control loop cannot vouch for, turned into a fault with a stable kind.

    Kinds are keys of :data:`karakuri.robot.loop_stats.EXIT_CODES`; the first fault's kind is
    kept (:attr:`kind`), as the filter keeps the first reason.  Also measures the largest gap
    between COMMANDs sent.

    Args:
        safety: The loop's filter (``latch_fault``, ``estop``, ``latched``, ``estop_reason``).
        link: The loop's link (for its latest fault in messages).
        bounds: What a plausible state keeps.
    """

    def __init__(self, safety: Any, link: Any, bounds: StateBounds) -> None:
        self.safety, self.link = safety, link
        self.monitor = StateMonitor(bounds)
        self.kind: str | None = None
        self.armed_seen = False
        self.max_gap_s: float | None = None
        self._last_send: float | None = None

    def fault(self, kind: str, reason: str) -> None:
        """Latch ``reason`` in the filter; remember ``kind`` if it is the first fault."""
        if self.safety.fault is None:
            self.kind = kind
        self.safety.latch_fault(reason)

    def link_note(self) -> str:
        """``; last link fault: ...`` (the latest one only; the summary lists them once)."""
        faults = self.link.faults()
        return f"; last link fault: {faults[-1]}" if faults else ""

    def state_ok(self, state: JointState) -> bool:
        """Check a state not seen before; a bad one latches ``bad STATE: ...`` (kind state)."""
        if state is self.monitor.last_good:
            return True
        reason = self.monitor.check(state)
        if reason is None:
            return True
        self.fault("state", reason)
        return False

    def status_ok(self, status: StatusBits) -> None:
        """After arming: ESTOP latches an e-stop; FAULT/WATCHDOG, or ARMED lost, a fault."""
        if status & StatusBits.ESTOP and self.safety.estop_reason is None:
            self.safety.estop("robot reports ESTOP")
        if status & (StatusBits.FAULT | StatusBits.WATCHDOG):
            self.fault("robot", f"robot FAULT: it reports {status!r}{self.link_note()}")
        elif status & StatusBits.ARMED:
            self.armed_seen = True
        elif self.armed_seen and not self.safety.latched:
            self.fault("robot", f"robot left ARMED: it reports {status!r} while the loop was "
                                f"driving it (another host, a reset, a lost arm?)"
                                f"{self.link_note()}")

    def sent(self, t: float) -> None:
        """A COMMAND went out at host time ``t`` (s)."""
        if self._last_send is not None:
            gap = t - self._last_send
            self.max_gap_s = gap if self.max_gap_s is None else max(self.max_gap_s, gap)
        self._last_send = t

    def final_pose(self, state: JointState | None, now: float, max_age_s: float,
                   fallback: np.ndarray) -> np.ndarray:
        """Where the final HOLD goes, rad, never a NaN. Shape: (n,).

        The latest state if good and fresh, else the last good one if fresh, else
        ``fallback`` (the last safe target).
        """
        for s in (state, self.monitor.last_good):
            if s is None or now - s.stamp >= max_age_s:
                continue
            if s is self.monitor.last_good or self.monitor.check(s) is None:
                return np.asarray(s.position, np.float64)
        return np.asarray(fallback, np.float64)
