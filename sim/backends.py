"""Physics backends by name: ``make_physics("cpu" | "warp", model, num_worlds, device)``."""

from __future__ import annotations

from collections.abc import Callable

import mujoco

from karakuri.sim.physics import Physics


def _cpu(model: mujoco.MjModel, num_worlds: int, device: str) -> Physics:
    from karakuri.sim.cpu_backend import CpuPhysics

    if device != "cpu":
        raise ValueError(
            f"the cpu backend runs on device 'cpu', not {device!r}; use --backend warp"
        )
    return CpuPhysics(model, num_worlds)


def _warp(model: mujoco.MjModel, num_worlds: int, device: str) -> Physics:
    try:
        from karakuri.sim.warp_backend import WarpPhysics
    except ImportError as e:
        raise ValueError(
            f"the warp backend needs the gpu extra ({e.name or e} is not importable): "
            "pip install -c constraints.txt -e '.[gpu]', or use --backend cpu"
        ) from e

    return WarpPhysics(model, num_worlds, device=device)


BACKENDS: dict[str, Callable[[mujoco.MjModel, int, str], Physics]] = {"cpu": _cpu, "warp": _warp}


def make_physics(
    backend: str, model: mujoco.MjModel, num_worlds: int, device: str = "cpu"
) -> Physics:
    """Build a physics backend; raises ``ValueError`` listing the valid names."""
    try:
        factory = BACKENDS[backend]
    except KeyError:
        raise ValueError(
            f"unknown physics backend {backend!r}; valid: {sorted(BACKENDS)}"
        ) from None
    return factory(model, num_worlds, device)
