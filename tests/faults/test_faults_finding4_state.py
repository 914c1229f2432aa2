"""Finding 4: implausible or late state is never trusted.

The fault proxy rewrites the MCU's STATE on its way to a real ``karakuri deploy`` while the
arm moves fast: the elbow stuck at 50 rad (its limit is 2.8), or NaN.  Or it delays every
frame by 150 ms each way from the start.  The host must stop with the exit code of the
cause, naming it as state (or stale), and for NaN send its final HOLD at the last good pose,
never at NaN.  The plant (the proxy's clean view) stays inside its limits throughout.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("mujoco")

from fault_rig import (
    FAR,
    SPEC,
    Rig,
    exit_code,
    launch_file,
    policy_file,
    retrying,
    stopped_by,
    why_it_stopped,
)

from karakuri.firmware_bridge.fault_proxy import DirectionFaults
from karakuri.firmware_bridge.protocol import State
from karakuri.robot.link import CommandMode

ELBOW = SPEC.joint_names.index("elbow")


def elbow_at(value):
    def rewrite(frame):
        if not isinstance(frame.msg, State):
            return None
        q = frame.msg.q.copy()
        q[ELBOW] = value
        return State(frame.msg.status, frame.msg.last_cmd_seq, q, frame.msg.dq, frame.msg.effort)
    return rewrite


def run_with(tmp_path, inject, timing_fault=False, **rig_kw):
    policy = policy_file(tmp_path / "far.onnx", FAR)

    def scenario(rig, proc):
        if inject is not None:
            rig.wait_moving(1.0, proc)
            inject(rig)

    def once():
        with Rig(**rig_kw) as rig:
            run = rig.deploy(launch_file(tmp_path, rig.port, policy, hold_s=3.0), scenario,
                             timing_fault=timing_fault)
            rig.assert_inside_envelope()
            return rig, run

    return retrying(once)


def test_an_elbow_stuck_at_50_rad_stops_the_host_naming_the_state(tmp_path):
    rig, run = run_with(tmp_path, lambda rig: rig.proxy.set_rewrite("to_host", elbow_at(50.0)))
    assert run.rc == exit_code("state"), run.out
    why = stopped_by(run.out)
    assert "elbow" in why and "50" in why and "STATE" in why, run.out


def test_a_nan_state_is_named_as_state_and_the_final_hold_is_at_the_last_good_pose(tmp_path):
    rig, run = run_with(tmp_path,
                        lambda rig: rig.proxy.set_rewrite("to_host", elbow_at(float("nan"))))
    assert run.rc == exit_code("state"), run.out
    why = stopped_by(run.out)
    assert "STATE" in why and "nan" in why.lower() and "command" not in why, run.out
    last = rig.last_command()
    assert last.mode == CommandMode.HOLD and np.isfinite(last.q_target).all()
    # The last good pose: what the plant measured just before the host stopped, near enough.
    t_last = rig.commands()[-1][0]
    q_then = [s.q for t, _, s in rig.states() if t <= t_last][-1]
    assert np.abs(last.q_target - q_then).max() < 0.2, (last.q_target, q_then)


def test_150ms_latency_each_way_is_reported_stale_not_trusted(tmp_path):
    slow = DirectionFaults(latency_s=0.15)
    rig, run = run_with(tmp_path, None, timing_fault=True, to_mcu=slow, to_host=slow)
    assert rig.proxy.counters()["to_host_frames_delayed"] > 0
    # Stale during the run, or refused at the handshake for the round trip: either names it.
    assert run.rc in (exit_code("stale"), exit_code("cannot_start")), run.out
    assert re.search(r"(?i)stale|older|latency|round.trip", why_it_stopped(run.out)), run.out
