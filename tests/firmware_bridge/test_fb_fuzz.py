"""Hypothesis fuzzing of the codec (only CodecError escapes, no wrong CRC is ever accepted) and
of the MCU core behind it (any stream: no exception, the reference stays in its limits)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from karakuri.firmware_bridge.codec import (
    CodecError,
    CrcError,
    cobs_decode,
    cobs_encode,
    crc32,
)
from karakuri.firmware_bridge.mcu_core import McuCore, McuLimits
from karakuri.firmware_bridge.protocol import (
    Ack,
    Arm,
    Caps,
    Command,
    Estop,
    Fault,
    FrameDecoder,
    Heartbeat,
    Hello,
    Message,
    State,
    decode_frame,
    decode_payload,
    encode_frame,
    encode_payload,
)
from karakuri.robot.link import CommandMode

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
# Any 32-bit pattern, NaN and infinities included: the codec carries bits, it does not judge.
f32 = st.integers(0, 0xFFFFFFFF).map(lambda b: np.uint32(b).view(np.float32).item())


@st.composite
def messages(draw: st.DrawFn) -> Message:
    n = draw(st.integers(1, 12))
    arr = st.lists(f32, min_size=n, max_size=n)
    kind = draw(st.sampled_from(["hello", "caps", "state", "command", "fault", "ack", "empty"]))
    if kind == "hello":
        return Hello(draw(u32), draw(u32))
    if kind == "caps":
        return Caps(draw(u32), draw(u32), draw(u32), draw(u32), draw(u32), draw(arr), draw(arr),
                    draw(arr), draw(arr))
    if kind == "state":
        return State(draw(st.integers(0, 255)), draw(u16), draw(arr), draw(arr), draw(arr))
    if kind == "command":
        return Command(draw(st.sampled_from(list(CommandMode))), draw(arr),
                       draw(st.none() | arr), draw(st.none() | arr))
    if kind == "fault":
        return Fault(draw(u16), draw(u16), draw(u32))
    if kind == "ack":
        return Ack(draw(st.integers(0, 255)), draw(u16), draw(st.integers(0, 255)))
    return draw(st.sampled_from([Heartbeat(), Estop(), Arm(draw(u16))]))


@FAST
@given(st.binary(max_size=2000))
def test_decode_frame_raises_only_codec_errors(data):
    try:
        frame = decode_frame(data)
    except CodecError:
        return
    # Accepted: then it really is a well-formed frame with a matching CRC.
    payload = cobs_decode(data)
    assert int.from_bytes(payload[-4:], "little") == crc32(payload[:-4])
    assert encode_payload(frame.msg, frame.seq, frame.time_us) == payload


@FAST
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=1100))
def test_bodies_behind_a_valid_crc_raise_only_codec_errors(version, mtype, body):
    """Reach the body parsers: a correct CRC over random header bytes and bodies."""
    data = bytes([version, mtype]) + b"\x01\x00\x00\x00\x00\x00" + body
    payload = data + crc32(data).to_bytes(4, "little")
    try:
        frame = decode_payload(payload)
    except CodecError:
        return
    assert encode_payload(frame.msg, frame.seq, frame.time_us) == payload


@FAST
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_stream_decoder_never_raises(chunks):
    dec = FrameDecoder()
    for c in chunks:
        dec.feed(c)
    assert dec.stats.bytes == sum(map(len, chunks))


@FAST
@given(messages(), u16, u32)
def test_round_trip(msg, seq, time_us):
    frame = decode_frame(encode_frame(msg, seq, time_us)[:-1])
    assert (frame.seq, frame.time_us, frame.msg) == (seq, time_us, msg)


@FAST
@given(messages(), u16, u32, st.data())
def test_payload_corruption_with_the_old_crc_is_never_accepted(msg, seq, time_us, data):
    """Change any 1..3 bits of header+body+CRC (CRC-32 detects them all), restuff, feed."""
    payload = bytearray(encode_payload(msg, seq, time_us))
    nbits = len(payload) * 8
    flips = data.draw(st.sets(st.integers(0, nbits - 1), min_size=1, max_size=3))
    for bit in flips:
        payload[bit // 8] ^= 1 << (bit % 8)
    try:
        decode_payload(bytes(payload))
    except CrcError:
        pass
    else:
        raise AssertionError(f"bit flips {sorted(flips)} accepted")
    dec = FrameDecoder()
    assert dec.feed(cobs_encode(bytes(payload)) + b"\x00") == []
    assert dec.stats.crc_errors == 1


@FAST
@given(messages(), u16, u32, st.data())
def test_wire_corruption_is_never_accepted(msg, seq, time_us, data):
    """Corrupt 1..4 stuffed bytes on the wire: nothing decodes to a different message."""
    wire = bytearray(encode_frame(msg, seq, time_us))
    idx = data.draw(st.sets(st.integers(0, len(wire) - 2), min_size=1, max_size=4))
    for i in idx:
        wire[i] ^= data.draw(st.integers(1, 255))
    out = FrameDecoder().feed(bytes(wire))
    # A frame that survives must be bit-identical to the original (2**-32 chance otherwise).
    assert all((f.seq, f.time_us, f.msg) == (seq, time_us, msg) for f in out)
    assert len(out) <= 1


@settings(FAST, max_examples=100)
@given(st.lists(messages(), min_size=1, max_size=8), st.binary(max_size=64), st.data())
def test_frames_survive_garbage_between_them(msgs, garbage, data):
    stream = b"".join(garbage + b"\x00" + encode_frame(m, i, i) for i, m in enumerate(msgs))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=10)))
    dec, got = FrameDecoder(), []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += dec.feed(stream[a:b])
    assert [f.msg for f in got] == msgs


@settings(FAST, max_examples=50)
@given(st.lists(messages() | st.binary(max_size=80), min_size=1, max_size=12), st.data())
def test_mcu_core_takes_any_stream_without_raising_or_leaving_its_limits(items, data):
    """Random frames (any field, NaN and infinities included) and garbage into an armed MCU."""
    n = 3
    lim = McuLimits(1, -np.ones(n), np.ones(n), np.full(n, 2.0), np.full(n, 5.0), np.full(n, 10.0))
    core = McuCore(lim, 0.002, 0.02)
    z = np.zeros(n)
    core.reset(z)
    core.receive(encode_frame(Hello(20000), 1, 0) + encode_frame(Arm(1), 2, 0), 0.0, z, z)
    t = 0.0
    for i, item in enumerate(items):
        raw = item if isinstance(item, bytes) else encode_frame(item, data.draw(u16), i)
        core.receive(raw, t, z, z)
        for _ in range(data.draw(st.integers(0, 5))):
            t += 0.002
            core.tick(t, z, z, z)
            assert np.all(np.abs(core.q_ref) <= 1.0) and np.all(np.abs(core.v_ref) <= 2.0)
            assert np.all(np.abs(core.tau_ff) <= 5.0)
