"""The MCU's servo reference: limits, the slew toward a target, and the category-1 stop ramp.

Everything here is a pure function of its inputs, so a firmware port can copy it line by line
(``docs/wire-protocol.md`` §6.2 states the same rules).  The reference never leaves the
envelope:

* **Speed.**  While ARMED the position reference moves toward the (clipped) target by at most
  ``velocity_limit × servo_period`` per servo period; velocity feed-forward is clipped to
  ±``velocity_limit``.
* **Stop.**  The category-1 stop starts from the measured position and the measured velocity
  clipped to ±``velocity_limit``, and decelerates at ``stop_decel`` — harder where needed to
  come to rest at a position limit instead of past it.  Its speed never grows, and it never
  moves a joint further past a limit than the joint already was.
* **Position.**  Targets are clipped to [``lower``, ``upper``]; a *measured* position outside
  [``lower − margin``, ``upper + margin``] is a fault (:meth:`McuLimits.first_outside`).

Imports numpy and the standard library only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

POSITION_MARGIN_MAX = 0.05
"""Largest tolerance on a measured position past a limit, rad or m (§6.2)."""
POSITION_MARGIN_FRACTION = 0.1
"""The tolerance is at most this fraction of the joint's range."""


def default_position_margin(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``min(0.05, 0.1 × (upper − lower))`` per joint, rad or m. Shape: (n_joints,)."""
    return np.minimum(POSITION_MARGIN_MAX, POSITION_MARGIN_FRACTION * (upper - lower))


@dataclass(frozen=True)
class McuLimits:
    """Per-joint limits the MCU enforces and reports in CAPS. Shape of each: (n_joints,).

    Attributes:
        joint_hash: ``RobotSpec.joint_hash()`` of the joints it drives.
        lower: Lower position limits, rad or m.
        upper: Upper position limits, rad or m.
        velocity_limit: Speed limits, rad/s or m/s (> 0).
        effort_limit: Effort limits, N·m or N (> 0).
        stop_decel: Deceleration of the category-1 stop ramp, rad/s² or m/s² (> 0).
        position_margin: How far a measured position may lie past a limit before it is a
            fault, rad or m; None: :func:`default_position_margin`.

    Raises:
        ValueError: Shapes differ, ``lower > upper``, or a limit is not finite and positive.
    """

    joint_hash: int
    lower: np.ndarray
    upper: np.ndarray
    velocity_limit: np.ndarray
    effort_limit: np.ndarray
    stop_decel: np.ndarray
    position_margin: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        names = ("lower", "upper", "velocity_limit", "effort_limit", "stop_decel")
        for name in names:
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        if self.position_margin is None:
            object.__setattr__(self, "position_margin",
                               default_position_margin(self.lower, self.upper))
        object.__setattr__(self, "position_margin",
                           np.asarray(self.position_margin, dtype=np.float64))
        n = self.lower.shape
        for name in (*names, "position_margin"):
            arr = getattr(self, name)
            if arr.ndim != 1 or arr.shape != n or not np.all(np.isfinite(arr)):
                raise ValueError(f"McuLimits.{name} must be {n[0] if n else 0} finite values, "
                                 f"got {arr!r}")
        if np.any(self.lower > self.upper):
            raise ValueError(f"McuLimits: lower {self.lower} above upper {self.upper}")
        for name in ("velocity_limit", "effort_limit", "stop_decel"):
            if np.any(getattr(self, name) <= 0):
                raise ValueError(f"McuLimits.{name} must be > 0, got {getattr(self, name)}")
        if np.any(self.position_margin < 0):
            raise ValueError(f"McuLimits.position_margin must be >= 0, got {self.position_margin}")

    @property
    def n(self) -> int:
        """Number of joints."""
        return int(self.lower.size)

    def first_outside(self, q: np.ndarray) -> int:
        """Index of the first measured position outside the limits ± margin (or not finite).

        Args:
            q: Measured positions, rad or m. Shape: (n_joints,).

        Returns:
            The lowest such joint index, or -1 if every joint is inside.
        """
        ok = (q >= self.lower - self.position_margin) & (q <= self.upper + self.position_margin)
        bad = np.flatnonzero(~ok)
        return int(bad[0]) if bad.size else -1


def slew(q_ref: np.ndarray, goal: np.ndarray, max_step: np.ndarray) -> np.ndarray:
    """Move ``q_ref`` toward ``goal`` by at most ``max_step`` per joint (rad or m)."""
    return q_ref + np.clip(goal - q_ref, -max_step, max_step)


class StopCause(enum.IntEnum):
    """Why a category-1 stop began; the values are the FAULT codes it ends with."""

    NONE = 0  # HELLO while armed: ends DISARMED without a FAULT
    WATCHDOG = 1
    ESTOP = 2
    POSITION_LIMIT = 4


@dataclass
class StopRamp:
    """A category-1 stop in progress, planned once at the trip (:meth:`plan`).

    Attributes:
        t0: MCU time of the trip, s.
        q0: Start position (measured), rad or m. Shape: (n_joints,).
        v0: Start velocity (measured, clipped to ±velocity_limit; 0 where no room), rad/s.
        decel: Deceleration per joint, ≥ ``stop_decel``, rad/s². Shape: (n_joints,).
        lo: Lowest position the ramp may take: min(lower, q0). Shape: (n_joints,).
        hi: Highest position the ramp may take: max(upper, q0). Shape: (n_joints,).
        then_disarmed: End DISARMED (HELLO while armed) instead of FAULTED.
        cause: What started it (the first cause wins; a later one only upgrades NONE).
        detail: The FAULT detail sent when it ends.
    """

    t0: float
    q0: np.ndarray
    v0: np.ndarray
    decel: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    then_disarmed: bool
    cause: StopCause
    detail: int

    @classmethod
    def plan(cls, t: float, q: np.ndarray, dq: np.ndarray, q_hold: np.ndarray,
             limits: McuLimits, cause: StopCause, detail: int) -> StopRamp:
        """Plan the stop from the measured state at the trip.

        Args:
            t: MCU time of the trip, s.
            q: Measured positions, rad or m; a non-finite one is replaced by ``q_hold``.
            dq: Measured velocities, rad/s or m/s; a non-finite one counts as 0.
            q_hold: The servo's current position reference, rad or m. Shape: (n_joints,).
            limits: The MCU's limits.
            cause: Why it stops.
            detail: FAULT detail for the end of the stop.
        """
        q0 = np.where(np.isfinite(q), q, q_hold).astype(np.float64)
        v0 = np.clip(np.where(np.isfinite(dq), dq, 0.0), -limits.velocity_limit,
                     limits.velocity_limit).astype(np.float64)
        lo, hi = np.minimum(limits.lower, q0), np.maximum(limits.upper, q0)
        room = np.where(v0 > 0, hi - q0, q0 - lo)
        v0 = np.where(room > 0, v0, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            need = np.where(room > 0, v0 * v0 / (2.0 * room), 0.0)
        decel = np.maximum(limits.stop_decel, need)
        return cls(t, q0, v0, decel, lo, hi, cause is StopCause.NONE, cause, detail)

    @property
    def duration(self) -> float:
        """Time from the trip to rest of the slowest joint, s."""
        return float(np.max(np.abs(self.v0) / self.decel, initial=0.0))

    def reference(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Position (rad or m) and velocity (rad/s or m/s) reference at MCU time ``t``, s."""
        t_end = np.abs(self.v0) / self.decel
        tau = np.minimum(max(t - self.t0, 0.0), t_end)
        a = np.sign(self.v0) * self.decel
        q = np.clip(self.q0 + self.v0 * tau - 0.5 * a * tau**2, self.lo, self.hi)
        v = np.where(tau < t_end, self.v0 - a * tau, 0.0)
        return q, v

    def rest(self) -> np.ndarray:
        """Where the ramp comes to rest, rad or m. Shape: (n_joints,)."""
        return self.reference(self.t0 + self.duration + 1.0)[0]
