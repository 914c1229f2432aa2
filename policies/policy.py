"""The `policies/` contract: a policy maps named raw robot signals to joint commands.

:class:`karakuri.policies.onnx_policy.OnnxPolicy` implements it without torch.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


class PolicyError(ValueError):
    """A policy file is unreadable or does not fit the robot; the message names what."""


@runtime_checkable
class Policy(Protocol):
    """Raw signals in, joint command out.

    Inputs are float32 arrays with a batch dimension, keyed by the names in
    ``input_names`` (e.g. ``joint_pos`` (B, n), ``joint_vel`` (B, n), ``command`` (B, k),
    ``last_action`` (B, a)).  The output is ``joint_target`` (B, n), rad, already scaled,
    offset and clipped to the joint limits.
    """

    input_names: tuple[str, ...]

    def act(self, signals: dict[str, np.ndarray]) -> np.ndarray:
        """Return the joint command for one batch of signals. Shape: (B, n_joints)."""

    def reset(self) -> None:
        """Forget recurrent inputs (``last_action``) before a new episode."""
