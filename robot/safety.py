"""The safety filter between a policy's joint targets and the robot.

Each stage is a pure function, tested alone; :class:`SafetyFilter` composes them in a fixed
order and keeps the little state they need (the last safe target and its velocity, the soft
start clock, the latches).  Order, per tick:

1. latched e-stop or fault -> hold the last safe target;
2. non-finite command -> hold the last safe target and latch a fault;
3. clip to the joint limits;
4. soft start: blend from the pose measured at :meth:`SafetyFilter.reset` over ``soft_start_s``;
5. velocity limit: at most ``velocity_limit * dt`` of change per tick;
6. acceleration limit (with a stopping-distance cap, so it brakes instead of overshooting);
7. clip to the joint limits again (braking at a limit wins over the acceleration limit);
8. added stages (:meth:`SafetyFilter.add_stage`), e.g. the care layer's speed-and-separation
   and force limits (:mod:`karakuri.robot.care_safety`); a stage's fault latches;
9. optional workspace box on the forward kinematics: outside -> hold the last safe target.

Limits come from the :class:`~karakuri.robot.spec.RobotSpec`; a launch file may only tighten
them (:class:`SafetyOverrides`, checked by :meth:`SafetyLimits.from_spec`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from karakuri.robot.spec import RobotSpec

# Forward kinematics: joint positions (n,) rad -> tool position (3,), m, base frame.
ForwardKinematics = Callable[[np.ndarray], np.ndarray]

INTERVENTIONS = ("nonfinite", "clip", "soft_start", "velocity", "accel", "workspace", "latched")


class SafetyConfigError(ValueError):
    """A safety override is malformed or looser than the robot's spec; names the key."""


# ----------------------------------------------------------------------------- pure stages
def hold_if_nonfinite(q_cmd: np.ndarray, q_hold: np.ndarray) -> tuple[np.ndarray, bool]:
    """Replace a command with any NaN or inf by the hold target.

    Args:
        q_cmd: Commanded joint positions, rad. Shape: (n,).
        q_hold: Last safe target, rad. Shape: (n,).

    Returns:
        The command (or a copy of ``q_hold``) and whether it was replaced.
    """
    if np.isfinite(q_cmd).all():
        return q_cmd, False
    return q_hold.copy(), True


def clip_to_limits(q: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, bool]:
    """Clip to ``[lower, upper]`` per joint; returns the result and whether anything moved."""
    out = np.minimum(np.maximum(q, lower), upper)
    return out, bool((out != q).any())


def soft_start(q: np.ndarray, q_start: np.ndarray, elapsed_s: float,
               ramp_s: float) -> tuple[np.ndarray, bool]:
    """Blend linearly from ``q_start`` to ``q`` over ``ramp_s`` seconds.

    Args:
        q: Target, rad. Shape: (n,).
        q_start: Pose measured when the ramp began, rad. Shape: (n,).
        elapsed_s: Time since the ramp began, s.
        ramp_s: Ramp length, s (0 disables the ramp).

    Returns:
        ``q_start + alpha * (q - q_start)`` with ``alpha = clip(elapsed_s / ramp_s, 0, 1)``,
        and whether the ramp was still active (``alpha < 1``).
    """
    if ramp_s <= 0 or elapsed_s >= ramp_s:
        return q, False
    alpha = max(elapsed_s, 0.0) / ramp_s
    return q_start + alpha * (q - q_start), True


def limit_velocity(q: np.ndarray, q_prev: np.ndarray,
                   max_step: np.ndarray) -> tuple[np.ndarray, bool]:
    """Move at most ``max_step`` (``velocity_limit * dt``, rad) from ``q_prev`` per joint."""
    d = q - q_prev
    step = np.minimum(np.maximum(d, -max_step), max_step)
    hit = bool((step != d).any())
    return (q_prev + step if hit else q), hit


