"""A robot's kinematic chain and its forward kinematics in numpy: no MuJoCo on the edge box.

The chain is the path of bodies from the model's world frame to the tool: for each body its
fixed pose in the parent body (position, unit quaternion w-x-y-z) and the joints that move it
(hinge or slide, axis and anchor in the body frame, the model's reference position), then the
tool frame in the last body.  :func:`chain_from_model` reads it off a compiled ``MjModel``
(MJCF or URDF) without importing MuJoCo; :class:`KinematicChain` evaluates it exactly as
MuJoCo's ``mj_kinematics`` composes frames, so the tool position agrees with ``site_xpos`` to
rounding (tests: within 1e-6 m on random poses of every shipped robot and a URDF).

Frames: positions are in the model's world frame (the frame the MJCF's ``worldbody`` defines,
the one ``site_xpos`` and the tasks' sensors use), m.  Joint values are in the spec's order.
The chain travels as JSON in :meth:`RobotSpec.to_dict` (key ``kinematics``), so a policy
file's metadata carries it to the edge box.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class KinematicsError(ValueError):
    """A chain cannot be built or read; the message names the body, joint or key."""


def quat_to_mat(q: Sequence[float]) -> np.ndarray:
    """Rotation matrix of a unit quaternion ``(w, x, y, z)``. Shape: (3, 3)."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def axis_angle_to_mat(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation of ``angle`` rad about the unit ``axis`` (Rodrigues). Shape: (3, 3)."""
    x, y, z = axis
    c, s = np.cos(angle), np.sin(angle)
    t = 1.0 - c
    return np.array([
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ])


@dataclass(frozen=True)
class ChainJoint:
    """One joint on the chain.

    Attributes:
        name: Joint name (one of the spec's ``joint_names``).
        index: Its position in the spec's ``joint_names`` (the command vector).
        kind: ``"hinge"`` (rad) or ``"slide"`` (m).
        axis: Unit axis in the body frame. Shape: (3,).
        anchor: A point on the axis in the body frame, m. Shape: (3,).
        ref: Joint value at which the body sits at its fixed pose (MuJoCo ``qpos0``).
        damping: Viscous friction, N·m·s/rad (the model's; the force estimate expects it).
        armature: Rotor inertia, kg·m² (reflected through the gearbox).
        frictionloss: Dry friction, N·m.
    """

    name: str
    index: int
    kind: str
    axis: tuple[float, float, float]
    anchor: tuple[float, float, float]
    ref: float = 0.0
    damping: float = 0.0
    armature: float = 0.0
    frictionloss: float = 0.0


@dataclass(frozen=True)
class ChainBody:
    """One body on the chain: its fixed pose in the parent body, then its joints.

    Attributes:
        name: Body name (for messages).
        pos: Position in the parent body, m. Shape: (3,).
        quat: Orientation in the parent body, unit quaternion (w, x, y, z).
        joints: Joints that move this body relative to its parent, applied in order.
        mass: Mass of the body and of every body rigidly carried by it off the chain (a
            gripper's fingers at their reference position), kg; 0: no inertia known.
        com: Centre of that mass in the body frame, m. Shape: (3,).
        inertia: Its inertia about ``com`` in the body frame, kg·m²: (xx, yy, zz, xy, xz, yz).
        gravcomp: Fraction of its weight the robot's controller compensates (MuJoCo
            ``gravcomp``; mass-weighted when lumped).
    """

    name: str
    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float]
    joints: tuple[ChainJoint, ...] = ()
    mass: float = 0.0
    com: tuple[float, float, float] = (0.0, 0.0, 0.0)
    inertia: tuple[float, float, float, float, float, float] = (0.0,) * 6
    gravcomp: float = 0.0


