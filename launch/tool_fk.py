"""Tool-site forward kinematics from a robot's MuJoCo model, for the deploy path.

Split from :mod:`karakuri.launch.deploy` (which re-exports :func:`mujoco_fk`) so that the link
registry (:mod:`karakuri.launch.schema_links`) can use it without importing the composer.
MuJoCo is imported only when it is called.
"""

from __future__ import annotations

import numpy as np

from karakuri.robot.mjcf_index import qpos_adr
from karakuri.robot.safety import ForwardKinematics, SafetyConfigError
from karakuri.robot.spec import RobotSpec


def mujoco_fk(spec: RobotSpec) -> ForwardKinematics:
    """Tool-site forward kinematics from the robot's model (needs MuJoCo and the model file)."""
    try:
        import mujoco

        from karakuri.robot.loader import load_model
    except ImportError as e:
        raise SafetyConfigError(
            "safety.workspace needs forward kinematics, computed with MuJoCo, which is not "
            "installed here; install karakuri[sim] or remove safety.workspace") from e
    if not spec.model_path or not spec.tool_site:
        raise SafetyConfigError(f"safety.workspace needs the model file and tool site of robot "
                                f"{spec.name!r}; name it by a registered name or sidecar path")
    model = load_model(spec.model_path)
    data = mujoco.MjData(model)
    adr = qpos_adr(model, spec.joint_names)
    site = model.site(spec.tool_site).id

    def fk(q: np.ndarray) -> np.ndarray:
        data.qpos[adr] = q
        mujoco.mj_kinematics(model, data)
        return data.site_xpos[site].copy()

    return fk


__all__ = ["mujoco_fk"]
