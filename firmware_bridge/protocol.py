"""Messages of the wire protocol, their byte layouts, and a stream decoder.

The specification is ``docs/wire-protocol.md``; the tests check this module against its test
vectors byte for byte.  A frame on the wire is::

    COBS( header[8] | body[..] | crc32[4] ) 0x00

    header: version u8 | type u8 | seq u16 | time_us u32        (little-endian)
    crc32:  CRC-32/ISO-HDLC over header and body, little-endian

Imports numpy and the standard library only (it runs on the edge box).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np
from karakuri.firmware_bridge.codec import (
    CobsError,
    CodecError,
    CrcError,
    LengthError,
    MessageError,
    VersionError,
    cobs_decode,
    cobs_encode,
    crc32,
)
from karakuri.firmware_bridge.link import CommandMode

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BBHI")  # version, type, seq, time_us
CRC_SIZE = 4
MAX_PAYLOAD = 1024
"""Largest header + body + CRC, bytes; a receiver drops longer frames as length errors."""
MAX_ENCODED = MAX_PAYLOAD + MAX_PAYLOAD // 254 + 1
"""Largest COBS-encoded frame without its delimiter, bytes."""
MAX_JOINTS = 60
"""Most joints one message can carry within :data:`MAX_PAYLOAD` (CAPS is the largest)."""
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
    """FAULT codes sent by the MCU."""

    WATCHDOG = 1  # detail: µs since the last valid COMMAND when the watchdog tripped
    ESTOP = 2  # detail: 0
    BAD_COMMAND = 3  # detail: joint index of the first non-finite value, or the bad joint count


class AckResult(enum.IntEnum):
    """ACK result codes."""

    OK = 0
    BUSY = 1  # ARM while a category-1 stop is still ramping: retry once it has finished
    NOT_CONFIGURED = 2  # ARM before any HELLO
    REJECTED = 3  # the request is not valid in this state


class CommandFlags(enum.IntFlag):
    """COMMAND flags byte: which optional arrays follow ``q_target``."""

    NONE = 0
    VELOCITY = 1 << 0
    EFFORT = 1 << 1


def _u(value: int, bits: int, name: str) -> int:
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
        _u(self.command_period_us, 32, "command_period_us")
        _u(self.state_period_us, 32, "state_period_us")


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
            _u(getattr(self, name), 32, name)
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
        if len(body) < cls._FIXED.size:
            raise LengthError(
                f"CAPS body must be at least {cls._FIXED.size} bytes, got {len(body)}")
        n, *head = cls._FIXED.unpack_from(body)
        if not 1 <= n <= MAX_JOINTS:
            raise MessageError(f"CAPS n_joints={n} outside 1..{MAX_JOINTS}")
        return cls(*head, *_arrays(body, cls._FIXED.size, n, 4, "CAPS"))


@dataclass(frozen=True, eq=False)
class State(Message):
    """MCU → host, at the STATE period; the header's time_us is when it was sampled.

    Attributes:
        status: :class:`~karakuri.firmware_bridge.link.StatusBits` as an integer.
        last_cmd_seq: Sequence number of the last COMMAND the MCU applied (0 before any).
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
        _u(self.status, 8, "status")
        _u(self.last_cmd_seq, 16, "last_cmd_seq")
        n = _f32(self.q, "q").size
        for name in ("q", "dq", "effort"):
            object.__setattr__(self, name, _f32(getattr(self, name), name, n))

    def body(self) -> bytes:  # noqa: D102
        return (self._FIXED.pack(self.status, self.q.size, self.last_cmd_seq) + self.q.tobytes()
                + self.dq.tobytes() + self.effort.tobytes())

    @classmethod
    def from_body(cls, body: bytes) -> State:  # noqa: D102
        if len(body) < cls._FIXED.size:
            raise LengthError(
                f"STATE body must be at least {cls._FIXED.size} bytes, got {len(body)}")
        status, n, last = cls._FIXED.unpack_from(body)
        if not 1 <= n <= MAX_JOINTS:
            raise MessageError(f"STATE n_joints={n} outside 1..{MAX_JOINTS}")
        return cls(status, last, *_arrays(body, cls._FIXED.size, n, 3, "STATE"))