def limit_acceleration(q: np.ndarray, q_prev: np.ndarray, v_prev: np.ndarray,
                       accel: np.ndarray, dt: float) -> tuple[np.ndarray, bool]:
    """Change the target's velocity by at most ``accel * dt`` per tick.

    The wanted velocity is first capped at ``sqrt(2 * accel * |q - q_prev|)`` so the target
    slows down before it arrives instead of overshooting.

    Args:
        q: Wanted target, rad. Shape: (n,).
        q_prev: Previous safe target, rad. Shape: (n,).
        v_prev: Previous target velocity ``(q_prev - q_prev_prev) / dt``, rad/s. Shape: (n,).
        accel: Acceleration limit, rad/s². Shape: (n,).
        dt: Tick period, s.

    Returns:
        The target and whether the limit changed it.
    """
    d = q - q_prev
    dist = np.abs(d)
    speed = np.minimum(dist / dt, np.sqrt((2.0 * accel) * dist))
    dv = accel * dt
    v = np.minimum(np.maximum(np.copysign(speed, d), v_prev - dv), v_prev + dv)
    out = q_prev + v * dt
    return out, bool((np.abs(out - q) > 1e-12).any())


def in_workspace(q: np.ndarray, fk: ForwardKinematics, lower: np.ndarray,
                 upper: np.ndarray) -> bool:
    """Whether the tool at joint positions ``q`` lies inside the box ``[lower, upper]`` (m)."""
    p = np.asarray(fk(q), dtype=np.float64)
    return bool(np.all(np.isfinite(p)) and np.all(p >= lower) and np.all(p <= upper))


# ----------------------------------------------------------------------------- limits
@dataclass(frozen=True)
class WorkspaceBox:
    """An axis-aligned box for the tool position, base frame.

    Attributes:
        lower: Lower corner xyz, m.
        upper: Upper corner xyz, m.
    """

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.lower) != 3 or len(self.upper) != 3:
            raise SafetyConfigError(
                f"workspace: lower and upper need 3 values (x, y, z in m), got "
                f"{list(self.lower)} and {list(self.upper)}")
        if any(lo >= hi for lo, hi in zip(self.lower, self.upper, strict=True)):
            raise SafetyConfigError(
                f"workspace: lower {list(self.lower)} must be below upper {list(self.upper)} "
                f"on every axis")


@dataclass(frozen=True)
class SafetyOverrides:
    """Launch-file limits; each may only tighten the robot's spec.

    Attributes:
        velocity_scale: Factor on every joint's velocity limit, in (0, 1].
        accel_scale: Factor on every joint's acceleration limit, in (0, 1].
        position_limits: Joint name -> [lower, upper], rad; inside the spec's limits.
        velocity_limit: Joint name -> speed limit, rad/s; at most the spec's.
        accel_limit: Joint name -> acceleration limit, rad/s²; at most the spec's.
        workspace: Tool box in the base frame (needs forward kinematics); off when absent.
    """

    velocity_scale: float = 1.0
    accel_scale: float = 1.0
    position_limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    velocity_limit: Mapping[str, float] = field(default_factory=dict)
    accel_limit: Mapping[str, float] = field(default_factory=dict)
    workspace: WorkspaceBox | None = None

    def __post_init__(self) -> None:
        for key in ("velocity_scale", "accel_scale"):
            v = getattr(self, key)
            if not 0.0 < v <= 1.0:
                raise SafetyConfigError(
                    f"{key}: {v} is not in (0, 1]; a launch file may only slow the robot down")


