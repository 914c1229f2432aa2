"""The safety envelope: the tightest of the limits the operator trusts.

Effective limits = the robot description installed on this machine (a registered robot or a
sidecar named in the launch file) ∩ what the robot itself reports (the MCU's CAPS over serial)
∩ the launch file's ``safety`` overrides, which may only tighten.  A policy file never supplies
a limit: its claims (the robot spec it carries, the range its graph clips to, its control
rate) are *checked* against the envelope and a file asking for more is refused, naming the
joint, the value and the limit.  Every per-joint limit remembers which sources set it, so a
message (and ``karakuri deploy``'s log) can say where a number came from.

numpy and the standard library only (plus PyYAML, through the sidecar reader).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from karakuri.robot.spec import RobotSpec

KINDS = ("lower", "upper", "velocity_limit", "accel_limit")
#: Relative slack when comparing a claim with a limit (CAPS carries float32 limits).
CLAIM_TOL = 1e-5


class EnvelopeError(ValueError):
    """A policy asks for more than the envelope, or a limit has no trusted source."""


@dataclass(frozen=True)
class LimitSet:
    """Per-joint limits from one source, joints in the robot's command order.

    Unknown values are ``-inf`` (lower) or ``inf`` (the rest): that source says nothing.

    Attributes:
        source: Where the numbers came from, e.g. ``"description industrial_arm.yaml"``.
        lower: Lower position limits, rad (m for prismatic joints). Shape: (n,).
        upper: Upper position limits, rad (m). Shape: (n,).
        velocity_limit: Speed limits, rad/s (m/s). Shape: (n,).
        accel_limit: Acceleration limits, rad/s² (m/s²). Shape: (n,).
    """

    source: str
    lower: np.ndarray
    upper: np.ndarray
    velocity_limit: np.ndarray
    accel_limit: np.ndarray

    @classmethod
    def unknown(cls, source: str, n: int) -> LimitSet:
        """A source that says nothing about ``n`` joints (fill in what it does say)."""
        inf = np.full(n, np.inf)
        return cls(source, -inf.copy(), inf.copy(), inf.copy(), inf.copy())

    @classmethod
    def from_spec(cls, spec: RobotSpec, source: str) -> LimitSet:
        """Every limit of a full robot description."""
        return cls(source, spec.lower.astype(np.float64), spec.upper.astype(np.float64),
                   spec.velocity_limit.astype(np.float64), spec.accel_limit.astype(np.float64))


@dataclass(frozen=True)
class Envelope:
    """The intersection of trusted :class:`LimitSet` s; see the module docstring.

    Attributes:
        joint_names: Joints in command order.
        lower: Lower position limits, rad. Shape: (n,).
        upper: Upper position limits, rad. Shape: (n,).
        velocity_limit: Speed limits, rad/s. Shape: (n,).
        accel_limit: Acceleration limits, rad/s². Shape: (n,).
        origin: ``(kind, joint) -> sources`` that set the value (the tightest, ties kept).
        sources: Every source intersected, in order.
    """

    joint_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity_limit: np.ndarray
    accel_limit: np.ndarray
    origin: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    @classmethod
    def intersect(cls, joint_names: tuple[str, ...], *sets: LimitSet) -> Envelope:
        """The tightest value of each limit over ``sets``; remembers who set it."""
        n = len(joint_names)
        out = {k: (np.full(n, -np.inf) if k == "lower" else np.full(n, np.inf)) for k in KINDS}
        origin: dict[tuple[str, str], tuple[str, ...]] = {}
        for s in sets:
            for k in KINDS:
                v = np.asarray(getattr(s, k), np.float64)
                if v.shape != (n,):
                    raise EnvelopeError(f"{s.source}: {k} has {v.size} values for {n} joints "
                                        f"{list(joint_names)}")
                for i, j in enumerate(joint_names):
                    new, cur = float(v[i]), float(out[k][i])
                    if not (np.isfinite(new) or new == (-np.inf if k == "lower" else np.inf)):
                        raise EnvelopeError(f"{s.source}: {k} of joint {j!r} is {new}")
                    tighter = new > cur if k == "lower" else new < cur
                    if tighter:
                        out[k][i] = new
                        origin[(k, j)] = (s.source,)
                    elif new == cur and np.isfinite(new):
                        origin[(k, j)] = (*origin.get((k, j), ()), s.source)
        return cls(tuple(joint_names), out["lower"], out["upper"], out["velocity_limit"],
                   out["accel_limit"], origin, tuple(s.source for s in sets))

    def where(self, kind: str, joint: str) -> str:
        """The sources that set ``kind`` of ``joint``, joined with ' = '."""
        return " = ".join(self.origin.get((kind, joint), ())) or "no trusted source"

    def check_complete(self) -> None:
        """Raise unless every joint has finite position, velocity and acceleration limits.

        Raises:
            EnvelopeError: names the joint, the limit and the sources consulted.
        """
        for k in KINDS:
            for i, j in enumerate(self.joint_names):
                if not np.isfinite(getattr(self, k)[i]):
                    raise EnvelopeError(
                        f"no trusted {k} for joint {j!r}: none of {list(self.sources)} gives "
                        f"one (a policy file's own limits are never used); add it to the "
                        f"robot's sidecar, or install MuJoCo so the model file can be read")
        bad = np.flatnonzero(self.lower >= self.upper)
        if bad.size:
            j = self.joint_names[int(bad[0])]
            raise EnvelopeError(
                f"joint {j!r}: the trusted position limits do not overlap: lower "
                f"{self.lower[bad[0]]:.6g} ({self.where('lower', j)}) >= upper "
                f"{self.upper[bad[0]]:.6g} ({self.where('upper', j)})")

    def apply_to(self, spec: RobotSpec) -> RobotSpec:
        """``spec`` with its limits replaced by the envelope's (call :meth:`check_complete`).

        The default pose is clipped into the envelope (a reset phase drives there).
        """
        self.check_complete()
        if tuple(spec.joint_names) != self.joint_names:
            raise EnvelopeError(f"robot {spec.name!r} joints {list(spec.joint_names)} differ "
                                f"from the envelope's {list(self.joint_names)}")
        pose = np.clip(spec.default_pose, self.lower, self.upper)
        return dataclasses.replace(spec, lower=self.lower.copy(), upper=self.upper.copy(),
                                   velocity_limit=self.velocity_limit.copy(),
                                   accel_limit=self.accel_limit.copy(), default_pose=pose)

    def check_claims(self, claims: LimitSet) -> None:
        """Refuse a policy file that asks for more than the envelope allows.

        Args:
            claims: What the file says (its robot spec's limits; its graph's clip range).
                ``inf`` where it says nothing.

        Raises:
            EnvelopeError: the first joint whose claim exceeds its limit, with both values
                and where the limit came from.
        """
        for k in KINDS:
            claim, limit = np.asarray(getattr(claims, k)), getattr(self, k)
            for i, j in enumerate(self.joint_names):
                c, lim = float(claim[i]), float(limit[i])
                if c == (-np.inf if k == "lower" else np.inf):
                    continue  # the file says nothing here
                tol = CLAIM_TOL * max(1.0, abs(lim))
                over = c < lim - tol if k == "lower" else c > lim + tol
                if over or not np.isfinite(c):
                    word = {"lower": "a lower position limit of", "upper":
                            "an upper position limit of", "velocity_limit": "a velocity limit of",
                            "accel_limit": "an acceleration limit of"}[k]
                    raise EnvelopeError(
                        f"{claims.source} asks for {word} {c:.6g} on joint {j!r}, beyond the "
                        f"trusted {lim:.6g} ({self.where(k, j)}); refused before arming (a "
                        f"policy file's limits are checked, never used)")

    def describe(self) -> list[str]:
        """One line per joint: each limit and its source (for logs and docs)."""
        lines = []
        for i, j in enumerate(self.joint_names):
            lines.append(
                f"{j}: position [{self.lower[i]:.4g} ({self.where('lower', j)}), "
                f"{self.upper[i]:.4g} ({self.where('upper', j)})], velocity "
                f"{self.velocity_limit[i]:.4g} ({self.where('velocity_limit', j)}), accel "
                f"{self.accel_limit[i]:.4g} ({self.where('accel_limit', j)})")
        return lines


def policy_claims(robot_spec: dict | None, clip_lower: tuple[float, ...] | None,
                  clip_upper: tuple[float, ...] | None, joint_names: tuple[str, ...],
                  source: str) -> LimitSet:
    """What a policy file claims, as a :class:`LimitSet` (the widest of its statements).

    Args:
        robot_spec: The ``robot_spec`` dict in its metadata (or None).
        clip_lower: The range its graph clips to, lower, rad (or None). Shape: (n,).
        clip_upper: The range its graph clips to, upper, rad (or None). Shape: (n,).
        joint_names: The robot's joints in order (the file's were checked to match).
        source: How to name the file in messages.
    """
    n = len(joint_names)
    out = LimitSet.unknown(source, n)
    if robot_spec:
        for k in KINDS:
            if k in robot_spec:
                v = np.asarray(robot_spec[k], np.float64).reshape(-1)
                if v.size == n:
                    getattr(out, k)[:] = v
    if clip_lower is not None and len(clip_lower) == n:
        lo = np.asarray(clip_lower, np.float64)
        out.lower[:] = np.where(np.isneginf(out.lower), lo, np.minimum(out.lower, lo))
    if clip_upper is not None and len(clip_upper) == n:
        hi = np.asarray(clip_upper, np.float64)
        out.upper[:] = np.where(np.isposinf(out.upper), hi, np.maximum(out.upper, hi))
    return out


@dataclass(frozen=True)
class Description:
    """The robot description installed on this machine, as far as it can be read here.

    Attributes:
        name: The robot's name in its sidecar.
        joint_names: Joints in command order.
        limits: Its limits (unknown where only the model file has them and MuJoCo is absent).
        default_pose: Home pose, rad. Shape: (n,).
        control_rate_hz: The rate a policy for this robot runs at, Hz.
        spec: The full spec when the model file could be read (MuJoCo installed), else None.
    """

    name: str
    joint_names: tuple[str, ...]
    limits: LimitSet
    default_pose: np.ndarray
    control_rate_hz: float
    spec: RobotSpec | None = None

    @classmethod
    def from_spec(cls, spec: RobotSpec, source: str | None = None) -> Description:
        """A description from a full spec (tests, notebooks, a spec loaded elsewhere)."""
        src = source or f"robot description {spec.name!r}"
        return cls(spec.name, tuple(spec.joint_names), LimitSet.from_spec(spec, src),
                   spec.default_pose.copy(), spec.control_rate_hz, spec)


def load_description(robot: str) -> Description:
    """Read a registered robot or a sidecar ``.yaml`` path from this machine's disk.

    With MuJoCo the model file is compiled and every limit is known.  Without it (an edge box
    with the base install) only the sidecar is read: its velocity and acceleration limits and
    the position limits it lists; the rest must come from the robot (CAPS).

    Raises:
        RobotSpecError: unknown name or a bad sidecar (the message names the fix).
    """
    from pathlib import Path

    from karakuri.robot.loader import read_sidecar
    from karakuri.robot.registry import ROBOTS
    from karakuri.robot.spec import RobotSpecError

    path = ROBOTS.get(robot)
    if path is None:
        path = Path(robot)
        if path.suffix not in (".yaml", ".yml") or not path.exists():
            raise RobotSpecError(
                f"unknown robot {robot!r}; registered robots: {sorted(ROBOTS)} (or give the "
                f"path of a sidecar .yaml installed on this machine); a policy file's own robot "
                f"spec is never used for limits")
    source = f"robot description {path.name}"
    try:
        import mujoco  # noqa: F401
    except ImportError:
        pass
    else:
        from karakuri.robot.loader import spec_from_files

        return Description.from_spec(spec_from_files(path), source)
    sc = read_sidecar(path)
    joints = tuple(sc["arm_joints"]) + tuple(sc.get("gripper_joints") or ())
    n = len(joints)

    def per_joint(key: str) -> np.ndarray:
        v = np.asarray(sc[key], np.float64).reshape(-1)
        if v.shape != (n,):
            raise RobotSpecError(f"sidecar {path}: {key!r} has {v.size} values, expected {n} "
                                 f"(one per joint {list(joints)})")
        return v

    lim = LimitSet.unknown(source, n)
    lim.velocity_limit[:] = per_joint("velocity_limit")
    lim.accel_limit[:] = per_joint("accel_limit")
    for j, (lo, hi) in (sc.get("position_limits") or {}).items():
        if j not in joints:
            raise RobotSpecError(f"sidecar {path}: position_limits names joint {j!r}, which is "
                                 f"not commanded; commanded joints: {list(joints)}")
        lim.lower[joints.index(j)], lim.upper[joints.index(j)] = float(lo), float(hi)
    return Description(str(sc["name"]), joints, lim, per_joint("default_pose"),
                       float(sc.get("control_rate_hz", 50.0)))
