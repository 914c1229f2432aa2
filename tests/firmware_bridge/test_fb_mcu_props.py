"""Hypothesis properties of the MCU core: the reference never leaves the envelope.

For random limits, measured states, COMMANDs (targets anywhere, any feed-forward), HELLO, ARM,
ESTOP, silences that trip the watchdog and random trip times, after every servo period:

* ``q_ref`` lies within the position limits (± the fault margin, which bounds the measured
  positions the reference may hold at), and moves at most ``velocity_limit × dt`` per period
  except where it is set to the measured position (ARM, the first HOLD, the trip);
* ``|v_ref| ≤ velocity_limit`` and ``|tau_ff| ≤ effort_limit``;
* during a stop, no joint's reference speeds up or turns back, and it ends at rest;
* COMMAND sequence numbers: a duplicate or an older COMMAND is never applied.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from karakuri.firmware_bridge.mcu_core import McuCore, McuLimits, McuMode
from karakuri.firmware_bridge.protocol import (
    Arm,
    Command,
    Estop,
    Hello,
    Message,
    encode_frame,
    next_seq,
    seq_distance,
)
from karakuri.robot.link import CommandMode

DT = 0.01  # a coarse servo period keeps the runs short; the rules do not depend on it
PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPS = 1e-9


@st.composite
def limits(draw: st.DrawFn) -> McuLimits:
    n = draw(st.integers(1, 4))
    fl = st.floats(-3.0, 3.0, allow_nan=False)
    lo = np.array([draw(fl) for _ in range(n)])
    span = np.array([draw(st.floats(0.05, 4.0)) for _ in range(n)])
    pos = st.floats(0.05, 20.0)
    return McuLimits(0x1234, lo, lo + span, np.array([draw(pos) for _ in range(n)]),
                     np.array([draw(pos) for _ in range(n)]),
                     np.array([draw(st.floats(2.0, 200.0)) for _ in range(n)]))


def measured(draw: st.DrawFn, lim: McuLimits) -> tuple[np.ndarray, np.ndarray]:
    """A measured state anywhere within the limits ± margin, speed up to 3× the limit."""
    lo, hi = lim.lower - lim.position_margin, lim.upper + lim.position_margin
    u = np.array([draw(st.floats(0.0, 1.0)) for _ in range(lim.n)])
    s = np.array([draw(st.floats(-3.0, 3.0)) for _ in range(lim.n)])
    return lo + u * (hi - lo), s * lim.velocity_limit


class Checker:
    """Runs a core and checks the invariants after every tick."""

    def __init__(self, lim: McuLimits) -> None:
        self.lim = lim
        self.core = McuCore(lim, DT, 0.02)
        self.seq, self.arm_id, self.k = 0, 0, 0
        self.q = (lim.lower + lim.upper) / 2
        self.dq = np.zeros(lim.n)
        self.core.reset(self.q)
        self.prev_step: np.ndarray | None = None

    def send(self, msg: Message) -> None:
        self.seq = next_seq(self.seq)
        self.core.receive(encode_frame(msg, self.seq, 0), self.k * DT, self.q, self.dq)
        self.prev_step = None  # a message may set the reference to the measured position

    def tick(self) -> None:
        core, lim = self.core, self.lim
        before_mode, before = core.mode, core.q_ref.copy()
        self.k += 1
        core.tick(self.k * DT, self.q, self.dq, np.zeros(lim.n))
        lo, hi = lim.lower - lim.position_margin, lim.upper + lim.position_margin
        assert np.all(core.q_ref >= lo - EPS) and np.all(core.q_ref <= hi + EPS), core.q_ref
        assert np.all(np.abs(core.v_ref) <= lim.velocity_limit + EPS)
        assert np.all(np.abs(core.tau_ff) <= lim.effort_limit + EPS)
        # A trip sets the reference to the measured position (and a ramp from rest ends at once).
        tripped = before_mode is not McuMode.STOPPING and core.mode is not before_mode
        step = core.q_ref - before
        if not tripped:
            assert np.all(np.abs(step) <= lim.velocity_limit * DT + EPS), (step, core.mode)
        if before_mode is McuMode.STOPPING and not tripped:
            if self.prev_step is not None:  # the stop never speeds up nor turns back
                assert np.all(np.abs(step) <= np.abs(self.prev_step) + EPS)
                assert np.all(step * self.prev_step >= -EPS)
            self.prev_step = step
        else:
            self.prev_step = None
        if core.mode is McuMode.STOPPING:
            assert core.mode is McuMode.STOPPING and np.all(core.tau_ff == 0.0)
        if before_mode is McuMode.STOPPING and core.mode is not McuMode.STOPPING:
            assert np.all(core.v_ref == 0.0)  # at rest when the ramp ends


@given(lim=limits(), data=st.data())
@PROPS
def test_reference_never_leaves_the_envelope(lim, data):
    c = Checker(lim)
    c.send(Hello(20000, 20000))
    n = lim.n
    anywhere = st.floats(-10.0, 10.0, allow_nan=False)
    arrays = st.lists(anywhere, min_size=n, max_size=n).map(np.array)
    for _ in range(data.draw(st.integers(5, 40))):
        c.q, c.dq = measured(data.draw, lim)
        what = data.draw(st.sampled_from(["cmd", "cmd", "cmd", "hold", "arm", "estop", "hello",
                                          "silence"]))
        if what == "cmd":
            c.send(Command(CommandMode.POSITION, data.draw(arrays),
                           data.draw(st.none() | arrays), data.draw(st.none() | arrays)))
        elif what == "hold":
            c.send(Command(CommandMode.HOLD, data.draw(arrays), data.draw(st.none() | arrays)))
        elif what == "arm":
            c.arm_id += 1
            c.send(Arm(c.arm_id))
        elif what == "estop":
            c.send(Estop())
        elif what == "hello":
            c.send(Hello(20000, data.draw(st.integers(0, 100000))))
        ticks = data.draw(st.integers(1, 60 if what == "silence" else 10))
        for _ in range(ticks):  # the robot follows its reference, more or less
            c.q = np.clip(c.core.q_ref + data.draw(st.floats(-0.01, 0.01)),
                          lim.lower - lim.position_margin, lim.upper + lim.position_margin)
            c.tick()


@given(lim=limits(), data=st.data())
@PROPS
def test_stop_from_any_state_decelerates_to_rest_within_the_limits(lim, data):
    c = Checker(lim)
    c.send(Hello(20000, 20000))
    c.arm_id += 1
    c.send(Arm(c.arm_id))
    if c.core.mode is not McuMode.ARMED:  # the middle of the range is always inside
        raise AssertionError(c.core.events)
    c.q, c.dq = measured(data.draw, lim)
    trip = data.draw(st.sampled_from(["estop", "watchdog", "hello"]))
    if trip == "estop":
        c.send(Estop())
    elif trip == "hello":
        c.send(Hello(20000, 20000))
    q0 = c.q.copy()
    for _ in range(round(12.0 / DT)):  # the longest ramp: 20 rad/s at 2 rad/s²
        c.tick()  # the measured state stays as at the trip: the worst case for the ramp
        if c.core.mode not in (McuMode.ARMED, McuMode.STOPPING):
            break
    assert c.core.mode in (McuMode.FAULTED, McuMode.DISARMED)
    rest = c.core.q_ref
    lo, hi = np.minimum(lim.lower, q0), np.maximum(lim.upper, q0)
    assert np.all(rest >= lo - EPS) and np.all(rest <= hi + EPS)
    v0 = np.clip(c.dq, -lim.velocity_limit, lim.velocity_limit)
    # Never further than the braking distance at the clipped trip speed, and never backwards.
    travel = (rest - q0) * np.sign(v0)
    assert np.all(travel >= -EPS)
    assert np.all(travel <= v0**2 / (2 * lim.stop_decel) + EPS)


@given(seqs=st.lists(st.integers(1, 65535), min_size=1, max_size=40))
@settings(max_examples=100, deadline=None)
def test_a_duplicate_or_older_command_is_never_applied(seqs):
    lim = McuLimits(1, -np.ones(1), np.ones(1), np.ones(1), np.ones(1), np.ones(1))
    core = McuCore(lim, DT, 0.02)
    core.reset(np.zeros(1))
    z = np.zeros(1)
    core.receive(encode_frame(Hello(20000), 1, 0), 0.0, z, z)
    core.receive(encode_frame(Arm(1), 2, 0), 0.0, z, z)
    applied = []
    for s in seqs:
        before = core.counters.commands_applied
        core.receive(encode_frame(Command(CommandMode.POSITION, z), s, 0), 0.0, z, z)
        if core.counters.commands_applied > before:
            applied.append(s)
            assert core.last_cmd_seq == s
    for a, b in itertools.pairwise(applied):
        assert 0 < seq_distance(b, a) < 0x8000  # each applied one is newer than the last
    assert core.counters.commands_applied + core.counters.commands_stale == len(seqs)
