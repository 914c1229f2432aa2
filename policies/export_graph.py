"""The torch graph a policy file holds: raw signals → observation → normalizer → actor → command.

:func:`build_policy_module` composes a declarative description (:class:`ObsTerm`,
:class:`Normalizer`, :class:`ActionMap`) with any deterministic actor into one
:class:`PolicyModule`.  The same module is evaluated in sim and exported to ONNX by
:func:`karakuri.policies.export.export_policy`, so the robot builds its observation exactly
as training did.  Needs torch; the edge runtime never imports this file.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from karakuri.robot.spec import RobotSpec

#: Units of the signals Karakuri knows; other signals say their unit in :class:`ObsTerm`.
SIGNAL_UNITS: dict[str, str] = {
    "joint_pos": "rad",
    "joint_vel": "rad/s",
    "joint_effort": "N·m",
    "command": "m",
    "last_action": "1",
    "object_pose": "m,m,m,rad",  # pick_place: box x, y, z (world) and yaw folded to a quarter turn
    "hand_pos": "m",  # handover: the handover point above the user's palm (world)
}

#: Output names of every policy graph: the command, and the clipped raw action.
OUTPUT_NAMES: tuple[str, str] = ("joint_target", "action")

ActionKind = Literal["joint_position", "joint_position_delta"]
ACTION_KINDS: tuple[str, ...] = ("joint_position", "joint_position_delta")


def _vector(value: float | Sequence[float] | np.ndarray, size: int, what: str) -> np.ndarray:
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
class ObsTerm:
    """One observation term: ``(signal - offset) * scale``.

    Attributes:
        name: Term name, e.g. ``"joint_pos_rel"``.
        signal: Input signal it reads, e.g. ``"joint_pos"`` (B, size).
        size: Size of the signal's last dimension.
        scale: Scalar or (size,) factor applied after the offset.
        offset: Scalar or (size,) subtracted first, e.g. the default pose, rad.
        available_on_robot: False for privileged sim-only state; such a term cannot be exported.
        unit: Unit of the signal; empty means the known unit (:data:`SIGNAL_UNITS`) or "".
    """

    name: str
    signal: str
    size: int
    scale: float | Sequence[float] | np.ndarray = 1.0
    offset: float | Sequence[float] | np.ndarray = 0.0
    available_on_robot: bool = True
    unit: str = ""

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"obs term {self.name!r}: size must be > 0, got {self.size}")
        object.__setattr__(self, "scale", _vector(self.scale, self.size, f"{self.name}.scale"))
        object.__setattr__(self, "offset", _vector(self.offset, self.size, f"{self.name}.offset"))
        if not self.unit:
            object.__setattr__(self, "unit", SIGNAL_UNITS.get(self.signal, ""))


@dataclass(frozen=True, eq=False)
class Normalizer:
    """Frozen running statistics, SB3 ``VecNormalize`` style.

    ``clip((obs - mean) / sqrt(var + eps), -clip, +clip)``.  For rsl_rl's
    ``(obs - mean) / (std + eps)`` pass ``var=(std + eps) ** 2, eps=0``.

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
        if np.any(self.var < 0) or self.eps < 0 or not np.all(self.var + self.eps > 0):
            raise ValueError("normalizer: var + eps must be > 0 everywhere")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"normalizer: clip must be > 0 or None, got {self.clip}")

    @property
    def std(self) -> np.ndarray:
        """``sqrt(var + eps)``, shape (obs_dim,)."""
        return np.sqrt(self.var + self.eps)

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


