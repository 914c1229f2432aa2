"""RobotSpec: what a robot is, as the rest of Karakuri sees it.

This module is the `robot/` contract.  It imports numpy only, so the edge runtime (control
loop, safety filter, links) can use a spec without MuJoCo.  Building a spec from an MJCF or
URDF lives in `karakuri.robot.loader`, which needs MuJoCo.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from karakuri.robot.kinematics import KinematicChain, KinematicsError


class RobotSpecError(ValueError):
    """A robot description or sidecar is inconsistent; the message names the bad value."""


@dataclass(frozen=True, eq=False)
class RobotSpec:
    """Joint names and order, limits, default pose and gains of one robot.

    All per-joint arrays have shape ``(n_joints,)`` and follow ``joint_names``.  Only the
    *controlled* joints are listed (the arm's joints, then the gripper's); passive joints of
    the model (a free object, say) are not.

    Attributes:
        name: Registry name, e.g. ``"industrial_arm"``.
        joint_names: Controlled joints, in command order.
        lower: Lower position limits, rad (or m for prismatic joints).
        upper: Upper position limits, rad (or m).
        velocity_limit: Speed limits, rad/s (or m/s).
        effort_limit: Torque limits, N·m (or N).
        accel_limit: Acceleration limits, rad/s² (or m/s²).
        default_pose: Home pose, inside the limits.
        kp: Position-servo stiffness, N·m/rad.
        kd: Position-servo damping, N·m·s/rad.
        arm_joints: Names of the arm's joints (a prefix of ``joint_names``).
        gripper_joints: Names of the gripper's joints (the rest of ``joint_names``).
        tool_site: The MJCF site at the tool centre point.
        model_path: The MJCF or URDF the spec was read from (empty when built by hand).
        control_rate_hz: The rate a policy for this robot normally runs at, Hz.
        kinematics: The chain from the world frame to the tool (numpy forward kinematics on
            the edge box, :mod:`karakuri.robot.kinematics`); None when built by hand.
    """

    name: str
    joint_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity_limit: np.ndarray
    effort_limit: np.ndarray
    accel_limit: np.ndarray
    default_pose: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    arm_joints: tuple[str, ...]
    gripper_joints: tuple[str, ...] = ()
    tool_site: str = ""
    model_path: str = ""
    control_rate_hz: float = 50.0
    kinematics: KinematicChain | None = field(default=None, compare=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if n == 0:
            raise RobotSpecError(f"robot {self.name!r}: no joints")
        if len(set(self.joint_names)) != n:
            raise RobotSpecError(f"robot {self.name!r}: duplicate joint names {self.joint_names}")
        for attr in (
            "lower",
            "upper",
            "velocity_limit",
            "effort_limit",
            "accel_limit",
            "default_pose",
            "kp",
            "kd",
        ):
            arr = np.asarray(getattr(self, attr), dtype=np.float64)
            if arr.shape != (n,):
                raise RobotSpecError(
                    f"robot {self.name!r}: {attr} has shape {arr.shape}, expected ({n},) "
                    f"for joints {list(self.joint_names)}"
                )
            if not np.all(np.isfinite(arr)):
                raise RobotSpecError(f"robot {self.name!r}: {attr} is not finite: {arr}")
            arr.setflags(write=False)
            object.__setattr__(self, attr, arr)
        bad = np.flatnonzero(self.lower >= self.upper)
        if bad.size:
            j = self.joint_names[bad[0]]
            raise RobotSpecError(
                f"robot {self.name!r}: joint {j!r} has lower limit {self.lower[bad[0]]} "
                f">= upper {self.upper[bad[0]]}"
            )
        for attr in ("velocity_limit", "effort_limit", "accel_limit"):
            if np.any(getattr(self, attr) <= 0):
                raise RobotSpecError(f"robot {self.name!r}: {attr} must be > 0")
        outside = np.flatnonzero(
            (self.default_pose < self.lower) | (self.default_pose > self.upper)
        )
        if outside.size:
            j = self.joint_names[outside[0]]
            raise RobotSpecError(
                f"robot {self.name!r}: default pose of {j!r} ({self.default_pose[outside[0]]}) "
                f"is outside [{self.lower[outside[0]]}, {self.upper[outside[0]]}]"
            )
        if tuple(self.arm_joints) + tuple(self.gripper_joints) != tuple(self.joint_names):
            raise RobotSpecError(
                f"robot {self.name!r}: joint_names must be arm_joints then gripper_joints"
            )
        if self.control_rate_hz <= 0:
            raise RobotSpecError(f"robot {self.name!r}: control_rate_hz must be > 0")
        if self.kinematics is not None and self.kinematics.n_joints != n:
            raise RobotSpecError(f"robot {self.name!r}: kinematics reads "
                                 f"{self.kinematics.n_joints} joints, the spec has {n}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RobotSpec):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_joints(self) -> int:
        """Number of controlled joints."""
        return len(self.joint_names)

    @property
    def n_arm(self) -> int:
        """Number of arm joints (the first ``n_arm`` of ``joint_names``)."""
        return len(self.arm_joints)

    def joint_hash(self) -> int:
        """A 32-bit hash of the joint names in order (the wire protocol's CAPS carries it)."""
        digest = hashlib.sha256("\n".join(self.joint_names).encode()).digest()
        return int.from_bytes(digest[:4], "little")

    def index(self, joint: str) -> int:
        """Position of ``joint`` in ``joint_names``; raises naming the valid joints."""
        try:
            return self.joint_names.index(joint)
        except ValueError:
            raise RobotSpecError(
                f"robot {self.name!r} has no joint {joint!r}; joints: {list(self.joint_names)}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (used for policy metadata and `karakuri robot show --json`)."""
        return {
            "name": self.name,
            "joint_names": list(self.joint_names),
            "arm_joints": list(self.arm_joints),
            "gripper_joints": list(self.gripper_joints),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "velocity_limit": self.velocity_limit.tolist(),
            "effort_limit": self.effort_limit.tolist(),
            "accel_limit": self.accel_limit.tolist(),
            "default_pose": self.default_pose.tolist(),
            "kp": self.kp.tolist(),
            "kd": self.kd.tolist(),
            "tool_site": self.tool_site,
            "control_rate_hz": self.control_rate_hz,
            **({"kinematics": self.kinematics.to_dict()} if self.kinematics else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], model_path: str = "") -> RobotSpec:
        """Inverse of :meth:`to_dict`; raises :class:`RobotSpecError` on a missing key."""
        try:
            return cls(
                name=d["name"],
                joint_names=tuple(d["joint_names"]),
                arm_joints=tuple(d["arm_joints"]),
                gripper_joints=tuple(d.get("gripper_joints", ())),
                lower=np.asarray(d["lower"], dtype=np.float64),
                upper=np.asarray(d["upper"], dtype=np.float64),
                velocity_limit=np.asarray(d["velocity_limit"], dtype=np.float64),
                effort_limit=np.asarray(d["effort_limit"], dtype=np.float64),
                accel_limit=np.asarray(d["accel_limit"], dtype=np.float64),
                default_pose=np.asarray(d["default_pose"], dtype=np.float64),
                kp=np.asarray(d["kp"], dtype=np.float64),
                kd=np.asarray(d["kd"], dtype=np.float64),
                tool_site=d.get("tool_site", ""),
                control_rate_hz=float(d.get("control_rate_hz", 50.0)),
                model_path=model_path,
                kinematics=(KinematicChain.from_dict(d["kinematics"]) if d.get("kinematics")
                            else None),
            )
        except KeyError as e:
            raise RobotSpecError(f"robot spec is missing key {e.args[0]!r}") from e
        except KinematicsError as e:
            raise RobotSpecError(f"robot spec {d.get('name')!r}: {e}") from e

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))
