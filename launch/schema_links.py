"""The ``link:`` section of a launch file: the link registry, one entry per kind.

``LINKS[kind]`` is the kind's config dataclass (the keys a launch file may give under
``link:``, beside ``kind``) and its factory (how :func:`karakuri.launch.deploy.open_link`
builds and connects it).  Adding a kind is one entry here; an unknown kind lists the valid
ones.  Split from :mod:`karakuri.launch.schema`, which re-exports every name here.

Only the standard library and Karakuri's runtime modules are imported (no torch, no MuJoCo):
each factory imports what its kind needs (pyserial, rclpy, MuJoCo, QEMU) when it runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from karakuri.firmware_bridge.fault_channel import FaultConfig
from karakuri.firmware_bridge.firmware.qemu import QemuLinkConfig
from karakuri.firmware_bridge.ros2_config import Ros2LinkConfig
from karakuri.firmware_bridge.serial_port import SerialLinkConfig
from karakuri.firmware_bridge.virtual_mcu_config import VirtualMCUConfig

if TYPE_CHECKING:
    from karakuri.robot.link import Link
    from karakuri.robot.spec import RobotSpec


@dataclass(frozen=True)
class SilLinkConfig(VirtualMCUConfig):
    """``link:`` with ``kind: sil``: a virtual MCU on a pty driving the robot's MuJoCo model.

    The keys of :class:`~karakuri.firmware_bridge.virtual_mcu_config.VirtualMCUConfig`
    (``link_path``, ``state_rate_hz`` (default: the loop rate), ``paced``, ``max_lag_s``,
    ``record_commands``), plus the ones below.  The host side is the same :class:`SerialLink`
    as on hardware, opened on the pty.

    Attributes:
        faults: Link faults injected by the virtual MCU (``corrupt_byte_rate``,
            ``drop_frame_rate``, ``delay_frame_rate``, ``delay_s``, ``fault_direction``,
            ``fault_seed``); none by default.
        handshake_timeout_s: How long the host waits for CAPS, the ARM ACK and a STATE, s.
    """

    faults: FaultConfig = field(default_factory=FaultConfig)
    handshake_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.handshake_timeout_s > 0:
            raise ValueError(f"handshake_timeout_s: {self.handshake_timeout_s} must be > 0 s")

    def mcu_config(self, rate_hz: float) -> VirtualMCUConfig:
        """The virtual MCU's own config; ``rate_hz``: the loop rate (the default STATE rate)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(VirtualMCUConfig)}
        values["state_rate_hz"] = self.state_rate_hz or rate_hz
        return VirtualMCUConfig(**values)


LinkConfig = SerialLinkConfig | SilLinkConfig | Ros2LinkConfig | QemuLinkConfig

Opened = tuple["Link", Any]
"""A connected-to-be link and the plant it shows (``Plant | None``: a tool position)."""
Factory = Callable[[Any, "RobotSpec", float, contextlib.ExitStack, Any], Opened]
"""``(link config, spec, loop rate Hz, exit stack, scene model) -> (link, plant)``: builds
the link (not yet connected); anything to close goes on the stack."""


@dataclass(frozen=True)
class LinkKind:
    """One kind of link: its launch-file config and how to build it.

    Attributes:
        config: The config dataclass of ``link:`` (its fields are the YAML keys).
        open: The factory (:data:`Factory`).
        in_process_plant: Why the loop must not take real-time measures on this kind when it
            shows a plant (its plant shares this machine's cores); empty: they stay on.
    """

    config: type
    open: Factory
    in_process_plant: str = ""


def _serial_to(port: str, spec: RobotSpec, rate_hz: float, handshake_timeout_s: float,
               state_rate_hz: float | None = None) -> Link:
    """A :class:`SerialLink` to a simulated MCU's pty, connecting without arming.

    ``state_rate_hz``: the STATE rate its HELLO asks for, Hz (None: the loop rate).
    """
    from karakuri.firmware_bridge.serial_link import SerialLink  # needs pyserial

    return SerialLink(spec, SerialLinkConfig(port=port, command_rate_hz=rate_hz,
                                             state_rate_hz=state_rate_hz,
                                             arm_on_connect=False,
                                             handshake_timeout_s=handshake_timeout_s))