@dataclass(frozen=True, eq=False)
class Command(Message):
    """Host → MCU, once per control period: joint targets for the MCU's servo.

    Attributes:
        mode: :class:`~karakuri.firmware_bridge.link.CommandMode`.
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
        if len(body) < cls._FIXED.size:
            raise LengthError(
                f"COMMAND body must be at least {cls._FIXED.size} bytes, got {len(body)}")
        mode, flags, n = cls._FIXED.unpack_from(body)
        if flags & ~int(CommandFlags.VELOCITY | CommandFlags.EFFORT):
            raise MessageError(f"COMMAND flags 0x{flags:02x} set undefined bits (defined: 0x03)")
        if not 1 <= n <= MAX_JOINTS:
            raise MessageError(f"COMMAND n_joints={n} outside 1..{MAX_JOINTS}")
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
    """Host → MCU, empty: clear a latched stop and hold; the MCU answers ACK with a result."""

    TYPE: ClassVar[MsgType] = MsgType.ARM


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
        _u(self.code, 16, "code")
        _u(self.fault_id, 16, "fault_id")
        _u(self.detail, 32, "detail")


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
        _u(self.acked_type, 8, "acked_type")
        _u(self.acked_seq, 16, "acked_seq")
        _u(self.result, 8, "result")


MESSAGES: dict[MsgType, type[Message]] = {
    cls.TYPE: cls for cls in (Hello, Caps, State, Command, Heartbeat, Estop, Fault, Ack, Arm)
}


@dataclass(frozen=True)
class Frame:
    """One decoded frame: header fields plus the message.

    Attributes:
        seq: The sender's frame counter, wraps at 2**16.
        time_us: The sender's clock, µs, wraps at 2**32.
        msg: The message.
    """

    seq: int
    time_us: int
    msg: Message


def encode_payload(msg: Message, seq: int, time_us: int) -> bytes:
    """Header, body and CRC of ``msg`` before COBS stuffing.

    Args:
        msg: The message.
        seq: Frame sequence number, 0..65535.
        time_us: Sender clock, µs; reduced modulo 2**32.

    Returns:
        ``8 + len(body) + 4`` bytes.
    """
    head = HEADER.pack(PROTOCOL_VERSION, msg.TYPE, _u(seq, 16, "seq"), int(time_us) & 0xFFFFFFFF)
    data = head + msg.body()
    if len(data) + CRC_SIZE > MAX_PAYLOAD:
        raise LengthError(f"{msg.TYPE.name} payload of {len(data) + CRC_SIZE} bytes exceeds "
                          f"MAX_PAYLOAD={MAX_PAYLOAD}")
    return data + crc32(data).to_bytes(4, "little")


def encode_frame(msg: Message, seq: int, time_us: int) -> bytes:
    """The bytes to put on the wire for ``msg``: COBS-stuffed payload and the 0x00 delimiter."""
    return cobs_encode(encode_payload(msg, seq, time_us)) + b"\x00"


def decode_payload(payload: bytes) -> Frame:
    """Check and parse an unstuffed payload (header, body, CRC).

    Raises:
        LengthError: Shorter than header + CRC, or a body of the wrong size for its type.
        CrcError: The CRC does not match.
        VersionError: Another protocol version.
        MessageError: Unknown type or undefined field values.
    """
    if len(payload) < HEADER.size + CRC_SIZE:
        raise LengthError(f"frame of {len(payload)} bytes is shorter than header + CRC "
                          f"({HEADER.size + CRC_SIZE} bytes)")
    if len(payload) > MAX_PAYLOAD:
        raise LengthError(f"frame of {len(payload)} bytes exceeds MAX_PAYLOAD={MAX_PAYLOAD}")
    data, tail = payload[:-CRC_SIZE], payload[-CRC_SIZE:]
    got, want = int.from_bytes(tail, "little"), crc32(data)
    if got != want:
        raise CrcError(f"CRC-32 0x{got:08x} in frame, 0x{want:08x} computed over {len(data)} bytes")
    version, mtype, seq, time_us = HEADER.unpack_from(data)
    if version != PROTOCOL_VERSION:
        raise VersionError(f"protocol version {version}; this side speaks {PROTOCOL_VERSION}")
    try:
        cls = MESSAGES[MsgType(mtype)]
    except ValueError:
        raise MessageError(f"unknown message type 0x{mtype:02x}; known: "
                           f"{', '.join(f'{t.name}=0x{t.value:02x}' for t in MsgType)}") from None
    return Frame(seq, time_us, cls.from_body(data[HEADER.size:]))


def decode_frame(encoded: bytes) -> Frame:
    """Decode one frame as read from the wire, without its 0x00 delimiter.

    Raises:
        CodecError: Its subclasses name the failed check; nothing else is raised.
    """
    if len(encoded) > MAX_ENCODED:
        raise LengthError(f"frame of {len(encoded)} stuffed bytes exceeds {MAX_ENCODED}")
    return decode_payload(cobs_decode(encoded))


@dataclass
class DecoderStats:
    """What a :class:`FrameDecoder` has seen.

    Attributes:
        frames: Frames that passed every check.
        crc_errors: Frames dropped for a CRC mismatch.
        length_errors: Frames dropped for a bad length or broken COBS stuffing.
        version_errors: Frames of another protocol version.
        message_errors: Unknown types or undefined field values.
        bytes: Bytes fed.
    """

    frames: int = 0
    crc_errors: int = 0
    length_errors: int = 0
    version_errors: int = 0
    message_errors: int = 0
    bytes: int = 0


@dataclass
class FrameDecoder:
    """Split a byte stream at 0x00, decode each frame, drop and count the bad ones.

    ``feed`` never raises: after garbage, an over-long frame or a bad CRC it resynchronises at
    the next 0x00.  The last error is kept in ``last_error`` for diagnostics.
    """

    stats: DecoderStats = field(default_factory=DecoderStats)
    last_error: CodecError | None = None
    _buf: bytearray = field(default_factory=bytearray, repr=False)
    _overflow: bool = field(default=False, repr=False)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes from the wire; returns the frames they completed, oldest first."""
        self.stats.bytes += len(data)
        out: list[Frame] = []
        *complete, rest = bytes(data).split(b"\x00")
        for part in complete:
            chunk = bytes(self._buf) + part if self._buf else part
            self._buf.clear()
            if self._overflow:
                self._overflow = False
                continue  # tail of an over-long frame, already counted
            if chunk:
                self._decode(chunk, out)
        if len(self._buf) + len(rest) > MAX_ENCODED:
            if not self._overflow:
                self._count(LengthError(f"no 0x00 within {MAX_ENCODED} bytes; resynchronising"))
            self._overflow = True
            self._buf.clear()
        elif not self._overflow:
            self._buf += rest
        return out

    def reset(self) -> None:
        """Forget a partial frame (after reopening a port)."""
        self._buf.clear()
        self._overflow = False

    def _decode(self, chunk: bytes, out: list[Frame]) -> None:
        try:
            out.append(decode_frame(chunk))
            self.stats.frames += 1
        except CodecError as e:
            self._count(e)

    def _count(self, e: CodecError) -> None:
        self.last_error = e
        if isinstance(e, CrcError):
            self.stats.crc_errors += 1
        elif isinstance(e, (LengthError, CobsError)):
            self.stats.length_errors += 1
        elif isinstance(e, VersionError):
            self.stats.version_errors += 1
        else:
            self.stats.message_errors += 1


