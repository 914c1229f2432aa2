"""The MCU side of the wire protocol, independent of any plant: a reference for firmware.

:class:`McuCore` turns received bytes into servo references and outgoing frames, on the MCU's
own clock.  The virtual MCU (``virtual_mcu.py``) wraps it around a MuJoCo plant and a pty; a
firmware port implements the same state machine in C.  It is pure and clock-driven (bytes and
the measured state in, bytes out, deterministic), so tests drive it with a hand-made clock.
The servo reference rules (slew, stop ramp, limits) live in ``mcu_reference.py``.

States (``docs/wire-protocol.md`` §6, the full table)::

    DISARMED --ARM--> ARMED --watchdog | ESTOP | limit--> STOPPING --ramp done--> FAULTED
       ^  |             |                                   ^  |                   |
       |  +-ESTOP|limit-+-------> (stop) -------------------+  |      ARM <--------+
       +------- ramp done <-- STOPPING <-- HELLO while armed (no cause; a later one upgrades)

Imports numpy and the standard library only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from karakuri.firmware_bridge.mcu_reference import McuLimits, StopCause, StopRamp, slew
from karakuri.firmware_bridge.messages import BAD_JOINT_COUNT, BAD_VALUE, WATCHDOG_NO_COMMAND
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
    SeqTracker,
    State,
    encode_frame,
    next_seq,
    seq_distance,
)
from karakuri.robot.link import CommandMode, StatusBits

WATCHDOG_PERIODS = 3
WATCHDOG_MAX_US = 50_000
FAULT_REPEAT_S = 0.5
MAX_COMMAND_PERIOD_US = 1_000_000
_EPS = 1e-9

__all__ = ["FAULT_REPEAT_S", "WATCHDOG_MAX_US", "McuCore", "McuCounters", "McuLimits", "McuMode"]


class McuMode(enum.Enum):
    """Top-level MCU state."""

    DISARMED = "disarmed"
    ARMED = "armed"
    STOPPING = "stopping"
    FAULTED = "faulted"


@dataclass
class McuCounters:
    """What the MCU has seen and done since power-up (reported by ``counters()``).

    Attributes:
        frames_rx: Frames that passed every check and were acted on.
        frames_tx: Frames sent.
        crc_errors: Frames dropped for a bad CRC.
        length_errors: Frames dropped for a bad length or COBS stuffing.
        other_errors: Frames dropped for another version, an unknown type, undefined values,
            or a type only the MCU sends (CAPS, STATE, FAULT, ACK).
        seq_gaps: Host frames missing from the sequence.
        commands_applied: COMMANDs that became the servo target.
        commands_ignored: Valid COMMANDs received while not armed.
        commands_rejected: COMMANDs with a wrong joint count or a non-finite value.
        commands_stale: COMMANDs not newer than the last applied one (duplicate or older seq).
        commands_clipped: Applied COMMANDs whose targets were clipped to the limits.
        watchdog_trips: Watchdog stops.
        estops: ESTOP requests.
        limit_faults: Measured positions found outside the limits.
    """

    frames_rx: int = 0
    frames_tx: int = 0
    crc_errors: int = 0
    length_errors: int = 0
    other_errors: int = 0
    seq_gaps: int = 0
    commands_applied: int = 0
    commands_ignored: int = 0
    commands_rejected: int = 0
    commands_stale: int = 0
    commands_clipped: int = 0
    watchdog_trips: int = 0
    estops: int = 0
    limit_faults: int = 0


@dataclass
class McuCore:
    """Protocol state machine, watchdog, e-stop latch, limit check and stop ramp of one MCU.

    Args:
        limits: What the MCU drives (joint hash and limits).
        servo_period_s: The servo/physics period, s; every period is one :meth:`tick`.
        default_state_period_s: STATE period until a HELLO asks for another, s.
        record_commands: Keep every applied COMMAND in :attr:`command_log` (tests).

    Attributes:
        q_ref: Servo position reference, rad or m. Shape: (n_joints,).
        v_ref: Servo velocity feed-forward, rad/s or m/s. Shape: (n_joints,).
        tau_ff: Effort feed-forward, N·m or N. Shape: (n_joints,).
        q_goal: Where ``q_ref`` slews to while ARMED (the clipped target), rad or m.
        events: ``(mcu_time_s, text)`` of state changes, oldest first.
        command_log: ``(mcu_time_s, seq, q_target)`` of applied COMMANDs when recording.
    """

    limits: McuLimits
    servo_period_s: float
    default_state_period_s: float
    record_commands: bool = False
    counters: McuCounters = field(default_factory=McuCounters)
    mode: McuMode = McuMode.DISARMED
    events: list[tuple[float, str]] = field(default_factory=list)
    command_log: list[tuple[float, int, np.ndarray]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.servo_period_s <= 0 or self.default_state_period_s <= 0:
            raise ValueError(f"servo period {self.servo_period_s} s and state period "
                             f"{self.default_state_period_s} s must be > 0")
        n = self.limits.n
        self.q_ref, self.v_ref, self.tau_ff = np.zeros(n), np.zeros(n), np.zeros(n)
        self.q_goal = np.zeros(n)
        self.decoder, self.seq = FrameDecoder(), SeqTracker()
        self.configured, self.latched = False, StatusBits.NONE
        self.command_period_us = 0
        self.watchdog_s = WATCHDOG_MAX_US * 1e-6
        self.last_cmd_seq, self.last_cmd_t, self.last_state_t = 0, 0.0, -np.inf
        self.commanded = False  # a COMMAND was applied since the last ARM
        self.state_period_s = self._state_period(self.default_state_period_s, None)
        self._tx_seq, self._fault_id, self._fault_msg, self._fault_t = 0, 0, None, 0.0
        self._stop: StopRamp | None = None
        self._last_arm_id: int | None = None
        self._holding = True
        self._host_bound = 0
        self._max_step = self.limits.velocity_limit * self.servo_period_s

    @property
    def n(self) -> int:
        """Number of joints."""
        return self.limits.n

    @property
    def status(self) -> StatusBits:
        """Status bits as sent in STATE."""
        s = self.latched
        if self.mode is McuMode.ARMED:
            s |= StatusBits.ARMED
        elif self.mode is McuMode.STOPPING:
            s |= StatusBits.STOPPING
        elif self.mode is McuMode.FAULTED:
            s |= StatusBits.FAULT
        return s

    def reset(self, q: np.ndarray) -> None:
        """Power-up: hold at the measured position ``q`` (rad or m), disarmed."""
        self._hold(np.array(q, dtype=np.float64))

    # ------------------------------------------------------------------ input
    def receive(self, data: bytes, t: float, q: np.ndarray, dq: np.ndarray) -> list[bytes]:
        """Decode bytes from the host and act on each frame, in order.

        Args:
            data: Raw bytes as read from the port.
            t: MCU clock, s.
            q: Measured positions, rad or m. Shape: (n_joints,).
            dq: Measured velocities, rad/s or m/s. Shape: (n_joints,).

        Returns:
            Encoded frames to send back (CAPS, ACK, FAULT), in order.
        """
        out: list[bytes] = []
        for frame in self.decoder.feed(data):
            if not isinstance(frame.msg, (Hello, Arm, Command, Estop, Heartbeat)):
                self._host_bound += 1  # CAPS/STATE/FAULT/ACK travel MCU -> host: message error
                continue
            self.counters.frames_rx += 1
            if isinstance(frame.msg, Hello):
                self.seq.restart()
            self.counters.seq_gaps += self.seq.update(frame.seq)
            for reply in self._handle(frame, t, q, dq):
                out.append(self._encode(reply, t))
        st = self.decoder.stats
        c = self.counters
        c.crc_errors, c.length_errors = st.crc_errors, st.length_errors
        c.other_errors = st.version_errors + st.message_errors + self._host_bound
        return out

    def _handle(self, frame: Frame, t: float, q: np.ndarray, dq: np.ndarray) -> list[Message]:
        msg = frame.msg
        if isinstance(msg, Command):
            return self._on_command(frame.seq, msg, t, q)
        if isinstance(msg, Hello):
            return [self._on_hello(msg, t, q, dq)]
        if isinstance(msg, Arm):
            return [Ack(msg.TYPE, frame.seq, self._on_arm(msg.arm_id, t, q))]
        if isinstance(msg, Estop):
            self.counters.estops += 1
            self.latched |= StatusBits.ESTOP
            self._trip(t, q, dq, StopCause.ESTOP, 0)
        return [Ack(msg.TYPE, frame.seq, AckResult.OK)]  # ESTOP, HEARTBEAT

    def _on_hello(self, msg: Hello, t: float, q: np.ndarray, dq: np.ndarray) -> Caps:
        servo_us = round(self.servo_period_s * 1e6)
        cmd_us = min(max(msg.command_period_us, servo_us), MAX_COMMAND_PERIOD_US)
        asked = msg.state_period_us * 1e-6 if msg.state_period_us else self.default_state_period_s
        self.state_period_s = self._state_period(asked, cmd_us)
        self.command_period_us = cmd_us
        self.watchdog_s = min(WATCHDOG_PERIODS * cmd_us, WATCHDOG_MAX_US) * 1e-6
        self.configured, self._last_arm_id = True, None
        self.log(t, f"HELLO: command period {cmd_us} µs, watchdog {self.watchdog_s * 1e3:.1f} ms, "
                    f"STATE every {self.state_period_s * 1e3:.1f} ms")
        if self.mode is McuMode.ARMED:
            self._begin_stop(t, q, dq, StopCause.NONE, 0)
        lim = self.limits
        return Caps(lim.joint_hash, servo_us, cmd_us, round(self.state_period_s * 1e6),
                    round(self.watchdog_s * 1e6), lim.lower, lim.upper, lim.velocity_limit,
                    lim.effort_limit)

    def _state_period(self, asked_s: float, cmd_us: int | None) -> float:
        """Asked period, capped at the command period, rounded down to whole servo periods."""
        if cmd_us is not None:
            asked_s = min(asked_s, cmd_us * 1e-6)
        return max(1, int(asked_s / self.servo_period_s + _EPS)) * self.servo_period_s

    def _on_arm(self, arm_id: int, t: float, q: np.ndarray) -> AckResult:
        if not self.configured:
            return AckResult.NOT_CONFIGURED
        if arm_id == self._last_arm_id:
            return AckResult.OK  # a repeat of the ARM already acted on: never re-arm with it
        if self.mode is McuMode.STOPPING:
            return AckResult.BUSY
        joint = self.limits.first_outside(np.asarray(q, np.float64))
        if joint >= 0:
            self.log(t, f"ARM #{arm_id} rejected: joint {joint} measured at {q[joint]} outside "
                        "its limits")
            return AckResult.REJECTED
        if self.mode is not McuMode.ARMED:
            self.mode, self.latched, self._fault_msg = McuMode.ARMED, StatusBits.NONE, None
            self._hold(q)
            self.last_cmd_t, self.last_cmd_seq, self.commanded = t, 0, False
            self.log(t, f"ARM #{arm_id}: armed, holding at the measured position")
        self._last_arm_id = arm_id
        return AckResult.OK

    def _on_command(self, seq: int, msg: Command, t: float, q: np.ndarray) -> list[Message]:
        if msg.q_target.size != self.n:
            self.counters.commands_rejected += 1
            detail = BAD_JOINT_COUNT | msg.q_target.size
            return [self._new_fault(FaultCode.BAD_COMMAND, detail, t, latch=False)]
        for k, arr in enumerate((msg.q_target, msg.velocity, msg.effort)):
            bad = np.flatnonzero(~np.isfinite(arr)) if arr is not None else ()
            if len(bad):
                self.counters.commands_rejected += 1
                detail = BAD_VALUE | k << 16 | int(bad[0])
                return [self._new_fault(FaultCode.BAD_COMMAND, detail, t, latch=False)]
        if self.mode is not McuMode.ARMED:
            self.counters.commands_ignored += 1
            return []
        if self.commanded and not 0 < seq_distance(seq, self.last_cmd_seq) < 0x8000:
            self.counters.commands_stale += 1  # a duplicate or an older COMMAND: never go back
            return []
        self.last_cmd_t, self.last_cmd_seq, self.commanded = t, seq, True
        self.counters.commands_applied += 1
        if self.record_commands:
            self.command_log.append((t, seq, msg.q_target.copy()))
        if msg.mode is CommandMode.HOLD:
            if not self._holding:
                self._hold(q)  # velocity/effort arrays of a HOLD are checked, never used
            return []
        lim = self.limits
        target = np.clip(msg.q_target, lim.lower, lim.upper)
        self.counters.commands_clipped += bool(np.any(target != msg.q_target))
        self._holding = False
        self.q_goal = target.astype(np.float64)
        v = msg.velocity if msg.velocity is not None else 0.0
        e = msg.effort if msg.effort is not None else 0.0
        self.v_ref = np.clip(np.broadcast_to(v, (self.n,)), -lim.velocity_limit, lim.velocity_limit)
        self.tau_ff = np.clip(np.broadcast_to(e, (self.n,)), -lim.effort_limit, lim.effort_limit)
        return []

    # ------------------------------------------------------------------ time
    def tick(self, t: float, q: np.ndarray, dq: np.ndarray, effort: np.ndarray) -> list[bytes]:
        """One servo period: limit check, watchdog, reference, fault repeats, STATE when due.

        Args:
            t: MCU clock, s (advances by ``servo_period_s`` per call).
            q: Measured positions, rad or m. Shape: (n_joints,).
            dq: Measured velocities, rad/s or m/s. Shape: (n_joints,).
            effort: Measured efforts, N·m or N. Shape: (n_joints,).

        Returns:
            Encoded frames to send, in order.
        """
        out: list[Message] = []
        joint = self.limits.first_outside(np.asarray(q, np.float64))
        if joint >= 0 and self.mode is not McuMode.FAULTED and self._trip(
                t, q, dq, StopCause.POSITION_LIMIT, joint):
            self.counters.limit_faults += 1
        if self.mode is McuMode.ARMED and t - self.last_cmd_t >= self.watchdog_s - _EPS:
            self.counters.watchdog_trips += 1
            self.latched |= StatusBits.WATCHDOG
            gap_us = min(round((t - self.last_cmd_t) * 1e6), WATCHDOG_NO_COMMAND - 1)
            self._trip(t, q, dq, StopCause.WATCHDOG,
                       gap_us | (0 if self.commanded else WATCHDOG_NO_COMMAND))
        if self._stop is not None:
            self.q_ref, self.v_ref = self._stop.reference(t)
            if t - self._stop.t0 >= self._stop.duration - _EPS:
                out += self._finish_stop(t)
        elif self.mode is McuMode.ARMED and not self._holding:
            self.q_ref = slew(self.q_ref, self.q_goal, self._max_step)
        if self._fault_msg is not None and t - self._fault_t >= FAULT_REPEAT_S - _EPS:
            self._fault_t = t
            out.append(self._fault_msg)
        if t - self.last_state_t >= self.state_period_s - _EPS:
            self.last_state_t = t
            out.append(State(int(self.status), self.last_cmd_seq, q, dq, effort))
        return [self._encode(m, t) for m in out]

    def _trip(self, t: float, q: np.ndarray, dq: np.ndarray, cause: StopCause,
              detail: int) -> bool:
        """A stop cause: start a stop, or upgrade a causeless one; True if it took effect."""
        if self.mode in (McuMode.ARMED, McuMode.DISARMED):
            self._begin_stop(t, q, dq, cause, detail)
            return True
        if self._stop is not None and self._stop.cause is StopCause.NONE:
            self._stop.cause, self._stop.detail, self._stop.then_disarmed = cause, detail, False
            self.log(t, f"{cause.name} during the stop: it now ends FAULTED")
            return True
        return False  # the first cause wins; the bit (if any) is latched by the caller

    def _begin_stop(self, t: float, q: np.ndarray, dq: np.ndarray, cause: StopCause,
                    detail: int) -> None:
        self.mode = McuMode.STOPPING
        self._stop = StopRamp.plan(t, np.asarray(q, np.float64), np.asarray(dq, np.float64),
                                   self.q_ref, self.limits, cause, detail)
        self.q_ref, self.v_ref = self._stop.reference(t)
        self.tau_ff = np.zeros(self.n)
        why = cause.name if cause is not StopCause.NONE else "HELLO while armed"
        self.log(t, f"category-1 stop ({why}); ramp {self._stop.duration * 1e3:.0f} ms")

    def _finish_stop(self, t: float) -> list[Message]:
        stop, self._stop = self._stop, None
        if stop is None:
            return []
        self.mode = McuMode.DISARMED if stop.then_disarmed else McuMode.FAULTED
        self._hold(stop.rest())
        self.log(t, f"stop complete; {self.mode.value}")
        if stop.cause is StopCause.NONE:
            return []
        return [self._new_fault(FaultCode(int(stop.cause)), stop.detail, t, latch=True)]

    # ------------------------------------------------------------------ helpers
    def _hold(self, q: np.ndarray) -> None:
        self.q_ref = np.array(q, dtype=np.float64)
        self.q_goal = self.q_ref.copy()
        self.v_ref = np.zeros(self.n)
        self.tau_ff = np.zeros(self.n)
        self._holding = True

    def _new_fault(self, code: FaultCode, detail: int, t: float, *, latch: bool) -> Fault:
        self._fault_id = next_seq(self._fault_id)
        msg = Fault(int(code), self._fault_id, min(max(int(detail), 0), 0xFFFFFFFF))
        self.log(t, f"FAULT #{self._fault_id} {code.name} detail=0x{msg.detail:08x}")
        if latch:
            self._fault_msg, self._fault_t = msg, t
        return msg

    def _encode(self, msg: Message, t: float) -> bytes:
        self._tx_seq = next_seq(self._tx_seq)
        self.counters.frames_tx += 1
        return encode_frame(msg, self._tx_seq, round(t * 1e6))

    def log(self, t: float, text: str) -> None:
        """Add an event at MCU time ``t``, s (kept: the last 500 to 1000)."""
        self.events.append((t, text))
        if len(self.events) > 1000:
            del self.events[:500]