def _open_serial(cfg: SerialLinkConfig, spec: RobotSpec, rate_hz: float,
                 stack: contextlib.ExitStack, model: Any) -> Opened:
    from karakuri.firmware_bridge.serial_link import SerialLink

    # connects without arming: the loop arms just before its first tick, so the MCU
    # watchdog (3 periods or 50 ms) starts with the loop
    return SerialLink(spec, dataclasses.replace(cfg, arm_on_connect=False,
                                                command_rate_hz=rate_hz)), None


@contextlib.contextmanager
def virtual_mcu(cfg: SilLinkConfig, spec: RobotSpec, rate_hz: float,
                model: Any = None) -> Iterator[Any]:
    """The running :class:`~karakuri.firmware_bridge.virtual_mcu.VirtualMCU` of a sil link.

    The seam where tests take a handle on the plant a deploy drives (monkeypatch this name).
    """
    from karakuri.firmware_bridge.virtual_mcu import VirtualMCU  # needs MuJoCo

    with VirtualMCU(spec, cfg.mcu_config(rate_hz), faults=cfg.faults, model=model) as mcu:
        yield mcu


def _open_sil(cfg: SilLinkConfig, spec: RobotSpec, rate_hz: float,
              stack: contextlib.ExitStack, model: Any) -> Opened:
    mcu = stack.enter_context(virtual_mcu(cfg, spec, rate_hz, model))
    # the host's HELLO asks for the link's STATE rate (else it would reset the MCU's to the
    # loop rate, and link.state_rate_hz would do nothing)
    return _serial_to(mcu.port, spec, rate_hz, cfg.handshake_timeout_s, cfg.state_rate_hz), mcu


def _open_qemu(cfg: QemuLinkConfig, spec: RobotSpec, rate_hz: float,
               stack: contextlib.ExitStack, model: Any) -> Opened:
    """The reference firmware on an emulated Cortex-M, over its pty."""
    from karakuri.firmware_bridge.firmware.qemu import MeasuredToolPlant, QemuBoard
    from karakuri.launch.tool_fk import mujoco_fk
    from karakuri.robot.safety import SafetyConfigError

    board = stack.enter_context(QemuBoard(cfg))
    link = _serial_to(board.port, spec, rate_hz, cfg.handshake_timeout_s)
    plant = None
    with contextlib.suppress(SafetyConfigError):  # no MuJoCo: no success judged
        plant = MeasuredToolPlant(link, mujoco_fk(spec))
    return link, plant


def _open_ros2(cfg: Ros2LinkConfig, spec: RobotSpec, rate_hz: float,
               stack: contextlib.ExitStack, model: Any) -> Opened:
    from karakuri.firmware_bridge.ros2_link import Ros2Link  # needs rclpy

    return Ros2Link(spec, cfg, control_period_s=1.0 / rate_hz), None


LINKS: dict[str, LinkKind] = {
    "serial": LinkKind(SerialLinkConfig, _open_serial),
    "sil": LinkKind(SilLinkConfig, _open_sil,
                    in_process_plant="the SIL plant runs in this process"),
    "ros2": LinkKind(Ros2LinkConfig, _open_ros2),
    "qemu": LinkKind(QemuLinkConfig, _open_qemu,
                     in_process_plant="the emulated board (QEMU) shares this machine's cores"),
}
LINK_KINDS = tuple(LINKS)


def link_kind(cfg: object) -> str:
    """The registry's name for a link config (``serial``, ``sil``, ``ros2``, ``qemu``)."""
    return next(k for k, kind in LINKS.items() if type(cfg) is kind.config)


__all__ = ["LINKS", "LINK_KINDS", "LinkConfig", "LinkKind", "SerialLinkConfig", "SilLinkConfig",
           "link_kind", "virtual_mcu"]
