"""The `sim/` contract: a batch of MuJoCo worlds behind one protocol.

Two backends implement it: ``cpu`` (C MuJoCo worlds stepped by ``mujoco.rollout`` on all
cores) and ``warp`` (MuJoCo Warp on a CUDA device).  Tasks only ever talk to this protocol,
so one task definition runs on both.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


class PhysicsError(RuntimeError):
    """The physics went wrong (non-finite state, buffer overflow); the message says how."""


@runtime_checkable
class Physics(Protocol):
    """A batch of ``num_worlds`` copies of one MuJoCo model.

    Tensors are torch views on ``device`` with a leading world dimension.  Writes to
    ``ctrl`` take effect at the next :meth:`step`.
    """

    num_worlds: int
    device: torch.device

    @property
    def dt(self) -> float:
        """Physics time step, s."""

    @property
    def qpos(self) -> torch.Tensor:
        """Generalized positions. Shape: (num_worlds, nq)."""

    @property
    def qvel(self) -> torch.Tensor:
        """Generalized velocities. Shape: (num_worlds, nv)."""

    @property
    def ctrl(self) -> torch.Tensor:
        """Actuator controls (position targets for position actuators). Shape: (num_worlds, nu)."""

    @property
    def sensordata(self) -> torch.Tensor:
        """Sensor readings after the last step. Shape: (num_worlds, nsensordata)."""

    def site_pos(self, site_ids: list[int]) -> torch.Tensor:
        """World positions of the given sites, m. Shape: (num_worlds, len(site_ids), 3)."""

    def step(self, n_substeps: int) -> None:
        """Advance every world by ``n_substeps`` physics steps holding ``ctrl`` fixed."""

    def reset_worlds(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        """Set the state of the worlds where ``mask`` is true and recompute kinematics.

        Args:
            mask: Worlds to reset. Shape: (num_worlds,), bool.
            qpos: New positions for every world (rows outside ``mask`` are ignored).
                Shape: (num_worlds, nq).
            qvel: New velocities. Shape: (num_worlds, nv).
        """

    def set_model_params(self, mask: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        """Per-world model parameters for domain randomization.

        Args:
            mask: Worlds to change. Shape: (num_worlds,), bool.
            params: Name to per-world values; names and shapes are listed in
                :data:`karakuri.sim.randomization.PARAMS`.
        """
