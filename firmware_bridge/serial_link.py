"""A :class:`~karakuri.firmware_bridge.link.Link` to an MCU over a serial port (pyserial).

A background thread reads and decodes frames, so :meth:`SerialLink.latest_state` only returns
a reference and :meth:`SerialLink.send_command` only encodes and writes.  The thread also
retries HELLO, ARM and ESTOP until answered, repeats the newest COMMAND on a lossy line
(``resend_period_s``), watches for missing STATEs, and reopens the port with exponential
backoff when it disappears.  A reconnect handshakes again but never arms: after a lost port
the robot holds until :meth:`SerialLink.rearm`.

Imports numpy, pyserial and the standard library only (edge runtime).
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
import serial
from karakuri.firmware_bridge.link import (
    CommandMode,
    JointState,
    LinkCounters,
    LinkError,
    NotConnectedError,
    StatusBits,
)
from karakuri.firmware_bridge.protocol import (
    Ack,
    AckResult,
    Arm,
    Caps,
    Command,
    Estop,
    Fault,
    FaultCode,
    Frame,
    FrameDecoder,
    Heartbeat,
    Hello,
    Message,
    MsgType,
    SeqTracker,
    State,
    encode_frame,
)
from karakuri.robot.spec import RobotSpec

_RETRY_S = 0.02  # ARM / ESTOP resend interval until ACKed
_HELLO_RETRY_S = 0.1


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


class HandshakeError(LinkError):
    """CAPS does not describe the robot the host was asked to drive; names both sides."""


class CommandError(LinkError, ValueError):
    """A command the link refuses to send (wrong shape, non-finite); names the bad value."""


@dataclass(frozen=True)
class SerialLinkConfig:
    """Port and timing of a :class:`SerialLink`.

    Attributes:
        port: Serial device (/dev/ttyACM0) or the virtual MCU's pty or link path.
        baudrate: Line rate, baud (USB CDC devices and ptys ignore it).
        command_rate_hz: How often the host sends COMMAND, Hz; None: the robot's control rate.
            Sent in HELLO: the MCU watchdog trips after min(3 periods, 50 ms) without one.
        state_rate_hz: STATE rate asked of the MCU, Hz; None: the MCU's default (the command
            rate).
        resend_period_s: Repeat the newest COMMAND this often while it is less than one
            command period old, s; 0 turns it off.  Feeds the watchdog on a noisy line; a
            control loop that stops sending still stops the robot.
        handshake_timeout_s: How long connect() waits for CAPS, the ARM ACK and a STATE, s.
        state_timeout_s: No STATE for this long is a link timeout (counted, reported), s;
            None: the larger of 50 ms and 5 STATE periods.
        reconnect_min_s: First wait before reopening a lost port, s (doubles per failure).
        reconnect_max_s: Longest wait between reopen attempts, s.
        arm_on_connect: Send ARM in connect() (reconnects never arm).
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
        for name in ("command_rate_hz", "state_rate_hz", "state_timeout_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}={value} must be > 0 (or None for the default)")
        if self.resend_period_s < 0:
            raise ValueError(f"resend_period_s={self.resend_period_s} must be >= 0 (0: off)")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError(f"need 0 < reconnect_min_s ({self.reconnect_min_s}) <= "
                             f"reconnect_max_s ({self.reconnect_max_s})")


@dataclass
class _Pending:
    msg: Message
    deadline: float
    next_send: float
    result: AckResult | None = None
    done: threading.Event | None = None


