"""The launch file: YAML parsed into frozen, checked dataclasses.

Every section is a dataclass; :func:`load_launch` walks the YAML against the type hints, so an
unknown key, a wrong type or a missing required key is a :class:`LaunchError` naming the file,
the key's path (``link.baud``) and what was expected.  Relative paths resolve against the
launch file's folder.  The reference of every key is ``docs/control-loop.md``.

Only the standard library, PyYAML and Karakuri's runtime modules are imported (no torch, no
MuJoCo): ``karakuri deploy`` on an edge box parses launch files with the base install.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from karakuri.launch.care import CareSection
from karakuri.launch.schema_links import (
    LINK_KINDS,
    LINKS,
    LinkConfig,
    SerialLinkConfig,
    SilLinkConfig,
    link_kind,
)
from karakuri.launch.schema_reader import LaunchError, _Ctx, config_section
from karakuri.robot.loop_commands import BoxTargets, CommandSource, FixedTargets, PlantSignal
from karakuri.robot.loop_config import LoopConfig, check_thresholds
from karakuri.robot.realtime import RealtimeConfig
from karakuri.robot.safety import SafetyOverrides, WorkspaceBox
from karakuri.sim.tasks.reach_defaults import SUCCESS_RADIUS_M

TargetBox = config_section(
    BoxTargets, "TargetBox", exclude=("hold_s", "reset_s"), defaults={"seed": 0},
    module=__name__,
    doc="``command.box``: targets drawn uniformly from a box with a seed (default 0).")
PlantSignalSection = config_section(
    PlantSignal, "PlantSignalSection", exclude=("hold_s", "reset_s", "read", "layout"),
    defaults={"seed": 0}, module=__name__,
    doc="``command.plant_signal``: a policy input read every tick from the simulated plant "
        "(seed default 0). Sim-in-the-loop only: the virtual MCU simulates the scene of the "
        "launch file's ``task``.")


@dataclass(frozen=True)
class CommandConfig:
    """``command:``: episodes and their task input (one of targets, box, plant_signal).

    Attributes:
        targets: One command per episode, e.g. ``[[0.45, 0.1, 0.3], ...]`` (m).
        box: Draw the commands from a box instead.
        plant_signal: Read a policy input from the simulated plant every tick instead.
        hold_s: Episode length, s (use the task's episode length for parity with sim eval).
        reset_s: Drive back to the default pose for this long before each episode, s; 0 runs
            the episodes back to back.
        repeat: Run the ``targets`` list this many times.
    """

    hold_s: float
    targets: tuple[tuple[float, ...], ...] = ()
    box: TargetBox | None = None  # type: ignore[valid-type]
    plant_signal: PlantSignalSection | None = None  # type: ignore[valid-type]
    reset_s: float = 2.0
    repeat: int = 1

    def __post_init__(self) -> None:
        if bool(self.targets) + (self.box is not None) + (self.plant_signal is not None) != 1:
            raise ValueError("give exactly one of 'targets' (a list of commands), 'box' and "
                             "'plant_signal'")
        named = [(f"targets[{i}]", t) for i, t in enumerate(self.targets)]
        if self.box is not None:
            named += [("box.lower", self.box.lower), ("box.upper", self.box.upper)]
        for key, values in named:
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{key}: {list(values)} has a value that is not a finite "
                                 f"number (NaN or inf); every command value must be finite")
        self.source()  # runs the source's own checks now, at load time

    def source(self) -> CommandSource:
        """The :class:`~karakuri.robot.loop_commands.CommandSource` this section describes."""
        section = self.plant_signal if self.plant_signal is not None else self.box
        if section is not None:
            return section.build(hold_s=self.hold_s, reset_s=self.reset_s)  # type: ignore[attr-defined,no-any-return]
        return FixedTargets(self.targets, self.hold_s, self.reset_s, self.repeat)


def _check_rate(self: Any, rate_hz: float) -> None:
    """Check the thresholds against the loop period ``1 / rate_hz`` (ValueError names the key).

    The rule: ``stale_fault_s`` must exceed ``stale_periods`` periods, so that state goes
    stale (the loop holds) before it is old enough to be a fault (the loop stops).
    """
    check_thresholds(self, rate_hz)


LoopSection = config_section(
    LoopConfig, "LoopSection",
    exclude=("rate_hz", "duration_s", "arm_on_start", "arm_timeout_s"),
    check=check_thresholds, module=__name__,
    doc="``loop:``: timing and fault thresholds (the rate is the launch file's or the "
        "policy's; the thresholds are checked against it).")
LoopSection.check_rate = _check_rate  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TrustSection:
    """``trust:``: who may sign the policy files this launch file runs (docs/trust.md).

    Attributes:
        keys: Public key files (``karakuri keygen``'s ``.pub``), relative to the launch file.
    """

    keys: tuple[Path, ...] = ()


@dataclass(frozen=True)
class LaunchConfig:
    """A whole launch file.

    Attributes:
        robot: A registered robot name (``industrial_arm``) or a sidecar ``.yaml`` path. On a
            box without MuJoCo only its sidecar is read (the MCU's CAPS gives the rest); its
            limits bound the policy file's, which must name the same robot.
        policy: Path of the exported ``policy.onnx``.
        link: How to reach the robot; ``kind`` is ``serial`` (the keys of
            :class:`~karakuri.firmware_bridge.serial_link.SerialLinkConfig`), ``sil``
            (:class:`SilLinkConfig`), ``ros2`` (the keys of
            :class:`~karakuri.firmware_bridge.ros2_config.Ros2LinkConfig`) or ``qemu`` (the
            reference firmware on an emulated board:
            :class:`~karakuri.firmware_bridge.firmware.qemu.QemuLinkConfig`).
        rate_hz: Loop rate, Hz; default: the policy's control rate (a different one is refused).
        duration_s: Stop after this long, s; default: when the episodes end (or Ctrl-C).
        soft_start_s: Ramp from the measured pose after start and re-arm, s.
        command: Task commands per episode; required when the policy has a ``command`` input.
        safety: Limits; each may only tighten the robot spec's.
        telemetry: MCAP file for per-tick telemetry; none when absent.
        realtime: Real-time measures to try.
        loop: Timing and fault thresholds.
        success_radius_m: SIL only: tool-to-target distance counted as success, m (default:
            reach's own radius, ``sim/tasks/reach_defaults.py``).
        task: SIL only: the sim task whose scene the virtual MCU simulates (the robot plus the
            task's objects) and whose success judges each episode; needed by
            ``command.plant_signal``.  Empty: the bare robot, judged by ``success_radius_m``.
        trust: The public keys whose signature makes a policy file trusted.
        allow_unsigned: Run a policy file that is unsigned or signed by an unknown key, with
            a warning that the audit log records; a bad signature is always refused.  Default:
            true for ``sil`` links (the demo needs no keys), false for ``serial`` and ``ros2``.
        operator: Who runs the robot, for the audit log (``$KARAKURI_OPERATOR`` wins).
        audit_log: The audit log file; default ``$KARAKURI_AUDIT_LOG``, else
            ``/var/lib/karakuri/audit.jsonl`` where writable, else
            ``~/.local/state/karakuri/audit.jsonl``.
        care: Speed-and-separation monitoring and force limiting (:mod:`karakuri.launch.care`);
            required for policies of a task next to a person (handover); off when absent.
        source: The launch file (set by :func:`load_launch`, not a YAML key).
    """

    robot: str
    policy: Path
    link: LinkConfig
    rate_hz: float | None = None
    duration_s: float | None = None
    soft_start_s: float = 1.0
    command: CommandConfig | None = None
    safety: SafetyOverrides = field(default_factory=SafetyOverrides)
    telemetry: Path | None = None
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)
    loop: LoopSection = field(default_factory=LoopSection)
    success_radius_m: float = SUCCESS_RADIUS_M
    task: str = ""
    trust: TrustSection = field(default_factory=TrustSection)
    allow_unsigned: bool | None = None
    operator: str = ""
    audit_log: Path | None = None
    care: CareSection | None = None
    source: Path = field(default=Path("<memory>"), metadata={"yaml": False})

    def __post_init__(self) -> None:
        if self.rate_hz is not None and not self.rate_hz > 0:
            raise ValueError(f"rate_hz: {self.rate_hz} must be > 0 Hz")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration_s: {self.duration_s} must be > 0 s")
        if self.soft_start_s < 0 or self.success_radius_m <= 0:
            raise ValueError("soft_start_s must be >= 0 s and success_radius_m > 0 m")
        if self.rate_hz is not None:
            try:
                self.loop.check_rate(self.rate_hz)
            except ValueError as e:
                raise ValueError(f"loop.{e}") from None
        plant_fed = self.command is not None and self.command.plant_signal is not None
        if plant_fed and not self.task:
            raise ValueError("command.plant_signal reads the scene of a task: add 'task' (e.g. "
                             "task: pick_place)")
        if (plant_fed or self.task) and not isinstance(self.link, SilLinkConfig):
            raise ValueError("'task' and command.plant_signal need a simulated plant: use "
                             "link kind 'sil'")

    @property
    def link_kind(self) -> str:
        """The link's kind in :data:`~karakuri.launch.schema_links.LINKS`, e.g. ``sil``."""
        return link_kind(self.link)


# ----------------------------------------------------------------------------- loading
def load_launch(path: str | Path) -> LaunchConfig:
    """Read and check a launch file.

    Raises:
        LaunchError: the file is missing, not YAML, or has a bad key or value; the message
            names the file and the key path.
    """
    path = Path(path)
    if path.is_dir():
        raise LaunchError(f"launch file {path} is a directory; give a launch file (.yaml), "
                          f"e.g. launch/reach_sil.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise LaunchError(f"launch file {path} does not exist") from None
    except UnicodeDecodeError:
        raise LaunchError(f"launch file {path} is not a text (YAML) file") from None
    except OSError as e:
        raise LaunchError(f"launch file {path} cannot be read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise LaunchError(f"{path}: not valid YAML: {e}") from e
    return parse_launch(data, path)


def parse_launch(data: Any, source: Path) -> LaunchConfig:
    """Check a launch file's parsed YAML (see :func:`load_launch`)."""
    ctx = _Ctx(source)
    cfg = ctx.build(LaunchConfig, data, "", extra={"source": source})
    robot = cfg.robot
    if robot.endswith((".yaml", ".yml")) and not Path(robot).is_absolute():
        cfg = dataclasses.replace(cfg, robot=str((source.parent / robot).resolve()))
    return cfg


__all__ = ["LINKS", "LINK_KINDS", "CommandConfig", "LaunchConfig", "LaunchError", "LinkConfig",
           "LoopSection", "PlantSignalSection",
           "SafetyOverrides",
           "SerialLinkConfig", "SilLinkConfig", "TargetBox", "TrustSection", "WorkspaceBox",
           "load_launch",
           "parse_launch"]
