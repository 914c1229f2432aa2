"""The fault proxy itself: clean bytes pass unchanged, each fault does what it says.

A real pty stands in for the MCU's port (the test writes its master side) and the proxy's
host-side pty is opened as a host would open it.
"""

from __future__ import annotations

import os
import select
import time
import tty

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from karakuri.firmware_bridge.fault_channel import FaultConfig
from karakuri.firmware_bridge.fault_proxy import DirectionFaults, FaultChannel, FaultProxy
from karakuri.firmware_bridge.protocol import (
    Fault,
    FaultCode,
    Hello,
    State,
    decode_frame,
    encode_frame,
)


class Ends:
    """The MCU's pty (``mcu``: master fd the test writes) and the host's end of the proxy."""

    def __init__(self, **faults: object) -> None:
        self.mcu, slave = os.openpty()
        tty.setraw(slave)
        self._mcu_slave = slave
        self.proxy = FaultProxy(os.ttyname(slave), **faults)  # type: ignore[arg-type]
        port = self.proxy.start()
        self.host = os.open(port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.host)

    def close(self) -> None:
        self.proxy.close()
        for fd in (self.host, self.mcu, self._mcu_slave):
            os.close(fd)


@pytest.fixture
def ends(request):
    e = Ends(**getattr(request, "param", {}))
    yield e
    e.close()


def read_for(fd: int, seconds: float) -> bytes:
    out, end = bytearray(), time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            out += os.read(fd, 65536)
    return bytes(out)


def state_frame(seq: int, q: float = 0.1) -> bytes:
    n = np.full(3, q, np.float32)
    return encode_frame(State(1, seq, n, n * 0, n * 0), seq, 1000 * seq)


def test_bytes_pass_unchanged_both_ways_without_faults(ends):
    rng = np.random.default_rng(0)
    # Garbage, zeros included; the proxy relays whole frames, so the last byte ends one.
    blob = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes() + b"\x00"
    frames = b"".join(state_frame(i) for i in range(50))
    os.write(ends.mcu, frames + blob)
    assert read_for(ends.host, 0.3) == frames + blob
    back = blob[:-1][::-1] + b"\x00"
    os.write(ends.host, back)
    assert read_for(ends.mcu, 0.3) == back
    c = ends.proxy.counters()
    assert c["to_host_bytes_in"] == c["to_host_bytes_out"] == len(frames + blob)
    assert c["to_mcu_bytes_out"] == len(blob)
    assert c["to_host_frames_decoded"] == 50  # the proxy's view: the clean frames it saw
    assert [f.msg.last_cmd_seq for _, f in ends.proxy.frames("to_host")] == list(range(50))
    assert [f.msg.last_cmd_seq for _, f in ends.proxy.latest("to_host", 3)] == [47, 48, 49]


@given(st.lists(st.binary(max_size=300), max_size=20))
@settings(max_examples=60, deadline=None)
def test_channel_without_faults_is_the_identity(chunks):
    ch = FaultChannel(DirectionFaults(), np.random.default_rng(0), t0=0.0)
    out = bytearray()
    for i, c in enumerate(chunks):
        ch.push(c, float(i))
        out += ch.pop(float(i))
    data = b"".join(chunks)
    assert bytes(out) == data[:data.rfind(b"\x00") + 1]  # what ended in a delimiter so far


