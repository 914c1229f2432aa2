"""The deploy safety filter's target limits, batched in torch, for training under them.

On the robot every target passes :class:`~karakuri.robot.safety.SafetyFilter`: clipped to the
joint limits, moved at most ``velocity_limit * dt`` from the last target, its velocity changed
by at most ``accel_limit * dt`` (and capped at ``sqrt(2 accel |step|)`` so it slows before it
arrives), clipped again.  A task whose motions meet those limits (pick_place: a full action
asks for 5 rad/s of target motion, the filter allows pi rad/s and 15 rad/s^2) sets
``Task.deploy_limits`` and :class:`~karakuri.sim.env.BatchedEnv` applies the same stages to
the simulated targets, so what is trained and evaluated is what the robot will do.  The
numpy stages in :mod:`karakuri.robot.safety` are the reference; a test keeps the two equal.
"""

from __future__ import annotations

import torch


def limit_targets(q: torch.Tensor, q_prev: torch.Tensor, v_prev: torch.Tensor,
                  max_step: torch.Tensor, accel: torch.Tensor, lower: torch.Tensor,
                  upper: torch.Tensor, dt: float) -> torch.Tensor:
    """The filter's clip, velocity, acceleration and clip stages, per world.

    Args:
        q: Wanted targets, rad (m for a gripper). Shape: (N, n).
        q_prev: The last targets sent. Shape: (N, n).
        v_prev: Their velocity ``(q_prev - q_prev_prev) / dt``. Shape: (N, n).
        max_step: ``velocity_limit * dt``. Shape: (n,).
        accel: Acceleration limits, rad/s². Shape: (n,).
        lower: Lower joint limits. Shape: (n,).
        upper: Upper joint limits. Shape: (n,).
        dt: Control period, s.

    Returns:
        The limited targets. Shape: (N, n).
    """
    q = torch.minimum(torch.maximum(q, lower), upper)
    q = q_prev + torch.minimum(torch.maximum(q - q_prev, -max_step), max_step)
    d = q - q_prev
    dist = d.abs()
    speed = torch.minimum(dist / dt, torch.sqrt(2.0 * accel * dist))
    dv = accel * dt
    v = torch.minimum(torch.maximum(torch.copysign(speed, d), v_prev - dv), v_prev + dv)
    return torch.minimum(torch.maximum(q_prev + v * dt, lower), upper)
