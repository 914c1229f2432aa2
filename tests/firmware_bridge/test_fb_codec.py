"""Codec: COBS, CRC-32, message layouts and the test vectors (firmware_bridge/vectors/wire_vectors.json,
rendered verbatim in docs/wire-protocol.md)."""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from karakuri.firmware_bridge.codec import (
    CRC32_CHECK,
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
from karakuri.firmware_bridge.protocol import (
    MAX_ENCODED,
    Command,
    FrameDecoder,
    Heartbeat,
    Hello,
    MsgType,
    SeqTracker,
    State,
    decode_frame,
    decode_payload,
    encode_frame,
    encode_payload,
    next_seq,
    seq_distance,
)
from karakuri.firmware_bridge.wire_vectors import (
    load_vectors,
    message_from_json,
    render_doc_section,
)
from karakuri.robot.link import CommandMode

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-protocol.md"
VECTORS = load_vectors()
FRAMES = {v["name"]: v for v in VECTORS["frames"]}
INVALID = {v["name"]: v for v in VECTORS["invalid_frames"]}
ERRORS = {"crc": CrcError, "length": (LengthError, CobsError), "version": VersionError,
          "message": MessageError}
DECODER_COUNTER = {"crc": "crc_errors", "length": "length_errors", "version": "version_errors",
                   "message": "message_errors"}


def crc32_bitwise(data: bytes) -> int:
    """The doc's C routine, transcribed: independent of zlib."""
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0xEDB88320 & -(c & 1))
    return c ^ 0xFFFFFFFF


def test_doc_holds_every_vector_of_the_data_file_verbatim():
    doc = DOC.read_text()
    for piece in render_doc_section(VECTORS):
        assert piece in doc, f"docs/wire-protocol.md lacks, verbatim:\n{piece}"
    names = re.findall(r"```text\nvector: (\w+)", doc)
    assert sorted(names) == sorted([*FRAMES, *INVALID]), "the doc has a vector the file lacks"
    assert len(names) == len(set(names))


def test_data_file_is_package_data():
    text = Path(__file__).resolve().parents[2] / "pyproject.toml"
    assert '"karakuri.firmware_bridge" = ["vectors/*.json"]' in text.read_text()


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_vector_encodes_byte_for_byte(name):
    v = FRAMES[name]
    msg, seq, time_us = message_from_json(v["message"])
    payload, frame = bytes.fromhex(v["payload_hex"]), bytes.fromhex(v["frame_hex"])
    assert encode_payload(msg, seq, time_us) == payload
    assert encode_frame(msg, seq, time_us) == frame
    assert int.from_bytes(payload[-4:], "little") == int(v["crc32"], 16)
    assert crc32_bitwise(payload[:-4]) == int(v["crc32"], 16)
    assert cobs_encode(payload) + b"\x00" == frame


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_vector_decodes_to_the_message(name):
    v = FRAMES[name]
    msg, seq, time_us = message_from_json(v["message"])
    frame = decode_frame(bytes.fromhex(v["frame_hex"])[:-1])
    assert (frame.seq, frame.time_us, frame.msg) == (seq, time_us, msg)
    assert decode_payload(bytes.fromhex(v["payload_hex"])).msg == msg


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_vector_raises_its_error_and_is_counted(name):
    v = INVALID[name]
    wire = bytes.fromhex(v["frame_hex"])
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    with pytest.raises(ERRORS[v["error"]]):
        decode_frame(wire[:-1])
    dec = FrameDecoder()
    assert dec.feed(wire) == []
    counted = {k: getattr(dec.stats, k) for k in DECODER_COUNTER.values()}
    assert counted == {k: int(k == DECODER_COUNTER[v["error"]]) for k in counted}


def test_message_from_json_checks_derived_fields():
    v = FRAMES["command_ff"]["message"]
    bad = {**v, "fields": {**v["fields"], "flags": 1}}
    with pytest.raises(ValueError, match="flags=1 but the arrays give 3"):
        message_from_json(bad)


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_every_single_bit_flip_of_a_vector_is_rejected(name):
    wire = bytes.fromhex(FRAMES[name]["frame_hex"])
    original = message_from_json(FRAMES[name]["message"])[0]
    for i in range(len(wire) - 1):
        for bit in range(8):
            bad = bytearray(wire)
            bad[i] ^= 1 << bit
            dec = FrameDecoder()
            got = dec.feed(bytes(bad))
            assert all(f.msg != original for f in got), (name, i, bit)
            assert not got, f"{name}: flip of byte {i} bit {bit} accepted as {got}"


def test_header_layout_by_hand():
    payload = encode_payload(Heartbeat(), 0xBEEF, 0x12345678)
    assert struct.unpack("<BBHI", payload[:8]) == (1, MsgType.HEARTBEAT, 0xBEEF, 0x12345678)
    assert encode_payload(Heartbeat(), 0, 2**32 + 5)[4:8] == (5).to_bytes(4, "little")


