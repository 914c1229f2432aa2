"""Speed and separation monitoring (ISO/TS 15066:2016, 5.5.4) of the tool, numpy only.

The protective separation distance, for a robot moving toward a person at speed ``v_r``::

    S_p = S_h + S_r + S_s + C + Z_d + Z_r
        = v_h (T_r + T_s) + v_r T_r + v_r T_s / 2 + C + Z_d + Z_r

``S_h = v_h (T_r + T_s)``: the person's approach during the robot's reaction and stop;
``S_r = v_r T_r``: the robot's travel while it reacts; ``S_s = v_r T_s / 2``: its travel while
it stops (constant deceleration over ``T_s``); ``C``: intrusion distance (a body part reaching
past the point the sensor reports); ``Z_d``, ``Z_r``: position uncertainty of the person (the
sensor) and of the robot.  ``T_r`` = perception latency + two control periods (a STATE up to
one period old, then one tick until the command leaves).  Solved for ``v_r``, the largest
speed allowed at separation ``S`` is::

    v_allow(S) = (S - S_min) / (T_r + T_s / 2),   S_min = v_h (T_r + T_s) + C + Z_d + Z_r

and below ``S_min`` the robot holds.  Within ``reduced_zone_m`` of the person the tool moves at
most ``reduced_speed`` (ISO 10218-1:2011, 5.6: 250 mm/s), and it starts braking to that speed
before the zone: ``v <= max(reduced, (S - zone - Z_d - Z_r - S_h - reduced T_s / 2)
/ (T_r + T_s / 2))``.  :func:`scale_step` then shortens the tick's joint step *along* the
commanded direction (toward the last target), so the path is kept and never reordered.

This is a software layer on a non-safety-rated computer: see docs/control-loop.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: ISO 13855:2010, 6.3 (via ISO/TS 15066 5.5.4.2.3): walking approach speed, m/s.
ISO13855_HUMAN_SPEED = 1.6
#: ISO 10218-1:2011, 5.6: reduced speed of the tool centre point, m/s.
ISO10218_REDUCED_SPEED = 0.25


class SeparationConfigError(ValueError):
    """A separation parameter is out of range; the message names the key and valid values."""


@dataclass(frozen=True)
class SeparationParams:
    """Parameters of the protective separation distance (see the module docstring).

    Defaults are the standards' values for a person walking up to a cell; a launch file
    states the values of its own risk assessment (``launch/handover_sil.yaml`` does, with why).

    Attributes:
        human_speed: ``v_h``, the person's approach speed, m/s (ISO 13855: 1.6).
        perception_latency_s: Age of a person position when it arrives, s (part of ``T_r``).
        stopping_time_s: ``T_s``, the robot's stopping time from the allowed speed, s (measure
            it on the robot: ISO 10218-1 Annex B).
        intrusion_m: ``C``, how far a body part reaches past the reported point, m.
        person_uncertainty_m: ``Z_d``, the person sensor's position uncertainty, m.
        robot_uncertainty_m: ``Z_r``, the tool position's uncertainty, m.
        reduced_speed: Tool speed limit near the person, m/s (ISO 10218-1 5.6: 0.25).
        reduced_zone_m: Separation within which ``reduced_speed`` applies, m.
        max_speed: Tool speed limit elsewhere, m/s.
        max_age_s: A person position older than this (or none) puts the person at the tool.
        speed_margin: The commanded tool speed uses at most this fraction of the allowed
            speed, in (0, 1]: the servo's lag and a late tick let the measured speed overshoot
            the commanded one (sim-in-the-loop under load: up to ~20 %).
        max_lead_s: The commanded tool point may lead the measured one by at most the allowed
            speed times this, s (0 turns the bound off): a position servo moves at about
            lead / tau, so a target that ran ahead while the tool was held back (by a contact,
            a late tick, the servo's lag) would later be caught up with at more than the
            allowed speed.  A lead already larger (the servo's lag from faster motion, a
            gravity sag) may shrink but not grow.  The care arm's servo: tau ~ 0.15 s.
    """

    human_speed: float = ISO13855_HUMAN_SPEED
    perception_latency_s: float = 0.1
    stopping_time_s: float = 0.2
    intrusion_m: float = 0.0
    person_uncertainty_m: float = 0.05
    robot_uncertainty_m: float = 0.01
    reduced_speed: float = ISO10218_REDUCED_SPEED
    reduced_zone_m: float = 0.3
    max_speed: float = 1.5
    max_age_s: float = 0.1
    speed_margin: float = 0.8
    max_lead_s: float = 0.1

    def __post_init__(self) -> None:
        for key in ("human_speed", "perception_latency_s", "stopping_time_s", "intrusion_m",
                    "person_uncertainty_m", "robot_uncertainty_m", "reduced_zone_m",
                    "max_lead_s"):
            v = getattr(self, key)
            if not np.isfinite(v) or v < 0:
                raise SeparationConfigError(f"separation.{key}: {v} must be a number >= 0")
        for key in ("reduced_speed", "max_speed", "max_age_s"):
            v = getattr(self, key)
            if not np.isfinite(v) or v <= 0:
                raise SeparationConfigError(f"separation.{key}: {v} must be a number > 0")
        if not 0.0 < self.speed_margin <= 1.0:
            raise SeparationConfigError(f"separation.speed_margin: {self.speed_margin} is not in "
                                        f"(0, 1]")
        if self.reduced_speed > ISO10218_REDUCED_SPEED:
            raise SeparationConfigError(
                f"separation.reduced_speed: {self.reduced_speed} m/s is above ISO 10218-1's "
                f"{ISO10218_REDUCED_SPEED} m/s; use a value in (0, {ISO10218_REDUCED_SPEED}]")

    def reaction_s(self, dt: float) -> float:
        """``T_r``: perception latency plus two control periods of ``dt`` s, s."""
        return self.perception_latency_s + 2.0 * dt

    def min_separation(self, dt: float) -> float:
        """``S_min = S_p(v_r = 0)``, m: below it the robot holds."""
        return (self.human_speed * (self.reaction_s(dt) + self.stopping_time_s)
                + self.intrusion_m + self.person_uncertainty_m + self.robot_uncertainty_m)


def protective_separation(v_r: float, p: SeparationParams, dt: float) -> float:
    """``S_p`` for a robot moving at ``v_r`` m/s toward the person, m (module docstring)."""
    return p.min_separation(dt) + v_r * (p.reaction_s(dt) + p.stopping_time_s / 2.0)


def allowed_speed(separation: float, p: SeparationParams, dt: float) -> float:
    """Largest tool speed at ``separation`` m so that ``S_p <= separation``, m/s (0: hold).

    Times ``speed_margin``: the speed the care stage lets the commanded target move at.
    """
    t_r, t_s = p.reaction_s(dt), p.stopping_time_s
    brake = t_r + t_s / 2.0
    if not separation > p.min_separation(dt):
        return 0.0
    v_ssm = (separation - p.min_separation(dt)) / brake
    s_h = p.human_speed * (t_r + t_s)
    slack = (separation - p.reduced_zone_m - p.person_uncertainty_m - p.robot_uncertainty_m
             - s_h - p.reduced_speed * t_s / 2.0)
    v_zone = max(p.reduced_speed, slack / brake)
    return float(p.speed_margin * min(p.max_speed, v_ssm, v_zone))


def scale_step(q: np.ndarray, q_prev: np.ndarray, fk: Callable[[np.ndarray], np.ndarray],
               max_travel: float, iters: int = 12,
               p_prev: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Shorten the step ``q_prev -> q`` so the tool moves at most ``max_travel`` m.

    The result is ``q_prev + s (q - q_prev)`` with ``s`` in [0, 1]: the same direction in
    joint space, only shorter, so the commanded path is kept.

    Args:
        q: Wanted target, rad. Shape: (n,).
        q_prev: Last sent target, rad. Shape: (n,).
        fk: Tool position of a joint vector, m. Shape: (n,) -> (3,).
        max_travel: Largest tool displacement this tick, m (``v_allow * dt``).
        iters: Refinements of ``s`` (each rescales by the measured ratio, then 0.98).
        p_prev: ``fk(q_prev)`` when already known, m. Shape: (3,).

    Returns:
        The target and ``s`` (1.0: unchanged).
    """
    if max_travel <= 0.0:
        return q_prev.copy(), 0.0
    p0 = fk(q_prev) if p_prev is None else p_prev
    step = q - q_prev
    s = 1.0
    for _ in range(iters):
        travel = float(np.linalg.norm(fk(q_prev + s * step) - p0))
        if travel <= max_travel:
            return (q if s == 1.0 else q_prev + s * step), s
        s *= 0.98 * max_travel / travel
    return q_prev.copy(), 0.0


def bound_lead(q: np.ndarray, q_prev: np.ndarray, fk: Callable[[np.ndarray], np.ndarray],
               p_meas: np.ndarray, max_lead: float, iters: int = 12,
               p_prev: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Shorten the step ``q_prev -> q`` so the tool point does not run ahead of ``p_meas``.

    The lead ``||fk(x) - p_meas||`` of the result is at most ``max(max_lead, lead(q_prev))``
    m.  Same direction as the step, only shorter (``q_prev + s (q - q_prev)``, ``s`` in [0, 1],
    found by bisection: ``s = 0`` always satisfies the bound), so the path is kept.

    Args:
        q: Wanted target, rad. Shape: (n,).
        q_prev: Last sent target, rad. Shape: (n,).
        fk: Tool position of a joint vector, m. Shape: (n,) -> (3,).
        p_meas: The measured tool position, m. Shape: (3,).
        max_lead: Largest lead the step may grow to, m.
        iters: Bisection steps (the step's length is resolved to 2^-iters).
        p_prev: ``fk(q_prev)`` when already known, m. Shape: (3,).

    Returns:
        The target and ``s`` (1.0: unchanged).
    """
    p0 = fk(q_prev) if p_prev is None else p_prev
    limit = max(max_lead, float(np.linalg.norm(p0 - p_meas)))
    if float(np.linalg.norm(fk(q) - p_meas)) <= limit:
        return q, 1.0
    step, lo, hi = q - q_prev, 0.0, 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if float(np.linalg.norm(fk(q_prev + mid * step) - p_meas)) <= limit:
            lo = mid
        else:
            hi = mid
    return (q_prev + lo * step if lo > 0.0 else q_prev.copy()), lo
