"""``karakuri robot check``: the pre-flight a new user runs on a sidecar before training.

Each item is measured in MuJoCo on the model exactly as training will simulate it, and gets a
verdict (``ok``, ``warn``, ``fail``) and, when not ok, the sidecar key that fixes it:

* ``load``: the sidecar and model parse and agree (joints, limits, actuators, tool site);
* ``servos``: how each commanded joint is driven (and what the loader changed);
* ``gravity``: sag at home with a zero action for one reach episode (target = measured pose);
* ``speed``: joint speed under reach's largest action, against the velocity limits;
* ``lead``: the position lead that speed takes, against how far the joint moves in one
  control period (a lead below that is eaten by one period of latency in the deployed loop);
* ``workspace``: where reach's targets come from, and whether home and the targets agree;
* ``gripper``: gripper joints found and how the fingers are coupled; actuated joints the
  sidecar does not command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from karakuri.robot.mjcf_index import actuator_adr, dof_adr, qpos_adr
from karakuri.robot.spec import RobotSpec, RobotSpecError

SAG_LIMIT_M = 0.02  # tool drift at home under zero action counted as a fail, m
SLOW_FRACTION = 0.05  # a full action moving a joint slower than this x its limit: warn


@dataclass(frozen=True)
class Item:
    """One pre-flight verdict.

    Attributes:
        name: Item name (``load``, ``gravity``, ...).
        verdict: ``ok``, ``warn`` or ``fail``.
        detail: What was measured, with units.
        fix: The sidecar key (and value) that fixes it; empty when ok.
    """

    name: str
    verdict: str
    detail: str
    fix: str = ""


def _set_pose(model: Any, data: Any, spec: RobotSpec, q: np.ndarray) -> np.ndarray:
    import mujoco

    adr = qpos_adr(model, spec.joint_names)
    mujoco.mj_resetData(model, data)
    data.qpos[adr] = q
    mujoco.mj_forward(model, data)
    return adr


def _hold(model: Any, spec: RobotSpec, seconds: float, ctrl_dt: float,
          lead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Delta control from the measured pose with a constant lead (rad) on the arm joints.

    Returns:
        (tool drift from home, m, per control step; peak |joint speed| per arm joint, rad/s).
    """
    import mujoco

    data = mujoco.MjData(model)
    adr = _set_pose(model, data, spec, spec.default_pose)
    acts = actuator_adr(model, spec.joint_names)
    site = model.site(spec.tool_site).id
    home = data.site_xpos[site].copy()
    n = spec.n_arm
    dof = dof_adr(model, spec.arm_joints)
    sub = max(1, round(ctrl_dt / model.opt.timestep))
    drift, peak = [], np.zeros(n)
    for _ in range(round(seconds / ctrl_dt)):
        q = data.qpos[adr].copy()
        target = spec.default_pose.copy()
        target[:n] = np.clip(q[:n] + lead, spec.lower[:n], spec.upper[:n])
        data.ctrl[acts] = target
        mujoco.mj_step(model, data, nstep=sub)
        peak = np.maximum(peak, np.abs(data.qvel[dof]))
        drift.append(float(np.linalg.norm(data.site_xpos[site] - home)))
    return np.asarray(drift), peak


def check_robot(name_or_path: str | Path) -> tuple[RobotSpec | None, list[Item]]:
    """Run every pre-flight item; the spec is None when the sidecar does not load."""
    from karakuri.robot.loader import load_model
    from karakuri.robot.registry import load_robot

    try:
        spec = load_robot(name_or_path)
    except RobotSpecError as e:
        return None, [Item("load", "fail", str(e), _fix_of(str(e)))]
    items = [Item("load", "ok", f"{spec.n_joints} joints ({spec.n_arm} arm), model "
                  f"{spec.extra.get('source_model', spec.model_path)}")]
    changes = spec.extra.get("model_changes", [])
    items.append(Item("servos", "ok", "; ".join(changes) or "the model's position actuators, "
                      "unchanged"))
    if not spec.tool_site:
        items.append(Item("tool", "fail", "no tool site: reach cannot measure the tool",
                          "tool_site: SITE, or tool_frame: {parent: BODY, pos: [x, y, z]}"))
        return spec, items
    model = load_model(spec.model_path)
    items += _dynamics_items(model, spec)
    items.append(_workspace_item(model, spec))
    items.append(_gripper_item(model, spec))
    return spec, items