@dataclass(frozen=True)
class SafetyLimits:
    """The limits the filter enforces. Per-joint arrays have shape (n,) in spec order.

    Attributes:
        lower: Lower position limits, rad.
        upper: Upper position limits, rad.
        velocity_limit: Speed limits, rad/s.
        accel_limit: Acceleration limits, rad/s².
        workspace: Tool box, or None for no workspace check.
    """

    lower: np.ndarray
    upper: np.ndarray
    velocity_limit: np.ndarray
    accel_limit: np.ndarray
    workspace: WorkspaceBox | None = None

    @classmethod
    def from_spec(cls, spec: RobotSpec, overrides: SafetyOverrides | None = None,
                  prefix: str = "safety") -> SafetyLimits:
        """The spec's limits, tightened by ``overrides``.

        Raises:
            SafetyConfigError: an override names an unknown joint or is looser than the spec;
                the message names the key as ``<prefix>.<key>.<joint>``.
        """
        o = overrides or SafetyOverrides()
        lower, upper = spec.lower.copy(), spec.upper.copy()
        vel = spec.velocity_limit * o.velocity_scale
        acc = spec.accel_limit * o.accel_scale
        for joint, (lo, hi) in o.position_limits.items():
            i = _joint_index(spec, joint, f"{prefix}.position_limits.{joint}")
            if lo < spec.lower[i] or hi > spec.upper[i] or lo >= hi:
                raise SafetyConfigError(
                    f"{prefix}.position_limits.{joint}: [{lo}, {hi}] is looser than the spec's "
                    f"[{spec.lower[i]}, {spec.upper[i]}] or empty; overrides may only tighten")
            lower[i], upper[i] = lo, hi
        for key, arr, base in (("velocity_limit", vel, spec.velocity_limit),
                               ("accel_limit", acc, spec.accel_limit)):
            for joint, v in getattr(o, key).items():
                i = _joint_index(spec, joint, f"{prefix}.{key}.{joint}")
                if not 0.0 < v <= base[i]:
                    raise SafetyConfigError(
                        f"{prefix}.{key}.{joint}: {v} is looser than the spec's {base[i]} (or "
                        f"not > 0); overrides may only tighten, use a value in (0, {base[i]}]")
                arr[i] = min(arr[i], v)
        return cls(lower, upper, vel, acc, o.workspace)


def _joint_index(spec: RobotSpec, joint: str, key: str) -> int:
    if joint not in spec.joint_names:
        raise SafetyConfigError(
            f"{key}: robot {spec.name!r} has no joint {joint!r}; joints: {list(spec.joint_names)}")
    return spec.joint_names.index(joint)


