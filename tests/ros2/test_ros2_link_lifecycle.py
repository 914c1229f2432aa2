"""Connect errors, clean shutdown, the process-mode sim, config checks, and import without rclpy."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from karakuri.firmware_bridge.ros2_config import Ros2LinkConfig
from karakuri.robot.link import Link, LinkError, NotConnectedError
from karakuri.robot.registry import load_robot

pytestmark = [pytest.mark.ros2, pytest.mark.filterwarnings("ignore::DeprecationWarning:lark")]


@pytest.fixture(scope="module")
def spec():
    return load_robot("industrial_arm")


def _ros_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ros2:")]


def test_clean_shutdown(make_sim, make_link):
    sim = make_sim()
    link = make_link(sim.spec)
    assert isinstance(link, Link) and link.is_connected
    context = link._node.context
    t0 = time.monotonic()
    link.close()
    assert time.monotonic() - t0 < 1.0
    assert not context.ok() and not link.is_connected
    link.close()  # twice is fine
    with pytest.raises(NotConnectedError, match="connect"):
        link.latest_state()
    with pytest.raises(NotConnectedError):
        link.send_command(np.zeros(sim.spec.n_joints))
    link.connect()  # reconnects after a close, with fresh state
    assert link.is_connected
    link.close()
    sim.close()
    assert _ros_threads() == []


def test_no_joint_states_is_a_clear_error(spec, make_link):
    t0 = time.monotonic()
    with pytest.raises(LinkError, match=r"no JointState on /kt\d+_\d+/joint_states within 0.5 s"):
        make_link(spec, connect_timeout_s=0.5)
    assert time.monotonic() - t0 < 3.0
    assert _ros_threads() == []  # a failed connect cleans up after itself


def test_inactive_controller_is_a_clear_error(spec, make_sim, make_link):
    make_sim(controller_type="joint_trajectory_controller")  # forward controller not there
    with pytest.raises(LinkError, match=r"forward_position_controller/commands.*list_controllers"):
        make_link(spec, connect_timeout_s=1.0)


def test_config_checks_name_the_bad_value():
    with pytest.raises(ValueError, match=r"allowed.*joint_trajectory_controller"):
        Ros2LinkConfig(controller_type="position_controller")
    with pytest.raises(ValueError, match="best_effort"):
        Ros2LinkConfig(state_qos_reliability="fast")
    with pytest.raises(ValueError, match="stale_after_s"):
        Ros2LinkConfig(stale_after_s=0)
    with pytest.raises(ValueError, match="namespace"):
        Ros2LinkConfig(namespace="arm1")
    with pytest.raises(ValueError, match=r"launch/x\.yaml: unknown key 'controller'"):
        Ros2LinkConfig.from_mapping({"controller": "x"}, where="launch/x.yaml")
    cfg = Ros2LinkConfig.from_mapping({"controller_type": "joint_trajectory_controller",
                                       "command_joints": ["a", "b"]})
    assert cfg.controller_name == "joint_trajectory_controller"
    assert cfg.command_joints == ("a", "b")


def test_command_joints_must_be_the_robots(spec):
    from karakuri.firmware_bridge.ros2_link import Ros2Link

    with pytest.raises(ValueError, match="command_joints"):
        Ros2Link(spec, Ros2LinkConfig(command_joints=("elbow",)))


_NO_RCLPY = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "rclpy" or name.startswith("rclpy."):
            raise ImportError("No module named 'rclpy'", name="rclpy")
sys.meta_path.insert(0, Block())
from karakuri.firmware_bridge.ros2_config import Ros2LinkConfig  # no rclpy needed
Ros2LinkConfig()
try:
    import karakuri.firmware_bridge.ros2_link
except ImportError as e:
    print("IMPORT-ERROR:", e)
"""


def test_import_without_rclpy_says_install_the_extra():
    out = subprocess.run([sys.executable, "-c", _NO_RCLPY], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "IMPORT-ERROR:" in out.stdout and "karakuri[ros2]" in out.stdout
    assert "rclpy" in out.stdout


def test_link_imports_neither_torch_nor_mujoco():
    code = ("import sys, karakuri.firmware_bridge.ros2_link; "
            "print(sorted(m for m in ('torch', 'mujoco') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # the edge box runs the ROS 2 link without them