def _dynamics_items(model: Any, spec: RobotSpec) -> list[Item]:
    from karakuri.sim.tasks.reach import reach_config

    cfg = reach_config(spec)
    grav = spec.extra.get("gravity_compensation", "model")
    drift, _ = _hold(model, spec, cfg.episode_s, cfg.ctrl_dt, np.zeros(spec.n_arm))
    sag = float(drift.max())
    sag_item = Item(
        "gravity",
        "ok" if sag < SAG_LIMIT_M else "fail",
        f"tool drifts {1000 * sag:.1f} mm from home in {cfg.episode_s:g} s of zero action "
        f"(gravity compensation: {grav})",
        "" if sag < SAG_LIMIT_M else "gravity_compensation: true (or stiffer kp)",
    )
    scale = np.broadcast_to(np.atleast_1d(np.asarray(cfg.action_scale, float)), (spec.n_arm,))
    _, peak = _hold(model, spec, 0.5, cfg.ctrl_dt, scale)
    ratio = peak / spec.velocity_limit[: spec.n_arm]
    fast = [spec.arm_joints[i] for i in np.flatnonzero(ratio > 1.0)]
    slow = [spec.arm_joints[i] for i in np.flatnonzero(ratio < SLOW_FRACTION)]
    detail = (f"full action (scale {np.round(scale, 4).tolist()} rad) moves the arm joints at "
              f"{np.round(100 * ratio).astype(int).tolist()} % of their velocity limits")
    if fast:
        speed = Item("speed", "fail", f"{detail}; {fast} exceed them",
                     "tasks.reach.action_scale (smaller), or velocity_limit")
    elif slow:
        speed = Item("speed", "warn", f"{detail}; {slow} barely move",
                     "tasks.reach.action_scale (larger), or kd")
    else:
        speed = Item("speed", "ok", detail)
    return [sag_item, speed, _lead_item(spec, cfg.ctrl_dt),
            Item("episode", "ok", f"{cfg.episode_s:g} s per episode at {1 / cfg.ctrl_dt:g} Hz")]


def _lead_item(spec: RobotSpec, ctrl_dt: float) -> Item:
    """Lead per unit of speed, (kd + b) / kp s, against one control period."""
    n = spec.n_arm
    b = np.asarray(spec.extra.get("joint_damping", np.zeros(spec.n_joints)))[:n]
    periods = (spec.kd[:n] + b) / np.maximum(spec.kp[:n], 1e-9) / ctrl_dt
    short = [spec.arm_joints[i] for i in np.flatnonzero(periods < 1.0)]
    detail = (f"a full action's position lead is {np.round(periods, 2).tolist()} control "
              "periods of the motion it causes")
    if short:
        return Item("lead", "fail",
                    f"{detail}; on {short} one period of loop latency (or the safety filter's "
                    "acceleration limit) eats the whole action: it trains in sim and can fail "
                    "deployed",
                    f"kd (servo damping) for {short}, so (kd + b) / kp >= {ctrl_dt:g} s")
    return Item("lead", "ok", detail)


def _workspace_item(model: Any, spec: RobotSpec) -> Item:
    from karakuri.sim.tasks import reach_targets as rt
    from karakuri.sim.tasks.reach import reach_config

    cfg = reach_config(spec)
    home = np.round(rt.home_tool_pos(model, spec), 3).tolist()
    if cfg.targets == "box":
        problems = rt.check_box(model, spec, cfg.target_low, cfg.target_high)
        detail = (f"targets from the sidecar box {list(cfg.target_low)}..{list(cfg.target_high)} "
                  f"m; home tool at {home} m")
        if problems:
            return Item("workspace", "fail", detail + "; " + "; ".join(problems),
                        "tasks.reach.target_low/target_high (or remove them), default_pose")
        return Item("workspace", "ok", detail)
    radius = rt.joint_radius(spec, cfg.workspace_radius, cfg.episode_s)
    try:
        pool = rt.workspace_pool(model, spec, radius, cfg.min_height)
    except ValueError as e:
        return Item("workspace", "fail", str(e), "default_pose, or tasks.reach.target_low/high")
    lo, hi = np.round(pool.min(0), 2).tolist(), np.round(pool.max(0), 2).tolist()
    return Item("workspace", "ok",
                f"targets from the arm's workspace within {_radius_text(radius)} rad of home: "
                f"x {lo[0]}..{hi[0]}, y {lo[1]}..{hi[1]}, z {lo[2]}..{hi[2]} m; home tool at "
                f"{home} m")


def _radius_text(radius: np.ndarray) -> str:
    r = np.round(radius, 3)
    return f"{r[0]:g}" if np.all(r == r[0]) else str(r.tolist())


def _gripper_item(model: Any, spec: RobotSpec) -> Item:
    from karakuri.sim.tasks.reach_targets import joint_couplings

    commanded = {model.joint(j).id for j in spec.joint_names}
    uncommanded = sorted({model.joint(int(model.actuator_trnid[a, 0])).name
                          for a in range(model.nu)
                          if model.actuator_trntype[a] == 0
                          and int(model.actuator_trnid[a, 0]) not in commanded})
    coupled = [model.joint(int(np.flatnonzero(model.jnt_qposadr == c[0])[0])).name
               for c in joint_couplings(model, spec)]
    detail = (f"gripper joints {list(spec.gripper_joints)}" if spec.gripper_joints
              else "no gripper joints")
    if coupled:
        detail += f"; {coupled} follow them by equality"
    if uncommanded:
        return Item("gripper", "warn",
                    f"{detail}; joints {uncommanded} have actuators but are not commanded "
                    "(they hold their model default)", f"gripper_joints: {uncommanded}")
    return Item("gripper", "ok", detail)


def _fix_of(message: str) -> str:
    """The sidecar key a load error names (its message already says how)."""
    for key in ("position_limits", "tool_frame", "kp", "effort_limit", "gravity_compensation",
                "default_pose", "arm_joints", "tool_site", "model"):
        if key in message:
            return key
    return "see the message"


def format_items(items: list[Item]) -> str:
    """A table: item, verdict, what was measured, and the fix."""
    width = max(len(i.name) for i in items)
    lines = []
    for i in items:
        lines.append(f"{i.name:<{width}}  {i.verdict.upper():<4}  {i.detail}")
        if i.fix:
            lines.append(f"{'':<{width}}        fix: {i.fix}")
    return "\n".join(lines)
