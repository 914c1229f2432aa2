"""Force limiting at the tool (ISO/TS 15066:2016, 5.5.5), from measured joint efforts, numpy only.

**Estimate.**  With gravity compensated by the robot's controller (both shipped arms), a
position servo's measured effort ``tau`` balances the joint's own dynamics and any external
load: ``tau = tau_model + tau_ext_reaction``.  The model's expected effort is the rigid-body
one, ``M(q) q_dd + c(q, q_d) + damping q_d + frictionloss sign(q_d)`` (the chain carries link
masses, centres and inertias from the MJCF; :mod:`karakuri.robot.dynamics`; ``q_dd`` by
differencing successive STATE velocities); :func:`expected_effort` below is the joint-only
part, used for a chain without inertia.  The external wrench at the tool solves
``J(q)^T w = tau_model - tau`` (a damped least-squares solve over the arm joints, ``J`` the
tool Jacobian in the world frame);
the force estimate is ``|w[:3]|``, N.  A contact elsewhere on the arm shows up as the
equivalent wrench at the tool.  A robot with a force sensor at the tool gives ``w`` directly.

**Limits** (:data:`BODY_REGIONS`): ISO/TS 15066 Annex A, Table A.2, the quasi-static maximum
permissible forces the handover task lists, and the transient ones (twice these for hand, arm
and chest; the face is allowed no transient contact).  A contact over the *stop* limit
(``stop_at``: the quasi-static value by default, as the handover task counts, or the transient
one), or over the quasi-static limit for longer than ``quasi_static_s`` (0.5 s: a contact that
lasts is quasi-static, clamping), is a **protective stop, category 2**: the robot holds at the
pose measured at the stop, armed and powered.  It resumes when the estimate stays below half
the quasi-static limit for ``resume_s``.  ``max_stops`` stops within ``window_s`` are a fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

#: ISO/TS 15066:2016 Table A.2: region -> (quasi-static, transient) maximum force, N.
BODY_REGIONS: dict[str, tuple[float, float]] = {
    "hand": (140.0, 280.0),
    "lower_arm": (160.0, 320.0),
    "chest": (140.0, 280.0),
    "face": (65.0, 65.0),
}


class ForceConfigError(ValueError):
    """A force-limit setting is invalid; the message names the key and the valid values."""


@dataclass(frozen=True)
class ForceLimitConfig:
    """What the force limiter enforces.

    Attributes:
        region: The body region the robot may touch, a key of :data:`BODY_REGIONS`.
        stop_at: ``"quasi_static"`` (stricter, default) or ``"transient"``: which limit
            stops at once.
        quasi_static_s: Over the quasi-static limit this long also stops, s.
        resume_s: Below half the quasi-static limit this long ends a stop, s.
        max_stops: This many stops within ``window_s`` latch a fault.
        window_s: The window for ``max_stops``, s.
        scale: Factor on the region's limits, in (0, 1] (a launch file may only tighten).
    """

    region: str = "hand"
    stop_at: Literal["quasi_static", "transient"] = "quasi_static"
    quasi_static_s: float = 0.5
    resume_s: float = 1.0
    max_stops: int = 3
    window_s: float = 60.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.region not in BODY_REGIONS:
            raise ForceConfigError(f"force_limit.region: {self.region!r} is not one of "
                                   f"{sorted(BODY_REGIONS)}")
        if self.stop_at not in ("quasi_static", "transient"):
            raise ForceConfigError(f"force_limit.stop_at: {self.stop_at!r} is not "
                                   f"'quasi_static' or 'transient'")
        for key in ("quasi_static_s", "resume_s", "window_s"):
            if not getattr(self, key) > 0:
                raise ForceConfigError(f"force_limit.{key}: {getattr(self, key)} must be > 0 s")
        if int(self.max_stops) < 1:
            raise ForceConfigError(f"force_limit.max_stops: {self.max_stops} must be >= 1")
        if not 0.0 < self.scale <= 1.0:
            raise ForceConfigError(f"force_limit.scale: {self.scale} is not in (0, 1]; a "
                                   f"launch file may only tighten the ISO/TS 15066 limits")

    @property
    def quasi_static_n(self) -> float:
        """The region's quasi-static limit (times ``scale``), N."""
        return BODY_REGIONS[self.region][0] * self.scale

    @property
    def stop_n(self) -> float:
        """The force that stops at once, N."""
        qs, tr = BODY_REGIONS[self.region]
        return (qs if self.stop_at == "quasi_static" else tr) * self.scale