# ----------------------------------------------------------------------------- the filter
class SafetyFilter:
    """Compose the stages above, tick by tick, with latched e-stop and fault.

    Call :meth:`reset` with the measured pose before the first :meth:`filter`; a reset clears
    the latches but never causes motion: right after it the target is the measured pose, and
    the soft start ramps from there.

    Args:
        limits: What to enforce.
        dt: Tick period, s.
        soft_start_s: Ramp time from the measured pose after each reset, s.
        fk: Forward kinematics for the workspace box; required when ``limits.workspace`` is set.
    """

    def __init__(self, limits: SafetyLimits, dt: float, soft_start_s: float = 1.0,
                 fk: ForwardKinematics | None = None) -> None:
        if dt <= 0:
            raise SafetyConfigError(f"dt must be > 0 s, got {dt}")
        if soft_start_s < 0:
            raise SafetyConfigError(f"soft_start_s must be >= 0 s, got {soft_start_s}")
        if limits.workspace is not None and fk is None:
            raise SafetyConfigError(
                "safety.workspace is set but no forward kinematics was given; pass fk= (the "
                "SIL link builds one from the MuJoCo model) or remove safety.workspace")
        self.limits, self.dt, self.soft_start_s, self.fk = limits, dt, soft_start_s, fk
        self._max_step = limits.velocity_limit * dt
        self._q: np.ndarray | None = None
        self._v = np.zeros_like(limits.lower)
        self._q_start = self._q
        self._elapsed = 0.0
        self.estop_reason: str | None = None
        self.fault: str | None = None
        self.interventions: dict[str, int] = dict.fromkeys(INTERVENTIONS, 0)
        self.stages: list[Any] = []

    def add_stage(self, stage: Any) -> None:
        """Run ``stage.apply(q, q_prev, interventions)`` after the joint limits, every tick.

        The stage returns the target (rad, (n,)), counts its ``KINDS`` in ``interventions``,
        and may set ``stage.fault``, which latches (e.g. :class:`CareSafety`).
        """
        self.stages.append(stage)
        for kind in getattr(stage, "KINDS", ()):
            self.interventions.setdefault(kind, 0)

    @property
    def latched(self) -> bool:
        """True while an e-stop or a fault holds the robot (until :meth:`reset`)."""
        return self.estop_reason is not None or self.fault is not None

    def hold_target(self) -> np.ndarray:
        """The last safe target, rad. Shape: (n,)."""
        if self._q is None:
            raise RuntimeError("SafetyFilter.reset(measured_pose) must be called first")
        return self._q.copy()

    def reset(self, q_measured: np.ndarray) -> np.ndarray:
        """Clear latches; the target becomes the measured pose (clipped) and soft start restarts.

        Args:
            q_measured: Measured joint positions, rad. Shape: (n,). Must be finite.

        Returns:
            The new target (the measured pose, clipped to the limits). Shape: (n,).
        """
        q = np.asarray(q_measured, dtype=np.float64)
        if q.shape != self.limits.lower.shape or not np.all(np.isfinite(q)):
            raise ValueError(
                f"reset needs a finite measured pose of shape {self.limits.lower.shape}, got {q}")
        self._q, _ = clip_to_limits(q.copy(), self.limits.lower, self.limits.upper)
        self._q_start, self._v, self._elapsed = self._q.copy(), np.zeros_like(q), 0.0
        self.estop_reason = self.fault = None
        return self._q.copy()

    def estop(self, reason: str = "e-stop") -> None:
        """Latch an e-stop: every following tick holds until :meth:`reset`."""
        self.estop_reason = self.estop_reason or reason

    def latch_fault(self, reason: str) -> None:
        """Latch a fault (kept: the first reason); every following tick holds."""
        self.fault = self.fault or reason

    def filter(self, q_cmd: np.ndarray) -> np.ndarray:
        """One tick: a policy target in, a safe target out.

        Args:
            q_cmd: Wanted joint positions, rad. Shape: (n,).

        Returns:
            The safe target, rad, finite, inside the limits. Shape: (n,).
        """
        q_prev = self.hold_target()
        if self.latched:
            self.interventions["latched"] += 1
            return q_prev
        q, bad = hold_if_nonfinite(np.asarray(q_cmd, dtype=np.float64), q_prev)
        if bad:
            self.interventions["nonfinite"] += 1
            self.latch_fault(f"non-finite command {np.asarray(q_cmd).tolist()}; holding")
            return q_prev
        lim = self.limits
        q = self._stage("clip", *clip_to_limits(q, lim.lower, lim.upper))
        q = self._stage("soft_start", *soft_start(q, self._q_start, self._elapsed,
                                                  self.soft_start_s))
        q = self._stage("velocity", *limit_velocity(q, q_prev, self._max_step))
        q = self._stage("accel", *limit_acceleration(q, q_prev, self._v, lim.accel_limit,
                                                     self.dt))
        q = self._stage("clip", *clip_to_limits(q, lim.lower, lim.upper))
        for stage in self.stages:
            q = np.asarray(stage.apply(q, q_prev, self.interventions), dtype=np.float64)
            if stage.fault is not None:
                self.latch_fault(stage.fault)
        if lim.workspace is not None and self.fk is not None and not in_workspace(
                q, self.fk, np.asarray(lim.workspace.lower), np.asarray(lim.workspace.upper)):
            self.interventions["workspace"] += 1
            q = q_prev
        self._v = (q - q_prev) / self.dt
        self._q = q
        self._elapsed += self.dt
        return q.copy()

    def _stage(self, kind: str, q: np.ndarray, hit: bool) -> np.ndarray:
        if hit:
            self.interventions[kind] += 1
        return q
