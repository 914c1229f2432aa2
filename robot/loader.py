"""Build a :class:`RobotSpec` from an MJCF or URDF plus a small YAML sidecar.

The sidecar says what a model file cannot: which joints are commanded and in what order,
the tool site, the home pose, software limits (only tighter than the model's), velocity and
acceleration limits.  Effort limits and servo gains come from the model's position
actuators; a URDF has none, so its sidecar gives ``kp``/``kd`` and the loader adds them.

Sidecar keys (``*`` = required)::

    name*            registry name
    model*           MJCF or URDF path, relative to the sidecar
    arm_joints*      list of joint names, in command order
    gripper_joints   list of joint names (default: none)
    tool_site        site at the tool centre point (default: none)
    default_pose*    one value per joint, rad or m
    position_limits  {joint: [lower, upper]}, only tighter than the model
    velocity_limit*  one value per joint, rad/s or m/s
    accel_limit*     one value per joint
    effort_limit     one value per joint (required where the model has no actuator)
    kp, kd           one value per joint (required where the model has no actuator)
    control_rate_hz  default 50
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from karakuri.robot.spec import RobotSpec, RobotSpecError

_REQUIRED = ("name", "model", "arm_joints", "default_pose", "velocity_limit", "accel_limit")
_OPTIONAL = (
    "gripper_joints",
    "tool_site",
    "position_limits",
    "effort_limit",
    "kp",
    "kd",
    "control_rate_hz",
)


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Parse and key-check a sidecar; errors name the key and the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RobotSpecError(f"sidecar {path} does not exist") from None
    except yaml.YAMLError as e:
        raise RobotSpecError(f"sidecar {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise RobotSpecError(f"sidecar {path}: expected a mapping at the top level")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise RobotSpecError(
            f"sidecar {path}: unknown key {unknown[0]!r}; allowed: {sorted(_REQUIRED + _OPTIONAL)}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise RobotSpecError(f"sidecar {path}: missing required key {missing[0]!r}")
    return data


def load_model(model_path: str | Path, sidecar: dict[str, Any] | None = None) -> Any:
    """Compile the model file to an ``mujoco.MjModel``, adding actuators a URDF lacks."""
    import mujoco

    model_path = Path(model_path)
    try:
        spec = mujoco.MjSpec.from_file(str(model_path))
    except Exception as e:  # mujoco raises ValueError with the parser's message
        raise RobotSpecError(f"cannot load model {model_path}: {e}") from e
    if sidecar is not None and model_path.suffix.lower() == ".urdf":
        _add_position_actuators(spec, sidecar, model_path)
    return spec.compile()


def _add_position_actuators(spec: Any, sidecar: dict[str, Any], path: Path) -> None:
    joints = list(sidecar["arm_joints"]) + list(sidecar.get("gripper_joints", []))
    have = {a.target for a in spec.actuators}
    for key in ("kp", "kd", "effort_limit"):
        if key not in sidecar:
            raise RobotSpecError(
                f"sidecar for {path}: a URDF has no actuators, so {key!r} is required"
            )
    for i, j in enumerate(joints):
        if j in have:
            continue
        act = spec.add_actuator(name=j, target=j)
        act.trntype = 0  # mjTRN_JOINT
        kp, kd, eff = (float(sidecar[k][i]) for k in ("kp", "kd", "effort_limit"))
        act.set_to_position(kp=kp, kv=kd)
        act.forcelimited = 1
        act.forcerange = [-eff, eff]


def spec_from_files(sidecar_path: str | Path) -> RobotSpec:
    """Read a sidecar and its model, check one against the other, return the spec."""
    import mujoco

    sidecar_path = Path(sidecar_path)
    sc = read_sidecar(sidecar_path)
    model_path = (sidecar_path.parent / sc["model"]).resolve()
    model = load_model(model_path, sc)

    joints = list(sc["arm_joints"]) + list(sc.get("gripper_joints") or [])
    n = len(joints)
    model_joints = [model.joint(i).name for i in range(model.njnt)]
    for j in joints:
        if j not in model_joints:
            raise RobotSpecError(
                f"sidecar {sidecar_path}: joint {j!r} is not in {model_path.name}; "
                f"its joints: {model_joints}"
            )
    tool = sc.get("tool_site", "")
    if tool:
        sites = [model.site(i).name for i in range(model.nsite)]
        if tool not in sites:
            raise RobotSpecError(
                f"sidecar {sidecar_path}: site {tool!r} is not in {model_path.name}; "
                f"its sites: {sites}"
            )

    def per_joint(key: str) -> np.ndarray:
        v = np.asarray(sc[key], dtype=np.float64)
        if v.shape != (n,):
            raise RobotSpecError(
                f"sidecar {sidecar_path}: {key!r} has {v.size} values, expected {n} "
                f"(one per joint {joints})"
            )
        return v

    lower, upper = np.empty(n), np.empty(n)
    kp, kd, effort = np.zeros(n), np.zeros(n), np.zeros(n)
    for i, j in enumerate(joints):
        jid = model.joint(j).id
        if model.jnt_limited[jid]:
            lower[i], upper[i] = model.jnt_range[jid]
        else:
            lower[i], upper[i] = -np.inf, np.inf
        act = _actuator_for(model, jid)
        if act is None:
            raise RobotSpecError(f"{model_path.name}: joint {j!r} has no actuator")
        kp[i] = model.actuator_gainprm[act, 0]
        kd[i] = -model.actuator_biasprm[act, 2]
        effort[i] = (
            model.actuator_forcerange[act, 1]
            if model.actuator_forcelimited[act]
            else model.jnt_actfrcrange[jid, 1]
        )
    for key, arr in (("kp", kp), ("kd", kd), ("effort_limit", effort)):
        if key in sc:
            arr[:] = per_joint(key)
    for j, lim in (sc.get("position_limits") or {}).items():
        if j not in joints:
            raise RobotSpecError(
                f"sidecar {sidecar_path}: position_limits names joint {j!r}, which is not "
                f"commanded; commanded joints: {joints}"
            )
        i = joints.index(j)
        lo, hi = float(lim[0]), float(lim[1])
        if lo < lower[i] - 1e-9 or hi > upper[i] + 1e-9:
            raise RobotSpecError(
                f"sidecar {sidecar_path}: position_limits for {j!r} [{lo}, {hi}] are wider "
                f"than the model's [{lower[i]:.4f}, {upper[i]:.4f}]; they may only tighten"
            )
        lower[i], upper[i] = lo, hi
    if not np.all(np.isfinite(lower) & np.isfinite(upper)):
        bad = joints[int(np.flatnonzero(~np.isfinite(lower + upper))[0])]
        raise RobotSpecError(f"joint {bad!r} has no position limits; add them to position_limits")
    del mujoco
    return RobotSpec(
        name=str(sc["name"]),
        joint_names=tuple(joints),
        arm_joints=tuple(sc["arm_joints"]),
        gripper_joints=tuple(sc.get("gripper_joints") or ()),
        lower=lower,
        upper=upper,
        velocity_limit=per_joint("velocity_limit"),
        effort_limit=effort,
        accel_limit=per_joint("accel_limit"),
        default_pose=per_joint("default_pose"),
        kp=kp,
        kd=kd,
        tool_site=tool,
        model_path=str(model_path),
        control_rate_hz=float(sc.get("control_rate_hz", 50.0)),
    )


def _actuator_for(model: Any, joint_id: int) -> int | None:
    for a in range(model.nu):
        if model.actuator_trntype[a] == 0 and model.actuator_trnid[a, 0] == joint_id:
            return a
    return None