def expected_effort(dq: np.ndarray, ddq: np.ndarray, damping: np.ndarray,
                    armature: np.ndarray, frictionloss: np.ndarray) -> np.ndarray:
    """The servo effort the joint model expects in free motion, N·m. Shape: (n,).

    Args:
        dq: Joint velocities, rad/s. Shape: (n,).
        ddq: Joint accelerations, rad/s². Shape: (n,).
        damping: Viscous friction, N·m·s/rad. Shape: (n,).
        armature: Rotor inertia, kg·m². Shape: (n,).
        frictionloss: Dry friction, N·m. Shape: (n,).
    """
    return armature * ddq + damping * dq + frictionloss * np.tanh(dq / 0.01)


def tool_wrench(jacobian: np.ndarray, tau_ext: np.ndarray, damping: float = 1e-4) -> np.ndarray:
    """The tool wrench ``w`` (force N, moment N·m, world frame) with ``J^T w ≈ tau_ext``.

    Damped least squares, ``w = J (J^T J + λ² I)^-1 tau_ext``, so a near-singular pose gives
    a bounded estimate.

    Args:
        jacobian: Tool Jacobian over the joints used. Shape: (6, k).
        tau_ext: External joint torques, N·m. Shape: (k,).
        damping: λ.

    Returns:
        Shape: (6,).
    """
    jtj = jacobian.T @ jacobian
    return jacobian @ np.linalg.solve(jtj + damping**2 * np.eye(jtj.shape[0]), tau_ext)


@dataclass
class ForceLimiter:
    """The stop logic of the module docstring, fed one force estimate per new STATE.

    Attributes:
        config: Limits and timings.
        stopped_at: Time the current protective stop began, s; None while running.
        stops: Start times of the stops so far, s.
        fault: Why the limiter latched a fault, or None.
    """

    config: ForceLimitConfig
    stopped_at: float | None = None
    stops: list[float] = field(default_factory=list)
    fault: str | None = None
    _over_since: float | None = None
    _calm_since: float | None = None

    def update(self, force: float, t: float) -> str | None:
        """Feed the force estimate ``force`` N at time ``t`` s; returns a new stop's reason."""
        c = self.config
        if self.stopped_at is not None:
            if force < 0.5 * c.quasi_static_n:
                self._calm_since = t if self._calm_since is None else self._calm_since
                if t - self._calm_since >= c.resume_s:
                    self.stopped_at = self._calm_since = None
            else:
                self._calm_since = None
            return None
        over_qs = force > c.quasi_static_n
        self._over_since = (t if self._over_since is None else self._over_since) if over_qs \
            else None
        reason = None
        if force > c.stop_n:
            reason = (f"tool force {force:.0f} N over the {c.region} limit {c.stop_n:.0f} N "
                      f"(ISO/TS 15066 Table A.2, {c.stop_at.replace('_', '-')})")
        elif self._over_since is not None and t - self._over_since >= c.quasi_static_s:
            reason = (f"tool force {force:.0f} N over the {c.region} quasi-static limit "
                      f"{c.quasi_static_n:.0f} N for {c.quasi_static_s} s")
        if reason is None:
            return None
        self.stopped_at, self._over_since, self._calm_since = t, None, None
        self.stops = [s for s in self.stops if t - s < c.window_s] + [t]
        if len(self.stops) >= c.max_stops:
            self.fault = (f"{len(self.stops)} force protective stops within {c.window_s:g} s "
                          f"(last: {reason})")
        return reason
