"""The messages of the wire protocol and their body layouts (``docs/wire-protocol.md`` §3).

Each message is a frozen dataclass that packs its own body; :mod:`.protocol` adds the header,
the CRC and the COBS framing.  Imports numpy and the standard library only.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from karakuri.firmware_bridge.codec import LengthError, MessageError
from karakuri.robot.link import CommandMode

MAX_JOINTS = 60
"""Most joints one message can carry within the 1024-byte payload (CAPS is the largest)."""
_F32 = np.dtype("<f4")


class MsgType(enum.IntEnum):
    """The header's message type byte."""

    HELLO = 0x01
    CAPS = 0x02
    STATE = 0x03
    COMMAND = 0x04
    HEARTBEAT = 0x05
    ESTOP = 0x06
    FAULT = 0x07
    ACK = 0x08
    ARM = 0x09


class FaultCode(enum.IntEnum):
    """FAULT codes sent by the MCU (``detail`` as in ``docs/wire-protocol.md`` §3, FAULT)."""

    WATCHDOG = 1  # detail: µs since the watchdog was last fed; bit 31: no COMMAND since ARM
    ESTOP = 2  # detail: 0
    BAD_COMMAND = 3  # detail: BAD_JOINT_COUNT | count, or BAD_VALUE | array << 16 | joint
    POSITION_LIMIT = 4  # detail: index of the first joint measured outside its limits


WATCHDOG_NO_COMMAND = 1 << 31
"""WATCHDOG detail flag: no COMMAND was applied between the ARM and the trip."""
BAD_JOINT_COUNT = 1 << 24
"""BAD_COMMAND detail kind: the low 8 bits are the joint count the COMMAND carried."""
BAD_VALUE = 2 << 24
"""BAD_COMMAND detail kind: bits 16-23 the array (0 q_target, 1 velocity, 2 effort), bits 0-15
the joint index of the first non-finite value (arrays in wire order)."""


class AckResult(enum.IntEnum):
    """ACK result codes."""

    OK = 0
    BUSY = 1  # ARM while a category-1 stop is still ramping: retry once it has finished
    NOT_CONFIGURED = 2  # ARM before any HELLO
    REJECTED = 3  # ARM while a measured position is outside the limits: cannot arm there


class CommandFlags(enum.IntFlag):
    """COMMAND flags byte: which optional arrays follow ``q_target``."""

    NONE = 0
    VELOCITY = 1 << 0
    EFFORT = 1 << 1


def check_uint(value: int, bits: int, name: str) -> int:
    """``value`` as an int if it fits in ``bits`` unsigned bits; else :class:`MessageError`."""
    value = int(value)
    if not 0 <= value < (1 << bits):
        raise MessageError(f"{name}={value} does not fit in an unsigned {bits}-bit field")
    return value


def _f32(values: object, name: str, n: int | None = None) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=_F32)
    if arr.ndim != 1 or not 1 <= arr.size <= MAX_JOINTS:
        raise MessageError(f"{name} must be 1-D with 1..{MAX_JOINTS} values, got shape {arr.shape}")
    if n is not None and arr.size != n:
        raise MessageError(f"{name} has {arr.size} values, expected {n} (one per joint)")
    arr.setflags(write=False)
    return arr


def _arrays(body: bytes, offset: int, n: int, count: int, kind: str) -> list[np.ndarray]:
    need = offset + 4 * n * count
    if len(body) != need:
        raise LengthError(f"{kind} body for {n} joints must be {need} bytes, got {len(body)}")
    flat = np.frombuffer(body, dtype=_F32, count=n * count, offset=offset)
    return [flat[i * n:(i + 1) * n] for i in range(count)]


def _head(cls: type[Message], body: bytes, kind: str) -> tuple[int, ...]:
    """The fixed fields that open an array message's body; LengthError when it is shorter."""
    if len(body) < cls._FIXED.size:
        raise LengthError(f"{kind} body must be at least {cls._FIXED.size} bytes, got {len(body)}")
    return cls._FIXED.unpack_from(body)


def _n_joints(n: int, kind: str) -> int:
    """``n`` when it is a joint count a message may carry, else MessageError."""
    if not 1 <= n <= MAX_JOINTS:
        raise MessageError(f"{kind} n_joints={n} outside 1..{MAX_JOINTS}")
    return n