class KinematicChain:
    """Forward kinematics and the tool Jacobian of a serial chain, numpy only.

    Args:
        bodies: World's child first, the tool's body last.
        tool_pos: Tool point in the last body, m. Shape: (3,).
        tool_quat: Tool frame orientation in the last body (w, x, y, z).
        n_joints: Length of the joint vector the chain reads (the spec's ``n_joints``).
        tool: Name of the tool site (or body) the chain ends at (for messages).
        gravity: Gravity in the world frame, m/s². Shape: (3,).
    """

    def __init__(self, bodies: Sequence[ChainBody], tool_pos: Sequence[float],
                 tool_quat: Sequence[float], n_joints: int, tool: str = "",
                 gravity: Sequence[float] = (0.0, 0.0, -9.81)) -> None:
        if not bodies:
            raise KinematicsError("kinematic chain: no bodies")
        seen = [j.index for b in bodies for j in b.joints]
        if len(set(seen)) != len(seen) or any(not 0 <= i < n_joints for i in seen):
            raise KinematicsError(f"kinematic chain: joint indices {seen} must be distinct and in "
                                  f"[0, {n_joints})")
        for b in bodies:
            for j in b.joints:
                if j.kind not in ("hinge", "slide"):
                    raise KinematicsError(f"kinematic chain: joint {j.name!r} is a {j.kind!r} "
                                          f"joint; only hinge and slide joints are supported")
        self.bodies, self.n_joints, self.tool = tuple(bodies), int(n_joints), tool
        self.gravity = np.asarray(gravity, np.float64)
        self.tool_pos = np.asarray(tool_pos, np.float64)
        self.tool_quat = np.asarray(tool_quat, np.float64)
        self._fixed = [(np.asarray(b.pos, np.float64), quat_to_mat(b.quat)) for b in bodies]
        self._joints = [[(j.index, j.kind == "hinge", np.asarray(j.axis, np.float64)
                          / np.linalg.norm(j.axis), np.asarray(j.anchor, np.float64), j.ref)
                         for j in b.joints] for b in bodies]
        self.joint_indices = tuple(seen)
        self._fixed_f = [(tuple(p.tolist()), tuple(r.ravel().tolist())) for p, r in self._fixed]
        self._joints_f = [[(i, h, tuple(a.tolist()), tuple(c.tolist()), r) for i, h, a, c, r in b]
                          for b in self._joints]
        self.damping, self.armature, self.frictionloss = (np.zeros(n_joints) for _ in range(3))
        for j in (j for b in bodies for j in b.joints):
            self.damping[j.index], self.armature[j.index] = j.damping, j.armature
            self.frictionloss[j.index] = j.frictionloss

    # ----------------------------------------------------------------------- evaluation
    def _walk(self, q: np.ndarray, joints_out: list | None = None,
              bodies_out: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Compose the frames as ``mj_kinematics`` does, in plain floats.

        Numpy's per-call overhead on 3-vectors made this several times slower; the care stage
        evaluates it a few times per tick.  ``joints_out`` gets (index, hinge, world axis,
        world anchor) per joint; ``bodies_out`` gets (world position, row-major rotation,
        number of joints so far) per body.
        """
        px = py = pz = 0.0
        m = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        for (bpos, bmat), joints in zip(self._fixed_f, self._joints_f, strict=True):
            px, py, pz = _add(px, py, pz, _mv(m, bpos))
            m = _mm(m, bmat)
            for index, hinge, axis, anchor, ref in joints:
                value = float(q[index]) - ref
                if hinge:
                    ax, ay, az = _add(px, py, pz, _mv(m, anchor))
                    if joints_out is not None:
                        joints_out.append((index, True, _mv(m, axis), (ax, ay, az)))
                    m = _mm(m, _rot(axis, value))
                    rx, ry, rz = _mv(m, anchor)
                    px, py, pz = ax - rx, ay - ry, az - rz
                else:
                    x_axis = _mv(m, axis)
                    if joints_out is not None:
                        joints_out.append((index, False, x_axis, (0.0, 0.0, 0.0)))
                    px, py, pz = (px + x_axis[0] * value, py + x_axis[1] * value,
                                  pz + x_axis[2] * value)
            if bodies_out is not None:
                bodies_out.append(((px, py, pz), m, len(joints_out or ())))
        return np.array((px, py, pz)), np.array(m).reshape(3, 3)

    def _check(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, np.float64)
        if q.shape != (self.n_joints,):
            raise KinematicsError(f"forward kinematics needs {self.n_joints} joint values, got "
                                  f"shape {q.shape}")
        return q

    def tool_pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tool position (3,), m, and orientation (3, 3), world frame, at joint values ``q``."""
        pos, mat = self._walk(self._check(q))
        return pos + mat @ self.tool_pos, mat @ quat_to_mat(self.tool_quat)

    def tool_position(self, q: np.ndarray) -> np.ndarray:
        """Tool position at joint values ``q`` (n_joints,), m, world frame. Shape: (3,)."""
        pos, mat = self._walk(self._check(q))
        return pos + mat @ self.tool_pos

    __call__ = tool_position  # a KinematicChain is a ForwardKinematics

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """Geometric Jacobian of the tool point, world frame. Shape: (6, n_joints).

        Rows 0-2 map joint velocities to the tool's linear velocity (m/s), rows 3-5 to its
        angular velocity (rad/s); columns of joints not on the chain are zero.
        """
        joints: list[tuple[int, bool, Vec3, Vec3]] = []
        pos, mat = self._walk(self._check(q), joints)
        tx, ty, tz = (pos + mat @ self.tool_pos).tolist()
        jac = np.zeros((6, self.n_joints))
        for index, hinge, (ax, ay, az), (px, py, pz) in joints:
            if hinge:  # axis x (tool - anchor), in floats (np.cross costs more than the rest)
                rx, ry, rz = tx - px, ty - py, tz - pz
                jac[:, index] += (ay * rz - az * ry, az * rx - ax * rz, ax * ry - ay * rx,
                                  ax, ay, az)
            else:
                jac[:3, index] += (ax, ay, az)
        return jac

    # ----------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (inverse: :meth:`from_dict`)."""
        return {
            "frame": "world", "tool": self.tool, "n_joints": self.n_joints,
            "gravity": self.gravity.tolist(),
            "tool_pos": self.tool_pos.tolist(), "tool_quat": self.tool_quat.tolist(),
            "bodies": [{"name": b.name, "pos": list(b.pos), "quat": list(b.quat),
                        "joints": [{"name": j.name, "index": j.index, "kind": j.kind,
                                    "axis": list(j.axis), "anchor": list(j.anchor),
                                    "ref": j.ref, "damping": j.damping, "armature": j.armature,
                                    "frictionloss": j.frictionloss}
                                   for j in b.joints],
                        "mass": b.mass, "com": list(b.com), "inertia": list(b.inertia),
                        "gravcomp": b.gravcomp} for b in self.bodies],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KinematicChain:
        """Read a chain written by :meth:`to_dict`; a missing or bad key is named."""
        try:
            bodies = [ChainBody(str(b["name"]), _vec(b["pos"], 3), _vec(b["quat"], 4),
                                tuple(ChainJoint(str(j["name"]), int(j["index"]), str(j["kind"]),
                                                 _vec(j["axis"], 3), _vec(j["anchor"], 3),
                                                 float(j.get("ref", 0.0)),
                                                 float(j.get("damping", 0.0)),
                                                 float(j.get("armature", 0.0)),
                                                 float(j.get("frictionloss", 0.0)))
                                      for j in b.get("joints", ())),
                                float(b.get("mass", 0.0)), _vec(b.get("com", (0, 0, 0)), 3),
                                _vec(b.get("inertia", (0,) * 6), 6),
                                float(b.get("gravcomp", 0.0)))
                      for b in d["bodies"]]
            return cls(bodies, _vec(d["tool_pos"], 3), _vec(d.get("tool_quat", (1, 0, 0, 0)), 4),
                       int(d["n_joints"]), str(d.get("tool", "")),
                       _vec(d.get("gravity", (0.0, 0.0, -9.81)), 3))
        except KeyError as e:
            raise KinematicsError(f"kinematics: missing key {e.args[0]!r}") from e
        except (TypeError, ValueError) as e:
            raise KinematicsError(f"kinematics: malformed chain: {e}") from e


Vec3 = tuple[float, float, float]
Mat3 = tuple[float, ...]  # row-major 3x3


def _mv(m: Mat3, v: Vec3) -> Vec3:
    return (m[0] * v[0] + m[1] * v[1] + m[2] * v[2], m[3] * v[0] + m[4] * v[1] + m[5] * v[2],
            m[6] * v[0] + m[7] * v[1] + m[8] * v[2])


def _add(x: float, y: float, z: float, v: Vec3) -> Vec3:
    return x + v[0], y + v[1], z + v[2]


def _mm(a: Mat3, b: Mat3) -> Mat3:
    a0, a1, a2, a3, a4, a5, a6, a7, a8 = a
    b0, b1, b2, b3, b4, b5, b6, b7, b8 = b
    return (a0 * b0 + a1 * b3 + a2 * b6, a0 * b1 + a1 * b4 + a2 * b7, a0 * b2 + a1 * b5 + a2 * b8,
            a3 * b0 + a4 * b3 + a5 * b6, a3 * b1 + a4 * b4 + a5 * b7, a3 * b2 + a4 * b5 + a5 * b8,
            a6 * b0 + a7 * b3 + a8 * b6, a6 * b1 + a7 * b4 + a8 * b7, a6 * b2 + a7 * b5 + a8 * b8)


def _rot(axis: Vec3, angle: float) -> Mat3:
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    t = 1.0 - c
    return (t * x * x + c, t * x * y - s * z, t * x * z + s * y,
            t * x * y + s * z, t * y * y + c, t * y * z - s * x,
            t * x * z - s * y, t * y * z + s * x, t * z * z + c)


def _vec(v: Any, n: int) -> tuple[float, ...]:
    out = tuple(float(x) for x in v)
    if len(out) != n or not np.all(np.isfinite(out)):
        raise KinematicsError(f"kinematics: expected {n} finite numbers, got {list(v)}")
    return out  # type: ignore[return-value]


def chain_from_model(model: Any, joint_names: Sequence[str], tool_site: str = "",
                     tool_body: str = "") -> KinematicChain:
    """Read the chain from world to ``tool_site`` (or ``tool_body``'s origin) of a compiled model.

    Reads the model's arrays only (``body_pos``, ``body_quat``, ``jnt_axis``...), so it needs no
    ``import mujoco`` itself.  Every joint between the world and the tool must be one of
    ``joint_names`` (a passive joint there would move the tool without the chain knowing).

    Args:
        model: A compiled ``mujoco.MjModel``.
        joint_names: The spec's joints, in command order.
        tool_site: Site at the tool centre point; or empty and ``tool_body`` given.
        tool_body: A body whose origin is the tool (a URDF has no sites).

    Raises:
        KinematicsError: the tool is unknown, or a joint on the path is not commanded or is a
            ball or free joint.
    """
    names = list(joint_names)
    if tool_site:
        try:
            site = model.site(tool_site)
        except KeyError:
            raise KinematicsError(f"kinematics: the model has no site {tool_site!r}") from None
        body, tool_pos, tool_quat = int(site.bodyid[0]), site.pos.copy(), site.quat.copy()
        tool = tool_site
    else:
        try:
            body = int(model.body(tool_body).id)
        except KeyError:
            raise KinematicsError(f"kinematics: the model has no body {tool_body!r}") from None
        tool_pos, tool_quat, tool = np.zeros(3), np.array([1.0, 0, 0, 0]), tool_body
    path = []
    while body > 0:
        path.append(body)
        body = int(model.body_parentid[body])
    kinds = {2: "slide", 3: "hinge"}
    bodies = []
    for b in reversed(path):
        joints = []
        start, count = int(model.body_jntadr[b]), int(model.body_jntnum[b])
        for j in range(start, start + max(count, 0)):
            jname = model.joint(j).name
            if jname not in names:
                raise KinematicsError(f"kinematics: joint {jname!r} moves the tool {tool!r} but "
                                      f"is not commanded; commanded joints: {names}")
            if int(model.jnt_type[j]) not in kinds:
                raise KinematicsError(f"kinematics: joint {jname!r} is a ball or free joint; "
                                      f"only hinge and slide joints are supported")
            dof = int(model.jnt_dofadr[j])
            joints.append(ChainJoint(jname, names.index(jname), kinds[int(model.jnt_type[j])],
                                     _vec(model.jnt_axis[j], 3), _vec(model.jnt_pos[j], 3),
                                     float(model.qpos0[model.jnt_qposadr[j]]),
                                     float(model.dof_damping[dof]), float(model.dof_armature[dof]),
                                     float(model.dof_frictionloss[dof])))
        mass, com, inertia, gravcomp = _lumped_inertia(model, b, set(path))
        bodies.append(ChainBody(model.body(b).name, _vec(model.body_pos[b], 3),
                                _vec(model.body_quat[b], 4), tuple(joints), mass, com, inertia,
                                gravcomp))
    return KinematicChain(bodies, tool_pos, tool_quat, len(names), tool,
                          _vec(model.opt.gravity, 3))


def _lumped_inertia(model: Any, body: int, path: set[int]
                    ) -> tuple[float, Vec3, tuple[float, ...], float]:
    """Mass, centre, inertia and gravcomp of ``body`` with its descendants off ``path``.

    The descendants are rigidly attached at their reference pose; the centre is in the body
    frame, the inertia about it (xx, yy, zz, xy, xz, yz).
    """
    items = []  # (mass, com in body frame, inertia 3x3 in body frame, gravcomp)

    def visit(b: int, pos: np.ndarray, rot: np.ndarray) -> None:
        m = float(model.body_mass[b])
        if m > 0:
            r_i = rot @ quat_to_mat(model.body_iquat[b])
            items.append((m, pos + rot @ model.body_ipos[b],
                          r_i @ np.diag(model.body_inertia[b]) @ r_i.T,
                          float(model.body_gravcomp[b])))
        for c in range(model.nbody):
            if c != b and int(model.body_parentid[c]) == b and c not in path:
                visit(c, pos + rot @ model.body_pos[c], rot @ quat_to_mat(model.body_quat[c]))

    visit(body, np.zeros(3), np.eye(3))
    mass = sum(i[0] for i in items)
    if mass <= 0:
        return 0.0, (0.0, 0.0, 0.0), (0.0,) * 6, 0.0
    com = sum(i[0] * i[1] for i in items) / mass
    inertia = np.zeros((3, 3))
    for m, c, i_c, _ in items:  # parallel axis theorem to the common centre
        r = c - com
        inertia += i_c + m * (float(r @ r) * np.eye(3) - np.outer(r, r))
    gravcomp = sum(i[0] * i[3] for i in items) / mass
    return (mass, tuple(com.tolist()),  # type: ignore[return-value]
            tuple(float(x) for x in (inertia[0, 0], inertia[1, 1], inertia[2, 2],
                                     inertia[0, 1], inertia[0, 2], inertia[1, 2])), gravcomp)
