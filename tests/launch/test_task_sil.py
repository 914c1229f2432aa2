"""Sim-in-the-loop with a task's scene: plant-fed perception inputs, layouts, task judgement.

Fast tests use policy files built by hand with ``onnx`` (they command the default pose); the
slow test trains a policy for a few steps, exports it and deploys it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

onnx = pytest.importorskip("onnx")
pytest.importorskip("mujoco")

from onnx import TensorProto, helper  # noqa: E402

from karakuri.launch import deploy as deploy_mod  # noqa: E402
from karakuri.launch.schema import LaunchError, load_launch  # noqa: E402
from karakuri.policies.metadata import PolicyMetadata  # noqa: E402
from karakuri.policies.onnx_policy import OnnxPolicy  # noqa: E402
from karakuri.robot.registry import load_robot  # noqa: E402

LAUNCH = Path(__file__).resolve().parents[2] / "launch"
TASKS = {"pick_place": ("industrial_arm", "object_pose", 4, 7),
         "handover": ("care_arm", "hand_pos", 3, 6)}


def hold_policy(path: Path, task: str, trained_on: str | None = None) -> Path:
    """A policy file for ``task`` that commands the default pose whatever it is given."""
    robot, signal, k, a = TASKS[task]
    spec = load_robot(robot)
    n, f32 = spec.n_joints, TensorProto.FLOAT
    ins = (("joint_pos", n), ("joint_vel", n), (signal, k), ("last_action", a))
    home = helper.make_tensor("home", f32, [n], spec.default_pose.astype(np.float32).tolist())
    zero = helper.make_tensor("zero", f32, [], [0.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["joint_pos", "zero"], ["zq"]),
         helper.make_node("Add", ["zq", "home"], ["joint_target"]),
         helper.make_node("Mul", ["last_action", "zero"], ["action"])],
        "hold", [helper.make_tensor_value_info(s, f32, ["B", w]) for s, w in ins],
        [helper.make_tensor_value_info("joint_target", f32, ["B", n]),
         helper.make_tensor_value_info("action", f32, ["B", a])], initializer=[home, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    meta = PolicyMetadata(
        robot_name=spec.name, joint_names=spec.joint_names, lower=tuple(spec.lower),
        upper=tuple(spec.upper), control_rate_hz=spec.control_rate_hz,
        action_type="joint_position", robot_spec=spec.to_dict(),
        inputs={s: {"shape": ["B", w], "unit": ""} for s, w in ins},
        task=trained_on or task, run_id="hand-built")
    helper.set_model_props(model, meta.to_props())
    onnx.save(model, path)
    return path


def launch(tmp_path: Path, name: str, policy: str = "policy.onnx", **changes) -> Path:
    """The repository's launch file for task ``name``, shortened, with ``changes`` on top."""
    data = yaml.safe_load((LAUNCH / f"{name}_sil.yaml").read_text())
    data.update(policy=policy, telemetry=str(tmp_path / "sil.mcap"),
                realtime={"sched_fifo_priority": 0, "mlockall": False}, soft_start_s=0.2)
    data["command"].update(hold_s=0.6, reset_s=0.2)
    data["command"]["plant_signal"].update(count=2, noise=0.0)
    data.update(changes)
    p = tmp_path / "launch.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


class Recording(OnnxPolicy):
    """The real policy runtime, keeping every input it was given."""

    seen: list[dict]

    def act(self, signals):  # type: ignore[override]
        self.__dict__.setdefault("seen", []).append({k: np.array(v) for k, v in signals.items()})
        return super().act(signals)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_plant_feeds_the_perception_input_and_the_task_judges(tmp_path, task) -> None:
    hold_policy(tmp_path / "policy.onnx", task)
    cfg = load_launch(launch(tmp_path, task))
    policy = Recording(cfg.policy)
    lines: list[str] = []
    s = deploy_mod.deploy(cfg, log=lines.append, policy=policy).summary
    assert s.fault is None and s.stopped_by == "all 2 episodes done", s.format()
    assert [e.success for e in s.episodes] == [False, False]  # holding home never succeeds
    signal = TASKS[task][1]
    fed = np.concatenate([x[signal] for x in policy.seen])
    assert fed.shape[1] == TASKS[task][2] and np.isfinite(fed).all()
    assert np.ptp(fed, axis=0).max() > 1e-3  # a new layout (box) or a drifting hand
    assert sum(line.startswith("episode ") for line in lines) == 2


def test_pick_place_box_is_read_where_the_plant_has_it(tmp_path) -> None:
    hold_policy(tmp_path / "policy.onnx", "pick_place")
    cfg = load_launch(launch(tmp_path, "pick_place"))
    policy = Recording(cfg.policy)
    deploy_mod.deploy(cfg, log=lambda s: None, policy=policy)
    poses = np.concatenate([x["object_pose"] for x in policy.seen])
    assert np.allclose(poses[:, 2], 0.02, atol=0.003)  # resting on the table
    first, last = poses[0], poses[-1]
    assert np.linalg.norm(first[:2] - last[:2]) > 1e-3  # each episode lays out a new box
    lo, hi = (0.40, -0.25), (0.62, 0.05)
    assert ((poses[:, :2] >= lo) & (poses[:, :2] <= hi)).all()


def test_signal_the_policy_lacks_is_named(tmp_path) -> None:
    hold_policy(tmp_path / "policy.onnx", "handover")
    path = launch(tmp_path, "handover", command={
        "plant_signal": {"signal": "object_pose", "count": 1}, "hold_s": 0.5})
    with pytest.raises(LaunchError, match=r"no input 'object_pose'; its inputs"):
        deploy_mod.deploy(load_launch(path), log=lambda s: None)


def test_task_other_than_the_policys_is_refused(tmp_path) -> None:
    hold_policy(tmp_path / "policy.onnx", "handover", trained_on="reach")
    with pytest.raises(LaunchError, match=r"task: 'handover' but the policy .* 'reach'"):
        deploy_mod.deploy(load_launch(launch(tmp_path, "handover")), log=lambda s: None)


@pytest.mark.parametrize(("change", "message"), [
    ({"task": ""}, r"plant_signal reads the scene of a task: add 'task'"),
    ({"link": {"kind": "serial", "port": "/dev/null"}}, r"need a simulated plant"),
    ({"command": {"plant_signal": {"signal": "hand_pos", "count": 1}, "box": {
        "lower": [0], "upper": [1], "count": 1}, "hold_s": 1.0}}, r"exactly one of"),
    ({"command": {"plant_signal": {"signal": "hand_pos", "count": 0}, "hold_s": 1.0}},
     r"count: 0 must be >= 1"),
])
def test_launch_file_checks_plant_signal(tmp_path, change, message) -> None:
    with pytest.raises(LaunchError, match=message):
        load_launch(launch(tmp_path, "handover", **change))


def test_repository_launch_files_parse() -> None:
    for task, (robot, signal, _, _) in TASKS.items():
        cfg = load_launch(LAUNCH / f"{task}_sil.yaml")
        assert cfg.robot == robot and cfg.task == task and cfg.link_kind == "sil"
        assert cfg.command is not None and cfg.command.plant_signal is not None
        assert cfg.command.plant_signal.signal == signal