@dataclass(frozen=True, eq=False)
class Message:
    """Base of all messages; equality compares arrays bit for bit."""

    TYPE: ClassVar[MsgType]
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<")

    def body(self) -> bytes:
        """The message body, bytes (the fixed fields; array messages override)."""
        return self._FIXED.pack(*(getattr(self, f.name) for f in fields(self)))

    @classmethod
    def from_body(cls, body: bytes) -> Message:
        """Parse a body; raises :class:`LengthError` or :class:`MessageError`."""
        if len(body) != cls._FIXED.size:
            raise LengthError(
                f"{cls.TYPE.name} body must be {cls._FIXED.size} bytes, got {len(body)}")
        return cls(*cls._FIXED.unpack(body))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or a.tobytes() != b.tobytes() or a.shape != b.shape:
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class Hello(Message):
    """Host → MCU, first message after opening the port; the MCU answers with CAPS.

    Attributes:
        command_period_us: The host's COMMAND period, µs; sets the MCU watchdog.
        state_period_us: Requested STATE period, µs; 0 means "the MCU's default".
    """

    TYPE: ClassVar[MsgType] = MsgType.HELLO
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<II")
    command_period_us: int
    state_period_us: int = 0

    def __post_init__(self) -> None:
        check_uint(self.command_period_us, 32, "command_period_us")
        check_uint(self.state_period_us, 32, "state_period_us")


@dataclass(frozen=True, eq=False)
class Caps(Message):
    """MCU → host, the answer to HELLO: what the robot is and the periods it will use.

    Attributes:
        joint_hash: 32-bit hash of the joint names in order (``RobotSpec.joint_hash``).
        servo_period_us: The MCU's servo/physics period, µs.
        command_period_us: The COMMAND period the MCU accepted, µs.
        state_period_us: The STATE period it will use, µs.
        watchdog_us: Its watchdog timeout, µs: min(3 × command period, 50 000).
        lower: Lower position limits, rad or m. Shape: (n_joints,).
        upper: Upper position limits, rad or m. Shape: (n_joints,).
        velocity_limit: Speed limits, rad/s or m/s. Shape: (n_joints,).
        effort_limit: Effort limits, N·m or N. Shape: (n_joints,).
    """

    TYPE: ClassVar[MsgType] = MsgType.CAPS
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<BIIIII")
    joint_hash: int
    servo_period_us: int
    command_period_us: int
    state_period_us: int
    watchdog_us: int
    lower: np.ndarray
    upper: np.ndarray
    velocity_limit: np.ndarray
    effort_limit: np.ndarray

    def __post_init__(self) -> None:
        for name in ("joint_hash", "servo_period_us", "command_period_us", "state_period_us",
                     "watchdog_us"):
            check_uint(getattr(self, name), 32, name)
        n = _f32(self.lower, "lower").size
        for name in ("lower", "upper", "velocity_limit", "effort_limit"):
            object.__setattr__(self, name, _f32(getattr(self, name), name, n))

    @property
    def n_joints(self) -> int:
        """Number of joints the MCU drives."""
        return int(self.lower.size)

    def body(self) -> bytes:  # noqa: D102
        head = self._FIXED.pack(self.n_joints, self.joint_hash, self.servo_period_us,
                                self.command_period_us, self.state_period_us, self.watchdog_us)
        return head + b"".join(a.tobytes() for a in
                               (self.lower, self.upper, self.velocity_limit, self.effort_limit))

    @classmethod
    def from_body(cls, body: bytes) -> Caps:  # noqa: D102
        n, *head = _head(cls, body, "CAPS")
        return cls(*head, *_arrays(body, cls._FIXED.size, _n_joints(n, "CAPS"), 4, "CAPS"))


@dataclass(frozen=True, eq=False)
class State(Message):
    """MCU → host, at the STATE period; the header's time_us is when it was sampled.

    Attributes:
        status: :class:`~karakuri.robot.link.StatusBits` as an integer.
        last_cmd_seq: Sequence number of the last COMMAND the MCU applied since the last ARM;
            0 for none (a host never sends seq 0).
        q: Joint positions, rad or m. Shape: (n_joints,).
        dq: Joint velocities, rad/s or m/s. Shape: (n_joints,).
        effort: Joint efforts, N·m or N. Shape: (n_joints,).
    """

    TYPE: ClassVar[MsgType] = MsgType.STATE
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<BBH")
    status: int
    last_cmd_seq: int
    q: np.ndarray
    dq: np.ndarray
    effort: np.ndarray

    def __post_init__(self) -> None:
        check_uint(self.status, 8, "status")
        check_uint(self.last_cmd_seq, 16, "last_cmd_seq")
        n = _f32(self.q, "q").size
        for name in ("q", "dq", "effort"):
            object.__setattr__(self, name, _f32(getattr(self, name), name, n))

    def body(self) -> bytes:  # noqa: D102
        return (self._FIXED.pack(self.status, self.q.size, self.last_cmd_seq) + self.q.tobytes()
                + self.dq.tobytes() + self.effort.tobytes())

    @classmethod
    def from_body(cls, body: bytes) -> State:  # noqa: D102
        status, n, last = _head(cls, body, "STATE")
        return cls(status, last, *_arrays(body, cls._FIXED.size, _n_joints(n, "STATE"), 3,
                                          "STATE"))


