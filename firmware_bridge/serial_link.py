"""A :class:`~karakuri.robot.link.Link` to an MCU over a serial port (pyserial).

A background thread reads the port and feeds a :class:`~.host_core.HostCore`, so
:meth:`SerialLink.latest_state` only returns a reference and :meth:`SerialLink.send_command`
only encodes and writes (to the port's non-blocking descriptor).  The thread also repeats
HELLO, ARM and ESTOP until answered, repeats the newest COMMAND on a lossy line
(``resend_period_s``), notices missing STATEs, and reopens a port that disappeared with
exponential backoff.

Arming: ``connect()`` handshakes; with ``arm_on_connect`` the ARM goes out right before the
first COMMAND, so the MCU watchdog starts with a command in hand (a control loop that arms by
itself sets it False and calls :meth:`SerialLink.rearm` before its first tick).  A reopened
port is handshaken again but never armed: the robot holds until :meth:`SerialLink.rearm`.

Imports numpy, pyserial and the standard library only (edge runtime).
"""

from __future__ import annotations

import contextlib
import errno
import threading
import time

import numpy as np
import serial

from karakuri.firmware_bridge.host_core import HandshakeError, HostCore
from karakuri.firmware_bridge.port_lock import PortInUseError, PortLock, holders, set_exclusive
from karakuri.firmware_bridge.protocol import (
    Caps,
    Command,
    Estop,
    Message,
    encode_frame,
    next_seq,
)
from karakuri.firmware_bridge.serial_port import SerialLinkConfig, _write_nonblocking
from karakuri.robot.envelope import LimitSet
from karakuri.robot.link import (
    CommandMode,
    JointState,
    LinkCounters,
    LinkError,
    NotConnectedError,
)
from karakuri.robot.spec import RobotSpec

__all__ = ["CommandError", "HandshakeError", "SerialLink", "SerialLinkConfig"]


class CommandError(LinkError, ValueError):
    """A command the link refuses to send (wrong shape, non-finite); names the bad value."""


