"""Compose a launch file into a running loop: spec, policy, link, safety, telemetry, loop.

``deploy(load_launch("launch/reach_sil.yaml"))`` is what ``karakuri deploy`` runs.  Only the
link kind in use is imported: ``serial`` needs pyserial, ``ros2`` rclpy, ``sil`` MuJoCo (for
the virtual MCU's plant; with a launch ``task``, also torch for the task's scene and signals,
:mod:`karakuri.launch.plant_signals`).

Limits come only from trusted sources (:mod:`karakuri.robot.envelope`): the robot description
installed here (with MuJoCo, its model and sidecar; without, the sidecar alone) ∩ the MCU's CAPS
(serial) ∩ the launch file's ``safety`` overrides.  The policy file's limits and rate are
checked against them and a file asking for more is refused before the robot is armed.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from karakuri.launch.deploy_audit import DeployAudit
from karakuri.launch.deploy_resolve import (
    load_policy,
    policy_spec,
    resolve_description,
    resolve_envelope,
    resolve_rate,
    resolve_spec,
)
from karakuri.launch.schema import LINKS, LaunchConfig, LaunchError
from karakuri.launch.tool_fk import mujoco_fk
from karakuri.robot.control_loop import ControlLoop, LoopConfig
from karakuri.robot.envelope import (
    Description,
    Envelope,
    EnvelopeError,
    LimitSet,
)
from karakuri.robot.link import Link
from karakuri.robot.loop_commands import Episode
from karakuri.robot.loop_stats import LoopSummary
from karakuri.robot.policy import Policy
from karakuri.robot.realtime import RealtimeConfig
from karakuri.robot.safety import (
    SafetyConfigError,
    SafetyFilter,
    SafetyLimits,
)
from karakuri.robot.spec import RobotSpec
from karakuri.robot.state_check import StateBounds
from karakuri.robot.telemetry import McapTelemetry, TelemetryUnavailableError


class Plant(Protocol):
    """What a simulated robot shows the deploy path beyond the link: the tool position."""

    def tool_position(self) -> np.ndarray:
        """Tool centre point, m, base frame. Shape: (3,)."""


@dataclass
class DeployResult:
    """What a deploy produced.

    Attributes:
        summary: The loop's summary (timing, counters, interventions, episodes).
        spec: The robot spec the loop drove.
        telemetry: The MCAP file written, if any.
    """

    summary: LoopSummary
    spec: RobotSpec
    telemetry: Path | None = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- parts
def build_safety(cfg: LaunchConfig, spec: RobotSpec, rate_hz: float,
                 envelope: Envelope | None = None) -> SafetyFilter:
    """The safety filter: the envelope tightened by ``cfg.safety`` (never loosened).

    ``spec``'s limits are used where no envelope is given (they must then be trusted).
    """
    try:
        if envelope is not None:
            spec = envelope.apply_to(spec)
        limits = SafetyLimits.from_spec(spec, cfg.safety, prefix="safety")
        fk = None  # numpy FK of the chain the spec carries (no MuJoCo); else MuJoCo's
        if limits.workspace is not None:
            fk = spec.kinematics if spec.kinematics is not None else mujoco_fk(spec)
        return SafetyFilter(limits, 1.0 / rate_hz, cfg.soft_start_s, fk=fk)
    except (SafetyConfigError, EnvelopeError) as e:
        raise LaunchError(f"{cfg.source}: {e}") from e


@contextlib.contextmanager
def open_link(cfg: LaunchConfig, spec: RobotSpec, rate_hz: float,
              model: Any = None) -> Iterator[tuple[Link, Plant | None]]:
    """Build, connect and finally close the link of ``cfg.link`` (and the plant it shows).

    The kind's factory comes from :data:`~karakuri.launch.schema_links.LINKS`.  Serial links
    connect without arming; the loop arms them just before its first tick, so the MCU watchdog
    (3 periods or 50 ms) starts with the loop.  ``model``: the compiled scene the SIL plant
    simulates instead of the bare robot (a task's objects included).
    """
    with contextlib.ExitStack() as stack:
        link, plant = LINKS[cfg.link_kind].open(cfg.link, spec, rate_hz, stack, model)
        stack.callback(link.close)
        link.connect()
        yield link, plant


def realtime_for(cfg: LaunchConfig, plant: Plant | None,
                 log: Callable[[str], None]) -> RealtimeConfig:
    """The launch file's real-time measures, less those that starve an in-process plant.

    A SIL plant (the virtual MCU) runs as a thread of this process: a SCHED_FIFO loop thread
    that spins before each deadline, on a machine with few cores, starves it of the CPU and
    the GIL (the MCU then misses its STATE deadlines and its watchdog trips).  On hardware the
    MCU is another computer and the measures stay on.
    """
    rt = cfg.realtime
    where = LINKS[cfg.link_kind].in_process_plant or "the plant runs on this machine"
    if plant is None or (rt.sched_fifo_priority <= 0 and not rt.mlockall):
        return rt
    log(f"realtime: SCHED_FIFO and mlockall left off: {where} and would be starved by a "
        "real-time loop thread (they stay on for serial and ros2 links)")
    return dataclasses.replace(rt, sched_fifo_priority=0, mlockall=False)


def reach_evaluator(plant: Plant, radius_m: float) -> Callable[[Episode], bool]:
    """Success at an episode's end: tool within ``radius_m`` of the command's xyz target."""
    def evaluate(ep: Episode) -> bool:
        err = np.asarray(plant.tool_position(), np.float64) - ep.command[:3]
        return bool(np.linalg.norm(err) < radius_m)

    return evaluate


def open_telemetry(cfg: LaunchConfig, log: Callable[[str], None]) -> McapTelemetry | None:
    """The MCAP writer of ``cfg.telemetry``; None (with a clear line) when mcap is missing."""
    if cfg.telemetry is None:
        return None
    try:
        return McapTelemetry(cfg.telemetry)
    except TelemetryUnavailableError as e:
        log(f"telemetry: off: {e}")
        return None


# ----------------------------------------------------------------------------- composition
def reported_limits(link: Link) -> LimitSet | None:
    """The limits the robot itself reported (a serial MCU's CAPS), or None for other links."""
    fn = getattr(link, "reported_limits", None)
    return fn() if callable(fn) else None


def deploy(cfg: LaunchConfig, *, log: Callable[[str], None] = print,
           policy: Policy | None = None,
           link: tuple[Link, Plant | None] | None = None,
           description: Description | RobotSpec | None = None) -> DeployResult:
    """Run a launch file's loop to its end and return what happened.

    Args:
        cfg: The parsed launch file.
        log: Where progress lines go.
        policy: Use this policy instead of loading ``cfg.policy`` (tests, notebooks).
        link: Use this connected link (and plant) instead of building ``cfg.link``.
        description: Use this robot description instead of reading ``cfg.robot`` from disk.

    Returns:
        The summary, with per-episode success where the plant is visible (SIL).

    Raises:
        LaunchError: a setting does not fit the robot or policy, or the policy file asks for
            more than the envelope (names the key, joint, value, limit and file).
        karakuri.launch.trust.PolicyTrustError: the policy file is unsigned, altered or
            signed by an unknown key (refused before it is parsed or the link opens).
    """
    audit = DeployAudit(cfg, log)
    audit.check_policy(policy)  # trust the file first; appends deploy_start to the audit log
    with audit.recording():  # deploy_error on any exception
        result = _compose(cfg, audit, log=log, policy=policy, link=link, description=description)
        audit.end(result.summary, result.telemetry)
    result.notes.extend(audit.notes)
    return result


def _compose(cfg: LaunchConfig, audit: DeployAudit, *, log: Callable[[str], None],
             policy: Policy | None, link: tuple[Link, Plant | None] | None,
             description: Description | RobotSpec | None) -> DeployResult:
    """:func:`deploy` once the policy file is trusted; ``audit`` notes what the loop runs."""
    verified = audit.trust.data if audit.trust is not None else b""
    policy = policy if policy is not None else load_policy(cfg, verified or None)
    from karakuri.launch.preflight import preflight

    preflight(cfg, policy)  # telemetry path, loop thresholds, commands: before any link opens
    if isinstance(description, RobotSpec):
        description = Description.from_spec(description)
    desc = description if description is not None else resolve_description(cfg)
    spec = resolve_spec(cfg, policy, desc)
    rate = resolve_rate(cfg, policy, desc)
    # refuse what can be refused before the link opens (the MCU's CAPS may only tighten)
    early = resolve_envelope(cfg, policy, desc, None, complete=desc.spec is not None)
    if desc.spec is not None:
        build_safety(cfg, spec, rate, early)
    scene = None
    if cfg.task and link is None:
        from karakuri.launch.plant_signals import scene_for

        scene = scene_for(cfg, spec, policy)
    if "command" in policy.input_names and cfg.command is None:
        raise LaunchError(f"{cfg.source}: command: missing; the policy has a 'command' input, "
                          f"so the launch file needs a command section (targets or box)")
    loop_cfg: LoopConfig = cfg.loop.build(  # type: ignore[attr-defined]
        rate_hz=rate, duration_s=cfg.duration_s,
        arm_on_start=link is None and cfg.link_kind != "ros2")
    describe = getattr(policy, "describe", None)
    log(f"deploy: robot {spec.name} ({spec.n_joints} joints), link {cfg.link_kind}, {rate:g} Hz; "
        f"policy {describe() if describe else cfg.policy.name}")
    link_cm = (contextlib.nullcontext(link) if link is not None
               else open_link(cfg, spec, rate, model=scene.model if scene else None))
    telemetry = open_telemetry(cfg, log)
    try:
        with link_cm as (the_link, plant):
            envelope = resolve_envelope(cfg, policy, desc, reported_limits(the_link))
            spec = envelope.apply_to(spec)
            bounds = StateBounds.from_limits(spec.joint_names, spec.lower, spec.upper,
                                             spec.velocity_limit)
            safety = build_safety(cfg, spec, rate)
            from karakuri.launch.care import attach_care  # speed, separation, force (care:)

            try:
                attach_care(cfg, spec, rate, safety, policy, the_link, plant, telemetry, log)
            except ValueError as e:
                raise LaunchError(str(e)) from e
            log(f"envelope: {' ∩ '.join(envelope.sources)} ∩ launch safety overrides; the "
                f"policy file's limits and rate checked against it")
            commands = cfg.command.source() if cfg.command else None
            evaluator = reach_evaluator(plant, cfg.success_radius_m) if plant else None
            on_start, run_policy = None, policy
            if scene is not None:
                from karakuri.launch.plant_signals import wire_scene

                wired = wire_scene(cfg, policy, scene, plant, log)
                run_policy, commands = wired.policy, wired.commands
                evaluator, on_start = wired.evaluator, wired.on_episode_start
            the_link = audit.watch(the_link, spec=spec, rate_hz=rate, safety=safety,
                                   envelope=envelope)
            loop = ControlLoop(
                the_link, run_policy, safety, loop_cfg, commands=commands,
                reset_pose=spec.default_pose, telemetry=telemetry, evaluator=evaluator,
                on_episode_start=on_start, realtime=realtime_for(cfg, plant, log), log=log,
                state_bounds=bounds)
            summary = loop.run()
    finally:
        if telemetry is not None:
            telemetry.close()
    return DeployResult(summary, spec, cfg.telemetry if telemetry is not None else None)


__all__ = ["DeployResult", "Plant", "build_safety", "deploy", "load_policy", "mujoco_fk",
           "open_link", "open_telemetry", "policy_spec", "reach_evaluator", "realtime_for",
           "reported_limits", "resolve_description", "resolve_envelope", "resolve_rate",
           "resolve_spec"]
