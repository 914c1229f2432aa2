"""Care safety in the loop: speed-and-separation monitoring and force limiting, as one stage.

:class:`CareSafety` runs inside :class:`~karakuri.robot.safety.SafetyFilter` after the joint
limits (see :meth:`SafetyFilter.add_stage`), every tick, whatever the policy commands:

1. **Force limit** (:mod:`karakuri.robot.force_limit`): on each new STATE, the external force
   at the tool is estimated from the measured efforts minus the effort the chain's rigid-body
   model expects (:mod:`karakuri.robot.dynamics`: ``M(q) q̈ + c(q, q̇)`` + friction, ``q̈``
   from the last two STATEs); over the limit -> protective stop
   (category 2): the arm's joints hold the pose measured at the stop (the gripper keeps its
   last target), armed; repeated stops -> fault (the filter latches it, the loop stops).
2. **Speed and separation** (:mod:`karakuri.robot.ssm`): the person's position comes from a
   :class:`PersonSource`; a stale or missing one puts the person at the tool.  The step
   from the last target is shortened so the tool's speed stays within
   :func:`~karakuri.robot.ssm.allowed_speed` of the separation; below the minimum separation
   the robot holds.  The step is bounded by the time since the last tick (at most one
   period), so the tool's speed holds for late and early ticks too, and by the measured
   pose: the commanded tool point leads the measured one by at most ``max_lead_s`` x the
   allowed speed (a servo catches up with a stored lead faster than allowed).

The tool position is the numpy forward kinematics of the robot's chain
(:mod:`karakuri.robot.kinematics`), so the stage runs on the edge install (no MuJoCo).
Interventions are counted in the filter's ``interventions`` (``ssm_scale``, ``ssm_hold``,
``person_stale``, ``force_stop``) and each tick's separation, allowed speed and force estimate
go to the telemetry's ``/safety`` channel (``care_*`` fields) when a recorder is bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from karakuri.robot.dynamics import ChainDynamics
from karakuri.robot.force_limit import ForceLimitConfig, ForceLimiter, tool_wrench
from karakuri.robot.kinematics import KinematicChain
from karakuri.robot.ssm import SeparationParams, allowed_speed, bound_lead, scale_step

KINDS: tuple[str, ...] = ("ssm_scale", "ssm_hold", "person_stale", "force_stop")

#: Near a singular pose the force solve is damped (variable damping, Chiaverini 1997):
#: ``λ² = λ0² (1 − (σ_min / ε)²)`` while the tool Jacobian's smallest singular value
#: ``σ_min`` is under ``ε``, else 0 (exact).  At ``σ_min → 0`` a residual torque of 1 N·m maps
#: to at most ``1 / (2 λ0)`` = 10 N (undamped, the model's few N·m of free-motion error read
#: as 50-70 N there); a force along the singular direction, which the joints hardly feel,
#: is underestimated there.  ``ε``, ``λ0``, m.
WRENCH_SINGULAR_EPS, WRENCH_DAMPING = 0.05, 0.05


def wrench_damping(jacobian: np.ndarray) -> float:
    """λ for :func:`~karakuri.robot.force_limit.tool_wrench` at this Jacobian (6, k), m."""
    sigma = float(np.linalg.svd(jacobian, compute_uv=False).min())
    if sigma >= WRENCH_SINGULAR_EPS:
        return 0.0
    return WRENCH_DAMPING * float(np.sqrt(1.0 - (sigma / WRENCH_SINGULAR_EPS) ** 2))


class PersonSource(Protocol):
    """Where the person is: a tracker, the SIL plant, a ROS 2 topic, a serial message."""

    def read(self) -> tuple[np.ndarray, float] | None:
        """The person's position (3,), m, world frame, and its time on ``time.monotonic``, s.

        None when no position is known.
        """


class StateLike(Protocol):
    """The fields of a :class:`~karakuri.robot.link.JointState` the stage reads."""

    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    stamp: float


@dataclass(frozen=True)
class CareConfig:
    """Which care layers run; None turns one off (a launch file warns when it does).

    Attributes:
        separation: Speed-and-separation parameters, or None.
        force: Force-limit settings, or None.
    """

    separation: SeparationParams | None = field(default_factory=SeparationParams)
    force: ForceLimitConfig | None = field(default_factory=ForceLimitConfig)


class CareSafety:
    """The care stage of the safety filter (module docstring).

    Attributes:
        KINDS: The intervention counters it adds to the filter's.

    Args:
        chain: The robot's kinematic chain (``RobotSpec.kinematics``).
        dt: Control period, s.
        config: Which layers, with what parameters.
        lower: Lower joint limits, rad (holds are clipped to them). Shape: (n,).
        upper: Upper joint limits, rad. Shape: (n,).
        person: The person source (:meth:`bind` may give it later); needed for separation.
        state: Returns the latest measured state (``link.latest_state``); needed for force.
        clock: Monotonic clock, s.
    """

    KINDS = KINDS

    def __init__(self, chain: KinematicChain, dt: float, config: CareConfig,
                 lower: np.ndarray, upper: np.ndarray, person: PersonSource | None = None,
                 state: Callable[[], StateLike | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.chain, self.dt, self.config, self.clock = chain, dt, config, clock
        self.lower, self.upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
        self.person, self.state = person, state
        self.record: Callable[[str, dict[str, Any]], None] | None = None
        self.log: Callable[[str], None] | None = None
        self.limiter = ForceLimiter(config.force) if config.force is not None else None
        self.dynamics = ChainDynamics(chain)
        self.arm = np.array(chain.joint_indices, dtype=np.int64)
        self.events: list[tuple[float, str]] = []
        self.force_n = 0.0
        self.separation_m = float("nan")
        self.allowed_mps = float("inf")
        self.lead_m = float("nan")
        self._hold: np.ndarray | None = None
        self._last_stamp: float | None = None
        self._last_t: float | None = None
        self._last_vel: np.ndarray | None = None
        self._last_tick: float | None = None

    @property
    def fault(self) -> str | None:
        """A fault the filter must latch (repeated force stops), or None."""
        return self.limiter.fault if self.limiter is not None else None

    @property
    def stopped(self) -> bool:
        """True during a force protective stop."""
        return self.limiter is not None and self.limiter.stopped_at is not None

    @property
    def min_separation_m(self) -> float:
        """Below this separation the robot holds, m (nan with separation off)."""
        sep = self.config.separation
        return sep.min_separation(self.dt) if sep is not None else float("nan")

    def bind(self, person: PersonSource | None = None,
             state: Callable[[], StateLike | None] | None = None,
             record: Callable[[str, dict[str, Any]], None] | None = None,
             log: Callable[[str], None] | None = None) -> None:
        """Attach the person source, state reader, telemetry recorder and log once they exist."""
        self.person = person if person is not None else self.person
        self.state = state if state is not None else self.state
        self.record = record if record is not None else self.record
        self.log = log if log is not None else self.log

    # ------------------------------------------------------------------ the stage
    def apply(self, q: np.ndarray, q_prev: np.ndarray,
              interventions: MutableMapping[str, int]) -> np.ndarray:
        """One tick: the filter's target in, the care-limited target out (rad, (n,))."""
        state = self.state() if self.state is not None else None
        q_meas = np.asarray(state.position, np.float64) if state is not None else q_prev
        if self.limiter is not None and state is not None:
            self._update_force(self.limiter, state, q_prev)
        if self.stopped:
            interventions["force_stop"] += 1
            q = self._hold.copy() if self._hold is not None else q_prev.copy()
        elif self.config.separation is not None:
            q = self._separate(self.config.separation, q, q_prev, q_meas, interventions)
        if self.record is not None:
            self.record("/safety", {k: (v if np.isfinite(v) else None) for k, v in (
                ("care_separation_m", self.separation_m),
                ("care_allowed_speed_mps", self.allowed_mps),
                ("care_lead_m", self.lead_m),
                ("care_force_n", self.force_n),
                ("care_force_stop", float(self.stopped)))})
        return q

    def _separate(self, sep: SeparationParams, q: np.ndarray, q_prev: np.ndarray,
                  q_meas: np.ndarray, interventions: MutableMapping[str, int]) -> np.ndarray:
        got = self.person.read() if self.person is not None else None
        now = self.clock()
        p_prev, p_meas = self.chain(q_prev), self.chain(q_meas)
        if got is None or not np.all(np.isfinite(got[0])) or now - got[1] > sep.max_age_s:
            interventions["person_stale"] += 1
            self.separation_m = 0.0  # unknown: the person is at the tool
        else:
            p = np.asarray(got[0], np.float64)
            self.separation_m = float(min(np.linalg.norm(p_meas - p),
                                          np.linalg.norm(p_prev - p)))
        self.allowed_mps = allowed_speed(self.separation_m, sep, self.dt)
        # The step may take the tool as far as the time since the last tick allows, at most one
        # period: a tick that comes early after a late one (the loop keeps absolute deadlines)
        # would otherwise send two periods' travel within a few ms, and the MCU slews to each
        # target at the joints' full speed.
        elapsed = self.dt if self._last_tick is None else min(max(now - self._last_tick, 0.0),
                                                              self.dt)
        self._last_tick = now
        out, s = scale_step(q, q_prev, self.chain, self.allowed_mps * elapsed, p_prev=p_prev)
        if sep.max_lead_s > 0.0 and s > 0.0:  # and no further ahead of the measured tool
            out, lead_s = bound_lead(out, q_prev, self.chain, p_meas,
                                     self.allowed_mps * sep.max_lead_s, p_prev=p_prev)
            s *= lead_s
        self.lead_m = float(np.linalg.norm(self.chain(out) - p_meas))
        if s < 1.0:
            moving = bool(np.any(np.abs(q - q_prev) > 1e-12))
            if moving:
                interventions["ssm_hold" if s == 0.0 else "ssm_scale"] += 1
        return out

    def _update_force(self, limiter: ForceLimiter, state: StateLike, q_prev: np.ndarray) -> None:
        if state.stamp == self._last_stamp:
            return
        vel = np.asarray(state.velocity, np.float64)
        ddq = np.zeros_like(vel)
        us = getattr(state, "device_time_us", 0)  # the robot's clock (0: unknown), else arrival
        t = 1e-6 * float(us) if us else state.stamp
        if self._last_vel is not None and self._last_t is not None and t > self._last_t:
            ddq = (vel - self._last_vel) / max(t - self._last_t, 1e-3)
        self._last_stamp, self._last_t, self._last_vel = state.stamp, t, vel
        c, a, q = self.chain, self.arm, np.asarray(state.position, np.float64)
        tau_model = self.dynamics.expected_effort(q, vel, ddq)
        tau_ext = tau_model[a] - np.asarray(state.effort, np.float64)[a]
        jac = c.jacobian(q)[:, a]
        self.force_n = float(np.linalg.norm(tool_wrench(jac, tau_ext, wrench_damping(jac))[:3]))
        reason = limiter.update(self.force_n, state.stamp)
        if reason is not None:  # hold the arm where it is (the servo stops pushing), the
            hold = q_prev.copy()  # gripper at its last target (it keeps its grip)
            hold[a] = q[a]
            self._hold = np.clip(hold, self.lower, self.upper)
            self.events.append((state.stamp, f"protective stop (category 2): {reason}"))
            if self.log is not None:
                self.log(f"care: {self.events[-1][1]}; holding"
                         + (f"; FAULT: {self.fault}" if self.fault else ""))
