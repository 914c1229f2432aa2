"""Compose a launch file into a running loop: spec, policy, link, safety, telemetry, loop.

``deploy(load_launch("launch/reach_sil.yaml"))`` is what ``karakuri deploy`` runs.  Only the
link kind in use is imported: ``serial`` needs pyserial, ``ros2`` rclpy, ``sil`` MuJoCo (for
the virtual MCU's plant; with a launch ``task``, also torch for the task's scene and signals,
:mod:`karakuri.launch.plant_signals`).  With ``serial`` or ``ros2`` and no MuJoCo installed, the
robot spec comes from the policy file's metadata, so an edge box needs neither torch nor MuJoCo.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from karakuri.firmware_bridge.link import Link
from karakuri.launch.schema import LaunchConfig, LaunchError, SilLinkConfig
from karakuri.policies.metadata import PolicyMetadata
from karakuri.policies.policy import Policy, PolicyError
from karakuri.robot.control_loop import ControlLoop, LoopConfig
from karakuri.robot.loop_commands import Episode
from karakuri.robot.loop_stats import LoopSummary
from karakuri.robot.realtime import RealtimeConfig
from karakuri.robot.safety import (
    ForwardKinematics,
    SafetyConfigError,
    SafetyFilter,
    SafetyLimits,
)
from karakuri.robot.spec import RobotSpec
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
def load_policy(cfg: LaunchConfig) -> Policy:
    """The :class:`~karakuri.policies.onnx_policy.OnnxPolicy` of ``cfg.policy`` (no torch)."""
    if not cfg.policy.exists():
        raise LaunchError(f"{cfg.source}: policy: {cfg.policy} does not exist; export one with "
                          f"'karakuri export RUN_DIR -o {cfg.policy}'")
    from karakuri.policies.onnx_policy import OnnxPolicy

    try:
        return OnnxPolicy(cfg.policy)
    except PolicyError as e:
        raise LaunchError(f"{cfg.source}: policy: {e}") from e


def policy_spec(policy: Policy) -> RobotSpec | None:
    """The robot spec a policy file carries in its metadata, or None."""
    spec = getattr(policy, "spec", None)
    if isinstance(spec, RobotSpec):
        return spec
    meta = getattr(policy, "metadata", None)
    robot_spec = getattr(meta, "robot_spec", None)
    return RobotSpec.from_dict(dict(robot_spec)) if robot_spec else None


def resolve_spec(cfg: LaunchConfig, policy: Policy) -> RobotSpec:
    """The spec to drive: from the policy file when it has one (checked against ``robot``).

    SIL needs the robot's model files, so it always loads the spec from them (MuJoCo).
    """
    carried = policy_spec(policy)
    if carried is not None and cfg.link_kind != "sil":
        want = cfg.robot
        if want.endswith((".yaml", ".yml")):
            from karakuri.robot.loader import read_sidecar  # YAML only, no MuJoCo

            want = str(read_sidecar(want)["name"])
        if carried.name != want:
            raise LaunchError(f"{cfg.source}: robot: {cfg.robot!r} but the policy {cfg.policy} "
                              f"was exported for {carried.name!r}; fix one of them")
        return carried
    from karakuri.robot.registry import load_robot  # needs MuJoCo

    spec = load_robot(cfg.robot)
    meta = getattr(policy, "metadata", None)
    if isinstance(meta, PolicyMetadata):
        from karakuri.policies.onnx_policy import check_fits_robot

        try:
            check_fits_robot(meta, spec, meta.control_rate_hz, f"policy {cfg.policy}")
        except PolicyError as e:
            raise LaunchError(f"{cfg.source}: {e}") from e
    return spec


def resolve_rate(cfg: LaunchConfig, policy: Policy, spec: RobotSpec) -> float:
    """The loop rate: the policy's training rate; a launch ``rate_hz`` must equal it."""
    meta = getattr(policy, "metadata", None)
    trained = float(getattr(meta, "control_rate_hz", 0.0) or spec.control_rate_hz)
    if cfg.rate_hz is not None and abs(cfg.rate_hz - trained) > 1e-9:
        raise LaunchError(f"{cfg.source}: rate_hz: {cfg.rate_hz} Hz but the policy was trained "
                          f"at {trained} Hz; remove rate_hz (or set it to {trained})")
    return cfg.rate_hz or trained


