"""Reward shaping helpers: small pure functions over batched tensors."""

from __future__ import annotations

import torch


def tolerance(
    x: torch.Tensor, margin: float, bounds: tuple[float, float] = (0.0, 0.0)
) -> torch.Tensor:
    """1 inside ``bounds``, decaying smoothly (Gaussian) to 0.1 at ``margin`` outside them.

    dm_control's ``tolerance`` with the Gaussian sigmoid: outside the bounds the value is
    ``exp(-(d / margin)^2 * ln 10)`` where ``d`` is the distance to the nearest bound.

    Args:
        x: Any shape.
        margin: Distance outside the bounds at which the reward is 0.1; must be > 0.
        bounds: (lower, upper) of the zone that gives 1.

    Returns:
        Same shape as ``x``, values in (0, 1].
    """
    lo, hi = bounds
    if lo > hi:
        raise ValueError(f"tolerance bounds {bounds}: lower > upper")
    if margin <= 0:
        raise ValueError(f"tolerance margin must be > 0, got {margin}")
    d = torch.where(x < lo, lo - x, torch.where(x > hi, x - hi, torch.zeros_like(x)))
    return torch.exp(-((d / margin) ** 2) * 2.302585092994046)
