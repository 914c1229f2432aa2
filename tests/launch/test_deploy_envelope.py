"""Finding 1 end to end: a policy file's metadata is checked against the envelope, never used.

The policy files are built by hand with ``onnx``: the graph outputs a far target (3 rad from
home on every arm joint), and the metadata claims whatever the test says.
"""

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("mujoco")

from launch_files import write_launch  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from karakuri.launch import deploy as deploy_mod  # noqa: E402
from karakuri.launch import schema_links  # noqa: E402
from karakuri.launch.schema import LaunchError, load_launch  # noqa: E402
from karakuri.policies.metadata import PolicyMetadata  # noqa: E402
from karakuri.robot.registry import load_robot  # noqa: E402

SPEC = load_robot("industrial_arm")


def far_policy(path: Path, velocity: float | None = None, accel: float | None = None,
               rate_hz: float | None = None) -> Path:
    """A policy whose graph asks for home + 3 rad on every arm joint, with the given claims."""
    n, a = SPEC.n_joints, SPEC.n_arm
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(name, f32, ["B", size]) for name, size in
              (("joint_pos", n), ("joint_vel", n), ("command", 3), ("last_action", a))]
    outputs = [helper.make_tensor_value_info("joint_target", f32, ["B", n]),
               helper.make_tensor_value_info("action", f32, ["B", a])]
    far = SPEC.default_pose + np.r_[np.full(a, 3.0), 0.0]
    target = helper.make_tensor("far", f32, [n], far.astype(np.float32).tolist())
    zero = helper.make_tensor("zero", f32, [], [0.0])
    nodes = [helper.make_node("Mul", ["joint_pos", "zero"], ["z"]),
             helper.make_node("Add", ["z", "far"], ["joint_target"]),
             helper.make_node("Mul", ["last_action", "zero"], ["action"])]
    graph = helper.make_graph(nodes, "far", inputs, outputs, initializer=[target, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    claimed = SPEC.to_dict()
    if velocity is not None:
        claimed["velocity_limit"] = [velocity] * n
    if accel is not None:
        claimed["accel_limit"] = [accel] * n
    rate = rate_hz or SPEC.control_rate_hz
    claimed["control_rate_hz"] = rate
    meta = PolicyMetadata(
        robot_name=SPEC.name, joint_names=SPEC.joint_names, lower=tuple(SPEC.lower),
        upper=tuple(SPEC.upper), control_rate_hz=rate, action_type="joint_position",
        inputs={"joint_pos": {"shape": ["B", n]}, "joint_vel": {"shape": ["B", n]},
                "command": {"shape": ["B", 3]}, "last_action": {"shape": ["B", a]}},
        robot_spec=claimed, task="reach", run_id="hand-built")
    helper.set_model_props(model, meta.to_props())
    onnx.save(model, path)
    return path


def launch(tmp_path: Path, **policy_claims) -> Path:
    far_policy(tmp_path / "policy.onnx", **policy_claims)
    return write_launch(tmp_path / "launch.yaml", policy="policy.onnx",
                        link={"kind": "sil", "record_commands": True},
                        targets=[[0.4, 0.1, 0.3]], hold_s=1.0, soft_start_s=0.0)


def test_finding_1_lying_metadata_is_refused_before_any_link(tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(deploy_mod, "open_link", lambda *a, **k: opened.append(1))
    cfg = load_launch(launch(tmp_path, velocity=100.0, accel=1e5))
    with pytest.raises(LaunchError, match=r"asks for a velocity limit of 100 on joint "
                                          r"'shoulder_pan', beyond the trusted 3.1416 \(robot "
                                          r"description industrial_arm.yaml\)"):
        deploy_mod.deploy(cfg, log=lambda s: None)
    assert not opened


def test_a_rate_the_file_claims_is_checked_not_believed(tmp_path):
    cfg = load_launch(launch(tmp_path, rate_hz=100.0))
    with pytest.raises(LaunchError, match=r"claims a control rate of 100 Hz but robot "
                                          r"'industrial_arm' runs at 50 Hz"):
        deploy_mod.deploy(cfg, log=lambda s: None)


def test_finding_1_honest_file_with_a_far_target_stays_inside_the_envelope(tmp_path):
    """Over the real pty: every COMMAND the MCU applied moves at most velocity_limit."""
    seen = []
    real = schema_links.virtual_mcu

    def spy(*a, **kw):
        cm = real(*a, **kw)

        class Wrap:
            def __enter__(self):
                seen.append(cm.__enter__())
                return seen[-1]

            def __exit__(self, *exc):
                seen[-1].log_copy = seen[-1].command_log
                return cm.__exit__(*exc)

        return Wrap()

    mp = pytest.MonkeyPatch()
    mp.setattr(schema_links, "virtual_mcu", spy)
    try:
        result = deploy_mod.deploy(load_launch(launch(tmp_path)), log=lambda s: None)
    finally:
        mp.undo()
    s = result.summary
    assert s.fault is None, s.fault
    assert s.interventions["velocity"] > 0 or s.interventions["accel"] > 0
    log = seen[0].log_copy
    q = np.array([c for _, _, c in log], np.float64)  # (mcu time, seq, target)
    assert len(q) > 20
    assert np.all(q >= SPEC.lower - 1e-5) and np.all(q <= SPEC.upper + 1e-5)
    while len(q) > 1 and np.array_equal(q[-2], q[-1]):
        q = q[:-1]
    q = q[:-1]  # the final HOLD is the measured pose (the arm lags its target): no step limit
    step = np.abs(np.diff(q, axis=0)).max(axis=0)
    dt = 1.0 / SPEC.control_rate_hz
    steps = np.abs(np.diff(q, axis=0))
    over = np.flatnonzero((steps > SPEC.velocity_limit * dt * (1 + 1e-4) + 1e-6).any(axis=1))
    assert np.all(step <= SPEC.velocity_limit * dt * (1 + 1e-4) + 1e-6), (step / dt, over, len(q))