class SerialLink:
    """The host end of the wire protocol over pyserial.

    Args:
        spec: The robot the MCU must drive; CAPS is checked against its joint count and
            joint-name hash.
        config: Port and timing.
    """

    def __init__(self, spec: RobotSpec, config: SerialLinkConfig) -> None:
        self.spec, self.config = spec, config
        self._tx_lock = threading.Lock()
        self._connected = self._arm_first = self._tx_dirty = False
        self._ser: serial.Serial | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._core = self._new_core()
        self._port_lock = PortLock(config.port)

    def _new_core(self) -> HostCore:
        cfg = self.config
        period = 1.0 / (cfg.command_rate_hz or self.spec.control_rate_hz)
        state = 1.0 / cfg.state_rate_hz if cfg.state_rate_hz else None
        self._tx_seq = 0
        self._backoff, self._next_reopen = cfg.reconnect_min_s, 0.0
        return HostCore(self.spec, cfg.port, period, state, cfg.resend_period_s,
                        cfg.state_timeout_s, self._write)

    # ------------------------------------------------------------------ Link protocol
    def connect(self) -> None:
        """Open the port, HELLO/CAPS, wait for a STATE; arming follows with the first COMMAND.

        Raises:
            LinkError: The port cannot be opened, or no CAPS / STATE in time.
            HandshakeError: The MCU drives another robot (joint count or name hash differ).
        """
        if self._connected:
            return
        self._core = core = self._new_core()
        try:
            self._port_lock.acquire()
        except PortInUseError as e:
            raise LinkError(str(e)) from None
        try:
            ser = self._open()
        except LinkError:
            self._port_lock.release()
            raise
        with self._tx_lock:
            self._ser, self._tx_dirty = ser, True
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serial-link", daemon=True)
        self._thread.start()
        timeout = self.config.handshake_timeout_s
        try:
            core.start_handshake(time.monotonic())
            if not core.caps_event.wait(timeout):
                raise LinkError(f"no CAPS from {self.config.port} within {timeout} s; is the MCU "
                                f"running and speaking this protocol? ({core.rx_summary()})")
            if core.handshake_error:
                raise HandshakeError(core.handshake_error)
            if not core.wait_state(timeout):
                raise LinkError(f"no STATE from {self.config.port} within {timeout} s after the "
                                f"handshake ({core.rx_summary()})")
        except LinkError:
            self._shutdown()
            raise
        self._arm_first = self.config.arm_on_connect
        self._connected = True

    def close(self) -> None:
        """Stop the reader and close the port; sends nothing (the MCU watchdog holds)."""
        self._connected = False
        self._shutdown()

    @property
    def is_connected(self) -> bool:
        """True between a successful :meth:`connect` and :meth:`close` (even while reopening)."""
        return self._connected

    @property
    def link_up(self) -> bool:
        """True while the port is open and the handshake has succeeded."""
        return self._core.link_up

    @property
    def caps(self) -> Caps | None:
        """The MCU's CAPS from the last handshake."""
        return self._core.caps

    def reported_limits(self) -> LimitSet | None:
        """The limits in the MCU's CAPS (position and velocity; CAPS has no acceleration).

        One of the envelope's trusted sources (:mod:`karakuri.robot.envelope`); None before
        the handshake.
        """
        caps = self._core.caps
        if caps is None:
            return None
        lim = LimitSet.unknown(f"MCU CAPS on {self.config.port}", caps.n_joints)
        for name in ("lower", "upper", "velocity_limit"):
            getattr(lim, name)[:] = np.asarray(getattr(caps, name), np.float64)
        return lim

    @property
    def watchdog_s(self) -> float | None:
        """The MCU's watchdog timeout from CAPS, s (None before the handshake)."""
        caps = self._core.caps
        return None if caps is None else caps.watchdog_us * 1e-6

    def latest_state(self) -> JointState | None:
        """The newest STATE (its ``stamp`` says when it arrived); never blocks."""
        self._require_connected("latest_state")
        return self._core.state

    def send_command(self, q_target: np.ndarray, mode: CommandMode = CommandMode.POSITION) -> None:
        """Send joint position targets; never blocks (dropped and counted while reopening).

        Args:
            q_target: Joint position targets, rad or m. Shape: (n_joints,).
            mode: POSITION (track ``q_target``) or HOLD (the MCU holds where it is).

        Raises:
            NotConnectedError: Before connect or after close.
            CommandError: Wrong shape or a non-finite value (names the joint).
        """
        self._require_connected("send_command")
        names = self.spec.joint_names
        q = np.asarray(q_target, dtype=np.float64)
        if q.shape != (len(names),):
            raise CommandError(f"q_target has shape {q.shape}; robot {self.spec.name!r} has "
                               f"{len(names)} joints {list(names)}")
        bad = np.flatnonzero(~np.isfinite(q))
        if bad.size:
            i = int(bad[0])
            raise CommandError(f"q_target[{i}] ({names[i]}) is {q[i]}; refusing a non-finite "
                               f"target")
        now, core = time.monotonic(), self._core
        if self._arm_first and core.link_up:
            self._arm_first = False
            if core.counters.reconnects == 0:
                core.request(core.next_arm(), 2.0, now)
        core.send_command(Command(CommandMode(mode), q.astype(np.float32)), now)

    def estop(self) -> None:
        """Send ESTOP (repeated until ACKed); the MCU stops and latches until :meth:`rearm`."""
        self._require_connected("estop")
        self._arm_first = False
        self._core.forget_command()
        self._core.request(Estop(), 2.0, time.monotonic())

    def rearm(self) -> None:
        """Send ARM (repeated until ACKed, waiting out a stop ramp); the MCU then holds."""
        self._require_connected("rearm")
        self._core.request(self._core.next_arm(), 2.0, time.monotonic())

    def faults(self) -> list[str]:
        """Faults reported by the MCU or seen by the link since connect, oldest first."""
        return self._core.faults()

    def counters(self) -> LinkCounters:
        """A snapshot of the counters (``extra`` holds the protocol-specific ones)."""
        return self._core.snapshot()

    def __enter__(self) -> SerialLink:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ diagnostics
    def round_trip_times(self) -> np.ndarray:
        """COMMAND sent → first STATE reporting it applied, s, oldest first. Shape: (k,)."""
        return self._core.round_trip_times()

    def ping(self, timeout: float = 0.5) -> float:
        """HEARTBEAT → ACK round trip, s; blocks (not for use inside a control loop).

        Raises:
            LinkError: No ACK within ``timeout`` s.
        """
        self._require_connected("ping")
        t0 = time.monotonic()
        seq, slot = self._core.ping_slot()
        deadline = t0 + timeout
        while not slot and time.monotonic() < deadline:
            time.sleep(0)  # yield to the reader thread
        self._core.drop_ping(seq)
        if not slot:
            raise LinkError(f"no ACK to HEARTBEAT from {self.config.port} within {timeout} s")
        return slot[0] - t0

    # ------------------------------------------------------------------ port and thread
    def _open(self) -> serial.Serial:
        port = self.config.port
        try:
            ser = serial.Serial(port, self.config.baudrate, timeout=0.002, write_timeout=0.001,
                                exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            if "exclusively lock" in str(e) or getattr(e, "errno", None) == errno.EBUSY \
                    or "Errno 16" in str(e):
                pids = holders(port)
                who = f"PID {', '.join(map(str, pids))}" if pids else "another process"
                raise LinkError(f"port {port} in use by {who}: it is locked or held "
                                f"exclusively; one host per robot") from e
            raise LinkError(f"cannot open serial port {port!r}: {e}; is the MCU "
                            f"plugged in (or `karakuri sil` running)?") from e
        if isinstance(getattr(ser, "fd", None), int):
            set_exclusive(ser.fd)
        return ser

    def _shutdown(self) -> None:
        self._closing.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None
        with self._tx_lock:
            ser, self._ser = self._ser, None
        self._core.link_up = False
        if ser is not None:
            ser.close()
        self._port_lock.release()

    def _require_connected(self, what: str) -> None:
        if not self._connected:
            raise NotConnectedError(f"SerialLink.{what}() on {self.config.port!r} before "
                                    f"connect() or after close()")

    def _run(self) -> None:
        core = self._core
        while not self._closing.is_set():
            ser = self._ser
            if ser is None:
                self._reopen(time.monotonic())
                continue
            try:
                waiting = ser.in_waiting
                data = ser.read(waiting or 1)
            except (serial.SerialException, OSError, TypeError) as e:
                self._port_lost(e)
                continue
            now = time.monotonic()
            if data:
                core.feed(data, now)
            core.housekeeping(now)

    def _port_lost(self, error: Exception) -> None:
        self._core.add_fault(f"serial port {self.config.port} lost ({error}); reopening")
        with self._tx_lock:
            ser, self._ser = self._ser, None
        self._core.link_up = self._core.handshaking = False
        if ser is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                ser.close()
        self._backoff = self.config.reconnect_min_s
        self._next_reopen = time.monotonic() + self._backoff

    def _reopen(self, now: float) -> None:
        if now < self._next_reopen:
            self._closing.wait(min(self._next_reopen - now, 0.05))
            return
        self._core.extra["reopen_attempts"] += 1
        try:
            ser = self._open()
        except LinkError:
            self._backoff = min(2 * self._backoff, self.config.reconnect_max_s)
            self._next_reopen = now + self._backoff
            return
        self._core.decoder.reset()
        with self._tx_lock:
            self._ser, self._tx_dirty = ser, True
        self._core.start_handshake(now)

    def _write(self, msg: Message) -> int | None:
        """Encode and write one frame; returns its seq, or None if it was not written whole."""
        with self._tx_lock:
            ser = self._ser
            if ser is None:
                self._core.extra["tx_dropped"] += 1
                return None
            self._tx_seq = seq = next_seq(self._tx_seq)  # 1..65535: 0 means "none"
            data = encode_frame(msg, seq, time.monotonic_ns() // 1000)
            if self._tx_dirty:  # after a partial write or a reopen: end any partial frame
                data = b"\x00" + data
            try:
                n = _write_nonblocking(ser, data)
            except (serial.SerialException, OSError):
                self._core.extra["tx_dropped"] += 1
                return None  # the reader thread notices the lost port
            if n < len(data):
                self._tx_dirty = self._tx_dirty or n > 0
                self._core.extra["tx_dropped"] += 1
                return None
            self._tx_dirty = False
            self._core.counters.frames_tx += 1
            return seq
