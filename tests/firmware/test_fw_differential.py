"""Differential test: the C core and the Python McuCore fed the same bytes and clock.

Hypothesis draws a session: host frames of every type (good, with undefined values, wrong
joint counts, non-finite values, MCU-bound types, corrupted, split across reads, garbage),
servo ticks and pauses long enough to trip the watchdog, with measured joint states drawn
as binary32 values.  After every step both cores must have sent the same frames, byte for
byte, and agree on mode, status bits, last applied COMMAND, counters and servo reference.
"""

from __future__ import annotations

import numpy as np
from fw_harness import COUNTERS, Harness
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from karakuri.firmware_bridge.mcu_core import McuCore, McuLimits
from karakuri.firmware_bridge.protocol import (
    Ack,
    Arm,
    Caps,
    Command,
    Estop,
    Fault,
    Heartbeat,
    Hello,
    State,
    encode_frame,
    encode_payload,
)
from karakuri.robot.link import CommandMode

N = 3
SERVO_US, STATE_US = 1000, 4000
LIMITS = McuLimits(0x1234ABCD, np.array([-1.5, -2.0, 0.0]), np.array([1.5, 0.5, 0.0390625]),
                   np.array([3.0, 2.0, 0.125]), np.array([150.0, 28.0, 60.0]),
                   np.array([15.0, 25.0, 1.0]))
Q0 = np.array([0.25, -1.0, 0.03125])

f32 = st.floats(-4.0, 4.0, width=32)
odd = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30])
joint_values = st.lists(st.one_of(f32, f32, f32, f32, odd), min_size=N, max_size=N)
inside = st.tuples(*[st.floats(float(lo), float(hi), width=32)
                     for lo, hi in zip(LIMITS.lower, LIMITS.upper, strict=True)])
positions = st.one_of(*[inside] * 12, st.lists(f32, min_size=N, max_size=N))
periods = st.one_of(st.sampled_from([0, 1, 999, 1000, 1500, 4000, 20000, 2_000_000]),
                    st.integers(0, 100_000))


@st.composite
def command(draw: st.DrawFn) -> Command:
    n = draw(st.sampled_from([N, N, N, N, 1, 5]))
    arrays = [np.array(draw(st.lists(st.one_of(f32, f32, f32, f32, odd), min_size=n,
                                     max_size=n)), np.float32)]
    v = np.array(draw(st.lists(f32, min_size=n, max_size=n)) or [0], np.float32)
    e = np.array(draw(st.lists(f32, min_size=n, max_size=n)) or [0], np.float32)
    return Command(draw(st.sampled_from(list(CommandMode))), arrays[0],
                   v if draw(st.booleans()) else None, e if draw(st.booleans()) else None)


messages = st.one_of(
    st.builds(Hello, periods, periods),
    st.builds(Arm, st.integers(0, 3)),
    command(), command(), command(), command(),
    st.just(Estop()), st.just(Heartbeat()),
    st.builds(Fault, st.integers(1, 3), st.integers(0, 5), st.integers(0, 99)),
    st.builds(Ack, st.integers(1, 9), st.integers(0, 9), st.integers(0, 3)),
    st.builds(State, st.integers(0, 31), st.integers(0, 9), st.just([0.5]), st.just([0.0]),
              st.just([1.0])),
    st.builds(Caps, st.integers(0, 9), st.just(1000), st.just(1000), st.just(1000),
              st.just(3000), st.just([-1.0]), st.just([1.0]), st.just([1.0]), st.just([1.0])),
)


