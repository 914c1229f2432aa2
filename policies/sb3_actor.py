"""The deterministic actor and normalizer of an SB3 run, as plain torch modules and plain data.

At train time :func:`save_actor` writes them beside SB3's own files as ``actor.npz`` (numpy
arrays) and ``actor.json`` (the layer list and normalizer constants).  The sim evaluation and
the ONNX export read only those (:func:`load_actor`), so a run directory is data: nothing in
it is unpickled or executed.  Only ``karakuri train --resume`` reads SB3's pickled
``model.zip`` and ``vecnormalize.pkl``, and so trusts the directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from karakuri.policies.normalizer import NormalizeObs, Normalizer
from karakuri.policies.run_dir import RunDirError, load_config

__all__ = ["NormalizeObs", "Normalizer", "load_actor", "save_actor", "write_actor"]


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


#: Layers a saved actor may contain, in :func:`save_actor`'s ``ops`` list.
_ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}
ACTOR_FORMAT = 1


class Clamp(nn.Module):
    """``clamp(x, -1, 1)``: the action bound of a PPO actor's mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: (B, a) -> (B, a)."""
        return torch.clamp(x, -1.0, 1.0)


def _ops_of(actor: nn.Module) -> list[tuple[str, nn.Module]]:
    """The actor's layers in order, each named: ``linear``, an activation, ``clamp``."""
    mods = [m for m in actor.modules() if not list(m.children())]
    names = {cls: name for name, cls in _ACTIVATIONS.items()}
    out = []
    for m in mods:
        if isinstance(m, nn.Linear):
            out.append(("linear", m))
        elif isinstance(m, Clamp):
            out.append(("clamp", m))
        elif type(m) in names:
            out.append((names[type(m)], m))
        else:
            raise TypeError(f"cannot save actor layer {type(m).__name__}")
    if isinstance(actor, _PPOActor):
        out.append(("clamp", Clamp()))
    return out


def save_actor(model: Any, obs_rms: Any, epsilon: float, clip_obs: float, obs_size: int,
               path: str | Path, steps: int) -> Path:
    """Write an SB3 model's deterministic actor and normalizer as plain data (no pickle).

    ``<path>.npz`` holds the arrays (numpy, read back with ``allow_pickle=False``):
    ``op<i>.weight`` (out, in) and ``op<i>.bias`` (out,) of each linear layer, float32, and the
    policy observation's ``obs_mean`` and ``obs_var`` (obs_size,), float64.  ``<path>.json``
    holds the layer list and the normalizer's ``eps`` and ``clip``.

    Args:
        model: A PPO (asymmetric) or SAC model.
        obs_rms: VecNormalize's ``obs_rms`` (``mean``, ``var`` over the full observation).
        epsilon: VecNormalize's ``epsilon``.
        clip_obs: VecNormalize's ``clip_obs``.
        obs_size: Size of the policy observation (the robot signals), the first columns.
        path: Base path, without suffix (e.g. ``RUN_DIR/actor``).
        steps: Environment steps the model was trained for (informative).

    Returns:
        The ``.npz`` path.
    """
    norm = Normalizer(mean=np.asarray(obs_rms.mean, np.float64)[:obs_size],
                      var=np.asarray(obs_rms.var, np.float64)[:obs_size], eps=epsilon,
                      clip=clip_obs)
    return write_actor(actor_module(model, obs_size), norm, path, steps)


