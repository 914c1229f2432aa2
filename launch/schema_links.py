"""The ``link:`` section of a launch file: the kinds of link and their config types.

Split from :mod:`karakuri.launch.schema`, which re-exports every name here.  Only the standard
library and Karakuri's runtime modules are imported (no torch, no MuJoCo).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from karakuri.firmware_bridge.fault_injection import FaultConfig
from karakuri.firmware_bridge.firmware.qemu import QemuLinkConfig
from karakuri.firmware_bridge.ros2_config import Ros2LinkConfig
from karakuri.firmware_bridge.serial_link import SerialLinkConfig

LINK_KINDS = ("serial", "sil", "ros2", "qemu")


@dataclass(frozen=True)
class SilLinkConfig:
    """``link:`` with ``kind: sil``: a virtual MCU on a pty driving the robot's MuJoCo model.

    The host side is the same :class:`SerialLink` as on hardware, opened on the pty.

    Attributes:
        faults: Link faults injected by the virtual MCU (``corrupt_byte_rate``,
            ``drop_frame_rate``, ``delay_frame_rate``, ``delay_s``, ``fault_direction``,
            ``fault_seed``); none by default.
        paced: Pace the physics to the wall clock (off: as fast as the CPU allows).
        state_rate_hz: STATE rate, Hz; default: the loop rate.
        link_path: Also expose the pty at this path (a symlink), e.g. for other tools.
        handshake_timeout_s: How long the host waits for CAPS, the ARM ACK and a STATE, s.
        record_commands: Keep every applied COMMAND in the virtual MCU (fault tests).
    """

    faults: FaultConfig = field(default_factory=FaultConfig)
    paced: bool = True
    state_rate_hz: float | None = None
    link_path: str = ""
    handshake_timeout_s: float = 5.0
    record_commands: bool = False

    def __post_init__(self) -> None:
        if self.state_rate_hz is not None and not self.state_rate_hz > 0:
            raise ValueError(f"state_rate_hz: {self.state_rate_hz} must be > 0 Hz")
        if not self.handshake_timeout_s > 0:
            raise ValueError(f"handshake_timeout_s: {self.handshake_timeout_s} must be > 0 s")


LinkConfig = SerialLinkConfig | SilLinkConfig | Ros2LinkConfig | QemuLinkConfig
_LINK_TYPES: dict[str, type] = {"serial": SerialLinkConfig, "sil": SilLinkConfig,
                                 "qemu": QemuLinkConfig,
                                 "ros2": Ros2LinkConfig}


__all__ = ["LINK_KINDS", "LinkConfig", "SerialLinkConfig", "SilLinkConfig"]
