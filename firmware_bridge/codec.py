"""Byte-level pieces of the wire protocol: COBS framing and the CRC-32 check.

Both are specified in ``docs/wire-protocol.md``; this module is the host's implementation and
imports only the standard library.

* **COBS** (Consistent Overhead Byte Stuffing, Cheshire & Baker 1999) removes every 0x00 from a
  payload so that 0x00 can end a frame.  Overhead: one byte, plus one per 254 bytes.
* **CRC-32** is CRC-32/ISO-HDLC (the zlib / Ethernet CRC): polynomial 0x04C11DB7, reflected in
  and out, initial value 0xFFFFFFFF, final XOR 0xFFFFFFFF; check value ``crc32(b"123456789")
  == 0xCBF43926``.
"""

from __future__ import annotations

import zlib

CRC32_CHECK = 0xCBF43926
"""``crc32(b"123456789")`` for CRC-32/ISO-HDLC."""


class CodecError(ValueError):
    """A frame could not be decoded; the subclass says which check failed."""


class CobsError(CodecError):
    """The COBS stuffing is broken (a code byte points past the end of the frame)."""


class LengthError(CodecError):
    """A frame or message body is shorter or longer than its type allows."""


class CrcError(CodecError):
    """The CRC-32 in the frame does not match the bytes before it."""


class VersionError(CodecError):
    """The frame's protocol version is not the one this side speaks."""


class MessageError(CodecError):
    """The message type is unknown or a field holds a value the protocol does not define."""


def crc32(data: bytes | bytearray | memoryview) -> int:
    """CRC-32/ISO-HDLC of ``data`` (see the module docstring for its parameters).

    Args:
        data: The bytes to check.

    Returns:
        The CRC as an unsigned 32-bit integer (sent little-endian on the wire).
    """
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes | bytearray | memoryview) -> bytes:
    """COBS-encode ``data``; the result contains no 0x00 (the delimiter is *not* appended).

    A run of 254 non-zero bytes is written as a 0xFF block that implies no zero; a trailing
    empty block after such a run at the very end is omitted (the canonical encoding).

    Args:
        data: Payload of any length, zeros allowed.

    Returns:
        ``len(data) + 1 + len(data) // 254`` bytes at most, none of them 0x00.
    """
    out = bytearray()
    segments = bytes(data).split(b"\x00")
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        had_full_block = False
        while len(seg) >= 254:
            out.append(0xFF)
            out += seg[:254]
            seg = seg[254:]
            had_full_block = True
        if i == last and not seg and had_full_block:
            break  # data ended exactly after a 0xFF block: no empty block needed
        out.append(len(seg) + 1)
        out += seg
    return bytes(out)


def cobs_decode(data: bytes | bytearray | memoryview) -> bytes:
    """Invert :func:`cobs_encode` on one frame without its 0x00 delimiter.

    Args:
        data: The stuffed bytes between two delimiters.

    Returns:
        The original payload.

    Raises:
        CobsError: A 0x00 inside the frame, or a code byte that points past the frame's end.
    """
    enc = bytes(data)
    zero = enc.find(0)
    if zero >= 0:
        raise CobsError(f"COBS frame holds a 0x00 at offset {zero}; 0x00 may only end a frame")
    out = bytearray()
    i, n = 0, len(enc)
    while i < n:
        code = enc[i]
        end = i + code
        if end > n:
            raise CobsError(
                f"COBS code byte 0x{code:02x} at offset {i} needs {code - 1} data bytes, "
                f"only {n - i - 1} remain in the {n}-byte frame"
            )
        out += enc[i + 1:end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)
