"""What the sidecar adds to a model file before anything simulates it.

Every command (training, eval, ``karakuri sil``, deploy's FK) compiles the model at
``RobotSpec.model_path``; when the sidecar changes the model (a URDF's servos, a tool frame,
gravity compensation, a motor turned into a servo, a tendon gripper driven at its joint), the
loader writes the edited model as MJCF and points ``model_path`` at it, so every command
simulates the same robot.  These functions edit an ``mujoco.MjSpec`` in place and return one
line per change, for ``karakuri robot show``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from karakuri.robot.spec import RobotSpecError

_TRN_JOINT = mujoco.mjtTrn.mjTRN_JOINT
_TRN_TENDON = mujoco.mjtTrn.mjTRN_TENDON


def _body_of_joint(spec: mujoco.MjSpec, joint: str) -> Any:
    return spec.joint(joint).parent


def _subtree(body: Any) -> list[Any]:
    out, stack = [], [body]
    while stack:
        b = stack.pop()
        out.append(b)
        stack.extend(b.bodies)
    return out


def apply_gravity_compensation(
    spec: mujoco.MjSpec, arm_joints: list[str], on: bool
) -> tuple[str, list[str]]:
    """Compensate gravity on the arm the way Karakuri's own arms do (or remove it).

    Every body from the first arm joint's body down gets ``gravcomp="1"``, and the arm's
    joints route that force through their actuators (``actuatorgravcomp``), so it counts
    against the actuators' force limits, as an industrial controller's model-based feedforward
    does.

    Returns:
        ``(state, changes)``: state is ``"model"`` (the file already did it), ``"sidecar"``
        (added here) or ``"off"``; changes lists what was edited.
    """
    bodies = _subtree(_body_of_joint(spec, arm_joints[0]))
    joints = [spec.joint(j) for j in arm_joints]
    had = all(b.gravcomp >= 1.0 for b in bodies) and all(j.actgravcomp for j in joints)
    if on and had:
        return "model", []
    if on:
        for b in bodies:
            b.gravcomp = 1.0
        for j in joints:
            j.actgravcomp = 1
        return "sidecar", [f"gravity compensation on {len(bodies)} bodies (gravcomp=1, through "
                           "the arm's actuators)"]
    if any(b.gravcomp for b in bodies) or any(j.actgravcomp for j in joints):
        for b in bodies:
            b.gravcomp = 0.0
        for j in joints:
            j.actgravcomp = 0
        return "off", ["gravity compensation removed (sidecar gravity_compensation: false)"]
    return "off", []


def add_tool_frame(spec: mujoco.MjSpec, frame: Any, site: str, where: str) -> list[str]:
    """Add a site ``site`` at ``frame = {parent, pos, quat}`` (a URDF holds no site).

    Raises:
        RobotSpecError: a malformed ``tool_frame`` or an unknown parent body, naming the
            valid bodies.
    """
    if not isinstance(frame, dict) or "parent" not in frame or set(frame) - {
        "parent", "pos", "quat"
    }:
        raise RobotSpecError(
            f"{where}: tool_frame must be {{parent: BODY, pos: [x, y, z], quat: [w, x, y, z]}} "
            f"(pos and quat optional), got {frame!r}"
        )
    names = [b.name for b in spec.bodies if b.name]
    if frame["parent"] not in names:
        raise RobotSpecError(
            f"{where}: tool_frame parent {frame['parent']!r} is not a body (link) of the model; "
            f"bodies: {names}"
        )
    pos = [float(v) for v in frame.get("pos", [0.0, 0.0, 0.0])]
    quat = [float(v) for v in frame.get("quat", [1.0, 0.0, 0.0, 0.0])]
    if len(pos) != 3 or len(quat) != 4:
        raise RobotSpecError(f"{where}: tool_frame pos needs 3 values and quat 4, got {frame!r}")
    spec.body(frame["parent"]).add_site(name=site, pos=pos, quat=quat, size=[0.01, 0, 0])
    return [f"tool site {site!r} on {frame['parent']!r} at {pos} m"]


def _kind(act: Any) -> str:
    if act.biastype == mujoco.mjtBias.mjBIAS_NONE and act.gaintype == mujoco.mjtGain.mjGAIN_FIXED:
        return "motor"
    if (
        act.biastype == mujoco.mjtBias.mjBIAS_AFFINE
        and act.gaintype == mujoco.mjtGain.mjGAIN_FIXED
        and act.dyntype == mujoco.mjtDyn.mjDYN_NONE
        and act.gainprm[0] > 0
        and abs(act.biasprm[1] + act.gainprm[0]) <= 1e-9 * act.gainprm[0]
    ):
        return "position"
    return "other"


def _position_servo(act: Any, kp: float, kd: float, effort: float, lo: float, hi: float) -> None:
    act.trntype = _TRN_JOINT
    act.set_to_position(kp=kp, kv=kd)
    act.gear = [1, 0, 0, 0, 0, 0]
    act.forcelimited = 1
    act.forcerange = [-effort, effort]
    act.ctrllimited = 1
    act.ctrlrange = [lo, hi]


def _tendon_of(spec: mujoco.MjSpec, joint: str) -> tuple[Any, list[tuple[str, float]]] | None:
    for a in spec.actuators:
        if a.trntype != _TRN_TENDON:
            continue
        tendon = spec.tendon(a.target)
        if tendon is None:
            continue
        wraps = [
            (w.target.name, float(w.coef))
            for w in tendon.path
            if w.type == mujoco.mjtWrap.mjWRAP_JOINT
        ]
        if any(j == joint for j, _ in wraps):
            return a, wraps
    return None


def _coupled(spec: mujoco.MjSpec, a: str, b: str) -> bool:
    return any(
        e.type == mujoco.mjtEq.mjEQ_JOINT and {e.name1, e.name2} == {a, b}
        for e in spec.equalities
    )


def drive_joints(
    spec: mujoco.MjSpec,
    joints: list[str],
    ranges: dict[str, tuple[float, float]],
    sc: dict[str, Any],
    where: str,
) -> list[str]:
    """Give every commanded joint one position servo on the joint itself.

    * a position actuator (``<position>``, or ``<general>`` with an affine bias of -kp): kept;
      sidecar ``kp``/``kd`` overwrite its gains (so what is shown is what is simulated);
    * a torque ``<motor>``: replaced by a position servo of the sidecar's ``kp``/``kd`` (its
      force range kept), or refused naming those keys;
    * a tendon-driven gripper (e.g. two fingers on one tendon): the tendon actuator is replaced
      by a servo on the commanded finger of the tendon's stiffness, and the other fingers follow
      it through the model's joint equality (one is added when none couples them);
    * no actuator (a URDF): a servo from the sidecar's ``kp``, ``kd`` and ``effort_limit``.

    Raises:
        RobotSpecError: a joint that cannot be driven, naming the sidecar keys that fix it.
    """
    changes: list[str] = []

    def given(key: str, i: int) -> float | None:
        return float(sc[key][i]) if key in sc and sc[key] is not None else None

    for i, j in enumerate(joints):
        lo, hi = ranges[j]
        acts = [a for a in spec.actuators if a.trntype == _TRN_JOINT and a.target == j]
        kp, kd, eff = given("kp", i), given("kd", i), given("effort_limit", i)
        if acts:
            act = acts[0]
            kind = _kind(act)
            if kind == "position":
                if kp is not None or kd is not None:
                    k = kp if kp is not None else float(act.gainprm[0])
                    d = kd if kd is not None else float(-act.biasprm[2])
                    act.gainprm[0], act.biasprm[1], act.biasprm[2] = k, -k, -d
                    changes.append(f"{j}: servo gains from the sidecar (kp {k:g}, kd {d:g})")
                continue
            if kp is None or kd is None:
                what = "a torque <motor>" if kind == "motor" else "a non-position actuator"
                raise RobotSpecError(
                    f"{where}: joint {j!r} is driven by {what} ({act.name or 'unnamed'!r}); "
                    "Karakuri commands joint positions: give kp and kd in the sidecar (one value "
                    "per joint, N*m/rad and N*m*s/rad) and the loader replaces it with a "
                    "position servo of those gains"
                )
            limit = eff or float(act.forcerange[1]) or float(abs(act.ctrlrange[1] * act.gear[0]))
            if not limit:
                raise RobotSpecError(f"{where}: joint {j!r}: give effort_limit in the sidecar")
            _position_servo(act, kp, kd, limit, lo, hi)
            changes.append(f"{j}: {kind} actuator replaced by a position servo "
                           f"(kp {kp:g}, kd {kd:g}, +-{limit:g})")
            continue
        tend = _tendon_of(spec, j)
        if tend is not None:
            act, wraps = tend
            coef = dict(wraps)[j]
            k = kp if kp is not None else float(-act.biasprm[1]) * abs(coef)
            d = kd if kd is not None else float(-act.biasprm[2]) * abs(coef)
            limit = eff or float(act.forcerange[1]) * abs(coef)
            if k <= 0 or not limit:
                raise RobotSpecError(
                    f"{where}: gripper joint {j!r} is driven through tendon {act.target!r}, "
                    "whose actuator is not a position servo; give kp, kd and effort_limit in the "
                    "sidecar"
                )
            tendon_name = act.target
            _position_servo(act, k, d, limit, lo, hi)
            act.target = j
            for other, c in wraps:
                if other != j and not _coupled(spec, j, other):
                    spec.add_equality(type=mujoco.mjtEq.mjEQ_JOINT, name1=other, name2=j,
                                      data=np.array([0, c / coef, 0, 0, 0] + [0] * 6))
            changes.append(f"{j}: tendon {tendon_name!r} actuator now drives {j!r} "
                           f"(kp {k:g}, kd {d:g}); the other fingers follow by equality")
            continue
        missing = [k for k, v in (("kp", kp), ("kd", kd), ("effort_limit", eff)) if v is None]
        if missing:
            raise RobotSpecError(
                f"{where}: joint {j!r} has no actuator in the model (a URDF has none); give "
                f"{', '.join(missing)} in the sidecar (one value per joint) and the loader adds "
                "a position servo"
            )
        act = spec.add_actuator(name=j, target=j)
        _position_servo(act, kp, kd, eff, lo, hi)
        changes.append(f"{j}: position servo added (kp {kp:g}, kd {kd:g}, +-{eff:g})")
    return changes


def set_armature(spec: mujoco.MjSpec, joints: list[str], values: list[float]) -> list[str]:
    """Reflected rotor inertia per joint, kg*m^2 (a URDF cannot say it)."""
    for j, v in zip(joints, values, strict=True):
        spec.joint(j).armature = float(v)
    return [f"armature {list(map(float, values))}"]


def write_model(spec: mujoco.MjSpec, source: Path, name: str, cache: Path) -> Path:
    """Write the edited model as MJCF under ``cache``, named by its content; return the path."""
    import hashlib
    import os

    for attr in ("meshdir", "texturedir"):
        rel = getattr(spec, attr) or ""
        setattr(spec, attr, str((source.parent / rel).resolve()) + "/")
    xml = spec.to_xml()
    digest = hashlib.sha256(xml.encode()).hexdigest()[:12]
    out = cache / f"{name}-{digest}.xml"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(xml)
        os.replace(tmp, out)
    return out