@dataclass
class SeqTracker:
    """Count gaps, repeats and reorderings in a peer's 16-bit frame sequence.

    Attributes:
        gaps: Frames missing between consecutive received sequence numbers.
        duplicates: Frames with the same sequence number as the previous one.
        reordered: Frames older than the previous one.
    """

    gaps: int = 0
    duplicates: int = 0
    reordered: int = 0
    last: int | None = None

    def update(self, seq: int) -> int:
        """Record ``seq``; returns how many frames went missing just before it."""
        if self.last is None:
            self.last = seq
            return 0
        diff = (seq - self.last) & 0xFFFF
        if diff == 0:
            self.duplicates += 1
            return 0
        if diff >= 0x8000:
            self.reordered += 1
            return 0
        self.last = seq
        self.gaps += diff - 1
        return diff - 1


__all__ = [
    "MAX_JOINTS", "MAX_PAYLOAD", "MESSAGES", "PROTOCOL_VERSION", "Ack", "AckResult", "Arm",
    "Caps", "CodecError", "Command", "CommandFlags", "DecoderStats", "Estop", "Fault",
    "FaultCode", "Frame", "FrameDecoder", "Heartbeat", "Hello", "Message", "MsgType",
    "SeqTracker", "State", "decode_frame", "decode_payload", "encode_frame", "encode_payload",
]