@st.composite
def wire_bytes(draw: st.DrawFn, seq: list[int]) -> bytes:
    """One or more frames as the host would send them, some damaged."""
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["good"] * 8 + ["flip", "garbage", "version"]))
        seq[0] = (seq[0] + draw(st.sampled_from([1, 1, 1, 1, 0, 2, 40000]))) & 0xFFFF
        msg = draw(messages)
        frame = encode_frame(msg, seq[0], draw(st.integers(0, 2**32 - 1)))
        if kind == "flip":
            i = draw(st.integers(0, len(frame) - 2))
            frame = frame[:i] + bytes([frame[i] ^ draw(st.integers(1, 255))]) + frame[i + 1:]
        elif kind == "garbage":
            frame = draw(st.binary(min_size=1, max_size=40))
        elif kind == "version":
            payload = bytearray(encode_payload(msg, seq[0], 0))
            payload[0] = 2
            from karakuri.firmware_bridge.codec import cobs_encode, crc32

            body = bytes(payload[:-4])
            frame = cobs_encode(body + crc32(body).to_bytes(4, "little")) + b"\x00"
        out += frame
    return out


@st.composite
def session(draw: st.DrawFn) -> list[tuple]:
    seq = [draw(st.integers(0, 65535))]
    zero = np.zeros(N, np.float32)
    steps: list[tuple] = [("rx", encode_frame(Hello(20000, 0), 0, 0), Q0, zero)] if draw(
        st.booleans()) else []
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["rx", "rx", "rx", "tick", "tick", "wait", "arm_cmd"]))
        q = np.array(draw(positions), np.float32)
        dq = np.array(draw(st.lists(f32, min_size=N, max_size=N)), np.float32)
        eff = np.array(draw(st.lists(f32, min_size=N, max_size=N)), np.float32)
        if kind == "rx":
            steps.append(("rx", draw(wire_bytes(seq)), q, dq))
        elif kind == "arm_cmd":  # the common path: (HELLO,) ARM, then a good COMMAND
            data = encode_frame(Hello(20000, 0), seq[0], 0) if draw(st.booleans()) else b""
            seq[0] = (seq[0] + 1) & 0xFFFF
            data += encode_frame(Arm(draw(st.integers(0, 3))), seq[0], 0)
            seq[0] = (seq[0] + 1) & 0xFFFF
            data += encode_frame(Command(CommandMode.POSITION, q + 0.5), seq[0], 0)
            steps.append(("rx", data, q, dq))
        else:
            ticks = 1 if kind == "tick" else draw(st.integers(2, 120))
            steps.append(("tick", ticks, q, dq, eff))
    return steps


def _python_view(core: McuCore) -> dict[str, object]:
    c = core.counters
    d: dict[str, object] = {"mode": core.mode.value, "status": int(core.status),
                            "last_cmd_seq": core.last_cmd_seq}
    d.update({k: getattr(c, k) for k in COUNTERS})
    return d


def _compare(h: Harness, core: McuCore, where: str) -> None:
    got = h.dump()
    want = _python_view(core)
    assert {k: got[k] for k in want} == want, where
    for name in ("q_ref", "v_ref", "tau_ff"):
        np.testing.assert_allclose(got[name], getattr(core, name), rtol=2e-5, atol=2e-5,
                                   err_msg=f"{name} {where}")


@settings(max_examples=40, deadline=None, report_multiple_bugs=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps=session())
def test_c_core_matches_python_core(harness_bin, steps: list[tuple]) -> None:
    core = McuCore(LIMITS, SERVO_US * 1e-6, STATE_US * 1e-6)
    core.reset(Q0)
    with Harness(harness_bin) as h:
        assert h.init(SERVO_US, STATE_US, LIMITS.joint_hash, LIMITS.lower, LIMITS.upper,
                      LIMITS.velocity_limit, LIMITS.effort_limit, LIMITS.stop_decel, Q0) == 0
        t_us = 0
        for i, step in enumerate(steps):
            if step[0] == "rx":
                _, data, q, dq = step
                cut = len(data) // 2  # split reads: a frame may end in the next read
                want = core.receive(data[:cut], t_us * 1e-6, q.astype(float), dq.astype(float))
                want += core.receive(data[cut:], t_us * 1e-6, q.astype(float), dq.astype(float))
                got = h.receive(data[:cut], t_us, q, dq) + h.receive(data[cut:], t_us, q, dq)
                assert got == want, f"step {i} rx {data.hex()}"
            else:
                _, ticks, q, dq, eff = step
                for _ in range(ticks):
                    t_us += SERVO_US
                    want = core.tick(t_us * 1e-6, q.astype(float), dq.astype(float),
                                     eff.astype(float))
                    got = h.tick(t_us, q, dq, eff)
                    assert got == want, f"step {i} tick at {t_us} µs"
            _compare(h, core, f"after step {i} ({step[0]}) at {t_us} µs")
            event(f"reached {core.mode.value}")
        c = core.counters
        for name in ("commands_applied", "commands_stale", "watchdog_trips", "limit_faults",
                     "estops", "commands_rejected"):
            if getattr(c, name):
                event(name)


