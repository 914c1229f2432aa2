"""Finding 2: the MCU's category-1 stop never overshoots a limit and never speeds up.

A real ``karakuri deploy`` drives the arm towards a far pose at its speed limit through the
fault proxy.  While it moves fast, the proxy cuts the link for 120 ms (the MCU's 50 ms
watchdog trips) or injects an ESTOP towards the MCU.  The proxy's clean view of the MCU's
STATE stream is what the plant did: no joint ever faster than its limit or past a position
limit, and from the trip on no joint faster than it was at the trip.  The host stops too,
naming the cause, with the robot's exit code (docs/control-loop.md).
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("mujoco")

from fault_rig import FAR, Rig, exit_code, launch_file, policy_file, retrying, stopped_by

from karakuri.firmware_bridge.protocol import Estop

FAST = 1.5  # rad/s: well above the ~0.75 rad/s where the old stop started to accelerate


def run_with(tmp_path, inject, timing_fault=False):
    policy = policy_file(tmp_path / "far.onnx", FAR)

    def scenario(rig, proc):
        rig.wait_moving(FAST, proc)
        inject(rig)

    def once():
        with Rig() as rig:
            run = rig.deploy(launch_file(tmp_path, rig.port, policy, hold_s=4.0), scenario,
                             timing_fault=timing_fault)
            return rig, run

    return retrying(once)


def test_a_120ms_link_cut_during_fast_motion_stops_inside_the_limits_never_faster(tmp_path):
    rig, run = run_with(tmp_path, lambda rig: rig.proxy.cut(0.12), timing_fault=True)
    assert rig.proxy.counters()["to_mcu_frames_cut"] > 0
    rig.assert_stop_never_speeds_up()
    rig.assert_inside_envelope()
    # The host names the MCU's watchdog (or, if it noticed first, the missing states).
    why = stopped_by(run.out)
    assert (run.rc == exit_code("robot") and "WATCHDOG" in why) or (
        run.rc == exit_code("stale") and re.search(r"stale|no fresh state", why)), run.out


def test_an_estop_mid_motion_stops_inside_the_limits_never_faster(tmp_path):
    rig, run = run_with(tmp_path, lambda rig: rig.proxy.inject("to_mcu", Estop()))
    rig.assert_stop_never_speeds_up()
    rig.assert_inside_envelope()
    # An e-stop the host did not ask for: it lost ARMED, so it stops and names it.
    assert run.rc == exit_code("robot"), run.out
    assert "ESTOP" in stopped_by(run.out), run.out
