"""The host side of the wire protocol without any I/O: the counterpart of ``mcu_core.py``.

:class:`HostCore` decodes received bytes into the latest state, CAPS, ACKs and faults, keeps
the counters, and decides what to (re)send: HELLO until CAPS, ARM and ESTOP until ACKed, the
newest COMMAND while it is fresh.  It writes through a ``send`` callable, so
:class:`~karakuri.firmware_bridge.serial_link.SerialLink` is this plus a port and a thread,
and tests can drive it byte by byte.  Imports numpy and the standard library only.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from karakuri.firmware_bridge.clock_sync import ClockSync
from karakuri.firmware_bridge.protocol import (
    Ack,
    AckResult,
    Arm,
    Caps,
    Command,
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
    describe_fault,
)
from karakuri.robot.link import JointState, LinkCounters, LinkError, StatusBits
from karakuri.robot.spec import RobotSpec

RETRY_S = 0.02
"""ARM / ESTOP resend interval until ACKed, s."""
HELLO_RETRY_S = 0.1
"""HELLO resend interval until CAPS, s."""
KEEP_FAULTS = 32
"""Faults kept from the start of a session, and again from its end."""


class HandshakeError(LinkError):
    """CAPS does not describe the robot the host was asked to drive; names both sides."""


@dataclass
class Pending:
    """A request repeated until the MCU ACKs it (or ``deadline`` passes).

    Attributes:
        msg: The request (ARM or ESTOP).
        deadline: Give up after this host time, s.
        next_send: Next resend, host time, s.
        result: The ACK's result once answered (None: no answer).
        done: Set when answered or expired.
    """

    msg: Message
    deadline: float
    next_send: float
    result: AckResult | None = None
    done: threading.Event | None = None


class HostCore:
    """Protocol state of one host-to-MCU session.

    Args:
        spec: The robot the MCU must drive (CAPS is checked against it).
        port: The port's name, for messages.
        command_period_s: The host's COMMAND period, s (sent in HELLO).
        state_period_s: STATE period to ask for, s; None: the MCU's default.
        resend_period_s: Repeat the newest COMMAND this often while it is younger than one
            command period, s; 0: never.
        state_timeout_s: No STATE for this long is a timeout, s; None: max(50 ms, 5 periods).
        send: Encodes and writes one message; returns its seq, or None if not written.
    """

    def __init__(self, spec: RobotSpec, port: str, command_period_s: float,
                 state_period_s: float | None, resend_period_s: float,
                 state_timeout_s: float | None, send: Callable[[Message], int | None]) -> None:
        self.spec, self.port, self.send = spec, port, send
        self.command_period_s, self.state_period_s = command_period_s, state_period_s
        self.resend_period_s, self.state_timeout_s = resend_period_s, state_timeout_s
        self.decoder, self.rx_seq = FrameDecoder(), SeqTracker()
        self.counters, self.extra = LinkCounters(), collections.Counter[str]()
        self.state: JointState | None = None
        self.caps: Caps | None = None
        self.caps_event = threading.Event()
        self.handshake_error: str | None = None
        self.handshaking = self.link_up = False
        self._lock = threading.Lock()
        self._cmd_lock = threading.Lock()
        self._faults: list[str] = []
        self._faults_tail: collections.deque[str] = collections.deque(maxlen=KEEP_FAULTS)
        self._fault_ids: set[int] = set()
        self._pending: dict[MsgType, Pending] = {}
        self._hello_due = self._last_state_rx = self._last_cmd_tx = 0.0
        self._in_timeout = False
        self._last_cmd: tuple[Command, float] | None = None
        self._cmd_sent: collections.OrderedDict[int, float] = collections.OrderedDict()
        self._rtts: collections.deque[float] = collections.deque(maxlen=100_000)
        self._last_acked_cmd: int | None = None
        self._pings: dict[int, list[float]] = {}
        self._arm_id = 0
        self.clock = ClockSync()
        self._fault_bits = StatusBits.NONE

    # ------------------------------------------------------------------ tx
    def start_handshake(self, now: float) -> None:
        """Send HELLO (repeated from :meth:`housekeeping` until CAPS arrives)."""
        self.caps_event.clear()
        self.clock.reset()  # a reopened port may be a rebooted MCU
        self.handshaking, self.link_up, self._hello_due = True, False, now + HELLO_RETRY_S
        self.send(self._hello())

    def _hello(self) -> Hello:
        # Ask for STATE at least once per COMMAND (wire spec §3 HELLO): a slower MCU default
        # would make ticks stale.
        cmd_us = round(self.command_period_s * 1e6)
        state_us = round(self.state_period_s * 1e6) if self.state_period_s else cmd_us
        return Hello(cmd_us, state_us)

    def send_command(self, cmd: Command, now: float) -> None:
        """Send ``cmd`` now if the link is up (else count it dropped); remember it for resends.

        Atomic with the reader thread's resend: a resend of the previous COMMAND can never go
        out after ``cmd`` (it would carry a newer seq, and the MCU would apply the older
        target after the newer one, e.g. after the loop's final HOLD).
        """
        with self._cmd_lock:
            self._last_cmd = (cmd, now)
            if not self.link_up:
                self.extra["tx_dropped"] += 1
                return
            self._send_command_frame(cmd, now)

    def forget_command(self) -> None:
        """Stop repeating the newest COMMAND (after an e-stop)."""
        with self._cmd_lock:
            self._last_cmd = None

    def _send_command_frame(self, cmd: Command, now: float) -> None:
        seq = self.send(cmd)
        if seq is None:
            return
        self._last_cmd_tx = now
        with self._lock:
            self._cmd_sent[seq] = now
            while len(self._cmd_sent) > 256:
                self._cmd_sent.popitem(last=False)

    def next_arm(self) -> Arm:
        """An ARM with a fresh ``arm_id``."""
        self._arm_id = (self._arm_id + 1) & 0xFFFF
        return Arm(self._arm_id)

    def request(self, msg: Message, timeout: float, now: float) -> Pending:
        """Send ``msg`` and repeat it every 20 ms until its ACK (a newer one replaces it)."""
        pending = Pending(msg, now + timeout, now + RETRY_S, done=threading.Event())
        with self._lock:
            self._pending[msg.TYPE] = pending
        if self.link_up:
            self.send(msg)
        return pending

    def ping_slot(self) -> tuple[int | None, list[float]]:
        """Send HEARTBEAT; returns its seq and a list the ACK's arrival time is appended to."""
        slot: list[float] = []
        with self._lock:  # registered before the reader can see the ACK
            seq = self.send(Heartbeat())
            if seq is not None:
                self._pings[seq] = slot
        return seq, slot

    def drop_ping(self, seq: int | None) -> None:
        """Forget a ping slot."""
        with self._lock:
            self._pings.pop(-1 if seq is None else seq, None)

    # ------------------------------------------------------------------ rx
    def feed(self, data: bytes, now: float) -> None:
        """Decode bytes from the port and act on each complete frame."""
        for frame in self.decoder.feed(data):
            self.counters.frames_rx += 1
            self.rx_seq.update(frame.seq)
            msg = frame.msg
            if isinstance(msg, State):
                self._on_state(frame, msg, now)
            elif isinstance(msg, Caps):
                self._on_caps(msg, now)
            elif isinstance(msg, Ack):
                self._on_ack(msg, now)
            elif isinstance(msg, Fault):
                self._on_fault(frame, msg)
            elif not isinstance(msg, Heartbeat):
                self.extra["unexpected_frames"] += 1

    def _on_state(self, frame: Frame, msg: State, now: float) -> None:
        if msg.q.size != self.spec.n_joints or self.handshake_error:
            self.extra["state_size_errors"] += 1
            return
        sent = None
        if msg.last_cmd_seq != self._last_acked_cmd:
            self._last_acked_cmd = msg.last_cmd_seq
            with self._lock:
                sent = self._cmd_sent.pop(msg.last_cmd_seq, None)
                if sent is not None:
                    self._rtts.append(now - sent)
        mcu_s = self.clock.mcu_seconds(frame.time_us)
        self.clock.add(mcu_s, now, sent)
        self.state = JointState(  # stamped when sampled (MCU clock + offset), not on arrival
            position=msg.q.astype(np.float64), velocity=msg.dq.astype(np.float64),
            effort=msg.effort.astype(np.float64), stamp=self.clock.host_time(mcu_s, now),
            device_time_us=frame.time_us, status=StatusBits(msg.status) | self._fault_bits,
            seq=frame.seq)
        self._last_state_rx, self._in_timeout = now, False

    def _on_caps(self, caps: Caps, now: float) -> None:
        if not self.handshaking:
            self.extra["unexpected_frames"] += 1
            return
        self.handshaking = False
        spec, want = self.spec, self.spec.joint_hash()
        if caps.n_joints != spec.n_joints or caps.joint_hash != want:
            self.handshake_error = (
                f"MCU on {self.port} drives {caps.n_joints} joints with joint-name hash "
                f"0x{caps.joint_hash:08x}; robot {spec.name!r} has {spec.n_joints} joints "
                f"{list(spec.joint_names)} with hash 0x{want:08x}: the firmware was built for "
                f"another robot or another joint order")
            self.add_fault(f"handshake: {self.handshake_error}")
        elif abs(caps.command_period_us - round(self.command_period_s * 1e6)) > 1:
            self.handshake_error = (
                f"MCU on {self.port} accepted a COMMAND period of {caps.command_period_us} µs, "
                f"not the {round(self.command_period_s * 1e6)} µs this host sends at (its servo "
                f"period is {caps.servo_period_us} µs); run the loop at a rate the MCU accepts")
            self.add_fault(f"handshake: {self.handshake_error}")
        else:
            if self.caps is not None:
                self.counters.reconnects += 1
            self.caps, self.link_up, self._last_state_rx = caps, True, now
        self.caps_event.set()

    def _on_ack(self, ack: Ack, now: float) -> None:
        with self._lock:
            slot = self._pings.get(ack.acked_seq)
            if ack.acked_type == MsgType.HEARTBEAT and slot is not None:
                slot.append(now)
                return
            if ack.acked_type not in (MsgType.ARM, MsgType.ESTOP):
                return
            kind = MsgType(ack.acked_type)
            pending = self._pending.get(kind)
            if pending is None:
                return
            known = ack.result in iter(AckResult)
            result = AckResult(ack.result) if known else AckResult.REJECTED
            if result is AckResult.BUSY and now < pending.deadline:
                return  # still stopping: keep retrying until the deadline
            del self._pending[kind]
        pending.result = result
        if kind is MsgType.ARM and result is AckResult.OK:
            self._fault_bits = StatusBits.NONE  # armed again: earlier FAULT messages are done
        if pending.done is not None:
            pending.done.set()
        if result is not AckResult.OK:
            self.add_fault(f"MCU refused {kind.name}: {result.name}")

    def _on_fault(self, frame: Frame, msg: Fault) -> None:
        if msg.fault_id in self._fault_ids:
            return  # a repeat of a latched fault
        self._fault_ids.add(msg.fault_id)
        known = msg.code in iter(FaultCode)
        # A FAULT message wins over STATE bits: every STATE from now on carries the fault's
        # bit until an ARM is ACKed OK, so a robot that says FAULT is never taken as ARMED.
        self._fault_bits |= {FaultCode.ESTOP: StatusBits.ESTOP,
                             FaultCode.WATCHDOG: StatusBits.WATCHDOG}.get(msg.code,
                                                                          StatusBits.FAULT)
        code = FaultCode(msg.code).name if known else f"code {msg.code}"
        self.add_fault(f"MCU fault #{msg.fault_id} {code} at t={frame.time_us / 1e6:.3f} s: "
                       f"{describe_fault(msg.code, msg.detail)}")

    # ------------------------------------------------------------------ periodic
    def housekeeping(self, now: float) -> None:
        """HELLO and request retries, COMMAND repeats, STATE timeout; call every few ms."""
        if self.handshaking and now >= self._hello_due:
            self._hello_due = now + HELLO_RETRY_S
            self.send(self._hello())
        self._retry_pending(now)
        with self._cmd_lock:  # never a resend of an older COMMAND after a newer one
            last, resend = self._last_cmd, self.resend_period_s
            if (resend and last is not None and self.link_up and now - last[1] <
                    self.command_period_s and now - self._last_cmd_tx >= resend):
                self.extra["resends"] += 1
                self._send_command_frame(last[0], now)
        timeout = self.state_timeout_s or max(0.05, 5 * self._state_period())
        if self.link_up and not self._in_timeout and now - self._last_state_rx > timeout:
            self._in_timeout = True
            self.add_fault(f"link: no STATE from {self.port} for "
                           f"{(now - self._last_state_rx) * 1e3:.0f} ms (cable cut or MCU "
                           f"stalled?)")
            self.counters.timeouts += 1  # after the fault: a reader of the count sees both

    def _retry_pending(self, now: float) -> None:
        with self._lock:
            due = [p for p in self._pending.values() if now >= p.next_send]
            expired = [t for t, p in self._pending.items() if now > p.deadline]
            for t in expired:
                self._pending.pop(t).done.set()  # type: ignore[union-attr]
        for t in expired:
            self.add_fault(f"no ACK to {t.name} from {self.port}")
        for p in due:
            p.next_send = now + RETRY_S
            if self.link_up:
                self.send(p.msg)

    def _state_period(self) -> float:
        if self.caps is not None:
            return self.caps.state_period_us * 1e-6
        return self.state_period_s or self.command_period_s

    # ------------------------------------------------------------------ reports
    def add_fault(self, text: str) -> None:
        """Record a fault (shown by ``faults()``; memory stays bounded on a bad line)."""
        with self._lock:
            if len(self._faults) < KEEP_FAULTS:
                self._faults.append(text)
                return
            if len(self._faults_tail) == KEEP_FAULTS:
                self.extra["faults_dropped"] += 1
            self._faults_tail.append(text)

    def faults(self) -> list[str]:
        """Faults since the session began, oldest first.

        The first and the latest ``KEEP_FAULTS`` are kept; ``counters().extra
        ["faults_dropped"]`` counts those in between.
        """
        with self._lock:
            return [*self._faults, *self._faults_tail]

    def snapshot(self) -> LinkCounters:
        """Counters, with the decoder's and the sequence tracker's folded in."""
        st = self.decoder.stats
        with self._lock:
            c = replace(self.counters, crc_errors=st.crc_errors, length_errors=st.length_errors,
                        seq_gaps=self.rx_seq.gaps, extra=dict(self.extra))
        c.extra.update(version_errors=st.version_errors, message_errors=st.message_errors,
                       seq_duplicates=self.rx_seq.duplicates, bytes_rx=st.bytes,
                       seq_reordered=self.rx_seq.reordered)
        return c

    def round_trip_times(self) -> np.ndarray:
        """COMMAND sent → first STATE reporting it applied, s. Shape: (k,)."""
        with self._lock:
            return np.array(self._rtts, dtype=np.float64)

    def rx_summary(self) -> str:
        """One line on what was received, for error messages."""
        st, err = self.decoder.stats, self.decoder.last_error
        return (f"received {st.bytes} bytes, {st.frames} good frames, {st.crc_errors} CRC errors, "
                f"{st.length_errors} length errors, {st.version_errors} other-version frames"
                + (f"; last error: {err}" if err else ""))

    def wait_state(self, timeout: float) -> bool:
        """Block until a STATE has arrived (after :attr:`state` was cleared); True if one did."""
        deadline = time.monotonic() + timeout
        while self.state is None and time.monotonic() < deadline:
            time.sleep(0.001)
        return self.state is not None
