"""Checks of a launch file against its policy, before any link opens or the robot is armed.

:func:`load_launch` checks what a launch file says on its own (types, keys, finite numbers).
:func:`preflight` checks what needs the policy file and the machine: that the telemetry file
can be written, that the loop's fault thresholds fit the loop period, and that every task
command has the policy's length and lies where the policy can act on it.  Each failure is a
:class:`LaunchError` naming the file, the key, the value and what is valid.

Where a command may lie comes from installed code, never from the launch file itself: the
task's own target box (the policy was trained and evaluated there) when the task's code is
installed (``karakuri[sim]``), else a bound on the arm's reach computed from the robot's
kinematic chain.  Imports no torch unless the task's code is installed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from karakuri.launch.outputs import OutputPathError, check_output_file
from karakuri.launch.schema import LaunchConfig, LaunchError
from karakuri.robot.policy import Policy
from karakuri.robot.spec import RobotSpec


def preflight(cfg: LaunchConfig, policy: Policy) -> None:
    """Run every check below; raises :class:`LaunchError` on the first failure."""
    check_telemetry(cfg)
    check_loop(cfg, policy)
    check_commands(cfg, policy)


def check_telemetry(cfg: LaunchConfig) -> None:
    """The ``telemetry`` file can be written (its folder is created when missing)."""
    if cfg.telemetry is None:
        return
    try:
        check_output_file(cfg.telemetry, "telemetry:")
    except OutputPathError as e:
        raise LaunchError(f"{cfg.source}: {e}") from None


def check_loop(cfg: LaunchConfig, policy: Policy) -> None:
    """``loop.stale_fault_s`` exceeds ``loop.stale_periods`` periods of the loop's rate.

    The rate is the launch file's ``rate_hz``, else the rate the policy was trained at.
    """
    meta = getattr(policy, "metadata", None)
    rate = cfg.rate_hz or float(getattr(meta, "control_rate_hz", 0.0) or 0.0)
    if rate <= 0:
        return  # the rate comes from the robot spec: deploy checks it with LoopConfig
    try:
        cfg.loop.check_rate(rate)
    except ValueError as e:
        raise LaunchError(f"{cfg.source}: loop.{e}") from None


def _commands(cfg: LaunchConfig) -> Iterator[tuple[str, tuple[float, ...]]]:
    """(key, values) of every command the launch file gives (box corners for a box)."""
    c = cfg.command
    if c is None:
        return
    for i, t in enumerate(c.targets):
        yield f"command.targets[{i}]", t
    if c.box is not None:
        yield "command.box.lower", c.box.lower
        yield "command.box.upper", c.box.upper


def check_commands(cfg: LaunchConfig, policy: Policy) -> None:
    """Every command has the policy's ``command`` size and lies in the task's target box.

    Raises:
        LaunchError: a command of the wrong length, or outside the task's target box (or,
            where the task's code is not installed, beyond the arm's reach).
    """
    meta = getattr(policy, "metadata", None)
    inputs = getattr(meta, "inputs", None)
    commands = list(_commands(cfg))
    if not commands or not isinstance(inputs, Mapping) or "command" not in inputs:
        return
    k, unit = int(inputs["command"]["shape"][1]), inputs["command"].get("unit", "")
    for key, values in commands:
        if len(values) != k:
            raise LaunchError(f"{cfg.source}: {key}: {list(values)} has {len(values)} values; "
                              f"the policy's command input takes {k} ({unit or 'no unit'})")
    task = cfg.task or str(getattr(meta, "task", "") or "")
    box = task_command_box(task, cfg.robot)
    if box is not None:
        lo, hi = box
        for key, values in commands:
            v = np.asarray(values, np.float64)
            if np.any(v < lo - 1e-9) or np.any(v > hi + 1e-9):
                raise LaunchError(
                    f"{cfg.source}: {key}: {list(values)} lies outside the target box of the "
                    f"{task} task, {lo.tolist()} .. {hi.tolist()} {unit}, where the policy was "
                    f"trained; give commands inside it")
        return
    if k == 3 and unit == "m":
        reach = arm_reach_m(_spec_of(cfg, meta))
        for key, values in commands:
            dist = float(np.linalg.norm(values))
            if reach is not None and dist > reach:
                raise LaunchError(
                    f"{cfg.source}: {key}: {list(values)} is {dist:.3g} m from the robot's "
                    f"base, beyond the arm's reach ({reach:.3g} m at most)")


def task_command_box(task: str, robot: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The box a task draws its ``command`` from in training (its installed code), or None.

    None when the task's code is not installed here, the task is unknown, or its command is
    not drawn from a box (``target_low``/``target_high`` of its config).
    """
    if not task:
        return None
    try:
        from karakuri.sim.registry import TASKS, make_task
    except ImportError:
        return None
    if task not in TASKS:
        return None
    try:
        t = make_task(task, robot or None)
    except (ValueError, ImportError, OSError):
        return None
    tcfg = getattr(t, "cfg", None)
    if getattr(tcfg, "targets", "box") != "box":
        return None
    lo, hi = getattr(tcfg, "target_low", None), getattr(tcfg, "target_high", None)
    if lo is None or hi is None:
        return None
    return np.asarray(lo, np.float64), np.asarray(hi, np.float64)


def _spec_of(cfg: LaunchConfig, meta: object) -> RobotSpec | None:
    """The installed robot description of ``cfg.robot``, else the policy file's spec."""
    try:
        from karakuri.robot.registry import load_robot

        return load_robot(cfg.robot)
    except (ImportError, ValueError, OSError):
        pass
    raw = getattr(meta, "robot_spec", None)
    try:
        return RobotSpec.from_dict(dict(raw)) if raw else None
    except ValueError:
        return None


def arm_reach_m(spec: RobotSpec | None) -> float | None:
    """An upper bound on the tool's distance from the world origin, m, or None if unknown.

    Every fixed offset of the chain counts at full length and every hinge's anchor twice
    (a rotation about an anchor ``a`` moves a point by at most ``2 |a|`` farther from the
    body's origin); slide joints add their travel.
    """
    chain = getattr(spec, "kinematics", None)
    if chain is None:
        return None
    total = float(np.linalg.norm(chain.tool_pos))
    for b in chain.bodies:
        total += float(np.linalg.norm(b.pos))
        for j in b.joints:
            total += 2.0 * float(np.linalg.norm(j.anchor))
            if j.kind == "slide":
                i = j.index
                total += max(abs(spec.lower[i] - j.ref), abs(spec.upper[i] - j.ref))
    return total