def test_watchdog_trip_and_stop_agree_to_the_microsecond(harness_bin) -> None:
    """A scripted session: HELLO, ARM, moving COMMANDs, silence; both trip on the same tick."""
    core = McuCore(LIMITS, SERVO_US * 1e-6, STATE_US * 1e-6)
    core.reset(Q0)
    q, dq, eff = Q0.astype(np.float32), np.array([1.5, -0.75, 0.1], np.float32), np.zeros(3)
    with Harness(harness_bin) as h:
        h.init(SERVO_US, STATE_US, LIMITS.joint_hash, LIMITS.lower, LIMITS.upper,
               LIMITS.velocity_limit, LIMITS.effort_limit, LIMITS.stop_decel, Q0)
        data = (encode_frame(Hello(10000, 0), 1, 0) + encode_frame(Arm(7), 2, 0)
                + encode_frame(Command(CommandMode.POSITION, q + 0.25), 3, 0))
        assert h.receive(data, 0, q, dq) == core.receive(data, 0.0, q.astype(float),
                                                         dq.astype(float))
        trip = None
        for t_us in range(SERVO_US, 400_000, SERVO_US):
            want = core.tick(t_us * 1e-6, q.astype(float), dq.astype(float), eff)
            assert h.tick(t_us, q, dq, eff) == want, t_us
            if trip is None and core.counters.watchdog_trips:
                trip = t_us
        assert trip == 30_000  # 3 x the 10 ms command period
        assert h.dump()["mode"] == "faulted" and core.mode.value == "faulted"


def test_overlong_runs_and_split_frames_agree(harness_bin) -> None:
    """Byte runs past MAX_ENCODED, empty frames and one-byte reads: same counts and answers."""
    core = McuCore(LIMITS, SERVO_US * 1e-6, STATE_US * 1e-6)
    core.reset(Q0)
    q, dq = Q0.astype(np.float32), np.zeros(N, np.float32)
    hello = encode_frame(Hello(20000, 0), 1, 0)
    streams = [b"\x01" * 1029 + b"\x00" + hello,          # exactly MAX_ENCODED: decoded, bad
               b"\x01" * 1030 + hello,                    # one over, then resync at its 0x00
               b"\x02" * 3000 + b"\x00\x00\x00" + hello,  # long run, empty frames
               encode_frame(Heartbeat(), 2, 0) * 3]
    with Harness(harness_bin) as h:
        h.init(SERVO_US, STATE_US, LIMITS.joint_hash, LIMITS.lower, LIMITS.upper,
               LIMITS.velocity_limit, LIMITS.effort_limit, LIMITS.stop_decel, Q0)
        for data in streams:
            want = core.receive(data, 0.0, q.astype(float), dq.astype(float))
            assert h.receive(data, 0, q, dq) == want
        one_by_one = encode_frame(Arm(1), 3, 0) + b"\x05\x00"
        for b in one_by_one:
            want = core.receive(bytes([b]), 0.0, q.astype(float), dq.astype(float))
            assert h.receive(bytes([b]), 0, q, dq) == want
        _compare(h, core, "after the streams")
        assert core.counters.length_errors >= 3
