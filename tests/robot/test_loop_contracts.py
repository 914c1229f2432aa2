"""The contracts robot/ owns are the ones its implementers satisfy (structurally, no import up)."""

import subprocess
import sys

import numpy as np

from karakuri.robot.link import JointState, Link, StatusBits
from karakuri.robot.policy import DescribedPolicy, Policy, PolicyError, PolicyInfo


def test_policy_metadata_is_the_policy_info_deploy_reads():
    from karakuri.policies.metadata import PolicyMetadata

    meta = PolicyMetadata(robot_name="toy", joint_names=("a",), lower=(-1.0,), upper=(1.0,),
                          control_rate_hz=50.0, action_type="joint_position",
                          inputs={"joint_pos": {"shape": ["B", 1], "unit": "rad"},
                                  "last_action": {"shape": ["B", 1], "unit": ""}},
                          robot_spec={"joint_names": ["a"]}, task="reach")
    assert isinstance(meta, PolicyInfo)


def test_onnx_policy_implements_the_policy_contract():
    from karakuri.policies.onnx_policy import OnnxPolicy

    for member in ("act", "reset"):
        assert callable(getattr(OnnxPolicy, member))
    assert issubclass(PolicyError, ValueError)
    assert {"input_names", "act", "reset"} <= set(dir(Policy)) | set(Policy.__annotations__)
    assert "metadata" in DescribedPolicy.__annotations__


def test_serial_link_is_a_link():
    from karakuri.firmware_bridge.serial_link import SerialLink

    members = ("connect", "close", "is_connected", "latest_state", "send_command", "estop",
               "rearm", "faults", "counters")
    assert all(hasattr(SerialLink, m) for m in members)
    assert all(hasattr(Link, m) for m in members)


def test_joint_state_defaults():
    s = JointState(np.zeros(2), np.zeros(2), np.zeros(2), 1.5)
    assert s.status == StatusBits.NONE and s.seq == 0 and s.device_time_us == 0


def test_the_contracts_import_with_numpy_only():
    script = ("import sys\n"
              "import karakuri.robot.link, karakuri.robot.policy, karakuri.robot.loop_clock\n"
              "import karakuri.robot.control_loop\n"
              "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
              "('torch', 'mujoco', 'onnxruntime') or m.startswith(('karakuri.sim', "
              "'karakuri.policies', 'karakuri.firmware_bridge', 'karakuri.launch')))\n"
              "print(bad or 'ok')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
