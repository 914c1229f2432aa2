"""Policy files, keys and launch files built by hand with onnx (no torch export: seconds).

The launch tests (trust, audit, deploy over SIL, CLI errors) share :func:`hold_policy`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from launch_files import write_launch

from karakuri.policies.metadata import PolicyMetadata
from karakuri.policies.signing import generate_keypair, sign_file
from karakuri.robot.registry import load_robot

TOOL_AT_HOME = [0.492, 0.134, 0.3575]  # industrial_arm's tool at its default pose, m


def hold_policy(path: Path, run_id: str = "hand-built", gain: float = 0.0) -> Path:
    """A reach policy file for the industrial arm that commands its default pose.

    Args:
        path: Where to write the ONNX file.
        run_id: The metadata's run id.
        gain: Multiplies the inputs before the default pose is added: 0 holds the pose;
            NaN makes every output NaN from the first tick.
    """
    import onnx
    from onnx import TensorProto, helper

    spec = load_robot("industrial_arm")
    n, a = spec.n_joints, spec.n_arm
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(name, f32, ["B", size]) for name, size in
              (("joint_pos", n), ("joint_vel", n), ("command", 3), ("last_action", a))]
    outputs = [helper.make_tensor_value_info("joint_target", f32, ["B", n]),
               helper.make_tensor_value_info("action", f32, ["B", a])]
    home = helper.make_tensor("home", f32, [n], spec.default_pose.astype(np.float32).tolist())
    gain = helper.make_tensor("gain", f32, [], [gain])
    nodes = [helper.make_node("Mul", ["joint_pos", "gain"], ["zero_q"]),
             helper.make_node("Add", ["zero_q", "home"], ["joint_target"]),
             helper.make_node("Mul", ["last_action", "gain"], ["action"])]
    graph = helper.make_graph(nodes, "hold", inputs, outputs, initializer=[home, gain])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    meta = PolicyMetadata(
        robot_name=spec.name, joint_names=spec.joint_names, lower=tuple(spec.lower),
        upper=tuple(spec.upper), control_rate_hz=spec.control_rate_hz,
        action_type="joint_position",
        inputs={"joint_pos": {"shape": ["B", n], "unit": "rad"},
                "joint_vel": {"shape": ["B", n], "unit": "rad/s"},
                "command": {"shape": ["B", 3], "unit": "m"},
                "last_action": {"shape": ["B", a], "unit": "1"}},
        robot_spec=spec.to_dict(), task="reach", run_id=run_id,
        provenance={"training_config": {"task": "reach"}, "run_hash": "ab" * 32})
    helper.set_model_props(model, meta.to_props())
    onnx.save(model, path)
    return path


def set_metadata(path: Path, key: str, value: str) -> None:
    """Rewrite one ``metadata_props`` value of an ONNX file in place."""
    import onnx

    model = onnx.load(path)
    props = {p.key: p.value for p in model.metadata_props}
    props[key] = value
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, path)


def keys(folder: Path, name: str = "org") -> tuple[Path, Path, str]:
    """A fresh key pair in ``folder``: (private, public, key id)."""
    return generate_keypair(folder, name)


def signed_policy(folder: Path, private: Path) -> Path:
    """A hold policy in ``folder``, signed with ``private``."""
    p = hold_policy(folder / "policy.onnx")
    sign_file(p, private, "test")
    return p


def launch_file(folder: Path, link: dict, **kw: object) -> Path:
    """A launch file in ``folder`` running ``policy.onnx`` for two short episodes."""
    return write_launch(folder / "launch.yaml", policy="policy.onnx", link=link,
                        targets=[TOOL_AT_HOME], hold_s=0.3, **{"soft_start_s": 0.1,
                                                               "audit_log": "audit.jsonl", **kw})