@given(st.lists(st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\x00", b"\x01")),
                min_size=1, max_size=30),
       st.floats(0.0, 1.0), st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_random_delays_keep_every_frame_and_its_order(bodies, rate, seed):
    """The virtual MCU's delay (some frames held back by delay_s) never loses or reorders."""
    faults = DirectionFaults(delay_frame_rate=rate, delay_s=0.05)
    ch = FaultChannel(faults, np.random.default_rng(seed), t0=0.0, keep_frames=0)
    out = bytearray()
    for i, body in enumerate(bodies):
        now = i * 0.01
        ch.push(body + b"\x00", now)
        out += ch.pop(now)
    out += ch.pop(1e9)
    assert bytes(out) == b"".join(b + b"\x00" for b in bodies)
    assert ch.counters.frames_delayed <= len(bodies)
    assert ch.counters.fault_counts()["frames_delayed"] == ch.counters.frames_delayed
    assert ch.seen.maxlen == 0 and not ch.seen  # keep_frames=0: no view, no decoding


@pytest.mark.parametrize(("direction", "to_mcu", "to_host"),
                         [("both", True, True), ("rx", True, False), ("tx", False, True)])
def test_fault_config_applies_to_its_direction_only(direction, to_mcu, to_host):
    cfg = FaultConfig(drop_frame_rate=0.2, delay_frame_rate=0.1, delay_s=0.02,
                      fault_direction=direction, fault_seed=5)
    rx, tx = cfg.channels()
    for ch, on in ((rx, to_mcu), (tx, to_host)):
        want = DirectionFaults(drop_frame_rate=0.2, delay_frame_rate=0.1, delay_s=0.02)
        assert ch.faults == (want if on else DirectionFaults())
    assert FaultConfig().direction("to_mcu") == DirectionFaults()  # no rates: no faults


@pytest.mark.parametrize("ends", [dict(to_host=DirectionFaults(corrupt_byte_rate=0.1))],
                         indirect=True)
def test_corruption_changes_the_counted_bytes_only_in_that_direction(ends):
    data = bytes(range(1, 256)) * 8 + b"\x00"
    os.write(ends.mcu, data)
    got = read_for(ends.host, 0.3)
    assert len(got) == len(data)
    changed = sum(a != b for a, b in zip(got, data, strict=True))
    assert changed == ends.proxy.counters()["to_host_bytes_corrupted"]
    assert 0.05 * len(data) < changed < 0.15 * len(data)
    os.write(ends.host, data)
    assert read_for(ends.mcu, 0.3) == data  # the other direction is clean


@pytest.mark.parametrize("ends", [dict(to_host=DirectionFaults(drop_frame_rate=0.5), seed=3)],
                         indirect=True)
def test_dropped_frames_are_whole_and_the_rest_keep_order(ends):
    os.write(ends.mcu, b"".join(state_frame(i) for i in range(200)))
    got = [decode_frame(f).msg.last_cmd_seq for f in read_for(ends.host, 0.4).split(b"\x00")
           if f]  # every frame that arrives decodes: nothing half-dropped
    dropped = ends.proxy.counters()["to_host_frames_dropped"]
    assert got == sorted(got) and len(got) + dropped == 200 and 60 < dropped < 140


@pytest.mark.parametrize("ends", [dict(to_mcu=DirectionFaults(latency_s=0.15))], indirect=True)
def test_latency_delays_every_frame_by_the_same_time(ends):
    t_sent = time.monotonic()
    os.write(ends.host, state_frame(1))
    assert select.select([ends.mcu], [], [], 1.0)[0]
    delay = time.monotonic() - t_sent
    assert os.read(ends.mcu, 100) == state_frame(1)
    assert 0.15 <= delay < 0.25
    os.write(ends.mcu, state_frame(2))  # the other direction: no latency
    t = time.monotonic()
    assert select.select([ends.host], [], [], 1.0)[0] and time.monotonic() - t < 0.05


def test_a_cut_loses_the_frames_inside_it_then_the_line_comes_back(ends):
    ends.proxy.cut(0.2)
    os.write(ends.mcu, state_frame(1))
    os.write(ends.host, state_frame(2))
    assert read_for(ends.host, 0.1) == b"" and read_for(ends.mcu, 0.01) == b""
    time.sleep(0.12)
    os.write(ends.mcu, state_frame(3))
    assert read_for(ends.host, 0.1) == state_frame(3)
    c = ends.proxy.counters()
    assert c["to_host_frames_cut"] == 1 and c["to_mcu_frames_cut"] == 1


@pytest.mark.parametrize("ends", [dict(to_host=DirectionFaults(cut_at_s=0.2, cut_s=0.2))],
                         indirect=True)
def test_a_configured_cut_starts_after_cut_at_s(ends):
    os.write(ends.mcu, state_frame(1))
    assert read_for(ends.host, 0.1) == state_frame(1)
    time.sleep(0.15)
    os.write(ends.mcu, state_frame(2))
    assert read_for(ends.host, 0.1) == b""
    assert ends.proxy.counters()["to_host_frames_cut"] == 1


def test_injected_messages_look_in_sequence_and_raw_bytes_pass_as_given(ends):
    os.write(ends.mcu, state_frame(41))
    read_for(ends.host, 0.1)
    ends.proxy.inject("to_host", Fault(FaultCode.ESTOP, 9))
    frame = decode_frame(read_for(ends.host, 0.1)[:-1])
    assert frame.msg == Fault(FaultCode.ESTOP, 9) and frame.seq == 42 and frame.time_us == 41000
    ends.proxy.inject("to_mcu", Hello(20_000), seq=7)
    assert decode_frame(read_for(ends.mcu, 0.1)[:-1]).msg == Hello(20_000)
    ends.proxy.inject("to_mcu", b"\x01\x02\x00")
    assert read_for(ends.mcu, 0.1) == b"\x01\x02\x00"
    c = ends.proxy.counters()
    assert c["to_host_frames_injected"] == 1 and c["to_mcu_frames_injected"] == 1


def test_rewrite_replaces_a_state_keeping_seq_and_time(ends):
    def stuck(frame):
        if isinstance(frame.msg, State):
            q = frame.msg.q.copy()
            q[1] = 50.0
            return State(frame.msg.status, frame.msg.last_cmd_seq, q, frame.msg.dq,
                         frame.msg.effort)
        return None

    ends.proxy.set_rewrite("to_host", stuck)
    os.write(ends.mcu, state_frame(5) + encode_frame(Hello(1), 6, 6000))
    got = [decode_frame(f) for f in read_for(ends.host, 0.2).split(b"\x00") if f]
    assert got[0].msg.q.tolist() == pytest.approx([0.1, 50.0, 0.1]) and got[0].seq == 5
    assert got[0].time_us == 5000 and got[1].msg == Hello(1)
    # The proxy's view is the clean stream: what the MCU really measured.
    assert ends.proxy.frames("to_host")[0][1].msg.q[1] == pytest.approx(0.1)
    assert ends.proxy.counters()["to_host_frames_rewritten"] == 1


def test_bad_settings_name_the_value():
    with pytest.raises(ValueError, match=r"drop_frame_rate=2 must be a probability in \[0, 1\]"):
        DirectionFaults(drop_frame_rate=2)
    with pytest.raises(ValueError, match="latency_s=-1 must be a finite number of seconds"):
        DirectionFaults(latency_s=-1)
    with pytest.raises(FileNotFoundError):
        FaultProxy("/nonexistent/tty").open()


def test_cli_relays_injects_and_prints_its_counters():
    import subprocess
    import sys

    mcu, slave = os.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen(
        [sys.executable, "-m", "karakuri.launch.cli", "proxy", "--mcu", os.ttyname(slave),
         "--duration-s", "3", "--inject", "0.5:to_host:fault", "--to-host-latency-s", "0.01"],
        stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(__file__))
    try:
        port = proc.stdout.readline().split("port: ", 1)[1].strip()
        host = os.open(port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(host)
        os.write(mcu, state_frame(3))
        data, end = b"", time.monotonic() + 10.0  # the injection is due 0.5 s after the start
        while data.count(b"\x00") < 2 and time.monotonic() < end:
            data += read_for(host, 0.1)
        got = [decode_frame(f) for f in data.split(b"\x00") if f]
        assert isinstance(got[0].msg, State) and got[1].msg == Fault(FaultCode.ESTOP, 0xFFFF)
        proc.send_signal(15)
        out = proc.communicate(timeout=10)[0]
        os.close(host)
    finally:
        proc.kill()
        os.close(mcu)
        os.close(slave)
    assert proc.returncode == 0
    assert "'to_host_frames_injected': 1" in out and "'to_host_frames_delayed': 1" in out


def test_cli_names_a_bad_injection():
    from karakuri.launch.cli import main

    assert main(["proxy", "--mcu", "/dev/null", "--inject", "1:sideways:hello"]) == 2
