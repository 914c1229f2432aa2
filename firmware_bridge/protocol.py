"""Framing of the wire protocol (header, CRC, COBS) and a stream decoder.

The specification is ``docs/wire-protocol.md``; the tests check this module against its test
vectors byte for byte.  A frame on the wire is::

    COBS( header[8] | body[..] | crc32[4] ) 0x00

    header: version u8 | type u8 | seq u16 | time_us u32        (little-endian)
    crc32:  CRC-32/ISO-HDLC over header and body, little-endian

The messages themselves live in :mod:`.messages` and are re-exported here, so
``from karakuri.firmware_bridge.protocol import Command, encode_frame`` is the one import a
user needs.  Imports numpy and the standard library only (it runs on the edge box).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

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
from karakuri.firmware_bridge.messages import (
    BAD_JOINT_COUNT,
    BAD_VALUE,
    MAX_JOINTS,
    MESSAGES,
    WATCHDOG_NO_COMMAND,
    Ack,
    AckResult,
    Arm,
    Caps,
    Command,
    CommandFlags,
    Estop,
    Fault,
    FaultCode,
    Heartbeat,
    Hello,
    Message,
    MsgType,
    State,
    check_uint,
)

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BBHI")  # version, type, seq, time_us
CRC_SIZE = 4
MAX_PAYLOAD = 1024
"""Largest header + body + CRC, bytes; a receiver drops longer frames as length errors."""
MAX_ENCODED = MAX_PAYLOAD + MAX_PAYLOAD // 254 + 1
"""Largest COBS-encoded frame without its delimiter, bytes."""

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
        seq: Frame sequence number, 1..65535 (0 is never sent; accepted for tests).
        time_us: Sender clock, µs; reduced modulo 2**32.

    Returns:
        ``8 + len(body) + 4`` bytes.
    """
    seq = check_uint(seq, 16, "seq")
    head = HEADER.pack(PROTOCOL_VERSION, msg.TYPE, seq, int(time_us) & 0xFFFFFFFF)
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


def describe_fault(code: int, detail: int) -> str:
    """A FAULT's meaning in words, e.g. for the host's stop message.

    Args:
        code: FAULT ``code`` (unknown codes are described by number).
        detail: FAULT ``detail``, decoded as ``docs/wire-protocol.md`` §3 says for ``code``.
    """
    if code == FaultCode.WATCHDOG:
        none = detail & WATCHDOG_NO_COMMAND
        since = "the ARM, no COMMAND applied" if none else "the last COMMAND"
        return (f"no valid COMMAND for {(detail & ~WATCHDOG_NO_COMMAND) / 1e3:.1f} ms since "
                f"{since}; the MCU stopped and holds")
    if code == FaultCode.ESTOP:
        return "e-stop latched; the MCU stopped and holds"
    if code == FaultCode.BAD_COMMAND:
        kind, low = detail >> 24, detail & 0xFFFFFF
        if kind == BAD_JOINT_COUNT >> 24:
            return f"COMMAND rejected: it carried {low & 0xFF} joints"
        if kind == BAD_VALUE >> 24:
            array = {0: "q_target", 1: "velocity", 2: "effort"}.get(low >> 16, f"array {low >> 16}")
            return f"COMMAND rejected: non-finite {array} of joint {low & 0xFFFF}"
        return f"COMMAND rejected (detail 0x{detail:08x})"
    if code == FaultCode.POSITION_LIMIT:
        return f"joint {detail} measured outside its limits; the MCU stopped and holds"
    return f"code {code}, detail 0x{detail:08x}"


SEQ_MODULUS = 0xFFFF
"""Sequence numbers run 1, 2, …, 65535, 1, …: 0 is never sent, so it can mean "none"."""


def next_seq(seq: int) -> int:
    """The sequence number after ``seq``: +1, wrapping 65535 → 1 (0 is never sent)."""
    return seq % SEQ_MODULUS + 1


def seq_distance(seq: int, last: int) -> int:
    """How far ``seq`` is ahead of ``last`` on the 1..65535 cycle.

    0 means a duplicate, 1 the next frame, 32768 or more an older (reordered) one; a legacy
    0 counts as 65535.
    """
    return (seq - last) % SEQ_MODULUS


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
        diff = seq_distance(seq, self.last)
        if diff == 0:
            self.duplicates += 1
            return 0
        if diff >= 0x8000:
            self.reordered += 1
            return 0
        self.last = seq
        self.gaps += diff - 1
        return diff - 1

    def restart(self) -> None:
        """Forget the last sequence number (a new session: the next one is not compared)."""
        self.last = None


__all__ = [
    "MAX_JOINTS",
    "MAX_PAYLOAD",
    "MESSAGES",
    "PROTOCOL_VERSION",
    "SEQ_MODULUS",
    "Ack",
    "AckResult",
    "Arm",
    "Caps",
    "CodecError",
    "Command",
    "CommandFlags",
    "DecoderStats",
    "Estop",
    "Fault",
    "FaultCode",
    "Frame",
    "FrameDecoder",
    "Heartbeat",
    "Hello",
    "Message",
    "MsgType",
    "SeqTracker",
    "State",
    "decode_frame",
    "decode_payload",
    "describe_fault",
    "encode_frame",
    "encode_payload",
    "next_seq",
    "seq_distance",
]