@dataclass(frozen=True, eq=False)
class ActionMap:
    """How the actor's raw action (B, a) becomes a joint command (B, n).

    The action is clipped to ``clip_action``; then ``joint_position``:
    ``target = default_pose + scale * a`` and ``joint_position_delta``:
    ``target = joint_pos + scale * a`` on the driven joints; the other joints get ``hold``;
    finally ``target`` is clipped to ``[lower, upper]``.

    Attributes:
        kind: ``"joint_position"`` or ``"joint_position_delta"``.
        scale: Scalar or (a,) factor, rad per unit action.
        lower: Lower joint limits, rad (m), shape (n,).
        upper: Upper joint limits, rad (m), shape (n,).
        default_pose: Home pose, rad (m), shape (n,).
        action_joints: Indices of the driven joints, one per action entry; None: all, in order.
        clip_action: Bounds of the raw action (e.g. the action space's), or None.
        hold: Command of the joints the action does not drive, shape (n,); None: default_pose.
    """

    kind: ActionKind
    scale: float | Sequence[float] | np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    default_pose: np.ndarray
    action_joints: tuple[int, ...] | None = None
    clip_action: tuple[float, float] | None = None
    hold: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"action kind {self.kind!r} is not one of {list(ACTION_KINDS)}")
        n = np.asarray(self.lower).size
        set_ = object.__setattr__
        for key in ("lower", "upper", "default_pose"):
            set_(self, key, _vector(getattr(self, key), n, f"action map {key}"))
        set_(self, "hold", _vector(self.default_pose if self.hold is None else self.hold, n,
                                   "action map hold"))
        if np.any(self.lower >= self.upper):
            raise ValueError(f"action map: lower >= upper at joints "
                             f"{np.flatnonzero(self.lower >= self.upper).tolist()}")
        joints = tuple(range(n)) if self.action_joints is None else tuple(
            int(i) for i in self.action_joints)
        if not joints or len(set(joints)) != len(joints) or not all(0 <= i < n for i in joints):
            raise ValueError(f"action map: action_joints {joints} must be distinct indices "
                             f"in [0, {n})")
        set_(self, "action_joints", joints)
        set_(self, "scale", _vector(self.scale, len(joints), "action map scale"))
        if self.clip_action is not None:
            lo, hi = (float(v) for v in self.clip_action)
            if not lo < hi:
                raise ValueError(f"action map: clip_action {self.clip_action} needs lo < hi")
            set_(self, "clip_action", (lo, hi))

    @property
    def n_joints(self) -> int:
        """Joints in the command, n."""
        return self.lower.size

    @property
    def action_dim(self) -> int:
        """Entries of the raw action, a."""
        return len(self.action_joints or ())

    @classmethod
    def for_robot(cls, spec: RobotSpec, kind: ActionKind, scale: float | Sequence[float],
                  joints: Sequence[str] | None = None,
                  clip_action: tuple[float, float] | None = None,
                  hold: Mapping[str, float] | None = None) -> ActionMap:
        """An action map over ``spec``'s limits and default pose, joints given by name.

        Args:
            spec: The robot.
            kind: ``"joint_position"`` or ``"joint_position_delta"``.
            scale: Scalar or one value per driven joint, rad per unit action.
            joints: Driven joints by name, in action order; None: all of ``spec.joint_names``.
            clip_action: Bounds of the raw action, or None.
            hold: Commands of some undriven joints by name; the rest hold the default pose.
        """
        idx = None if joints is None else tuple(spec.index(j) for j in joints)
        held = spec.default_pose.copy()
        for j, v in (hold or {}).items():
            held[spec.index(j)] = v
        return cls(kind=kind, scale=scale, lower=spec.lower, upper=spec.upper,
                   default_pose=spec.default_pose, action_joints=idx,
                   clip_action=clip_action, hold=held)


def _f32(x: np.ndarray | float, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)