def build_safety(cfg: LaunchConfig, spec: RobotSpec, rate_hz: float) -> SafetyFilter:
    """The safety filter: the spec's limits tightened by ``cfg.safety`` (never loosened)."""
    try:
        limits = SafetyLimits.from_spec(spec, cfg.safety, prefix="safety")
        fk = mujoco_fk(spec) if limits.workspace is not None else None
        return SafetyFilter(limits, 1.0 / rate_hz, cfg.soft_start_s, fk=fk)
    except SafetyConfigError as e:
        raise LaunchError(f"{cfg.source}: {e}") from e


def mujoco_fk(spec: RobotSpec) -> ForwardKinematics:
    """Tool-site forward kinematics from the robot's model (needs MuJoCo and the model file)."""
    try:
        import mujoco

        from karakuri.robot.loader import load_model
    except ImportError as e:
        raise SafetyConfigError(
            "safety.workspace needs forward kinematics, computed with MuJoCo, which is not "
            "installed here; install karakuri[sim] or remove safety.workspace") from e
    if not spec.model_path or not spec.tool_site:
        raise SafetyConfigError(f"safety.workspace needs the model file and tool site of robot "
                                f"{spec.name!r}; name it by a registered name or sidecar path")
    model = load_model(spec.model_path)
    data = mujoco.MjData(model)
    adr = np.array([model.jnt_qposadr[model.joint(j).id] for j in spec.joint_names])
    site = model.site(spec.tool_site).id

    def fk(q: np.ndarray) -> np.ndarray:
        data.qpos[adr] = q
        mujoco.mj_kinematics(model, data)
        return data.site_xpos[site].copy()

    return fk


@contextlib.contextmanager
def open_link(cfg: LaunchConfig, spec: RobotSpec, rate_hz: float,
              model: Any = None) -> Iterator[tuple[Link, Plant | None]]:
    """Build, connect and finally close the link of ``cfg.link`` (and the SIL plant).

    Serial links connect without arming; the loop arms them just before its first tick, so
    the MCU watchdog (3 periods or 50 ms) starts with the loop.  ``model``: the compiled scene
    the SIL plant simulates instead of the bare robot (a task's objects included).
    """
    from karakuri.firmware_bridge.serial_link import SerialLink, SerialLinkConfig

    kind, link_cfg = cfg.link_kind, cfg.link
    plant: Plant | None = None
    with contextlib.ExitStack() as stack:
        if kind == "serial":
            serial_cfg = dataclasses.replace(link_cfg, arm_on_connect=False,  # type: ignore[type-var]
                                             command_rate_hz=rate_hz)
            link: Link = SerialLink(spec, serial_cfg)
        elif kind == "sil":
            mcu = stack.enter_context(_virtual_mcu(link_cfg, spec, rate_hz,  # type: ignore[arg-type]
                                                   model=model))
            plant = mcu
            link = SerialLink(spec, SerialLinkConfig(
                port=mcu.port, command_rate_hz=rate_hz, arm_on_connect=False,
                handshake_timeout_s=link_cfg.handshake_timeout_s))  # type: ignore[union-attr]
        else:
            from karakuri.firmware_bridge.ros2_link import Ros2Link

            link = Ros2Link(spec, link_cfg, control_period_s=1.0 / rate_hz)  # type: ignore[arg-type]
        stack.callback(link.close)
        link.connect()
        yield link, plant


