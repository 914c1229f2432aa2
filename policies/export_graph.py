"""The torch graph a policy file holds: raw signals → observation → normalizer → actor → command.

:func:`build_policy_module` composes a task's declaration (:class:`~karakuri.sim.terms.ObsTerm`
list, :class:`~karakuri.policies.normalizer.Normalizer`, :class:`~karakuri.sim.terms.ActionMap`)
with any deterministic actor into one :class:`PolicyModule`; :func:`policy_module_for` builds
it from an env's task.  Its observation is the env's own :class:`~karakuri.sim.observations.
ObsAssembler` and its action map the env's own :class:`~karakuri.sim.terms.ActionHead`, and
evaluation runs this module (:func:`module_act`), so the evaluated policy and the exported
file are the same module by construction.  Needs torch; the edge runtime never imports it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from karakuri.policies.normalizer import Normalizer
from karakuri.sim.observations import ObsAssembler
from karakuri.sim.terms import SIGNAL_UNITS, ActionHead, ActionMap, ObsTerm

__all__ = ["OUTPUT_NAMES", "SIGNAL_UNITS", "ActionMap", "Normalizer", "ObsTerm", "PolicyModule",
           "build_policy_module", "module_act", "policy_module_for"]

#: Output names of every policy graph: the command, and the clipped raw action.
OUTPUT_NAMES: tuple[str, str] = ("joint_target", "action")

ActFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def _f32(x: np.ndarray | float, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)


def _as_normalizer(norm: Any) -> Normalizer | None:
    """A :class:`Normalizer` from one, or from any object with mean, var, eps and clip."""
    if norm is None or isinstance(norm, Normalizer):
        return norm
    return Normalizer(mean=norm.mean, var=norm.var, eps=norm.eps, clip=norm.clip)


class PolicyModule(nn.Module):
    """Raw signals → ``(joint_target (B, n), action (B, a))``; the graph of a policy file.

    ``forward`` takes one float32 tensor per name of ``input_names``, in that order, each
    (B, ``signal_sizes[name]``).  Build it with :func:`build_policy_module` or
    :func:`policy_module_for`.
    """

    def __init__(self, obs_terms: Sequence[ObsTerm], normalizer: Normalizer | Any | None,
                 actor: nn.Module, action_map: ActionMap) -> None:
        super().__init__()
        self.action_map = action_map
        sizes = _term_sizes(obs_terms)
        self.assembler = ObsAssembler(obs_terms, sizes)
        self.obs_terms = tuple(self.assembler.terms)
        self.signal_sizes, self.signal_units = _signals(self.obs_terms, action_map)
        self.input_names: tuple[str, ...] = tuple(self.signal_sizes)
        self.obs_dim = self.assembler.size
        self.actor = copy.deepcopy(actor)
        device = next(iter(self.actor.parameters()), torch.zeros(())).device
        self.head = ActionHead(action_map)
        # Term scaling and the normalizer fold into one affine map of the raw signals,
        # computed in float64: a short graph (each elementwise node costs ~0.6 µs per tick).
        scale, offset = self.assembler.scale64, self.assembler.offset64
        gain, bias = scale, -offset * scale
        norm = _as_normalizer(normalizer)
        self.norm_clip = None if norm is None else norm.clip
        if norm is not None:
            if norm.size != self.obs_dim:
                raise ValueError(f"normalizer has {norm.size} entries, the observation has "
                                 f"{self.obs_dim} ({self.term_layout()})")
            gain, bias = gain / norm.std, (bias - norm.mean) / norm.std
        self.has_gain, self.has_bias = bool(np.any(gain != 1)), bool(np.any(bias != 0))
        self.register_buffer("obs_gain", _f32(gain, device))
        self.register_buffer("obs_bias", _f32(bias, device))
        self.to(device)
        self._joint_pos = self.input_names.index("joint_pos") if self.head.delta else -1
        self.eval()
        self._check_actor()

    def _check_actor(self) -> None:
        x = torch.zeros(2, self.obs_dim, device=self.obs_gain.device)
        with torch.no_grad():
            y = self.actor(x)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (2, self.action_map.size):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(
                f"actor maps obs (B, {self.obs_dim}) to {got}; the action map expects "
                f"(B, {self.action_map.size}) (one entry per driven joint)"
            )

    @property
    def n_joints(self) -> int:
        """Joints in ``joint_target``, n."""
        return self.action_map.n_joints

    @property
    def action_dim(self) -> int:
        """Entries of ``action``, a."""
        return self.action_map.size

    def term_layout(self) -> str:
        """``"name[start:stop] ..."``: where each term sits in the observation."""
        return self.assembler.layout()

    def _named(self, signals: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(zip(self.input_names, signals, strict=True))

    def observation(self, *signals: torch.Tensor) -> torch.Tensor:
        """The observation before normalization, exactly as the env assembles it.

        Shape: (B, obs_dim).  (``forward`` computes the same through one folded affine map.)
        """
        return self.assembler(self._named(signals))

    def normalized_observation(self, *signals: torch.Tensor) -> torch.Tensor:
        """What the actor reads: the observation, normalized and clipped. Shape: (B, obs_dim)."""
        obs = self.assembler.concat(self._named(signals))
        if self.has_gain:
            obs = obs * self.obs_gain
        if self.has_bias:
            obs = obs + self.obs_bias
        if self.norm_clip is not None:
            obs = obs.clamp(-self.norm_clip, self.norm_clip)
        return obs

    def forward(self, *signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signals in ``input_names`` order → ``(joint_target (B, n) rad, action (B, a))``."""
        action = self.actor(self.normalized_observation(*signals))
        joint_pos = signals[self._joint_pos] if self._joint_pos >= 0 else None
        return self.head(action, joint_pos)  # type: ignore[arg-type]

    def forward_signals(self, signals: Mapping[str, torch.Tensor]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with the signals by name (extra names are ignored)."""
        missing = [n for n in self.input_names if n not in signals]
        if missing:
            raise KeyError(f"missing signals {missing}; the policy reads {list(self.input_names)}")
        return self(*(signals[n] for n in self.input_names))

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        """Zero signals of batch ``batch``, in ``input_names`` order, on the module's device."""
        dev = self.obs_gain.device
        return tuple(torch.zeros(batch, s, device=dev) for s in self.signal_sizes.values())


def _term_sizes(terms: Sequence[ObsTerm]) -> dict[str, int]:
    if not terms:
        raise ValueError("no observation terms")
    sizes: dict[str, int] = {}
    for t in terms:
        if t.privileged:
            raise ValueError(f"obs term {t.name!r} (signal {t.signal!r}) is privileged; an "
                             f"exported actor may only read robot signals")
        if t.size is None:
            raise ValueError(f"obs term {t.name!r} has no size; give one, or build the module "
                             f"from an env (policy_module_for), which knows its signals' widths")
        if sizes.setdefault(t.signal, t.size) != t.size:
            raise ValueError(f"signal {t.signal!r} is read with sizes {sizes[t.signal]} and "
                             f"{t.size} (term {t.name!r})")
    return sizes


def _signals(terms: Sequence[ObsTerm], am: ActionMap) -> tuple[dict[str, int], dict[str, str]]:
    sizes = {t.signal: t.size or 0 for t in terms}
    units = {t.signal: t.unit for t in reversed(terms)}
    if am.kind == "joint_position_delta" and sizes.setdefault("joint_pos", am.n_joints) \
            != am.n_joints:
        raise ValueError(f"joint_position_delta needs joint_pos of size {am.n_joints}, "
                         f"the terms read {sizes['joint_pos']}")
    units.setdefault("joint_pos", SIGNAL_UNITS["joint_pos"])
    if sizes.get("last_action", am.size) != am.size:
        raise ValueError(f"last_action has size {sizes['last_action']}, the action "
                         f"{am.size}: last_action is fed back from the action output")
    return sizes, {k: units[k] for k in sizes}


def build_policy_module(obs_terms: Sequence[ObsTerm], normalizer: Normalizer | Any | None,
                        actor: nn.Module, action_map: ActionMap) -> PolicyModule:
    """Compose the path from raw signals to joint command into one module.

    Args:
        obs_terms: Terms in observation order, each with its size; their concatenation is the
            actor's input.
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


def policy_module_for(env: Any, normalizer: Normalizer | Any | None,
                      actor: nn.Module) -> PolicyModule:
    """The policy module of ``env``'s task: its policy terms (sized) and its action map.

    Args:
        env: A :class:`~karakuri.sim.env.BatchedEnv` (its ``policy_terms``, ``action_map``).
        normalizer: As for :func:`build_policy_module`.
        actor: As for :func:`build_policy_module`.
    """
    return PolicyModule(env.policy_terms, normalizer, actor, env.action_map)


def module_act(module: PolicyModule) -> ActFn:
    """Evaluation's act function: robot signals by name → the module's ``action`` (B, a).

    The env maps that action to joint targets with the same :class:`ActionHead` the module
    holds, so evaluation runs exactly the computation the policy file exports.
    """
    def act(signals: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return module.forward_signals(signals)[1]

    return act
