"""Finding 1: the safety envelope never comes from the policy file.

A policy file whose metadata claims huge limits (100 rad/s, 1e5 rad/s²) or a faster rate
(100 Hz), with a graph that commands a far pose, is run by a real ``karakuri deploy``
through the fault proxy.  It must be refused before the robot is armed, naming the joint,
the value and the trusted limit: the proxy sees no ARM and no POSITION command, and the
plant does not move.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")

from fault_rig import FAR, SPEC, Rig, exit_code, launch_file, policy_file, sent_arm

from karakuri.robot.link import CommandMode


def refused(tmp_path, policy):
    with Rig() as rig:
        run = rig.deploy(launch_file(tmp_path, rig.port, policy, hold_s=2.0))
        q = np.array([s.q for _, t_us, s in rig.states() if t_us > 0.5e6])  # after settling
        moved = np.ptp(q[:, :-1], axis=0).max()  # arm joints; the finger settles alone
        assert not sent_arm(rig), f"the host armed the robot:\n{run.out}"
        assert not [c for _, c in rig.commands() if c.mode == CommandMode.POSITION]
        assert moved < 0.01, f"the arm moved {moved:.3f} rad"
    assert run.rc == exit_code("cannot_start"), run.out
    return run.out


def test_a_file_claiming_huge_limits_is_refused_naming_joint_value_and_limit(tmp_path):
    n = SPEC.n_joints
    policy = policy_file(tmp_path / "greedy.onnx", FAR, spec_overrides={
        "velocity_limit": np.full(n, 100.0), "accel_limit": np.full(n, 1e5)})
    out = refused(tmp_path, policy)
    assert "shoulder_pan" in out and "100" in out and "3.14" in out, out
    assert "velocity" in out, out


def test_a_file_claiming_a_faster_rate_is_refused(tmp_path):
    policy = policy_file(tmp_path / "fast.onnx", FAR, rate_hz=100.0)
    out = refused(tmp_path, policy)
    assert "100 Hz" in out and "50 Hz" in out, out