class PolicyModule(nn.Module):
    """Raw signals → ``(joint_target (B, n), action (B, a))``; the graph of a policy file.

    ``forward`` takes one float32 tensor per name of ``input_names``, in that order, each
    (B, ``signal_sizes[name]``).  Build it with :func:`build_policy_module`.
    """

    def __init__(self, obs_terms: Sequence[ObsTerm], normalizer: Normalizer | None,
                 actor: nn.Module, action_map: ActionMap) -> None:
        super().__init__()
        self.obs_terms = tuple(obs_terms)
        self.action_map = action_map
        if normalizer is not None and not isinstance(normalizer, Normalizer):
            normalizer = Normalizer(mean=normalizer.mean, var=normalizer.var,
                                    eps=normalizer.eps, clip=normalizer.clip)
        self.signal_sizes, self.signal_units = _signals(self.obs_terms, action_map)
        self.input_names: tuple[str, ...] = tuple(self.signal_sizes)
        self.obs_dim = sum(t.size for t in self.obs_terms)
        self.actor = copy.deepcopy(actor)
        device = next(iter(self.actor.parameters()), torch.zeros(())).device
        self._sources = [self.input_names.index(t.signal) for t in self.obs_terms]
        offset = np.concatenate([t.offset for t in self.obs_terms])
        scale = np.concatenate([t.scale for t in self.obs_terms])
        self.register_buffer("obs_offset", _f32(offset, device))
        self.register_buffer("obs_scale", _f32(scale, device))
        # Term scaling and the normalizer fold into one affine map of the raw signals,
        # computed in float64: a short graph (each elementwise node costs ~0.6 µs per tick).
        gain, bias = scale, -offset * scale
        self.norm_clip = None if normalizer is None else normalizer.clip
        if normalizer is not None:
            if normalizer.mean.size != self.obs_dim:
                raise ValueError(f"normalizer has {normalizer.mean.size} entries, the "
                                 f"observation has {self.obs_dim} ({self.term_layout()})")
            gain, bias = gain / normalizer.std, (bias - normalizer.mean) / normalizer.std
        self.has_gain, self.has_bias = bool(np.any(gain != 1)), bool(np.any(bias != 0))
        self.register_buffer("obs_gain", _f32(gain, device))
        self.register_buffer("obs_bias", _f32(bias, device))
        self._init_action(action_map, device)
        self.eval()
        self._check_actor()

    def _init_action(self, am: ActionMap, device: torch.device) -> None:
        n, idx = am.n_joints, list(am.action_joints or ())
        driven = np.zeros(n)
        driven[idx] = 1.0
        self.all_driven = idx == list(range(n))
        select = np.zeros((len(idx), n))  # (a, n): action entry i -> joint idx[i], scaled
        select[np.arange(len(idx)), idx] = am.scale
        base = (1 - driven) * am.hold
        if am.kind == "joint_position":
            base = base + driven * am.default_pose
        self.register_buffer("act_scale", _f32(am.scale, device))
        self.register_buffer("act_select", _f32(select, device))
        self.register_buffer("act_driven", _f32(driven, device))
        self.register_buffer("act_base", _f32(base, device))
        self.register_buffer("act_lower", _f32(am.lower, device))
        self.register_buffer("act_upper", _f32(am.upper, device))
        self.delta = am.kind == "joint_position_delta"
        self.clip_action = am.clip_action
        self._joint_pos = self.input_names.index("joint_pos") if self.delta else -1

    def _check_actor(self) -> None:
        x = torch.zeros(2, self.obs_dim, device=self.act_base.device)
        with torch.no_grad():
            y = self.actor(x)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (2, self.action_map.action_dim):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(
                f"actor maps obs (B, {self.obs_dim}) to {got}; the action map expects "
                f"(B, {self.action_map.action_dim}) (one entry per driven joint)"
            )

    @property
    def n_joints(self) -> int:
        """Joints in ``joint_target``, n."""
        return self.action_map.n_joints

    @property
    def action_dim(self) -> int:
        """Entries of ``action``, a."""
        return self.action_map.action_dim

    def term_layout(self) -> str:
        """``"name[start:stop] ..."``: where each term sits in the observation."""
        out, start = [], 0
        for t in self.obs_terms:
            out.append(f"{t.name}[{start}:{start + t.size}]")
            start += t.size
        return " ".join(out)

    def _concat(self, signals: Sequence[torch.Tensor]) -> torch.Tensor:
        parts = [signals[i] for i in self._sources]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def observation(self, *signals: torch.Tensor) -> torch.Tensor:
        """The observation before normalization, ``(signal - offset) * scale`` per term.

        Shape: (B, obs_dim).  (``forward`` computes the same through one folded affine map.)
        """
        return (self._concat(signals) - self.obs_offset) * self.obs_scale

    def normalized_observation(self, *signals: torch.Tensor) -> torch.Tensor:
        """What the actor reads: the observation, normalized and clipped. Shape: (B, obs_dim)."""
        obs = self._concat(signals)
        if self.has_gain:
            obs = obs * self.obs_gain
        if self.has_bias:
            obs = obs + self.obs_bias
        if self.norm_clip is not None:
            obs = obs.clamp(-self.norm_clip, self.norm_clip)
        return obs

    def forward(self, *signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signals in ``input_names`` order → ``(joint_target (B, n) rad, action (B, a))``."""
        obs = self.normalized_observation(*signals)
        action = self.actor(obs)
        if self.clip_action is not None:
            action = action.clamp(self.clip_action[0], self.clip_action[1])
        # Not all driven: one-hot rows times the scale (exact; one node instead of two).
        delta = action * self.act_scale if self.all_driven else action @ self.act_select
        if not self.delta:
            target = self.act_base + delta
        elif self.all_driven:
            target = signals[self._joint_pos] + delta
        else:
            target = signals[self._joint_pos] * self.act_driven + self.act_base + delta
        target = torch.minimum(torch.maximum(target, self.act_lower), self.act_upper)
        return target, action

    def forward_signals(self, signals: Mapping[str, torch.Tensor]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with the signals by name (extra names are ignored)."""
        missing = [n for n in self.input_names if n not in signals]
        if missing:
            raise KeyError(f"missing signals {missing}; the policy reads {list(self.input_names)}")
        return self(*(signals[n] for n in self.input_names))

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        """Zero signals of batch ``batch``, in ``input_names`` order, on the module's device."""
        dev = self.act_base.device
        return tuple(torch.zeros(batch, s, device=dev) for s in self.signal_sizes.values())


def _signals(terms: Sequence[ObsTerm], am: ActionMap) -> tuple[dict[str, int], dict[str, str]]:
    if not terms:
        raise ValueError("no observation terms")
    sizes: dict[str, int] = {}
    units: dict[str, str] = {}
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate observation term names {names}")
    need = list(terms)
    for t in need:
        if not t.available_on_robot:
            raise ValueError(
                f"obs term {t.name!r} (signal {t.signal!r}) is privileged "
                f"(available_on_robot=False); an exported actor may only read robot signals"
            )
        if sizes.setdefault(t.signal, t.size) != t.size:
            raise ValueError(f"signal {t.signal!r} is read with sizes {sizes[t.signal]} and "
                             f"{t.size} (term {t.name!r})")
        units.setdefault(t.signal, t.unit)
    if am.kind == "joint_position_delta" and sizes.setdefault("joint_pos", am.n_joints) \
            != am.n_joints:
        raise ValueError(f"joint_position_delta needs joint_pos of size {am.n_joints}, "
                         f"the terms read {sizes['joint_pos']}")
    units.setdefault("joint_pos", SIGNAL_UNITS["joint_pos"])
    if sizes.get("last_action", am.action_dim) != am.action_dim:
        raise ValueError(f"last_action has size {sizes['last_action']}, the action "
                         f"{am.action_dim}: last_action is fed back from the action output")
    return sizes, {k: units[k] for k in sizes}


def build_policy_module(obs_terms: Sequence[ObsTerm], normalizer: Normalizer | None,
                        actor: nn.Module, action_map: ActionMap) -> PolicyModule:
    """Compose the path from raw signals to joint command into one module.

    Args:
        obs_terms: Terms in observation order; their concatenation is the actor's input.
        normalizer: Observation statistics (a :class:`Normalizer`, or any object with ``mean``,
            ``var``, ``eps`` and ``clip``), or None when the actor reads raw observations.
        actor: Deterministic actor, (B, obs_dim) → (B, a); copied (a snapshot).
        action_map: How the action becomes a joint command.

    Returns:
        A :class:`PolicyModule` in eval mode on the actor's device.

    Raises:
        ValueError: sizes disagree (terms, normalizer, actor output, action map), or a term
            is privileged; the message names the part.
    """
    return PolicyModule(obs_terms, normalizer, actor, action_map)
