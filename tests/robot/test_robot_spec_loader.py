"""RobotSpec and the MJCF/URDF + sidecar loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from karakuri.robot.registry import ROBOTS, load_robot
from karakuri.robot.spec import RobotSpec, RobotSpecError

ARM_SIDECAR = ROBOTS["industrial_arm"]


@pytest.mark.parametrize("name", sorted(ROBOTS))
def test_every_registered_robot_loads_consistently(name: str) -> None:
    spec = load_robot(name)
    assert spec.name == name
    assert spec.n_joints == len(spec.arm_joints) + len(spec.gripper_joints)
    assert np.all(spec.lower < spec.upper)
    assert np.all((spec.default_pose >= spec.lower) & (spec.default_pose <= spec.upper))
    assert np.all(spec.kp > 0) and np.all(spec.effort_limit > 0)
    assert RobotSpec.from_dict(spec.to_dict(), spec.model_path) == spec


def test_industrial_arm_matches_its_datasheet() -> None:
    spec = load_robot("industrial_arm")
    assert spec.arm_joints == (
        "shoulder_pan",
        "shoulder_lift",
        "elbow",
        "wrist_1",
        "wrist_2",
        "wrist_3",
    )
    assert spec.gripper_joints == ("finger_left",)
    assert spec.tool_site == "tool"
    np.testing.assert_allclose(spec.effort_limit[:6], [150, 150, 150, 28, 28, 28])
    # sidecar limits tighten the MJCF's +-2 pi
    assert spec.upper[1] == 0.0 and spec.lower[2] == pytest.approx(-2.8)


def test_home_pose_puts_tool_in_front_pointing_down() -> None:
    import mujoco

    spec = load_robot("industrial_arm")
    m = mujoco.MjModel.from_xml_path(spec.model_path)
    d = mujoco.MjData(m)
    for i, j in enumerate(spec.joint_names):
        d.qpos[m.jnt_qposadr[m.joint(j).id]] = spec.default_pose[i]
    mujoco.mj_forward(m, d)
    tool = d.site(spec.tool_site)
    assert 0.4 < tool.xpos[0] < 0.6 and 0.2 < tool.xpos[2] < 0.5
    np.testing.assert_allclose(tool.xmat.reshape(3, 3)[:, 2], [0, 0, -1], atol=1e-3)


def test_unknown_robot_lists_valid_names() -> None:
    with pytest.raises(RobotSpecError, match="unknown robot 'nope'.*industrial_arm"):
        load_robot("nope")


def _write_sidecar(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(ARM_SIDECAR.read_text())
    data["model"] = str(ARM_SIDECAR.parent / data["model"])
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_sidecar_naming_a_missing_joint_lists_the_models_joints(tmp_path: Path) -> None:
    path = _write_sidecar(
        tmp_path, arm_joints=["shoulder_pan", "joint_x", "elbow", "wrist_1", "wrist_2", "wrist_3"]
    )
    with pytest.raises(
        RobotSpecError, match=r"joint 'joint_x' is not in .*its joints: \[.*'shoulder_lift'"
    ):
        load_robot(path)


def test_sidecar_naming_a_missing_site_lists_the_sites(tmp_path: Path) -> None:
    with pytest.raises(RobotSpecError, match=r"site 'tcp' is not in .*its sites: \['tool'\]"):
        load_robot(_write_sidecar(tmp_path, tool_site="tcp"))


def test_sidecar_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(RobotSpecError, match="unknown key 'colour'"):
        load_robot(_write_sidecar(tmp_path, colour="red"))


def test_sidecar_missing_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(RobotSpecError, match="missing required key 'velocity_limit'"):
        load_robot(_write_sidecar(tmp_path, velocity_limit=None))


def test_sidecar_wrong_length_is_named(tmp_path: Path) -> None:
    with pytest.raises(RobotSpecError, match="'accel_limit' has 2 values, expected 7"):
        load_robot(_write_sidecar(tmp_path, accel_limit=[1.0, 2.0]))


def test_sidecar_limits_may_only_tighten(tmp_path: Path) -> None:
    with pytest.raises(RobotSpecError, match="wider than the model"):
        load_robot(_write_sidecar(tmp_path, position_limits={"elbow": [-4.0, 4.0]}))


def test_default_pose_outside_limits_is_an_error(tmp_path: Path) -> None:
    pose = [0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0, 0.5]
    with pytest.raises(RobotSpecError, match="default pose of 'finger_left'"):
        load_robot(_write_sidecar(tmp_path, default_pose=pose))


URDF = """<?xml version="1.0"?>
<robot name="two_link">
  <link name="base"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="l1"><inertial><origin xyz="0 0 0.2"/><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="l2"><inertial><origin xyz="0 0 0.2"/><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/><axis xyz="0 1 0"/>
    <limit lower="-2" upper="2" effort="50" velocity="2"/></joint>
  <joint name="j2" type="revolute"><parent link="l1"/><child link="l2"/><origin xyz="0 0 0.4"/>
    <axis xyz="0 1 0"/><limit lower="-2.5" upper="2.5" effort="20" velocity="3"/></joint>
</robot>
"""


def test_urdf_plus_sidecar_gets_actuators_from_the_sidecar(tmp_path: Path) -> None:
    (tmp_path / "two_link.urdf").write_text(URDF)
    (tmp_path / "two_link.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "two_link",
                "model": "two_link.urdf",
                "arm_joints": ["j1", "j2"],
                "default_pose": [0.0, 0.5],
                "velocity_limit": [2.0, 3.0],
                "accel_limit": [10.0, 10.0],
                "effort_limit": [50.0, 20.0],
                "kp": [300.0, 100.0],
                "kd": [30.0, 10.0],
            }
        )
    )
    spec = load_robot(tmp_path / "two_link.yaml")
    np.testing.assert_allclose(spec.lower, [-2, -2.5])
    np.testing.assert_allclose(spec.kp, [300, 100])
    np.testing.assert_allclose(spec.effort_limit, [50, 20])


def test_urdf_without_gains_says_which_key_is_needed(tmp_path: Path) -> None:
    (tmp_path / "two_link.urdf").write_text(URDF)
    (tmp_path / "two_link.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "two_link",
                "model": "two_link.urdf",
                "arm_joints": ["j1", "j2"],
                "default_pose": [0.0, 0.5],
                "velocity_limit": [2.0, 3.0],
                "accel_limit": [10.0, 10.0],
            }
        )
    )
    with pytest.raises(RobotSpecError, match="joint .j1. has no actuator in the model .a URDF has none.; give kp, kd, effort_limit"):
        load_robot(tmp_path / "two_link.yaml")


def test_spec_rejects_inconsistent_arrays() -> None:
    d = load_robot("industrial_arm").to_dict()
    d["kp"] = d["kp"][:3]
    with pytest.raises(RobotSpecError, match=r"kp has shape \(3,\), expected \(7,\)"):
        RobotSpec.from_dict(d)