def write_actor(actor: nn.Module, norm: Normalizer, path: str | Path, steps: int) -> Path:
    """Write an actor's layers and its normalizer as ``path``.npz/.json (see :func:`save_actor`).

    Any trainer whose deterministic actor is a chain of linear layers and activations (and
    an optional final ``clamp``) writes this format, and :func:`load_actor` reads it back.

    Args:
        actor: Normalized observation -> action: its leaf modules in order are ``Linear``,
            an activation (``ELU``, ``ReLU``, ``Tanh``) or :class:`Clamp`.
        norm: The policy-observation normalizer (its size is the actor's input).
        path: Base path, without suffix.
        steps: Environment steps trained (informative).

    Returns:
        The ``.npz`` path.
    """
    path = Path(path)
    ops = _ops_of(actor)
    arrays, scalars = norm.to_arrays()
    for i, (kind, m) in enumerate(ops):
        if kind == "linear":
            arrays[f"op{i}.weight"] = m.weight.detach().cpu().float().numpy().copy()
            arrays[f"op{i}.bias"] = m.bias.detach().cpu().float().numpy().copy()
    desc = {"format": ACTOR_FORMAT, "ops": [k for k, _ in ops], "obs_size": norm.size,
            **scalars, "steps": int(steps)}
    _write_atomic(path.with_suffix(".npz"), lambda f: np.savez(f, **arrays))
    _write_atomic(path.with_suffix(".json"), lambda f: f.write(json.dumps(desc, indent=2).encode()))
    return path.with_suffix(".npz")


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def latest_actor(run_dir: str | Path) -> Path:
    """The newest saved actor of an SB3 run (``actor.npz``, else the last checkpoint's).

    Raises:
        RunDirError: the run has none (e.g. trained before actors were saved as data).
    """
    run_dir = Path(run_dir)
    if (run_dir / "actor.npz").exists():
        return run_dir / "actor.npz"
    ckpts = sorted((run_dir / "checkpoints").glob("actor_*_steps.npz"),
                   key=lambda p: int(p.stem.split("_")[1]))
    if ckpts:
        return ckpts[-1]
    task = load_config(run_dir).task
    raise RunDirError(
        f"{run_dir} has no actor.npz, the plain weights eval and export read (they never "
        f"unpickle model.zip or vecnormalize.pkl); if you trust this run directory, write it "
        f"with: karakuri train {task} --resume {run_dir} --total-steps 1 (resume unpickles "
        f"the run's SB3 files and trains no further)")


def load_actor(run_dir: str | Path) -> tuple[Normalizer, nn.Module]:
    """The policy-observation normalizer and deterministic actor of an SB3 run, from plain data.

    Reads only ``actor.npz`` (``allow_pickle=False``) and ``actor.json``; nothing in the run
    directory is executed.

    Returns:
        The normalizer (shapes (obs_size,)) and the actor, normalized policy observation
        (B, obs_size) -> action (B, a) in [-1, 1].

    Raises:
        RunDirError: the files are missing or malformed (named).
    """
    npz = latest_actor(run_dir)
    desc_path = npz.with_suffix(".json")
    try:
        desc = json.loads(desc_path.read_text())
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError as e:
        raise RunDirError(f"{desc_path} is missing (it goes with {npz.name})") from e
    except (ValueError, OSError) as e:  # not JSON, not an npz, or an object array
        raise RunDirError(f"{npz} or {desc_path.name} is not a saved actor: {e}") from e
    try:
        return _build_actor(desc, arrays)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise RunDirError(f"{npz}: malformed saved actor: {e!r}") from e


def _build_actor(desc: dict, arrays: dict[str, np.ndarray]) -> tuple[Normalizer, nn.Module]:
    if desc.get("format") != ACTOR_FORMAT:
        raise ValueError(f"format {desc.get('format')!r}, this code reads {ACTOR_FORMAT}")
    layers: list[nn.Module] = []
    for i, kind in enumerate(desc["ops"]):
        if kind == "linear":
            w = torch.from_numpy(np.asarray(arrays[f"op{i}.weight"], np.float32))
            b = torch.from_numpy(np.asarray(arrays[f"op{i}.bias"], np.float32))
            lin = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(w)
                lin.bias.copy_(b)
            layers.append(lin)
        elif kind == "clamp":
            layers.append(Clamp())
        elif kind in _ACTIVATIONS:
            layers.append(_ACTIVATIONS[kind]())
        else:
            raise ValueError(f"unknown layer {kind!r}; valid: linear, clamp, {list(_ACTIVATIONS)}")
    k = int(desc["obs_size"])
    mean = np.asarray(arrays["obs_mean"], np.float64)
    var = np.asarray(arrays["obs_var"], np.float64)
    first = next(m for m in layers if isinstance(m, nn.Linear))
    if mean.shape != (k,) or var.shape != (k,) or first.in_features != k:
        raise ValueError(f"obs_size {k} but obs_mean {mean.shape}, obs_var {var.shape}, first "
                         f"layer reads {first.in_features}")
    norm = Normalizer.from_arrays(arrays, desc)
    return norm, nn.Sequential(*layers).eval()


def actor_module(model: Any, obs_size: int) -> nn.Module:
    """Deterministic actor: normalized policy observation (B, obs_size) -> action (B, a)."""
    from stable_baselines3 import PPO

    return _PPOActor(model, obs_size) if isinstance(model, PPO) else _SACActor(model)