class SerialLink:
    """The host end of the wire protocol over pyserial.

    Args:
        spec: The robot the MCU must drive; CAPS is checked against its joint count and
            joint-name hash.
        config: Port and timing.
    """

    def __init__(self, spec: RobotSpec, config: SerialLinkConfig) -> None:
        self.spec, self.config = spec, config
        rate = config.command_rate_hz or spec.control_rate_hz
        self.command_period_s = 1.0 / rate
        self._state_period_guess = 1.0 / (config.state_rate_hz or rate)
        self._tx_lock, self._lock = threading.Lock(), threading.Lock()
        self._connected = False
        self._ser: serial.Serial | None = None
        self._thread: threading.Thread | None = None
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self._closing = threading.Event()
        self._decoder, self._rx_seq = FrameDecoder(), SeqTracker()
        self._counters = LinkCounters()
        self._extra: collections.Counter[str] = collections.Counter()
        self._faults: list[str] = []
        self._fault_ids: set[int] = set()
        self._state: JointState | None = None
        self._caps: Caps | None = None
        self._caps_event = threading.Event()
        self._handshake_error: str | None = None
        self._handshaking = self._link_up = self._tx_dirty = False
        self._hello_due = self._last_state_rx = self._last_cmd_tx = 0.0
        self._in_timeout = False
        self._tx_seq = 0
        self._pending: dict[MsgType, _Pending] = {}
        self._last_cmd: tuple[Command, float] | None = None
        self._cmd_sent: collections.OrderedDict[int, float] = collections.OrderedDict()
        self._rtts: collections.deque[float] = collections.deque(maxlen=100_000)
        self._last_acked_cmd: int | None = None
        self._pings: dict[int, list[float]] = {}
        self._backoff, self._next_reopen = self.config.reconnect_min_s, 0.0

    # ------------------------------------------------------------------ Link protocol
    def connect(self) -> None:
        """Open the port, HELLO/CAPS, ARM (``arm_on_connect``), wait for a STATE.

        Raises:
            LinkError: The port cannot be opened, or no CAPS / ACK / STATE in time.
            HandshakeError: The MCU drives another robot (joint count or name hash differ).
        """
        if self._connected:
            return
        self._reset_runtime()
        ser = self._open()
        with self._tx_lock:
            self._ser, self._tx_dirty = ser, True
        self._thread = threading.Thread(target=self._run, name="serial-link", daemon=True)
        self._thread.start()
        timeout = self.config.handshake_timeout_s
        try:
            self._start_handshake(time.monotonic())
            if not self._caps_event.wait(timeout):
                raise LinkError(f"no CAPS from {self.config.port} within {timeout} s; is the MCU "
                                f"running and speaking this protocol? ({self._rx_summary()})")
            if self._handshake_error:
                raise HandshakeError(self._handshake_error)
            if self.config.arm_on_connect:
                result = self._request(Arm(), timeout, wait=True)
                if result is not AckResult.OK:
                    raise LinkError(f"MCU on {self.config.port} did not arm: "
                                    f"{result.name if result is not None else 'no ACK'} within "
                                    f"{timeout} s ({self._rx_summary()})")
            deadline = time.monotonic() + timeout
            while self._state is None and time.monotonic() < deadline:
                time.sleep(0.001)
            if self._state is None:
                raise LinkError(f"no STATE from {self.config.port} within {timeout} s after the "
                                f"handshake ({self._rx_summary()})")
        except LinkError:
            self._shutdown()
            raise
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
        return self._link_up

    @property
    def caps(self) -> Caps | None:
        """The MCU's CAPS from the last handshake."""
        return self._caps

    def latest_state(self) -> JointState | None:
        """The newest STATE (its ``stamp`` says when it arrived); never blocks."""
        self._require_connected("latest_state")
        return self._state

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
        cmd = Command(CommandMode(mode), q.astype(np.float32))
        now = time.monotonic()
        self._last_cmd = (cmd, now)
        if self._link_up:
            self._send_command_frame(cmd, now)
        else:
            self._extra["tx_dropped"] += 1

    def estop(self) -> None:
        """Send ESTOP (repeated until ACKed); the MCU stops and latches until :meth:`rearm`."""
        self._require_connected("estop")
        self._last_cmd = None
        self._request(Estop(), 2.0)

    def rearm(self) -> None:
        """Send ARM (repeated until ACKed, waiting out a stop ramp); the MCU then holds."""
        self._require_connected("rearm")
        self._request(Arm(), 2.0)

    def faults(self) -> list[str]:
        """Faults reported by the MCU or seen by the link since connect, oldest first."""
        with self._lock:
            return list(self._faults)

    def counters(self) -> LinkCounters:
        """A snapshot of the counters (``extra`` holds the protocol-specific ones)."""
        st = self._decoder.stats
        with self._lock:
            c = replace(self._counters, crc_errors=st.crc_errors, length_errors=st.length_errors,
                        seq_gaps=self._rx_seq.gaps, extra=dict(self._extra))
        c.extra.update(version_errors=st.version_errors, message_errors=st.message_errors,
                       seq_duplicates=self._rx_seq.duplicates, bytes_rx=st.bytes,
                       seq_reordered=self._rx_seq.reordered)
        return c

    def __enter__(self) -> SerialLink:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ diagnostics
    def round_trip_times(self) -> np.ndarray:
        """COMMAND sent → first STATE reporting it applied, s, oldest first. Shape: (k,)."""
        with self._lock:
            return np.array(self._rtts, dtype=np.float64)

    def ping(self, timeout: float = 0.5) -> float:
        """HEARTBEAT → ACK round trip, s; blocks (not for use inside a control loop).

        Raises:
            LinkError: No ACK within ``timeout`` s.
        """
        self._require_connected("ping")
        slot: list[float] = []
        with self._lock:
            seq = self._write(Heartbeat())
            if seq is not None:
                self._pings[seq] = slot
        t0 = time.monotonic()
        deadline = t0 + timeout
        while not slot and time.monotonic() < deadline:
            time.sleep(0)  # yield to the reader thread
        with self._lock:
            self._pings.pop(seq if seq is not None else -1, None)
        if not slot:
            raise LinkError(f"no ACK to HEARTBEAT from {self.config.port} within {timeout} s")
        return slot[0] - t0

    # ------------------------------------------------------------------ port and thread
    def _open(self) -> serial.Serial:
        try:
            return serial.Serial(self.config.port, self.config.baudrate, timeout=0.002,
                                 write_timeout=0.001)
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"cannot open serial port {self.config.port!r}: {e}; is the MCU "
                            f"plugged in (or `karakuri sil` running)?") from e

    def _shutdown(self) -> None:
        self._closing.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None
        with self._tx_lock:
            ser, self._ser = self._ser, None
        self._link_up = False
        if ser is not None:
            ser.close()

    def _require_connected(self, what: str) -> None:
        if not self._connected:
            raise NotConnectedError(f"SerialLink.{what}() on {self.config.port!r} before "
                                    f"connect() or after close()")

    def _run(self) -> None:
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
                for frame in self._decoder.feed(data):
                    self._dispatch(frame, now)
            self._housekeeping(now)

    def _port_lost(self, error: Exception) -> None:
        with self._tx_lock:
            ser, self._ser = self._ser, None
        self._link_up = self._handshaking = False
        if ser is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                ser.close()
        self._add_fault(f"serial port {self.config.port} lost ({error}); reopening")
        self._backoff = self.config.reconnect_min_s
        self._next_reopen = time.monotonic() + self._backoff

    def _reopen(self, now: float) -> None:
        if now < self._next_reopen:
            self._closing.wait(min(self._next_reopen - now, 0.05))
            return
        self._extra["reopen_attempts"] += 1
        try:
            ser = self._open()
        except LinkError:
            self._backoff = min(2 * self._backoff, self.config.reconnect_max_s)
            self._next_reopen = now + self._backoff
            return
        self._decoder.reset()
        with self._tx_lock:
            self._ser, self._tx_dirty = ser, True
        self._start_handshake(now)

    def _start_handshake(self, now: float) -> None:
        self._caps_event.clear()
        self._handshaking, self._hello_due = True, now + _HELLO_RETRY_S
        self._write(self._hello())

    def _hello(self) -> Hello:
        state = round(1e6 / self.config.state_rate_hz) if self.config.state_rate_hz else 0
        return Hello(round(self.command_period_s * 1e6), state)

    # ------------------------------------------------------------------ tx
    def _write(self, msg: Message) -> int | None:
        """Encode and write one frame; returns its seq, or None if it could not be written."""
        with self._tx_lock:
            ser = self._ser
            if ser is None:
                self._extra["tx_dropped"] += 1
                return None
            self._tx_seq = seq = (self._tx_seq + 1) & 0xFFFF
            data = encode_frame(msg, seq, time.monotonic_ns() // 1000)
            if self._tx_dirty:
                data = b"\x00" + data
            try:
                n = _write_nonblocking(ser, data)
            except (serial.SerialException, OSError):
                self._extra["tx_dropped"] += 1
                return None  # the reader thread notices the lost port
            if n < len(data):
                self._tx_dirty = self._tx_dirty or n > 0  # a cut frame: end it before the next
                self._extra["tx_dropped"] += 1
                return None
            self._tx_dirty = False
            self._counters.frames_tx += 1
            return seq

    def _send_command_frame(self, cmd: Command, now: float) -> None:
        seq = self._write(cmd)
        if seq is None:
            return
        self._last_cmd_tx = now
        with self._lock:
            self._cmd_sent[seq] = now
            while len(self._cmd_sent) > 256:
                self._cmd_sent.popitem(last=False)

    def _request(self, msg: Message, timeout: float, wait: bool = False) -> AckResult | None:
        now = time.monotonic()
        pending = _Pending(msg, now + timeout, now + _RETRY_S, done=threading.Event())
        with self._lock:
            self._pending[msg.TYPE] = pending
        self._write(msg)
        if wait:
            pending.done.wait(timeout)  # type: ignore[union-attr]
        return pending.result

    # ------------------------------------------------------------------ rx
    def _dispatch(self, frame: Frame, now: float) -> None:
        self._counters.frames_rx += 1
        self._rx_seq.update(frame.seq)
        msg = frame.msg
        if isinstance(msg, State):
            self._on_state(frame, msg, now)
        elif isinstance(msg, Caps):
            self._on_caps(msg)
        elif isinstance(msg, Ack):
            self._on_ack(msg, now)
        elif isinstance(msg, Fault):
            self._on_fault(frame, msg)
        elif not isinstance(msg, Heartbeat):
            self._extra["unexpected_frames"] += 1

    def _on_state(self, frame: Frame, msg: State, now: float) -> None:
        if msg.q.size != self.spec.n_joints or self._handshake_error:
            self._extra["state_size_errors"] += 1
            return
        self._state = JointState(
            position=msg.q.astype(np.float64), velocity=msg.dq.astype(np.float64),
            effort=msg.effort.astype(np.float64), stamp=now, device_time_us=frame.time_us,
            status=StatusBits(msg.status), seq=frame.seq)
        self._last_state_rx, self._in_timeout = now, False
        if msg.last_cmd_seq != self._last_acked_cmd:
            self._last_acked_cmd = msg.last_cmd_seq
            with self._lock:
                sent = self._cmd_sent.pop(msg.last_cmd_seq, None)
                if sent is not None:
                    self._rtts.append(now - sent)

    def _on_caps(self, caps: Caps) -> None:
        if not self._handshaking:
            self._extra["unexpected_frames"] += 1
            return
        self._handshaking = False
        spec, port = self.spec, self.config.port
        want = spec.joint_hash()
        if caps.n_joints != spec.n_joints or caps.joint_hash != want:
            self._handshake_error = (
                f"MCU on {port} drives {caps.n_joints} joints with joint-name hash "
                f"0x{caps.joint_hash:08x}; robot {spec.name!r} has {spec.n_joints} joints "
                f"{list(spec.joint_names)} with hash 0x{want:08x}: the firmware was built for "
                f"another robot or another joint order")
            self._add_fault(f"handshake: {self._handshake_error}")
        else:
            if self._caps is not None:
                self._counters.reconnects += 1
            self._caps, self._link_up = caps, True
            self._last_state_rx = time.monotonic()
        self._caps_event.set()

    def _on_ack(self, ack: Ack, now: float) -> None:
        with self._lock:
            slot = self._pings.get(ack.acked_seq)
            if ack.acked_type == MsgType.HEARTBEAT and slot is not None:
                slot.append(now)
                return
            pending = self._pending.get(MsgType(ack.acked_type)) if ack.acked_type in (
                MsgType.ARM, MsgType.ESTOP) else None
            if pending is None:
                return
            result = AckResult(ack.result) if ack.result in iter(AckResult) else AckResult.REJECTED
            if result is AckResult.BUSY and now < pending.deadline:
                return  # still stopping: keep retrying until the deadline
            del self._pending[MsgType(ack.acked_type)]
        pending.result = result
        if pending.done is not None:
            pending.done.set()
        if result is not AckResult.OK:
            self._add_fault(f"MCU refused {MsgType(ack.acked_type).name}: {result.name}")

    def _on_fault(self, frame: Frame, msg: Fault) -> None:
        if msg.fault_id in self._fault_ids:
            return  # a repeat of a latched fault
        self._fault_ids.add(msg.fault_id)
        code = FaultCode(msg.code).name if msg.code in iter(FaultCode) else f"code {msg.code}"
        what = {FaultCode.WATCHDOG: f"no valid COMMAND for {msg.detail / 1e3:.1f} ms; the MCU "
                                    f"stopped and holds",
                FaultCode.ESTOP: "e-stop latched; the MCU stopped and holds",
                FaultCode.BAD_COMMAND: f"COMMAND rejected (joint index/count {msg.detail})"}
        self._add_fault(f"MCU fault #{msg.fault_id} {code} at t={frame.time_us / 1e6:.3f} s: "
                        f"{what.get(msg.code, f'detail {msg.detail}')}")

    # ------------------------------------------------------------------ periodic
    def _housekeeping(self, now: float) -> None:
        if self._handshaking and now >= self._hello_due:
            self._hello_due = now + _HELLO_RETRY_S
            self._write(self._hello())
        self._retry_pending(now)
        period, resend = self.command_period_s, self.config.resend_period_s
        last = self._last_cmd
        if (resend and last is not None and self._link_up and now - last[1] < period
                and now - self._last_cmd_tx >= resend):
            self._extra["resends"] += 1
            self._send_command_frame(last[0], now)
        timeout = self.config.state_timeout_s or max(0.05, 5 * self._state_period())
        if self._link_up and not self._in_timeout and now - self._last_state_rx > timeout:
            self._in_timeout = True
            self._counters.timeouts += 1
            self._add_fault(f"link: no STATE from {self.config.port} for "
                            f"{(now - self._last_state_rx) * 1e3:.0f} ms (cable cut or MCU "
                            f"stalled?)")

    def _retry_pending(self, now: float) -> None:
        with self._lock:
            due = [p for p in self._pending.values() if now >= p.next_send]
            expired = [t for t, p in self._pending.items() if now > p.deadline]
            for t in expired:
                self._pending.pop(t).done.set()  # type: ignore[union-attr]
        for t in expired:
            self._add_fault(f"no ACK to {t.name} from {self.config.port}")
        for p in due:
            p.next_send = now + _RETRY_S
            if self._link_up:
                self._write(p.msg)

    def _state_period(self) -> float:
        return self._caps.state_period_us * 1e-6 if self._caps else self._state_period_guess

    def _add_fault(self, text: str) -> None:
        with self._lock:
            self._faults.append(text)

    def _rx_summary(self) -> str:
        st, err = self._decoder.stats, self._decoder.last_error
        return (f"received {st.bytes} bytes, {st.frames} good frames, {st.crc_errors} CRC errors, "
                f"{st.length_errors} length errors, {st.version_errors} other-version frames"
                + (f"; last error: {err}" if err else ""))
