"""The `sim/` contract: a batch of MuJoCo worlds behind one protocol.

Two backends implement it: ``cpu`` (C MuJoCo worlds stepped by ``mujoco.rollout`` on all
cores) and ``warp`` (MuJoCo Warp on a CUDA device).  Tasks only ever talk to this protocol,
so one task definition runs on both.

Positions of sites and bodies are read through named sensors (``framepos``, ``framequat``)
that the task adds to its scene: sensors are computed inside the step on both backends, so no
backend needs a per-world kinematics pass in Python.  All tensors are float32.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


class PhysicsError(RuntimeError):
    """The physics went wrong (non-finite state, buffer overflow); the message says how."""


@runtime_checkable
class Physics(Protocol):
    """A batch of ``num_worlds`` copies of one MuJoCo model.

    ``qpos``, ``qvel`` and ``sensordata`` are read-only float32 tensors refreshed by
    :meth:`step` and :meth:`reset_worlds`; ``ctrl`` is a float32 tensor the task writes and the
    next :meth:`step` applies.
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
        """Sensor readings after the last step or reset. Shape: (num_worlds, nsensordata)."""

    @property
    def actuator_force(self) -> torch.Tensor:
        """Actuator forces after the last step, N·m or N. Shape: (num_worlds, nu)."""

    def step(self, n_substeps: int) -> None:
        """Advance every world by ``n_substeps`` physics steps holding ``ctrl`` fixed."""

    def reset_worlds(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        """Set the state of the worlds where ``mask`` is true and recompute their sensors.

        Args:
            mask: Worlds to reset. Shape: (num_worlds,), bool.
            qpos: New positions for every world (rows outside ``mask`` are ignored).
                Shape: (num_worlds, nq).
            qvel: New velocities. Shape: (num_worlds, nv).
        """

    def set_model_params(self, mask: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        """Per-world model parameters for domain randomization, applied from the next step.

        Args:
            mask: Worlds to change. Shape: (num_worlds,), bool.
            params: Field name of ``mujoco.MjModel`` (e.g. ``"geom_friction"``,
                ``"body_mass"``, ``"actuator_gainprm"``, ``"dof_damping"``) to its new
                per-world value, shape ``(num_worlds, *field.shape)``.
        """


class StateViews:
    """``dt`` and the state tensors of a backend, shared by the cpu and warp backends.

    A backend sets, in its constructor, ``model`` (the ``mujoco.MjModel`` every world copies)
    and the float32 tensors ``_qpos``, ``_qvel``, ``_ctrl`` and ``_sensor`` on its device; it
    refreshes them in place, so the tensors handed out stay valid for the backend's life.
    """

    model: Any
    _qpos: torch.Tensor
    _qvel: torch.Tensor
    _ctrl: torch.Tensor
    _sensor: torch.Tensor

    @property
    def dt(self) -> float:
        """Physics time step, s."""
        return float(self.model.opt.timestep)

    @property
    def qpos(self) -> torch.Tensor:
        """Shape: (num_worlds, nq); rad or m (free joints: position and unit quaternion)."""
        return self._qpos

    @property
    def qvel(self) -> torch.Tensor:
        """Shape: (num_worlds, nv), rad/s or m/s."""
        return self._qvel

    @property
    def ctrl(self) -> torch.Tensor:
        """Shape: (num_worlds, nu); written by the task, applied at the next step."""
        return self._ctrl

    @property
    def sensordata(self) -> torch.Tensor:
        """Shape: (num_worlds, nsensordata); as C MuJoCo after ``mj_step`` or ``mj_forward``."""
        return self._sensor


def substeps(ctrl_dt: float, physics_dt: float) -> int:
    """Physics steps per control step; raises unless ``ctrl_dt`` is a whole multiple of ``dt``.

    Never rounds: a 0.025 s control step over a 0.002 s physics step is an error, not 12 or 13.
    """
    if ctrl_dt <= 0 or physics_dt <= 0:
        raise ValueError(f"ctrl_dt ({ctrl_dt}) and physics dt ({physics_dt}) must be > 0")
    ratio = ctrl_dt / physics_dt
    n = round(ratio)
    if n < 1 or abs(ratio - n) > 1e-9 * max(1.0, ratio):
        raise ValueError(
            f"ctrl_dt {ctrl_dt} s is not a whole multiple of the physics dt {physics_dt} s "
            f"(ratio {ratio:.6f}); choose ctrl_dt = k * {physics_dt} for a whole k"
        )
    return n
