"""Build a :class:`RobotSpec` from an MJCF or URDF plus a small YAML sidecar.

The sidecar says what a model file cannot: which joints are commanded and in what order,
the tool site, the home pose, software limits (only tighter than the model's), velocity and
acceleration limits.  Servo gains and effort limits come from the model's position actuators;
sidecar ``kp``/``kd`` *replace* them in the simulated model (what ``robot show`` prints is
what is simulated).  Where the sidecar changes the model (see :mod:`karakuri.robot.model_edits`)
the edited model is written as MJCF and ``RobotSpec.model_path`` points at it, so training,
eval, export and sim-in-the-loop all run the same robot.

Sidecar keys (``*`` = required)::

    name*                 registry name
    model*                MJCF or URDF path, relative to the sidecar
    arm_joints*           list of joint names, in command order
    gripper_joints        list of joint names (default: none)
    tool_site             site at the tool centre point (default: none, or "tool" with tool_frame)
    tool_frame            {parent: BODY, pos: [x, y, z], quat: [w, x, y, z]}: adds the tool site
                          (a URDF holds no site), m, parent body frame
    default_pose*         one value per joint, rad or m
    position_limits       {joint: [lower, upper]}, only tighter than the model; required for
                          continuous joints
    velocity_limit*       one value per joint, rad/s or m/s
    accel_limit*          one value per joint
    effort_limit          one value per joint (required where the model has no actuator)
    kp, kd                one value per joint: servo gains used by the simulation (required where
                          the model has no actuator, or a torque motor to be made a servo)
    armature              one value per joint, kg*m^2 (a URDF cannot say it)
    gravity_compensation  default true: the arm's controller cancels gravity, as industrial
                          controllers (and Karakuri's arms) do; false simulates a bare arm
    tasks                 per-task settings, e.g. {reach: {target_low: [...], ...}}
    control_rate_hz       default 50
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from karakuri.robot.mjcf_index import JointIndex, MjcfIndexError
from karakuri.robot.spec import RobotSpec, RobotSpecError

_REQUIRED = ("name", "model", "arm_joints", "default_pose", "velocity_limit", "accel_limit")
_OPTIONAL = (
    "gripper_joints",
    "tool_site",
    "tool_frame",
    "position_limits",
    "effort_limit",
    "kp",
    "kd",
    "armature",
    "gravity_compensation",
    "tasks",
    "control_rate_hz",
)
# Task settings a sidecar may give, per task.
TASK_KEYS: dict[str, tuple[str, ...]] = {
    "reach": ("target_low", "target_high", "action_scale", "episode_s", "workspace_radius"),
}


def cache_dir() -> Path:
    """Where edited models are written: ``$KARAKURI_CACHE`` or ``~/.cache/karakuri``."""
    root = os.environ.get("KARAKURI_CACHE") or Path.home() / ".cache" / "karakuri"
    return Path(root) / "models"


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
    if not isinstance(data.get("gravity_compensation", True), bool):
        raise RobotSpecError(
            f"sidecar {path}: gravity_compensation must be true or false, "
            f"got {data['gravity_compensation']!r}"
        )
    tasks = data.get("tasks") or {}
    if not isinstance(tasks, dict):
        raise RobotSpecError(f"sidecar {path}: tasks must be a mapping {{task: {{key: value}}}}")
    for task, keys in tasks.items():
        if task not in TASK_KEYS:
            raise RobotSpecError(
                f"sidecar {path}: tasks.{task}: no per-robot settings for this task; "
                f"tasks with settings: {sorted(TASK_KEYS)}"
            )
        bad = sorted(set(keys or {}) - set(TASK_KEYS[task]))
        if bad:
            raise RobotSpecError(
                f"sidecar {path}: unknown key tasks.{task}.{bad[0]}; allowed: "
                f"{list(TASK_KEYS[task])}"
            )
    return data


def load_model(model_path: str | Path) -> Any:
    """Compile a model file to an ``mujoco.MjModel`` (an edited model: give its spec's path)."""
    import mujoco

    model_path = Path(model_path)
    try:
        return mujoco.MjSpec.from_file(str(model_path)).compile()
    except Exception as e:  # mujoco raises ValueError with the parser's message
        raise RobotSpecError(f"cannot load model {model_path}: {e}") from e


def _model_ranges(spec: Any, joints: list[str], where: str) -> dict[str, tuple[float, float]]:
    """The model's joint ranges (inf where a joint is continuous), from a compiled copy."""
    m = spec.copy().compile()
    out = {}
    for j in joints:
        jid = m.joint(j).id
        out[j] = tuple(m.jnt_range[jid]) if m.jnt_limited[jid] else (-np.inf, np.inf)
    return out


def _edit_model(
    sc: dict[str, Any], model_path: Path, joints: list[str], where: str
) -> tuple[Path, dict[str, Any]]:
    """Apply the sidecar to the model; returns the path to simulate and what was done."""
    import mujoco

    from karakuri.robot import model_edits as ed

    try:
        spec = mujoco.MjSpec.from_file(str(model_path))
    except Exception as e:
        raise RobotSpecError(f"cannot load model {model_path}: {e}") from e
    urdf = model_path.suffix.lower() == ".urdf"
    if urdf:
        # a URDF says nothing about integration; stiff servos need the implicit damping path,
        # and fixed links must stay bodies so a tool frame can hang from e.g. tool0
        spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        spec.compiler.fusestatic = False
    model_joints = [j.name for j in spec.joints]
    for j in joints:
        if j not in model_joints:
            raise RobotSpecError(
                f"{where}: joint {j!r} is not in {model_path.name}; its joints: {model_joints}"
            )
    changes: list[str] = []
    if urdf:
        changes.append("URDF: implicitfast integrator, fixed links kept as bodies")
    if "armature" in sc:
        changes += ed.set_armature(spec, joints, _per_joint(sc, "armature", joints, where))
    ranges = _model_ranges(spec, joints, where)
    for j, lim in (sc.get("position_limits") or {}).items():
        if j in ranges:
            ranges[j] = (float(lim[0]), float(lim[1]))
    changes += ed.drive_joints(spec, joints, ranges, sc, where)
    grav, g_changes = ed.apply_gravity_compensation(
        spec, list(sc["arm_joints"]), bool(sc.get("gravity_compensation", True))
    )
    changes += g_changes
    if sc.get("tool_frame") is not None:
        changes += ed.add_tool_frame(spec, sc["tool_frame"], sc.get("tool_site") or "tool", where)
    path = model_path
    if changes:
        path = ed.write_model(spec, model_path, str(sc["name"]), cache_dir())
    info = {"gravity_compensation": grav, "model_changes": changes, "source_model": str(model_path)}
    return path, info


def _per_joint(sc: dict[str, Any], key: str, joints: list[str], where: str) -> np.ndarray:
    try:
        v = np.asarray(sc[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise RobotSpecError(
            f"{where}: {key!r} must be a list of numbers, got {sc[key]!r}"
        ) from None
    if v.shape != (len(joints),):
        raise RobotSpecError(
            f"{where}: {key!r} has {v.size} values, expected {len(joints)} (one per joint {joints})"
        )
    return v


def spec_from_files(sidecar_path: str | Path) -> RobotSpec:
    """Read a sidecar and its model, check one against the other, return the spec."""
    sidecar_path = Path(sidecar_path).resolve()
    where = f"sidecar {sidecar_path}"
    sc = read_sidecar(sidecar_path)
    model_path = (sidecar_path.parent / sc["model"]).resolve()
    joints = list(sc["arm_joints"]) + list(sc.get("gripper_joints") or [])
    n = len(joints)
    for key in ("kp", "kd", "effort_limit"):
        if key in sc:
            _per_joint(sc, key, joints, where)
    sim_path, info = _edit_model(sc, model_path, joints, where)
    model = load_model(sim_path)

    tool = sc.get("tool_site") or ("tool" if sc.get("tool_frame") is not None else "")
    if tool:
        sites = [model.site(i).name for i in range(model.nsite)]
        if tool not in sites:
            raise RobotSpecError(
                f"{where}: site {tool!r} is not in {model_path.name}; its sites: {sites} "
                "(or give tool_frame: {parent: BODY, pos: [x, y, z]} to add one)"
            )

    lower, upper = np.empty(n), np.empty(n)
    kp, kd, effort, damping = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    try:
        index = JointIndex.build(model, joints)  # each joint's actuator: the first on it
    except MjcfIndexError as e:
        raise RobotSpecError(f"{where}: {e}") from e
    for i, (jid, dof, act) in enumerate(zip(index.joint, index.dof, index.act, strict=True)):
        damping[i] = model.dof_damping[dof]
        if model.jnt_limited[jid]:
            lower[i], upper[i] = model.jnt_range[jid]
        else:
            lower[i], upper[i] = -np.inf, np.inf
        kp[i] = model.actuator_gainprm[act, 0]
        kd[i] = -model.actuator_biasprm[act, 2] + 0.0  # no -0.0
        effort[i] = (
            model.actuator_forcerange[act, 1]
            if model.actuator_forcelimited[act]
            else model.jnt_actfrcrange[jid, 1]
        )
    if "effort_limit" in sc:
        effort[:] = _per_joint(sc, "effort_limit", joints, where)
    for j, lim in (sc.get("position_limits") or {}).items():
        if j not in joints:
            raise RobotSpecError(
                f"{where}: position_limits names joint {j!r}, which is not "
                f"commanded; commanded joints: {joints}"
            )
        i = joints.index(j)
        lo, hi = float(lim[0]), float(lim[1])
        if lo < lower[i] - 1e-9 or hi > upper[i] + 1e-9:
            raise RobotSpecError(
                f"{where}: position_limits for {j!r} [{lo}, {hi}] are wider "
                f"than the model's [{lower[i]:.4f}, {upper[i]:.4f}]; they may only tighten"
            )
        lower[i], upper[i] = lo, hi
    if not np.all(np.isfinite(lower) & np.isfinite(upper)):
        bad = [joints[i] for i in np.flatnonzero(~(np.isfinite(lower) & np.isfinite(upper)))]
        raise RobotSpecError(
            f"{where}: joints {bad} are continuous (no range in {model_path.name}); Karakuri "
            f"needs software limits: add position_limits: {{{bad[0]}: [-3.1416, 3.1416]}} "
            "(one entry per joint) to the sidecar"
        )
    info["tasks"] = dict(sc.get("tasks") or {})
    info["joint_damping"] = damping.tolist()
    info["sidecar"] = str(sidecar_path)
    return RobotSpec(
        name=str(sc["name"]),
        joint_names=tuple(joints),
        arm_joints=tuple(sc["arm_joints"]),
        gripper_joints=tuple(sc.get("gripper_joints") or ()),
        lower=lower,
        upper=upper,
        velocity_limit=_per_joint(sc, "velocity_limit", joints, where),
        effort_limit=effort,
        accel_limit=_per_joint(sc, "accel_limit", joints, where),
        default_pose=_per_joint(sc, "default_pose", joints, where),
        kp=kp,
        kd=kd,
        tool_site=tool,
        model_path=str(sim_path),
        control_rate_hz=float(sc.get("control_rate_hz", 50.0)),
        extra=info,
        kinematics=_chain(model, joints, tool, sc["arm_joints"]),
    )


def _chain(model: Any, joints: list[str], tool: str, arm: list[str]) -> Any:
    """The world-to-tool :class:`KinematicChain`: to the tool site, else the last arm joint's body.

    None when the path holds a joint it cannot follow (what needs FK then says so).
    """
    from karakuri.robot.kinematics import KinematicsError, chain_from_model

    try:
        if tool:
            return chain_from_model(model, joints, tool_site=tool)
        body = int(model.joint(arm[-1]).bodyid[0])
        return chain_from_model(model, joints, tool_body=model.body(body).name)
    except KinematicsError:
        return None

