"""C MuJoCo worlds stepped on all cores by ``mujoco.rollout``; no Python loop per world per step.

The batch state lives in one ``(num_worlds, nstate)`` float64 array in MuJoCo's
``mjSTATE_FULLPHYSICS`` layout.  Each :meth:`CpuPhysics.step` hands it to a persistent
rollout thread pool that steps every world ``n_substeps`` times in C, then float32 views of
positions, velocities and sensors are refreshed.  Per-world model parameters (domain
randomization) switch the pool to one ``MjModel`` per world.
"""

from __future__ import annotations

import os

import mujoco
import numpy as np
import torch
from mujoco import rollout

from karakuri.sim.physics import PhysicsError, StateViews

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS.value


class CpuPhysics(StateViews):
    """A batch of C MuJoCo worlds (implements :class:`karakuri.sim.physics.Physics`).

    Args:
        model: The compiled scene; copied, never modified.
        num_worlds: Number of worlds N.
        nthread: Rollout threads (default: every core this process may use).
    """

    def __init__(self, model: mujoco.MjModel, num_worlds: int, nthread: int | None = None) -> None:
        if num_worlds < 1:
            raise ValueError(f"num_worlds must be >= 1, got {num_worlds}")
        self.model = model
        self.num_worlds = num_worlds
        self.device = torch.device("cpu")
        self._nthread = nthread or max(1, len(os.sched_getaffinity(0)))
        self._pool = rollout.Rollout(nthread=self._nthread if num_worlds > 1 else 0)
        self._datas = [mujoco.MjData(model) for _ in range(self._nthread if num_worlds > 1 else 1)]
        self._models: list[mujoco.MjModel] | None = None  # per-world copies once randomized
        self._nstate = mujoco.mj_stateSize(model, _FULL)
        self._state = np.zeros((num_worlds, self._nstate))
        d = self._datas[0]
        mujoco.mj_resetData(model, d)
        mujoco.mj_forward(model, d)
        init = np.empty(self._nstate)
        mujoco.mj_getState(model, d, init, _FULL)
        self._state[:] = init
        self._sens = np.tile(d.sensordata, (num_worlds, 1))
        self._frc = np.zeros((num_worlds, model.nu))
        self._ctrl = torch.zeros(num_worlds, model.nu)
        nq, nv = model.nq, model.nv
        self._qpos_sl = slice(1, 1 + nq)
        self._qvel_sl = slice(1 + nq, 1 + nq + nv)
        self._qpos = torch.zeros(num_worlds, nq)
        self._qvel = torch.zeros(num_worlds, nv)
        self._sensor = torch.zeros(num_worlds, model.nsensordata)
        self._force = torch.zeros(num_worlds, model.nu)
        self._out_state: np.ndarray | None = None
        self._out_sens: np.ndarray | None = None
        self._refresh()

    # -- views (dt, qpos, qvel, ctrl, sensordata: StateViews) ----------------------------
    @property
    def actuator_force(self) -> torch.Tensor:
        """Shape: (num_worlds, nu), N·m or N, at the current state and controls.

        Computed by MuJoCo on first read after a step or reset (one ``mj_forward`` per world).
        """
        if self._force_stale:
            self._force.copy_(torch.from_numpy(self._actuator_force()))
            self._force_stale = False
        return self._force

    # -- stepping ------------------------------------------------------------------------
    def step(self, n_substeps: int) -> None:
        """Advance every world ``n_substeps`` physics steps with ``ctrl`` held."""
        n = self.num_worlds
        if self._out_state is None or self._out_state.shape[1] != n_substeps:
            self._out_state = np.empty((n, n_substeps, self._nstate))
            self._out_sens = np.empty((n, n_substeps, self.model.nsensordata))
        ctrl = self._ctrl.numpy().astype(np.float64)[:, None, :]
        self._pool.rollout(
            self._models if self._models is not None else self.model,
            self._datas,
            self._state,
            ctrl,
            nstep=n_substeps,
            state=self._out_state,
            sensordata=self._out_sens,
        )
        self._state[:] = self._out_state[:, -1]
        self._sens[:] = self._out_sens[:, -1]
        if not np.all(np.isfinite(self._state)):
            bad = np.flatnonzero(~np.all(np.isfinite(self._state), axis=1))
            raise PhysicsError(
                f"non-finite physics state in worlds {bad[:8].tolist()} after a step; "
                "check the controls for NaN and the model's timestep"
            )
        self._refresh()

    def reset_worlds(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        """Set qpos/qvel of the masked worlds (zero time, controls and warm start)."""
        idx = torch.nonzero(mask, as_tuple=False).flatten().tolist()
        if not idx:
            return
        qp = qpos.detach().cpu().double().numpy()
        qv = qvel.detach().cpu().double().numpy()
        d = self._datas[0]
        for i in idx:  # once per reset world per episode, not per physics step
            m = self._models[i] if self._models is not None else self.model
            mujoco.mj_resetData(m, d)
            d.qpos[:] = qp[i]
            d.qvel[:] = qv[i]
            mujoco.mj_forward(m, d)
            mujoco.mj_getState(m, d, self._state[i], _FULL)
            self._sens[i] = d.sensordata
        self._refresh()

    def set_model_params(self, mask: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        """Give the masked worlds their own model parameters (switches to per-world models)."""
        if self._models is None:
            self._models = [_copy_model(self.model) for _ in range(self.num_worlds)]
        idx = torch.nonzero(mask, as_tuple=False).flatten().tolist()
        for name, values in params.items():
            if not hasattr(self.model, name):
                raise ValueError(f"MjModel has no field {name!r} to randomize")
            vals = values.detach().cpu().double().numpy()
            for i in idx:
                getattr(self._models[i], name)[:] = vals[i].reshape(getattr(self.model, name).shape)

    def close(self) -> None:
        """Stop the rollout thread pool."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None  # type: ignore[assignment]

    def _refresh(self) -> None:
        self._qpos.copy_(torch.from_numpy(self._state[:, self._qpos_sl]))
        self._qvel.copy_(torch.from_numpy(self._state[:, self._qvel_sl]))
        self._sensor.copy_(torch.from_numpy(self._sens))
        self._force_stale = True

    def _actuator_force(self) -> np.ndarray:
        # rollout returns no actuator forces: MuJoCo recomputes them here, world by world,
        # at the current state and controls (gravity compensation and clamping included).
        # Only when someone reads them, never on the stepping path.
        d, ctrl = self._datas[0], self._ctrl.numpy().astype(np.float64)
        for i in range(self.num_worlds):
            m = self._models[i] if self._models is not None else self.model
            mujoco.mj_setState(m, d, self._state[i], _FULL)
            d.ctrl[:] = ctrl[i]
            mujoco.mj_forward(m, d)
            self._frc[i] = d.actuator_force
        return self._frc


def _copy_model(model: mujoco.MjModel) -> mujoco.MjModel:
    import copy

    return copy.copy(model)
