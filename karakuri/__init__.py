"""Karakuri: train robot policies in MuJoCo, export one ONNX file, run it at a fixed rate."""

import os as _os

__version__ = "0.1.0"

# MuJoCo picks its OpenGL platform when it is first imported: on a headless machine (no
# DISPLAY) offscreen rendering needs EGL, so say so before anything imports mujoco.
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    _os.environ["MUJOCO_GL"] = "egl"
