"""The runtime's policy contract: a policy maps named raw robot signals to joint commands.

Owned by its consumer, :class:`karakuri.robot.control_loop.ControlLoop`, so the arrow points
down: ``policies/`` implements it (:class:`karakuri.policies.onnx_policy.OnnxPolicy`, without
torch) and imports it from here; ``robot/`` imports nothing of ``policies/``.
:class:`PolicyInfo` is the part of a policy file's metadata the deploy composer
(``launch/deploy_resolve.py``, ``launch/preflight.py``) reads to check a file against the robot
it is asked to drive; :class:`karakuri.policies.metadata.PolicyMetadata` satisfies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class PolicyInfo(Protocol):
    """What a policy file claims about itself, read (and checked, never believed) at deploy.

    Attributes:
        robot_name: The robot it was trained for.
        joint_names: Joints of the command output, in order.
        lower: Lower joint limits the graph clips to, rad (m for prismatic joints).
        upper: Upper joint limits the graph clips to, rad (m).
        control_rate_hz: The rate it was trained at, Hz.
        inputs: Graph inputs in order, ``{name: {"shape": ["B", size], "unit": "rad"}}``.
        robot_spec: ``RobotSpec.to_dict()`` of the robot it was exported for.
        task: Task name it was trained on, e.g. ``"reach"`` ("" when unknown).
    """

    robot_name: str
    joint_names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    control_rate_hz: float
    inputs: Mapping[str, Mapping[str, Any]]
    robot_spec: Mapping[str, Any]
    task: str


@runtime_checkable
class DescribedPolicy(Policy, Protocol):
    """A :class:`Policy` loaded from a file that carries :class:`PolicyInfo` metadata."""

    metadata: PolicyInfo
