"""One observation normalizer, converted to and from each trainer's form here and nowhere else.

``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` over the policy observation.  SB3's
``VecNormalize`` stores exactly that; rsl_rl's ``(obs - mean) / (std + eps)`` unclipped is
:meth:`Normalizer.from_std`; a run directory stores :meth:`Normalizer.to_arrays`.  The policy
file folds it into one affine map (:mod:`karakuri.policies.export_graph`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


def _vector(value: Any, size: int, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(size, float(arr))
    if arr.shape != (size,):
        raise ValueError(f"{what} has shape {arr.shape}, expected a scalar or ({size},)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} is not finite: {arr}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Normalizer:
    """Frozen running statistics of the policy observation, SB3 ``VecNormalize`` style.

    Attributes:
        mean: Mean of each observation entry, shape (obs_dim,).
        var: Variance of each entry, shape (obs_dim,), >= 0.
        eps: Added to ``var`` under the square root.
        clip: Bound of the normalized observation, or None for no clipping.
    """

    mean: np.ndarray
    var: np.ndarray
    eps: float = 1e-8
    clip: float | None = 10.0

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        object.__setattr__(self, "mean", _vector(mean, mean.size, "normalizer mean"))
        object.__setattr__(self, "var", _vector(self.var, mean.size, "normalizer var"))
        object.__setattr__(self, "eps", float(self.eps))
        if np.any(self.var < 0) or self.eps < 0 or not np.all(self.var + self.eps > 0):
            raise ValueError("normalizer: var + eps must be > 0 everywhere")
        if self.clip is not None:
            if not float(self.clip) > 0:
                raise ValueError(f"normalizer: clip must be > 0 or None, got {self.clip}")
            object.__setattr__(self, "clip", float(self.clip))

    @property
    def size(self) -> int:
        """Observation entries, obs_dim."""
        return int(self.mean.size)

    @property
    def std(self) -> np.ndarray:
        """``sqrt(var + eps)``, shape (obs_dim,)."""
        return np.sqrt(self.var + self.eps)

    def module(self) -> NormalizeObs:
        """The torch form: (B, obs_dim) -> (B, obs_dim)."""
        return NormalizeObs(self)

    # -- each trainer's form, in one place --------------------------------------------------
    @classmethod
    def from_vecnormalize(cls, venv: Any) -> Normalizer:
        """The statistics of an SB3 ``VecNormalize`` (duck-typed; SB3 is not imported).

        Raises:
            ValueError: the wrapper does not normalize observations, or they are a dict.
        """
        if not getattr(venv, "norm_obs", True):
            raise ValueError("VecNormalize has norm_obs=False: pass normalizer=None instead")
        rms = venv.obs_rms
        if isinstance(rms, dict):
            raise ValueError("VecNormalize over dict observations: flatten them into one Box")
        return cls(mean=rms.mean, var=rms.var, eps=float(venv.epsilon),
                   clip=float(venv.clip_obs))

    @classmethod
    def from_std(cls, mean: Any, std: Any, eps: float = 0.0) -> Normalizer:
        """rsl_rl's ``(obs - mean) / (std + eps)``, unclipped: ``var = (std + eps)**2``."""
        s = np.asarray(std, dtype=np.float64) + eps
        return cls(mean=mean, var=s**2, eps=0.0, clip=None)

    def to_arrays(self, prefix: str = "obs_") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``({prefix}mean, {prefix}var)`` float64 arrays and ``{norm_eps, norm_clip}`` scalars.

        The run directory's plain-data form (npz arrays and json scalars; no pickle).
        """
        arrays = {f"{prefix}mean": self.mean.copy(), f"{prefix}var": self.var.copy()}
        return arrays, {"norm_eps": self.eps, "norm_clip": self.clip}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Any],
                    prefix: str = "obs_") -> Normalizer:
        """Inverse of :meth:`to_arrays`."""
        clip = scalars.get("norm_clip")
        return cls(mean=np.asarray(arrays[f"{prefix}mean"], np.float64),
                   var=np.asarray(arrays[f"{prefix}var"], np.float64),
                   eps=float(scalars["norm_eps"]), clip=None if clip is None else float(clip))


class NormalizeObs(nn.Module):
    """Torch form of a :class:`Normalizer`: (B, obs_dim) -> (B, obs_dim), float32."""

    def __init__(self, norm: Normalizer) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(norm.mean, dtype=torch.float32))
        self.register_buffer("inv_std", torch.tensor(1.0 / norm.std, dtype=torch.float32))
        self.clip = norm.clip

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Shape: (B, obs_dim) -> (B, obs_dim)."""
        x = (obs - self.mean) * self.inv_std
        return x if self.clip is None else torch.clamp(x, -self.clip, self.clip)
