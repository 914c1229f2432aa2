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

from karakuri.firmware_bridge.serial_link import SerialLinkConfig
from karakuri.launch.care import CareSection
from karakuri.launch.schema_links import _LINK_TYPES, LINK_KINDS, LinkConfig, SilLinkConfig
from karakuri.launch.schema_reader import LaunchError, _Ctx
from karakuri.robot.loop_commands import BoxTargets, CommandSource, FixedTargets, PlantSignal
from karakuri.robot.realtime import RealtimeConfig
from karakuri.robot.safety import SafetyOverrides, WorkspaceBox


@dataclass(frozen=True)
class TargetBox:
    """``command.box``: targets drawn uniformly from a box with a seed.

    Attributes:
        lower: Lower corner, e.g. xyz in m, base frame.
        upper: Upper corner.
        count: Number of episodes.
        seed: Seed of the draw.
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    count: int
    seed: int = 0


@dataclass(frozen=True)
class PlantSignalSection:
    """``command.plant_signal``: a policy input read every tick from the simulated plant.

    Sim-in-the-loop only: the virtual MCU simulates the scene of the launch file's ``task``;
    each episode's objects are laid out from the task's own distribution, and the input is
    computed from the plant as the task computes it in training (a simulated vision system).

    Attributes:
        signal: The policy input it feeds, e.g. ``object_pose`` (pick_place) or ``hand_pos``
            (handover).
        count: Number of episodes.
        seed: Seed of the layouts and of the reading noise.
        noise: Std of Gaussian noise on each reading, in the signal's unit.
    """

    signal: str
    count: int
    seed: int = 0
    noise: float = 0.0


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
    box: TargetBox | None = None
    plant_signal: PlantSignalSection | None = None
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
        if self.plant_signal is not None:
            p = self.plant_signal
            return PlantSignal(p.signal, p.count, p.seed, self.hold_s, self.reset_s, p.noise)
        if self.box is not None:
            b = self.box
            return BoxTargets(b.lower, b.upper, b.count, b.seed, self.hold_s, self.reset_s)
        return FixedTargets(self.targets, self.hold_s, self.reset_s, self.repeat)


@dataclass(frozen=True)
class LoopSection:
    """``loop:``: timing and fault thresholds (see ``karakuri.robot.control_loop.LoopConfig``).

    Attributes:
        spin_s: Busy-wait before each deadline, s.
        late_s: A tick starting this long after its deadline is late, s (default 10 % of the
            period).
        stale_periods: State older than this many periods: hold.
        stale_fault_s: State older than this: fault and stop, s.
        first_state_timeout_s: Wait this long for the first state, s.
    """

    spin_s: float = 0.0003
    late_s: float | None = None
    stale_periods: int = 3
    stale_fault_s: float = 0.25
    first_state_timeout_s: float = 3.0

    def __post_init__(self) -> None:
        for key in ("spin_s", "late_s", "stale_fault_s", "first_state_timeout_s"):
            v, zero_ok = getattr(self, key), key == "spin_s"
            if v is not None and not (math.isfinite(v) and (v >= 0 if zero_ok else v > 0)):
                bound = ">= 0" if zero_ok else "> 0"
                raise ValueError(f"{key}: {v} must be a finite number {bound} s")
        if self.stale_periods < 1:
            raise ValueError(f"stale_periods: {self.stale_periods} must be >= 1")

    def check_rate(self, rate_hz: float) -> None:
        """Check the thresholds against the loop period ``1 / rate_hz``.

        The rule: ``stale_fault_s`` must exceed ``stale_periods`` periods, so that state goes
        stale (the loop holds) before it is old enough to be a fault (the loop stops).

        Raises:
            ValueError: naming the key, the value and the bound.
        """
        bound = self.stale_periods / rate_hz
        if not self.stale_fault_s > bound:
            raise ValueError(
                f"stale_fault_s: {self.stale_fault_s} s is too small: it must exceed "
                f"stale_periods / rate = {self.stale_periods} / {rate_hz:g} Hz = {bound:.4g} s "
                f"(state is stale after stale_periods periods and a fault only after "
                f"stale_fault_s); raise it or lower loop.stale_periods")


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
        success_radius_m: SIL only: tool-to-target distance counted as success, m.
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
    success_radius_m: float = 0.02
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
        """``serial``, ``sil``, ``qemu`` or ``ros2``."""
        return next(k for k, t in _LINK_TYPES.items() if isinstance(self.link, t))


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


__all__ = ["LINK_KINDS", "CommandConfig", "LaunchConfig", "LaunchError", "LinkConfig",
           "LoopSection", "PlantSignalSection",
           "SafetyOverrides",
           "SerialLinkConfig", "SilLinkConfig", "TargetBox", "TrustSection", "WorkspaceBox",
           "load_launch",
           "parse_launch"]
