"""Pieces several tasks share, so each is written once: the noisy home pose of a reset.

The observation terms every arm task starts with are :func:`karakuri.sim.terms.robot_obs_terms`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mujoco
import torch

from karakuri.robot.mjcf_index import qpos_adr
from karakuri.robot.spec import RobotSpec


@dataclass(frozen=True)
class HomePose:
    """Initial states near a home pose: the arm joints get uniform noise, the rest do not.

    Made once at bind time (device tensors: a reset then builds nothing on the host).

    Attributes:
        qpos0: The model's default qpos, shape (nq,).
        qadr: qpos address of each robot joint, command order, shape (n_joints,).
        home: The pose, rad (m for a slide joint), shape (n_joints,).
        n_arm: Joints that get noise: the first ``n_arm`` of the robot's.
        noise: Half-width of the uniform noise, rad.
    """

    qpos0: torch.Tensor
    qadr: torch.Tensor
    home: torch.Tensor
    n_arm: int
    noise: float

    @classmethod
    def bind(cls, model: mujoco.MjModel, robot: RobotSpec, device: torch.device, noise: float,
             home: Sequence[float] | None = None) -> HomePose:
        """The robot's home pose (``home``, default ``robot.default_pose``) in ``model``."""
        pose = robot.default_pose.tolist() if home is None else [float(v) for v in home]
        return cls(qpos0=torch.as_tensor(model.qpos0, dtype=torch.float32, device=device),
                   qadr=torch.tensor(qpos_adr(model, robot.joint_names), device=device),
                   home=torch.tensor(pose, device=device), n_arm=robot.n_arm, noise=noise)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` noisy home poses: (qpos (n, nq), the robot joints' q (n, n_joints)).

        Draws ``torch.rand(n, n_joints)`` once from ``generator`` (the order tasks rely on for
        same-seed determinism).  Joints outside the robot keep the model's default.
        """
        noise = torch.rand(n, self.home.shape[0], device=self.home.device,
                           generator=generator) * 2 - 1
        noise[:, self.n_arm:] = 0.0
        q = self.home + self.noise * noise
        qpos = self.qpos0.expand(n, -1).clone()
        qpos[:, self.qadr] = q
        return qpos, q