@dataclass(frozen=True, eq=False)
class Command(Message):
    """Host → MCU, once per control period: joint targets for the MCU's servo.

    Attributes:
        mode: :class:`~karakuri.robot.link.CommandMode`.
        q_target: Joint position targets, rad or m. Shape: (n_joints,).
        velocity: Optional velocity feed-forward, rad/s or m/s. Shape: (n_joints,).
        effort: Optional effort feed-forward, N·m or N. Shape: (n_joints,).
    """

    TYPE: ClassVar[MsgType] = MsgType.COMMAND
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<BBB")
    mode: CommandMode
    q_target: np.ndarray
    velocity: np.ndarray | None = None
    effort: np.ndarray | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", CommandMode(self.mode))
        except ValueError:
            raise MessageError(
                f"COMMAND mode {self.mode!r} unknown; known: "
                f"{', '.join(f'{m.name}={m.value}' for m in CommandMode)}"
            ) from None
        n = _f32(self.q_target, "q_target").size
        object.__setattr__(self, "q_target", _f32(self.q_target, "q_target", n))
        for name in ("velocity", "effort"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _f32(getattr(self, name), name, n))

    @property
    def flags(self) -> CommandFlags:
        """Which optional arrays are present."""
        f = CommandFlags.NONE
        if self.velocity is not None:
            f |= CommandFlags.VELOCITY
        if self.effort is not None:
            f |= CommandFlags.EFFORT
        return f

    def body(self) -> bytes:  # noqa: D102
        parts = [self._FIXED.pack(int(self.mode), int(self.flags), self.q_target.size),
                 self.q_target.tobytes()]
        parts += [a.tobytes() for a in (self.velocity, self.effort) if a is not None]
        return b"".join(parts)

    @classmethod
    def from_body(cls, body: bytes) -> Command:  # noqa: D102
        mode, flags, n = _head(cls, body, "COMMAND")
        if flags & ~int(CommandFlags.VELOCITY | CommandFlags.EFFORT):
            raise MessageError(f"COMMAND flags 0x{flags:02x} set undefined bits (defined: 0x03)")
        n = _n_joints(n, "COMMAND")
        has_v, has_e = bool(flags & CommandFlags.VELOCITY), bool(flags & CommandFlags.EFFORT)
        arrays = _arrays(body, cls._FIXED.size, n, 1 + has_v + has_e, "COMMAND")
        q = arrays.pop(0)
        v = arrays.pop(0) if has_v else None
        e = arrays.pop(0) if has_e else None
        return cls(mode, q, v, e)


@dataclass(frozen=True, eq=False)
class Heartbeat(Message):
    """Either direction, empty; the MCU answers with ACK (a ping), it does not feed the watchdog."""

    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT


@dataclass(frozen=True, eq=False)
class Estop(Message):
    """Host → MCU, empty: category-1 stop, then latch ESTOP until ARM; the MCU answers ACK."""

    TYPE: ClassVar[MsgType] = MsgType.ESTOP


@dataclass(frozen=True, eq=False)
class Arm(Message):
    """Host → MCU: clear a latched stop and hold; the MCU answers ACK with a result.

    Attributes:
        arm_id: Request id.  The MCU acts on an ARM only if ``arm_id`` differs from that of the
            last ARM it acted on since the last HELLO; a repeat is ACKed OK and ignored, so a
            retried ARM can never clear a fault that happened after the first one.
    """

    TYPE: ClassVar[MsgType] = MsgType.ARM
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<H")
    arm_id: int = 0

    def __post_init__(self) -> None:
        check_uint(self.arm_id, 16, "arm_id")


@dataclass(frozen=True, eq=False)
class Fault(Message):
    """MCU → host: a fault event; a latched fault is repeated every 0.5 s with the same id.

    Attributes:
        code: :class:`FaultCode` value (unknown codes are kept as integers).
        fault_id: Counts faults since MCU power-up; repeats of one fault share it.
        detail: Code-specific detail (see :class:`FaultCode`).
    """

    TYPE: ClassVar[MsgType] = MsgType.FAULT
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<HHI")
    code: int
    fault_id: int
    detail: int = 0

    def __post_init__(self) -> None:
        check_uint(self.code, 16, "code")
        check_uint(self.fault_id, 16, "fault_id")
        check_uint(self.detail, 32, "detail")


@dataclass(frozen=True, eq=False)
class Ack(Message):
    """MCU → host, the answer to HEARTBEAT, ESTOP and ARM.

    Attributes:
        acked_type: The :class:`MsgType` being answered.
        acked_seq: Its sequence number.
        result: :class:`AckResult` value.
    """

    TYPE: ClassVar[MsgType] = MsgType.ACK
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<BHB")
    acked_type: int
    acked_seq: int
    result: int = AckResult.OK

    def __post_init__(self) -> None:
        check_uint(self.acked_type, 8, "acked_type")
        check_uint(self.acked_seq, 16, "acked_seq")
        check_uint(self.result, 8, "result")


MESSAGES: dict[MsgType, type[Message]] = {
    cls.TYPE: cls for cls in (Hello, Caps, State, Command, Heartbeat, Estop, Fault, Ack, Arm)
}

