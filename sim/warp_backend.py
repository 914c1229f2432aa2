"""MuJoCo Warp worlds on a device, behind :class:`karakuri.sim.physics.Physics`.

Every world lives in one ``mujoco_warp`` ``Data`` on the device; ``qpos``, ``qvel``, ``ctrl``,
``sensordata`` and ``actuator_force`` are torch views of its arrays (``wp.to_torch``, no copies),
so a task reads and writes them where they are.  The decimated step (``n_substeps`` calls of
``mjw.step``) is captured once per ``n_substeps`` as a graph and replayed; the per-world reset
(``mjw.reset_data`` on a device mask, masked torch writes of qpos/qvel, then ``mjw.forward``)
is captured the same way, so neither needs a host sync.  Graphs are CUDA graphs on a GPU; warp
1.19 records and replays the same graphs on CPU, which is how the tests exercise this path.

Contact and constraint buffers (``nconmax`` contacts and ``njmax`` constraint rows per world)
are sized from the model by :func:`karakuri.sim.warp_buffers.buffer_sizes`.  Overflows and
non-finite states are checked on the device after every step and read back one step later
without stalling the stream; :meth:`WarpPhysics.check` reads them at once.  Both raise
:class:`PhysicsError` naming the setting to raise and how (``KARAKURI_WARP_NCONMAX`` /
``KARAKURI_WARP_NJMAX`` or the constructor).

Ordering with torch: warp launches on its own blocking stream, torch on the legacy default
stream, so each waits for the other's earlier work; code that moves torch to a side stream must
synchronise it itself.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import mujoco
import mujoco_warp as mjw
import numpy as np
import torch
import warp as wp

from karakuri.sim.physics import PhysicsError, StateViews
from karakuri.sim.warp_buffers import ENV, buffer_sizes

__all__ = ["WarpPhysics", "buffer_sizes"]

#: Overflow bits that mean a buffer was too small (others, e.g. solver iterations, are not).
_BUFFER_BITS = {
    int(mjw.OverflowType.NEFC): "njmax",
    int(mjw.OverflowType.NJMAX_NNZ): "njmax",
    int(mjw.OverflowType.BROADPHASE): "nconmax",
    int(mjw.OverflowType.NARROWPHASE): "nconmax",
    int(mjw.OverflowType.CCD): "nconmax",
}
_BUFFER_MASK = sum(_BUFFER_BITS)

class WarpPhysics(StateViews):
    """A batch of MuJoCo Warp worlds (implements :class:`karakuri.sim.physics.Physics`).

    Args:
        model: The compiled scene; copied to the device, never modified.
        num_worlds: Number of worlds N.
        device: ``"cuda"``, ``"cuda:K"`` or ``"cpu"`` (slow: for tests).
        nconmax: Contacts per world (default: :func:`buffer_sizes`).
        njmax: Constraint rows per world (default: :func:`buffer_sizes`).
        graph: Capture and replay graphs (default: where they work; on CUDA that needs warp's
            memory pool and a 12.4+ driver and toolkit for the solver's conditional loop;
            without graphs that loop reads its condition on the host every iteration).
        deterministic: Stable contact and constraint order and invariant atomics on the GPU,
            so the same seed gives the same trajectory (``mjw.DeterminismType.ALL``).
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        num_worlds: int,
        device: str = "cuda",
        nconmax: int | None = None,
        njmax: int | None = None,
        graph: bool | None = None,
        deterministic: bool = True,
    ) -> None:
        if num_worlds < 1:
            raise ValueError(f"num_worlds must be >= 1, got {num_worlds}")
        try:
            self._wp_device = wp.get_device(device)
        except (RuntimeError, ValueError) as e:
            raise ValueError(
                f"warp cannot use device {device!r} ({e}); on a machine without CUDA use "
                "--device cpu (slow) or the cpu backend"
            ) from e
        self.model = model
        self.num_worlds = num_worlds
        self.device = torch.device(wp.device_to_torch(self._wp_device))
        self.nconmax, self.njmax = buffer_sizes(model, nconmax, njmax)
        dev = self._wp_device
        self._graph = graph if graph is not None else _graphs_work(dev)
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        with wp.ScopedDevice(dev):
            self._m = mjw.put_model(model)
            self._m.opt.warn_overflow = _BUFFER_MASK  # solver-iteration limits are not errors
            if deterministic:
                self._m.opt.deterministic = int(mjw.DeterminismType.ALL)
            self._d = mjw.put_data(
                model, data, nworld=num_worlds, nconmax=self.nconmax, njmax=self.njmax
            )
            self._mask_wp = wp.zeros(num_worlds, dtype=bool)
        d = self._d
        self._qpos, self._qvel = wp.to_torch(d.qpos), wp.to_torch(d.qvel)
        self._ctrl, self._sensor = wp.to_torch(d.ctrl), wp.to_torch(d.sensordata)
        self._force, self._overflow = wp.to_torch(d.actuator_force), wp.to_torch(d.overflow)
        self._mask = wp.to_torch(self._mask_wp)
        self._overflow_seen = torch.zeros_like(self._overflow)
        self._graphs: dict[tuple[str, int], wp.Graph] = {}
        self._timed: set[tuple[str, int]] = set()
        #: Seconds spent compiling kernels and capturing graphs (first call of each kind).
        self.compile_s = 0.0
        self._status = _StatusCheck(self.device)

    # -- views (dt, qpos, qvel, ctrl, sensordata: StateViews) ----------------------------
    @property
    def actuator_force(self) -> torch.Tensor:
        """Shape: (num_worlds, nu), N·m or N, from the last substep."""
        return self._force

    # -- stepping ------------------------------------------------------------------------
    def step(self, n_substeps: int) -> None:
        """Advance every world ``n_substeps`` physics steps with ``ctrl`` held (no host sync).

        Raises:
            PhysicsError: A buffer overflowed or the state went non-finite (seen up to one
                step late on a GPU; :meth:`check` looks at once).
        """
        if n_substeps < 1:
            raise ValueError(f"n_substeps must be >= 1, got {n_substeps}")

        def substeps() -> None:
            for _ in range(n_substeps):
                mjw.step(self._m, self._d)

        self._run(("step", n_substeps), substeps)
        self._status.poll(self._health, self.check)

    def reset_worlds(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        """Reset the masked worlds to ``qpos``/``qvel`` and recompute their sensors.

        Time, controls, warm start and contacts of those worlds are cleared as by
        ``mj_resetData``; the other worlds keep their state and their sensor readings.
        """
        self._overflow_seen |= self._overflow  # reset_data clears the masked worlds' bits
        self._mask.copy_(mask)
        self._run(("reset", 0), lambda: mjw.reset_data(self._m, self._d, reset=self._mask_wp))
        rows = self._mask[:, None]
        self._qpos.copy_(torch.where(rows, qpos.to(self._qpos), self._qpos))
        self._qvel.copy_(torch.where(rows, qvel.to(self._qvel), self._qvel))
        sens, force = self._sensor.clone(), self._force.clone()
        self._run(("forward", 0), lambda: mjw.forward(self._m, self._d))
        self._sensor.copy_(torch.where(rows, self._sensor, sens))
        self._force.copy_(torch.where(rows, self._force, force))

    def set_model_params(self, mask: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        """Per-world model parameters for the masked worlds, applied from the next step.

        A field is given one copy per world the first time it is set (the graphs are then
        captured again).  Derived constants (``mj_setConst``) are not recomputed, as on the
        cpu backend.

        Raises:
            ValueError: The field does not exist, or mujoco_warp keeps one copy for all worlds.
        """
        for name, values in params.items():
            view = self._model_view(name)
            if tuple(values.shape) != tuple(view.shape):
                raise ValueError(
                    f"{name}: expected per-world values of shape {tuple(view.shape)}, "
                    f"got {tuple(values.shape)}"
                )
            rows = mask.to(self.device).view(-1, *([1] * (view.dim() - 1)))
            view.copy_(torch.where(rows, values.to(view), view))

    def check(self) -> None:
        """Raise :class:`PhysicsError` now if any world overflowed a buffer or went non-finite."""
        overflow, nonfinite = (int(v) for v in self._health().tolist())
        if nonfinite:
            bad = torch.nonzero(~self._finite_rows()).flatten()[:8].tolist()
            raise PhysicsError(
                f"non-finite physics state in worlds {bad} after a step; check the controls "
                "for NaN and the model's timestep"
            )
        if overflow:
            self._raise_overflow()

    def close(self) -> None:
        """Drop the graphs (device memory goes with the object)."""
        self._graphs.clear()

    # -- internals -----------------------------------------------------------------------
    def _run(self, key: tuple[str, int], fn: Callable[[], None]) -> None:
        """Replay the graph of ``key``, capturing it first (or call ``fn`` when not graphing)."""
        with wp.ScopedDevice(self._wp_device):
            graph = self._graphs.get(key)
            if graph is not None:
                wp.capture_launch(graph)
                return
            t0 = time.perf_counter()
            if self._graph:
                enabled = gc.isenabled()
                gc.disable()  # a finalizer running inside the capture would be recorded too
                try:
                    with wp.ScopedCapture(device=self._wp_device) as capture:
                        fn()
                finally:
                    if enabled:
                        gc.enable()
                self._graphs[key] = capture.graph
                wp.capture_launch(capture.graph)
            else:
                fn()
            if key not in self._timed:  # the first call compiles (or loads) the kernels
                wp.synchronize_device(self._wp_device)
                self.compile_s += time.perf_counter() - t0
                self._timed.add(key)

    def _health(self) -> torch.Tensor:
        """(2,) int32 on the device: OR-ed buffer-overflow bits' maximum, and any non-finite row."""
        bits = ((self._overflow | self._overflow_seen) & _BUFFER_MASK).amax()
        return torch.stack([bits, (~self._finite_rows()).any().to(bits.dtype)])

    def _finite_rows(self) -> torch.Tensor:
        return torch.isfinite(self._qpos).all(dim=1) & torch.isfinite(self._qvel).all(dim=1)

    def _raise_overflow(self) -> None:
        seen = ((self._overflow | self._overflow_seen) & _BUFFER_MASK).cpu().numpy()
        worlds = np.flatnonzero(seen)[:8].tolist()
        bits = int(np.bitwise_or.reduce(seen))
        names = [mjw.OverflowType(b).name for b in _BUFFER_BITS if bits & b]
        settings = sorted({_BUFFER_BITS[b] for b in _BUFFER_BITS if bits & b})
        now = {"nconmax": self.nconmax, "njmax": self.njmax}
        fixes = "; ".join(
            f"{s} is {now[s]} per world: set {ENV[s]}={2 * now[s]} or "
            f"WarpPhysics(..., {s}={2 * now[s]})"
            for s in settings
        )
        raise PhysicsError(
            f"mujoco_warp {'/'.join(names)} overflow in worlds {worlds} (contacts or constraint "
            f"rows beyond the buffers; the physics of those worlds is wrong): {fixes}"
        )

    def _model_view(self, name: str) -> torch.Tensor:
        if not hasattr(self.model, name):
            raise ValueError(f"MjModel has no field {name!r} to randomize")
        spec = mjw.Model.__dataclass_fields__.get(name)
        shape = getattr(getattr(spec, "type", None), "shape", ())
        if spec is None or not shape or shape[0] != "*":
            raise ValueError(
                f"MjModel field {name!r} cannot differ between worlds on the warp backend: "
                f"mujoco_warp {mjw.__version__} keeps one copy for all worlds; randomize a "
                "field whose mujoco_warp.Model type has a leading '*' dimension, or use the "
                "cpu backend"
            )
        arr = getattr(self._m, name)
        if arr.shape[0] != self.num_worlds:
            one = arr.numpy()  # (1, *shape, *vector dims): warp's shape leaves out the latter
            full = np.broadcast_to(one, (self.num_worlds, *one.shape[1:])).copy()
            with wp.ScopedDevice(self._wp_device):
                setattr(self._m, name, wp.array(full, dtype=arr.dtype))
            self._graphs.clear()  # graphs hold the old array's address
        return wp.to_torch(getattr(self._m, name))


def _graphs_work(device: wp.Device) -> bool:
    """True where graphs can be captured (always on CPU); says why not on CUDA."""
    if device.is_cpu:
        return True
    missing = [
        why
        for ok, why in (
            (wp.is_mempool_enabled(device), "warp's memory pool is off"),
            (wp.is_conditional_graph_supported(), "CUDA driver or toolkit older than 12.4"),
        )
        if not ok
    ]
    if missing:
        print(f"warp backend: CUDA graphs off ({'; '.join(missing)}): steps will sync the host")
    return not missing


class _StatusCheck:
    """A device-side health flag copied to the host asynchronously and read one poll later."""

    def __init__(self, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        self._host = torch.zeros(2, dtype=torch.int32, pin_memory=self._cuda)
        self._event = torch.cuda.Event() if self._cuda else None
        self._pending = False

    def poll(self, health, on_bad) -> None:
        """Issue a new check; raise through ``on_bad`` if a finished earlier one found trouble."""
        if not self._cuda:
            if bool(health().any()):
                on_bad()
            return
        if self._pending:
            if not self._event.query():
                return  # the last copy is still in flight: do not wait for it
            self._pending = False
            if bool(self._host.any()):
                on_bad()
        self._host.copy_(health(), non_blocking=True)
        self._event.record()
        self._pending = True