def test_joint_hash_in_the_doc_is_the_industrial_arm_hash():
    names = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3",
             "finger_left")
    want = int.from_bytes(hashlib.sha256("\n".join(names).encode()).digest()[:4], "little")
    assert f"0x{want:08X}" in DOC.read_text()
    pytest.importorskip("mujoco")
    from karakuri.robot.registry import load_robot

    spec = load_robot("industrial_arm")
    assert spec.joint_names == names
    assert spec.joint_hash() == want


# ------------------------------------------------------------------ COBS and CRC
@pytest.mark.parametrize(("raw", "stuffed"), [
    (bytes.fromhex(v["raw_hex"]), bytes.fromhex(v["stuffed_hex"])) for v in VECTORS["cobs"]])
def test_cobs_reference_vectors(raw, stuffed):
    assert cobs_encode(raw) == stuffed
    assert cobs_decode(stuffed) == raw


def test_cobs_decode_errors_name_the_offset():
    with pytest.raises(CobsError, match="code byte 0x05 at offset 0 needs 4 data bytes, only 2"):
        cobs_decode(b"\x05\x01\x02")
    with pytest.raises(CobsError, match="0x00 at offset 1"):
        cobs_decode(b"\x02\x00")


def test_crc32_parameters():
    check = VECTORS["crc32_check"]
    assert crc32(check["input_ascii"].encode()) == CRC32_CHECK == int(check["crc32"], 16)
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 100, 1000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32(data) == crc32_bitwise(data)


# ------------------------------------------------------------------ messages and errors
def test_bad_frames_raise_the_named_codec_error():
    good = encode_payload(Hello(20000), 1, 0)
    with pytest.raises(LengthError, match="shorter than header"):
        decode_payload(good[:10])
    with pytest.raises(CrcError, match="CRC-32 0x"):
        decode_payload(good[:-1] + bytes([good[-1] ^ 1]))
    v2 = b"\x02" + good[1:-4]
    with pytest.raises(VersionError, match="protocol version 2; this side speaks 1"):
        decode_payload(v2 + crc32(v2).to_bytes(4, "little"))
    unknown = good[:1] + b"\x7f" + good[2:-4]
    with pytest.raises(MessageError, match="unknown message type 0x7f"):
        decode_payload(unknown + crc32(unknown).to_bytes(4, "little"))
    short = good[:-5]
    with pytest.raises(LengthError, match="HELLO body must be 8 bytes, got 7"):
        decode_payload(short + crc32(short).to_bytes(4, "little"))
    with pytest.raises(LengthError, match="exceeds"):
        decode_frame(b"\x01" * (MAX_ENCODED + 1))


def test_command_body_checks():
    body = Command(CommandMode.POSITION, [0.1, 0.2]).body()
    with pytest.raises(MessageError, match="flags 0x80 set undefined bits"):
        Command.from_body(body[:1] + b"\x80" + body[2:])
    with pytest.raises(LengthError, match="COMMAND body for 2 joints must be 11 bytes, got 10"):
        Command.from_body(body[:-1])
    with pytest.raises(MessageError, match="mode 5 unknown; known: HOLD=0, POSITION=1"):
        Command.from_body(b"\x05" + body[1:])
    with pytest.raises(MessageError, match="velocity has 3 values, expected 2"):
        Command(CommandMode.POSITION, [0.1, 0.2], velocity=[1, 2, 3])
    with pytest.raises(MessageError, match="seq=70000 does not fit in an unsigned 16-bit"):
        encode_frame(Heartbeat(), 70000, 0)
    with pytest.raises(MessageError, match=r"n_joints=0 outside 1\.\.60"):
        State.from_body(b"\x00\x00\x00\x00")


def test_all_codec_errors_share_one_base():
    for cls in (CobsError, CrcError, LengthError, VersionError, MessageError):
        assert issubclass(cls, CodecError)


def test_decoder_resyncs_after_garbage_and_counts():
    frames = [encode_frame(Hello(20000, i), i, i) for i in range(5)]
    bad_crc = bytearray(frames[1])
    bad_crc[5] ^= 0x40
    stream = (b"\x13\x37garbage\x00" + frames[0] + bytes(bad_crc) + frames[2]
              + b"\xff" * (MAX_ENCODED + 10) + b"\x00" + frames[3] + b"\x00\x00" + frames[4])
    dec = FrameDecoder()
    got = []
    for i in range(0, len(stream), 7):  # arbitrary chunking
        got += dec.feed(stream[i:i + 7])
    assert [f.seq for f in got] == [0, 2, 3, 4]
    assert dec.stats.frames == 4
    assert dec.stats.crc_errors == 1
    assert dec.stats.length_errors == 2  # the garbage piece and the over-long run
    assert isinstance(dec.last_error, CodecError)


def test_seq_tracker_counts_gaps_duplicates_reorders_and_wraps():
    t = SeqTracker()
    for s in (65534, 65535, 1, 4, 4, 3, 5):  # 0 is never sent: 65535 -> 1 is consecutive
        t.update(s)
    assert (t.gaps, t.duplicates, t.reordered) == (2, 1, 1)
    assert next_seq(65535) == 1 and next_seq(0) == 1 and next_seq(7) == 8
    assert seq_distance(1, 65535) == 1 and seq_distance(5, 5) == 0
    assert seq_distance(3, 4) >= 0x8000