@contextlib.contextmanager
def _virtual_mcu(sil: SilLinkConfig, spec: RobotSpec, rate_hz: float,
                 model: Any = None) -> Iterator[Any]:
    from karakuri.firmware_bridge.virtual_mcu import VirtualMCU, VirtualMCUConfig

    mcu_cfg = VirtualMCUConfig(link_path=sil.link_path, state_rate_hz=sil.state_rate_hz or rate_hz,
                               realtime=sil.paced, record_commands=sil.record_commands)
    with VirtualMCU(spec, mcu_cfg, faults=sil.faults, model=model) as mcu:
        yield mcu


def realtime_for(cfg: LaunchConfig, plant: Plant | None,
                 log: Callable[[str], None]) -> RealtimeConfig:
    """The launch file's real-time measures, less those that starve an in-process plant.

    A SIL plant (the virtual MCU) runs as a thread of this process: a SCHED_FIFO loop thread
    that spins before each deadline, on a machine with few cores, starves it of the CPU and
    the GIL (the MCU then misses its STATE deadlines and its watchdog trips).  On hardware the
    MCU is another computer and the measures stay on.
    """
    rt = cfg.realtime
    if plant is None or (rt.sched_fifo_priority <= 0 and not rt.mlockall):
        return rt
    log("realtime: SCHED_FIFO and mlockall left off: the SIL plant runs in this process and "
        "would be starved by a real-time loop thread (they stay on for serial and ros2 links)")
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
def deploy(cfg: LaunchConfig, *, log: Callable[[str], None] = print,
           policy: Policy | None = None,
           link: tuple[Link, Plant | None] | None = None) -> DeployResult:
    """Run a launch file's loop to its end and return what happened.

    Args:
        cfg: The parsed launch file.
        log: Where progress lines go.
        policy: Use this policy instead of loading ``cfg.policy`` (tests, notebooks).
        link: Use this connected link (and plant) instead of building ``cfg.link``.

    Returns:
        The summary, with per-episode success where the plant is visible (SIL).

    Raises:
        LaunchError: a setting does not fit the robot or policy (names the key and file).
    """
    policy = policy if policy is not None else load_policy(cfg)
    spec = resolve_spec(cfg, policy)
    rate = resolve_rate(cfg, policy, spec)
    safety = build_safety(cfg, spec, rate)
    scene = None
    if cfg.task and link is None:
        from karakuri.launch.plant_signals import scene_for

        scene = scene_for(cfg, spec, policy)
    if "command" in policy.input_names and cfg.command is None:
        raise LaunchError(f"{cfg.source}: command: missing; the policy has a 'command' input, "
                          f"so the launch file needs a command section (targets or box)")
    loop_cfg = LoopConfig(rate_hz=rate, duration_s=cfg.duration_s,
                          arm_on_start=link is None and cfg.link_kind != "ros2",
                          **dataclasses.asdict(cfg.loop))
    describe = getattr(policy, "describe", None)
    log(f"deploy: robot {spec.name} ({spec.n_joints} joints), link {cfg.link_kind}, {rate:g} Hz; "
        f"policy {describe() if describe else cfg.policy.name}")
    link_cm = (contextlib.nullcontext(link) if link is not None
               else open_link(cfg, spec, rate, model=scene.model if scene else None))
    telemetry = open_telemetry(cfg, log)
    try:
        with link_cm as (the_link, plant):
            commands = cfg.command.source() if cfg.command else None
            evaluator = reach_evaluator(plant, cfg.success_radius_m) if plant else None
            on_start, run_policy = None, policy
            if scene is not None:
                from karakuri.launch.plant_signals import wire_scene

                wired = wire_scene(cfg, policy, scene, plant, log)
                run_policy, commands = wired.policy, wired.commands
                evaluator, on_start = wired.evaluator, wired.on_episode_start
            loop = ControlLoop(
                the_link, run_policy, safety, loop_cfg, commands=commands,
                reset_pose=spec.default_pose, telemetry=telemetry, evaluator=evaluator,
                on_episode_start=on_start, realtime=realtime_for(cfg, plant, log), log=log)
            summary = loop.run()
    finally:
        if telemetry is not None:
            telemetry.close()
    return DeployResult(summary, spec, cfg.telemetry if telemetry is not None else None)
