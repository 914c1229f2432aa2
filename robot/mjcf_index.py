"""Joint names to MuJoCo indices, written once: qpos and dof addresses, actuators, couplings.

Everything that turns a robot's joint names into addresses of ``qpos``, ``qvel`` and ``ctrl``
(training, the virtual MCU, the ROS 2 simulated robot, the robot checks, forward kinematics)
asks this module, so no two places can disagree on which actuator drives a joint.

**The actuator of a joint is the FIRST joint-transmission actuator on it**, in model order.
That is the one training writes ``ctrl`` to (``karakuri.sim.env``), the one whose gains the
spec reads (``karakuri.robot.loader``: ``kp``, ``kd``), and so the one every plant must drive;
a second actuator on the same joint (a damper, a velocity loop) is left at its model default.
:func:`joint_actuators` lists all of them for code that needs to know.

Needs only numpy: it reads attributes of a compiled ``mujoco.MjModel`` passed in, so
importing it pulls no MuJoCo onto the edge box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: ``mujoco.mjtTrn.mjTRN_JOINT``: an actuator whose transmission is a joint.
TRN_JOINT = 0
#: ``mujoco.mjtEq.mjEQ_JOINT``: an equality that ties one joint to a polynomial of another.
EQ_JOINT = 2
#: (qpos width, dof width) per ``mujoco.mjtJoint``: free, ball, slide, hinge.
_WIDTH = {0: (7, 6), 1: (4, 3), 2: (1, 1), 3: (1, 1)}


class MjcfIndexError(ValueError):
    """A joint the caller names is not in the model, or has no actuator."""


def _where(model: Any) -> str:
    return f"model with {model.njnt} joints"


def joint_names(model: Any) -> list[str]:
    """All joint names of ``model``, in model order."""
    return [model.joint(j).name for j in range(model.njnt)]


def joint_id(model: Any, name: str) -> int:
    """Id of the joint called ``name``; raises :class:`MjcfIndexError` listing the joints."""
    for j in range(model.njnt):
        if model.joint(j).name == name:
            return j
    raise MjcfIndexError(f"the {_where(model)} has no joint named {name!r}; its joints: "
                         f"{joint_names(model)}")


def qpos_span(model: Any, joint: int) -> range:
    """The ``qpos`` addresses of one joint (a free joint has 7, a ball 4, others 1)."""
    start = int(model.jnt_qposadr[joint])
    return range(start, start + _WIDTH[int(model.jnt_type[joint])][0])


def dof_span(model: Any, joint: int) -> range:
    """The ``qvel`` (dof) addresses of one joint (a free joint has 6, a ball 3, others 1)."""
    start = int(model.jnt_dofadr[joint])
    return range(start, start + _WIDTH[int(model.jnt_type[joint])][1])


def qpos_adr(model: Any, names: Sequence[str]) -> np.ndarray:
    """First ``qpos`` address of each named joint. Shape: (len(names),), int64."""
    return np.array([int(model.jnt_qposadr[joint_id(model, n)]) for n in names], dtype=np.int64)


def dof_adr(model: Any, names: Sequence[str]) -> np.ndarray:
    """First ``qvel`` (dof) address of each named joint. Shape: (len(names),), int64."""
    return np.array([int(model.jnt_dofadr[joint_id(model, n)]) for n in names], dtype=np.int64)


def joint_actuators(model: Any, joint: int) -> list[int]:
    """Every actuator whose transmission is ``joint``, in model order."""
    return [a for a in range(model.nu)
            if int(model.actuator_trntype[a]) == TRN_JOINT
            and int(model.actuator_trnid[a, 0]) == joint]


def actuator_of(model: Any, joint: int) -> int:
    """The actuator that drives ``joint``: the first on it (see the module docstring)."""
    acts = joint_actuators(model, joint)
    if not acts:
        raise MjcfIndexError(f"joint {model.joint(joint).name!r} has no actuator; every "
                             "commanded joint needs one (a <position> actuator)")
    return acts[0]


def actuator_adr(model: Any, names: Sequence[str]) -> np.ndarray:
    """The ``ctrl`` address of each named joint's actuator. Shape: (len(names),), int64."""
    return np.array([actuator_of(model, joint_id(model, n)) for n in names], dtype=np.int64)


def followers(model: Any, joint: int, active_only: bool = False) -> list[int]:
    """Joints a joint equality ties to ``joint`` (a mirrored finger follows its driver).

    Args:
        model: The compiled model.
        joint: Id of the driving joint (the equality's second joint).
        active_only: Only equalities active at model load (``eq_active0``).

    Returns:
        Joint ids of the followers (each equality's first joint), in equality order.
    """
    return [int(model.eq_obj1id[e]) for e in range(model.neq)
            if int(model.eq_type[e]) == EQ_JOINT and int(model.eq_obj2id[e]) == joint
            and (model.eq_active0[e] or not active_only)]


@dataclass(frozen=True)
class JointIndex:
    """Where each of a robot's joints lives in a compiled model, in the given (command) order.

    Attributes:
        names: Joint names, command order.
        joint: Joint ids. Shape: (n,).
        qpos: ``qpos`` address of each joint. Shape: (n,).
        dof: ``qvel`` / ``qfrc`` address of each joint. Shape: (n,).
        act: ``ctrl`` / ``actuator_force`` address of each joint's actuator
            (:func:`actuator_of`). Shape: (n,).
    """

    names: tuple[str, ...]
    joint: np.ndarray
    qpos: np.ndarray
    dof: np.ndarray
    act: np.ndarray

    @classmethod
    def build(cls, model: Any, names: Sequence[str]) -> JointIndex:
        """Index ``names`` in ``model``.

        Raises:
            MjcfIndexError: A name is not a joint of ``model``, or its joint has no actuator.
        """
        ids = [joint_id(model, n) for n in names]

        def arr(xs: list[int]) -> np.ndarray:
            return np.array(xs, dtype=np.int64)

        return cls(tuple(names), arr(ids), arr([int(model.jnt_qposadr[j]) for j in ids]),
                   arr([int(model.jnt_dofadr[j]) for j in ids]),
                   arr([actuator_of(model, j) for j in ids]))
