"""The runtime's link contract: a link to a robot's joints.

Owned by its consumer, :class:`karakuri.robot.control_loop.ControlLoop`, so the arrow points
down: ``firmware_bridge/`` (serial, ROS 2 and SIL links) implements this protocol and imports
it from here; ``robot/`` imports nothing of ``firmware_bridge/``.
Every method is non-blocking except :meth:`Link.connect`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


class LinkError(RuntimeError):
    """Base class of link failures."""


class NotConnectedError(LinkError):
    """The link was used before :meth:`Link.connect` or after :meth:`Link.close`."""


class CommandMode(enum.IntEnum):
    """How the robot interprets a COMMAND."""

    HOLD = 0
    POSITION = 1


class StatusBits(enum.IntFlag):
    """Robot-side status bits carried in every STATE."""

    NONE = 0
    ARMED = 1 << 0
    ESTOP = 1 << 1
    WATCHDOG = 1 << 2
    FAULT = 1 << 3
    STOPPING = 1 << 4


@dataclass(frozen=True)
class JointState:
    """One state sample from the robot, joints in the spec's order.

    Attributes:
        position: Joint positions, rad. Shape: (n_joints,).
        velocity: Joint velocities, rad/s. Shape: (n_joints,).
        effort: Joint efforts, N·m. Shape: (n_joints,).
        stamp: When the sample was taken, host monotonic clock, s.
        device_time_us: The robot's own clock for the sample, µs (0 where unknown).
        status: Robot-side status bits.
        seq: Sequence number of the frame or message that carried it.
    """

    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    stamp: float
    device_time_us: int = 0
    status: StatusBits = StatusBits.NONE
    seq: int = 0


@dataclass
class LinkCounters:
    """What a link has seen since connect; reported in the loop summary."""

    frames_rx: int = 0
    frames_tx: int = 0
    crc_errors: int = 0
    length_errors: int = 0
    seq_gaps: int = 0
    timeouts: int = 0
    reconnects: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        """Flat dict for printing and telemetry."""
        d = {k: v for k, v in vars(self).items() if k != "extra"}
        d.update(self.extra)
        return d


@runtime_checkable
class Link(Protocol):
    """A connection to one robot's joints (real or simulated)."""

    def connect(self) -> None:
        """Open the link and handshake; raises :class:`LinkError` naming what failed."""

    def close(self) -> None:
        """Close the link; safe to call twice."""

    @property
    def is_connected(self) -> bool:
        """True between a successful connect and close."""

    def latest_state(self) -> JointState | None:
        """The newest state received, or None before the first; never blocks."""

    def send_command(self, q_target: np.ndarray, mode: CommandMode = CommandMode.POSITION) -> None:
        """Send joint position targets, rad, shape (n_joints,); never blocks."""

    def estop(self) -> None:
        """Ask the robot for an emergency stop (latched on the robot side)."""

    def rearm(self) -> None:
        """Ask the robot to clear a latched stop or fault; it holds until commanded."""

    def faults(self) -> list[str]:
        """Faults reported by the robot since connect, oldest first."""

    def counters(self) -> LinkCounters:
        """A snapshot of the link's counters."""
