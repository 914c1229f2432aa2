"""Offscreen rendering of one world of a batched env (``MUJOCO_GL=egl`` on a headless box)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from karakuri.sim.env import BatchedEnv


class RenderError(RuntimeError):
    """No OpenGL context could be made; the message says how to get one."""


def _make_renderer(model: mujoco.MjModel, width: int, height: int) -> mujoco.Renderer:
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as e:  # mujoco raises FatalError or AttributeError from PyOpenGL
        raise RenderError(
            f"cannot render offscreen (MUJOCO_GL={os.environ.get('MUJOCO_GL', '<unset>')}): {e}. "
            "On a headless machine set MUJOCO_GL=egl (or osmesa) before Python imports mujoco; "
            "karakuri sets egl itself when it is imported first"
        ) from e


def render_world(
    env: BatchedEnv,
    world: int,
    renderer: Any = None,
    width: int = 640,
    height: int = 480,
    camera: str | int = -1,
) -> tuple[np.ndarray, Any]:
    """An RGB frame of ``world``: (height, width, 3) uint8, and the renderer to reuse."""
    m = env.model
    if renderer is None:
        renderer = _make_renderer(m, width, height)
        renderer._karakuri_data = mujoco.MjData(m)  # type: ignore[attr-defined]
    d = renderer._karakuri_data  # type: ignore[attr-defined]
    d.qpos[:] = env.physics.qpos[world].double().cpu().numpy()
    d.qvel[:] = env.physics.qvel[world].double().cpu().numpy()
    marker = getattr(env.task, "marker_positions", None)
    if marker is not None:
        for body, pos in marker(world).items():
            d.mocap_pos[m.body_mocapid[m.body(body).id]] = pos
    mujoco.mj_forward(m, d)
    cam = camera
    if isinstance(camera, str):
        cam = m.camera(camera).id
    renderer.update_scene(d, camera=cam)
    return renderer.render().copy(), renderer


def write_video(frames: list[np.ndarray], path: str | Path, fps: int) -> Path:
    """Encode frames to an mp4 (imageio-ffmpeg)."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=8) as w:
        for f in frames:
            w.append_data(f)
    return path
