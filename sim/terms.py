"""Observation terms and action maps: the one declaration simulation, evaluation and export share.

A task declares its observation as an ordered list of :class:`ObsTerm` and its actions as an
:class:`ActionMap`.  The torch modules built from them (:class:`karakuri.sim.observations.
ObsAssembler` and :class:`ActionHead`) are the code the env steps with and the code the
policy file holds (:mod:`karakuri.policies.export_graph` composes them), so a robot never
sees an observation built or an action mapped differently from training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

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

ACTION_KINDS: tuple[str, ...] = ("joint_position_delta", "joint_position")


def _floats(value: Any, what: str, size: int | None = None) -> float | tuple[float, ...]:
    """A finite scalar, or a tuple of finite floats (of ``size`` entries when given)."""
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} is not finite: {arr.tolist()}")
    if arr.ndim == 0:
        return float(arr)
    flat = tuple(float(v) for v in arr.reshape(-1))
    if arr.ndim != 1 or (size is not None and len(flat) not in (1, size)):
        raise ValueError(f"{what} has shape {arr.shape}, expected a scalar or ({size},)")
    return flat


def per_element(value: float | tuple[float, ...], size: int) -> np.ndarray:
    """A scalar or (size,) tuple as a (size,) float64 array."""
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (size,)).copy()


@dataclass(frozen=True)
class ObsTerm:
    """One observation term: ``(signals[signal] - offset) * scale``.

    Attributes:
        name: Term name, e.g. ``"joint_pos_rel"``.
        signal: The signal it reads, e.g. ``"joint_pos"``, shaped (B, size).
        size: Width of the signal; None lets the env fill it from the signal it reads.
        scale: Multiplier after the offset (a float or one value per element).
        offset: Subtracted first (a float or one value per element), e.g. the default pose.
        privileged: True for sim-only state (critic only, never in the policy file).
        noise: Std of Gaussian noise added in simulation when randomization is on (unit of
            the signal); the policy file never adds noise.
        unit: Unit of the signal; empty means the known unit (:data:`SIGNAL_UNITS`) or "".
    """

    name: str
    signal: str
    size: int | None = None
    scale: float | tuple[float, ...] = 1.0
    offset: float | tuple[float, ...] = 0.0
    privileged: bool = False
    noise: float = 0.0
    unit: str = ""

    def __post_init__(self) -> None:
        if self.size is not None and self.size <= 0:
            raise ValueError(f"obs term {self.name!r}: size must be > 0, got {self.size}")
        set_ = object.__setattr__
        set_(self, "scale", _floats(self.scale, f"obs term {self.name!r} scale", self.size))
        set_(self, "offset", _floats(self.offset, f"obs term {self.name!r} offset", self.size))
        if not self.unit:
            set_(self, "unit", SIGNAL_UNITS.get(self.signal, ""))

    def sized(self, size: int) -> ObsTerm:
        """This term reading a signal of width ``size``.

        Raises:
            ValueError: the term's size, scale or offset has another width (named).
        """
        if self.size not in (None, size):
            raise ValueError(f"obs term {self.name!r} is declared with size {self.size}; "
                             f"signal {self.signal!r} has width {size}")
        for what in ("scale", "offset"):
            v = getattr(self, what)
            if isinstance(v, tuple) and len(v) not in (1, size):
                raise ValueError(f"observation term {self.name!r}: {what} has {len(v)} values "
                                 f"for a signal of width {size}")
        return replace(self, size=size)


@dataclass(frozen=True)
class ActionMap:
    """How a raw action (B, a) becomes joint position targets (B, n).

    The action is clipped to ``clip_action``; then ``joint_position_delta``: target = measured
    position + scale * a, or ``joint_position``: target = default pose + scale * a, on the
    driven joints; the other joints get ``hold``; finally the target is clipped to
    ``[lower, upper]``.

    Attributes:
        kind: ``"joint_position_delta"`` or ``"joint_position"``.
        scale: Scalar or one value per driven joint, rad (or m) per unit of action.
        lower: Joint lower limits, rad. Shape: (n,).
        upper: Joint upper limits, rad. Shape: (n,).
        default_pose: Home pose, rad. Shape: (n,).
        joints: Indices of the driven joints, one per action entry; None: all, in order.
        clip_action: Bounds of the raw action (the action space), or None for no clip.
        hold: Targets of the undriven joints (all n given). None: the default pose.
    """

    kind: str
    scale: float | tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    default_pose: tuple[float, ...]
    joints: tuple[int, ...] | None = None
    clip_action: tuple[float, float] | None = (-1.0, 1.0)
    hold: tuple[float, ...] | None = None

    KINDS: ClassVar[tuple[str, ...]] = ACTION_KINDS

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"action kind {self.kind!r} is not one of {list(ACTION_KINDS)}")
        set_ = object.__setattr__
        n = len(_floats(self.lower, "action map lower"))  # type: ignore[arg-type]
        for key in ("lower", "upper", "default_pose"):
            v = per_element(_floats(getattr(self, key), f"action map {key}", n), n)
            set_(self, key, tuple(v.tolist()))
        hold = self.default_pose if self.hold is None else self.hold
        set_(self, "hold", tuple(per_element(_floats(hold, "action map hold", n), n).tolist()))
        bad = [i for i in range(n) if not self.lower[i] < self.upper[i]]
        if bad:
            raise ValueError(f"action map: lower >= upper at joints {bad}")
        joints = tuple(range(n)) if self.joints is None else tuple(int(i) for i in self.joints)
        if not joints or len(set(joints)) != len(joints) or not all(0 <= i < n for i in joints):
            raise ValueError(f"action map: joints {joints} must be distinct indices in [0, {n})")
        set_(self, "joints", joints)
        scale = _floats(self.scale, "action map scale")
        if isinstance(scale, tuple) and len(scale) not in (1, len(joints)):
            raise ValueError(f"{len(scale)} scales for {len(joints)} driven joints")
        set_(self, "scale", tuple(per_element(scale, len(joints)).tolist()))
        if self.clip_action is not None:
            lo, hi = (float(v) for v in self.clip_action)
            if not lo < hi or not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"action map: clip_action {self.clip_action} needs lo < hi")
            set_(self, "clip_action", (lo, hi))

    @property
    def size(self) -> int:
        """Action dimension, a."""
        return len(self.joints or ())

    @property
    def n_joints(self) -> int:
        """Joints in the target, n."""
        return len(self.lower)

    @classmethod
    def for_robot(cls, spec: Any, kind: str, scale: float | Sequence[float],
                  joints: Sequence[str] | None = None,
                  clip_action: tuple[float, float] | None = (-1.0, 1.0),
                  hold: Mapping[str, float] | None = None) -> ActionMap:
        """An action map over a :class:`~karakuri.robot.spec.RobotSpec`'s limits and pose.

        Args:
            spec: The robot.
            kind: ``"joint_position"`` or ``"joint_position_delta"``.
            scale: Scalar or one value per driven joint, rad per unit action.
            joints: Driven joints by name, in action order; None: all of ``spec.joint_names``.
            clip_action: Bounds of the raw action, or None.
            hold: Targets of some undriven joints by name; the rest hold the default pose.
        """
        idx = None if joints is None else tuple(spec.index(j) for j in joints)
        held = np.asarray(spec.default_pose, dtype=np.float64).copy()
        for j, v in (hold or {}).items():
            held[spec.index(j)] = v
        return cls(kind=kind, scale=scale, lower=spec.lower, upper=spec.upper,
                   default_pose=spec.default_pose, joints=idx, clip_action=clip_action,
                   hold=held)  # type: ignore[arg-type]

    def apply(self, action: torch.Tensor, joint_pos: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map raw actions to joint targets with this map's :class:`ActionHead`.

        Args:
            action: Raw actions. Shape: (B, a).
            joint_pos: Measured joint positions, rad. Shape: (B, n).

        Returns:
            (joint_target (B, n) clipped to the limits, clipped action (B, a)).
        """
        key = (joint_pos.device, joint_pos.dtype)
        cache = self.__dict__.setdefault("_heads", {})
        if key not in cache:  # made once per device: copying constants would sync a GPU
            cache[key] = ActionHead(self).to(device=key[0], dtype=key[1])
        return cache[key](action, joint_pos)


