"""The serial port side of :class:`~karakuri.firmware_bridge.serial_link.SerialLink`.

Its config (port and timing) and the non-blocking write.  Split from
:mod:`karakuri.firmware_bridge.serial_link`, which re-exports :class:`SerialLinkConfig`.
Imports pyserial and the standard library only (edge runtime).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import serial


@dataclass(frozen=True)
class SerialLinkConfig:
    """Port and timing of a :class:`SerialLink`.

    Attributes:
        port: Serial device (/dev/ttyACM0) or the virtual MCU's pty or link path.
        baudrate: Line rate, baud (USB CDC devices and ptys ignore it).
        command_rate_hz: How often the host sends COMMAND, Hz; None: the robot's control rate.
            Sent in HELLO: the MCU watchdog trips after min(3 periods, 50 ms) without one.
        state_rate_hz: STATE rate asked of the MCU, Hz; None: the command rate (never the
            MCU's default, which may be slower).  A higher rate means fresher states.
        resend_period_s: Repeat the newest COMMAND this often while it is less than one
            command period old, s; 0 turns it off.  Feeds the watchdog on a noisy line; a
            control loop that stops sending still stops the robot.
        handshake_timeout_s: How long connect() waits for CAPS and the first STATE, s.
        state_timeout_s: No STATE for this long is a link timeout (counted, reported), s;
            None: the larger of 50 ms and 5 STATE periods.
        reconnect_min_s: First wait before reopening a lost port, s (doubles per failure).
        reconnect_max_s: Longest wait between reopen attempts, s.
        arm_on_connect: Arm with the first COMMAND after connect() (reopens never arm).
    """

    port: str
    baudrate: int = 1_000_000
    command_rate_hz: float | None = None
    state_rate_hz: float | None = None
    resend_period_s: float = 0.005
    handshake_timeout_s: float = 2.0
    state_timeout_s: float | None = None
    reconnect_min_s: float = 0.05
    reconnect_max_s: float = 1.0
    arm_on_connect: bool = True

    def __post_init__(self) -> None:
        if not self.port:
            raise ValueError("port is empty; give the device path, e.g. /dev/ttyACM0")
        for name in ("command_rate_hz", "state_rate_hz", "state_timeout_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}={value} must be > 0 (or None for the default)")
        if self.resend_period_s < 0 or self.handshake_timeout_s <= 0:
            raise ValueError(f"resend_period_s={self.resend_period_s} must be >= 0 (0: off) and "
                             f"handshake_timeout_s={self.handshake_timeout_s} > 0")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError(f"need 0 < reconnect_min_s ({self.reconnect_min_s}) <= "
                             f"reconnect_max_s ({self.reconnect_max_s})")


def _write_nonblocking(ser: serial.Serial, data: bytes) -> int:
    """Write what the driver takes now; returns the bytes written (0 when its buffer is full).

    pyserial's own ``write`` either blocks or, with a write timeout, may raise after a complete
    write; on POSIX the port's descriptor is already non-blocking, so write to it directly.
    """
    fd = getattr(ser, "fd", None)
    if isinstance(fd, int):
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
    try:
        return int(ser.write(data) or 0)
    except serial.SerialTimeoutException:
        return 0


__all__ = ["SerialLinkConfig"]
