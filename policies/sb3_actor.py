"""The deterministic actor and normalizer of an SB3 run, as plain torch modules.

Both the sim evaluation and the ONNX export go through :func:`policy_pipeline`, so the
exported file computes exactly what was evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Normalizer:
    """``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` over the policy observation.

    Attributes:
        mean: Shape: (obs_size,).
        var: Shape: (obs_size,).
        eps: Added to the variance.
        clip: Bound of the normalized observation.
    """

    mean: np.ndarray
    var: np.ndarray
    eps: float
    clip: float


class NormalizeObs(nn.Module):
    """Torch form of :class:`Normalizer`."""

    def __init__(self, norm: Normalizer) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(norm.mean, dtype=torch.float32))
        self.register_buffer(
            "inv_std", torch.as_tensor(1.0 / np.sqrt(norm.var + norm.eps), dtype=torch.float32)
        )
        self.clip = float(norm.clip)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Shape: (B, obs_size) -> (B, obs_size)."""
        return torch.clamp((obs - self.mean) * self.inv_std, -self.clip, self.clip)


class _PPOActor(nn.Module):
    def __init__(self, model: Any, obs_size: int) -> None:
        super().__init__()
        pol = model.policy
        layers = [m for m in pol.mlp_extractor.policy_net]
        first = layers[0]
        if not isinstance(first, nn.Linear):
            raise TypeError("expected the PPO actor to start with a Linear layer")
        # The masked privileged inputs never reach the actor: keep only the robot columns.
        sliced = nn.Linear(obs_size, first.out_features)
        with torch.no_grad():
            sliced.weight.copy_(first.weight[:, :obs_size])
            sliced.bias.copy_(first.bias)
        self.net = nn.Sequential(sliced, *layers[1:], pol.action_net)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.net(obs), -1.0, 1.0)


class _SACActor(nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        actor = model.policy.actor
        self.net = nn.Sequential(actor.latent_pi, actor.mu, nn.Tanh())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


def load_sb3(run_dir: str | Path) -> tuple[Any, Normalizer, Any]:
    """(SB3 model, the policy-observation normalizer, the TrainConfig) of a run."""
    import pickle

    from karakuri.policies.sb3_trainer import ALGOS, latest_checkpoint, load_config

    cfg = load_config(run_dir)
    model_path, norm_path = latest_checkpoint(run_dir)
    model = ALGOS[cfg.algo].load(model_path, device="cpu")
    with open(norm_path, "rb") as f:
        vec = pickle.load(f)
    return (
        model,
        Normalizer(
            np.asarray(vec.obs_rms.mean),
            np.asarray(vec.obs_rms.var),
            float(vec.epsilon),
            float(vec.clip_obs),
        ),
        cfg,
    )


def actor_module(model: Any, obs_size: int) -> nn.Module:
    """Deterministic actor: normalized policy observation (B, obs_size) -> action (B, a)."""
    from stable_baselines3 import PPO

    return _PPOActor(model, obs_size) if isinstance(model, PPO) else _SACActor(model)