def robot_obs_terms(robot: Any, *task_terms: ObsTerm) -> list[ObsTerm]:
    """The policy terms an arm task starts with, around the task's own robot signals.

    ``joint_pos_rel`` (joint_pos minus the home pose, noise 5 mrad), ``joint_vel`` (x 0.1,
    noise 0.05 rad/s), then ``task_terms`` (e.g. the command), then ``last_action``.

    Args:
        robot: A :class:`~karakuri.robot.spec.RobotSpec` (its ``default_pose``).
        task_terms: The task's robot-available terms, in order.
    """
    return [
        ObsTerm("joint_pos_rel", "joint_pos", offset=tuple(robot.default_pose), noise=0.005),
        ObsTerm("joint_vel", "joint_vel", scale=0.1, noise=0.05),
        *task_terms,
        ObsTerm("last_action", "last_action"),
    ]


def _f32(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


class ActionHead(nn.Module):
    """The torch form of an :class:`ActionMap`; the env steps with it, the policy file holds it.

    ``forward(action (B, a), joint_pos (B, n)) -> (joint_target (B, n), action (B, a))``.
    The driven joints are selected by a one-hot (a, n) matrix carrying the scale, which is
    exact in float arithmetic and one graph node.
    """

    def __init__(self, am: ActionMap) -> None:
        super().__init__()
        self.action_map = am
        n, idx = am.n_joints, list(am.joints or ())
        driven = np.zeros(n)
        driven[idx] = 1.0
        self.all_driven = idx == list(range(n))
        select = np.zeros((len(idx), n))  # (a, n): action entry i -> joint idx[i], scaled
        select[np.arange(len(idx)), idx] = am.scale
        base = (1 - driven) * np.asarray(am.hold)
        if am.kind == "joint_position":
            base = base + driven * np.asarray(am.default_pose)
        self.register_buffer("act_scale", _f32(am.scale))
        self.register_buffer("act_select", _f32(select))
        self.register_buffer("act_driven", _f32(driven))
        self.register_buffer("act_base", _f32(base))
        self.register_buffer("act_lower", _f32(am.lower))
        self.register_buffer("act_upper", _f32(am.upper))
        self.delta = am.kind == "joint_position_delta"
        self.clip_action = am.clip_action

    def forward(self, action: torch.Tensor, joint_pos: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw action (B, a) and measured joints (B, n), rad -> (target (B, n), action)."""
        if self.clip_action is not None:
            action = action.clamp(self.clip_action[0], self.clip_action[1])
        # Not all driven: one-hot rows times the scale (exact; one node instead of two).
        delta = action * self.act_scale if self.all_driven else action @ self.act_select
        if not self.delta:
            target = self.act_base + delta
        elif self.all_driven:
            target = joint_pos + delta
        else:
            target = joint_pos * self.act_driven + self.act_base + delta
        return torch.minimum(torch.maximum(target, self.act_lower), self.act_upper), action
