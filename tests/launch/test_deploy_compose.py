"""deploy() composition with an in-memory link, policy and plant; the CLI's smoke runs."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from karakuri.launch.cli import main
from karakuri.launch.deploy import deploy, resolve_rate, resolve_spec
from karakuri.launch.schema import LaunchError, load_launch
from karakuri.robot.envelope import Description
from karakuri.robot.link import CommandMode, JointState, LinkCounters
from karakuri.robot.spec import RobotSpec

N = 2


def toy_spec(name="toy") -> RobotSpec:
    return RobotSpec(name=name, joint_names=("a", "b"), lower=-np.ones(N), upper=np.ones(N),
                     velocity_limit=np.full(N, 2.0), effort_limit=np.ones(N),
                     accel_limit=np.full(N, 50.0), default_pose=np.zeros(N), kp=np.ones(N),
                     kd=np.ones(N), arm_joints=("a", "b"), control_rate_hz=100.0)


class Meta:
    control_rate_hz = 100.0

    def __init__(self, spec):
        self.robot_spec = spec.to_dict()


class ToyPolicy:
    """Drives joint a toward command[0]; carries its spec like an OnnxPolicy's metadata."""

    input_names = ("joint_pos", "joint_vel", "command", "last_action")

    def __init__(self, spec):
        self.metadata = Meta(spec)

    def act(self, signals):
        return np.array([[signals["command"][0, 0], 0.0]], np.float32)

    def reset(self):
        pass


class ToyLink:
    def __init__(self):
        self.q = np.full(N, 0.2)
        self.modes = []

    def connect(self):
        pass

    def close(self):
        pass

    @property
    def is_connected(self):
        return True

    def latest_state(self):
        return JointState(self.q.copy(), np.zeros(N), np.zeros(N), time.monotonic())

    def send_command(self, q, mode=CommandMode.POSITION):
        self.modes.append(mode)
        if mode == CommandMode.POSITION:
            self.q = np.array(q)

    def estop(self):
        pass

    def rearm(self):
        pass

    def faults(self):
        return []

    def counters(self):
        return LinkCounters(frames_tx=len(self.modes))


class ToyPlant:
    """The tool sits at (q_a, 0, 0)."""

    def __init__(self, link):
        self.link = link

    def tool_position(self):
        return np.array([self.link.q[0], 0.0, 0.0])


def launch_file(tmp_path: Path, **kw) -> Path:
    data = {"robot": "toy", "policy": "p.onnx", "link": {"kind": "serial", "port": "/dev/null"},
            "command": {"targets": [[0.5, 0, 0], [0.9, 0, 0]], "hold_s": 0.3, "reset_s": 0.2},
            "soft_start_s": 0.0, "telemetry": "out/run.mcap",
            "realtime": {"sched_fifo_priority": 0, "mlockall": False}}
    data.update(kw)
    p = tmp_path / "launch.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_deploy_composes_and_judges_success(tmp_path):
    # joint a is limited to 1.0, so the tool (at q_a) never gets within 2 cm of x = 1.5
    cfg = load_launch(launch_file(tmp_path, command={
        "targets": [[0.5, 0, 0], [1.5, 0, 0]], "hold_s": 0.5, "reset_s": 0.1}))
    link = ToyLink()
    result = deploy(cfg, policy=ToyPolicy(toy_spec()), link=(link, ToyPlant(link)),
                    log=lambda s: None, description=toy_spec())
    s = result.summary
    assert s.stopped_by == "all 2 episodes done" and s.fault is None
    assert [e.success for e in s.episodes] == [True, False]
    assert s.success_rate == 0.5 and s.interventions["clip"] > 0
    assert result.telemetry == tmp_path / "out/run.mcap" and result.telemetry.stat().st_size > 0
    assert link.modes[-1] == CommandMode.HOLD


def test_policy_robot_mismatch_names_both(tmp_path):
    cfg = load_launch(launch_file(tmp_path, robot="other_arm"))
    with pytest.raises(LaunchError, match=r"'other_arm' is 'other_arm'.*exported for 'toy'"):
        resolve_spec(cfg, ToyPolicy(toy_spec()), Description.from_spec(toy_spec("other_arm")))


def test_rate_must_match_the_policy(tmp_path):
    cfg = load_launch(launch_file(tmp_path, rate_hz=500.0))
    with pytest.raises(LaunchError, match=r"rate_hz: 500.0 Hz but the policy was trained at 100"):
        resolve_rate(cfg, ToyPolicy(toy_spec()), toy_spec())


def test_missing_command_section(tmp_path):
    data = launch_file(tmp_path)
    d = yaml.safe_load(data.read_text())
    del d["command"]
    data.write_text(yaml.safe_dump(d))
    link = ToyLink()
    with pytest.raises(LaunchError, match="command: missing"):
        deploy(load_launch(data), policy=ToyPolicy(toy_spec()), link=(link, None),
               description=toy_spec())


def test_cli_deploy_bad_file_exit_code(tmp_path, capsys):
    p = launch_file(tmp_path, link={"kind": "serial", "port": "/dev/null", "bauds": 9600})
    assert main(["deploy", str(p)]) == 2
    assert "link.bauds: unknown key" in capsys.readouterr().err
    assert main(["deploy", str(launch_file(tmp_path))]) == 2  # p.onnx does not exist
    assert "p.onnx does not exist" in capsys.readouterr().err


def test_cli_bench_loop_smoke(capsys):
    assert main(["bench", "loop", "--seconds", "0.3", "--no-realtime"]) == 0
    out = capsys.readouterr().out
    assert "ControlLoop (deadline)" in out and "naive / ControlLoop" in out


def test_deploy_command_imports_without_torch_or_mujoco():
    code = ("import sys; from karakuri.launch.cli import build_parser; "
            "build_parser(['deploy']); import karakuri.launch.deploy, karakuri.launch.schema; "
            "bad = [m for m in ('torch', 'mujoco') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
