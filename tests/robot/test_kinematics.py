"""Numpy forward kinematics against MuJoCo: every shipped robot and a URDF, random poses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest

from karakuri.robot.kinematics import KinematicChain, KinematicsError, chain_from_model
from karakuri.robot.loader import load_model, spec_from_files
from karakuri.robot.registry import load_robot
from karakuri.robot.spec import RobotSpec, RobotSpecError

DESCRIPTIONS = Path(__file__).resolve().parents[2] / "robot" / "descriptions"
#: Every sidecar we ship: our arms, and the third-party MJCFs and URDF (with a tool_frame).
SHIPPED = sorted(str(p.relative_to(DESCRIPTIONS)) for p in DESCRIPTIONS.rglob("*.yaml"))

# A 4-joint URDF with rotated joint frames (rpy), a tilted axis, a prismatic joint and an offset.
URDF = """<?xml version="1.0"?>
<robot name="bent">
  <link name="base"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01"
    ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="l1"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01"
    ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="l2"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01"
    ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="l3"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01"
    ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="l4"><inertial origin="0.1 0 0" rpy="0 0 0"><mass value="0.5"/>
    <inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/>
    <origin xyz="0 0 0.3" rpy="0 0 0.3"/><axis xyz="0 0 1"/>
    <limit lower="-3" upper="3" effort="10" velocity="2"/></joint>
  <joint name="j2" type="revolute"><parent link="l1"/><child link="l2"/>
    <origin xyz="0.05 0.1 0.2" rpy="1.2 -0.4 0.2"/><axis xyz="0 0.6 0.8"/>
    <limit lower="-2" upper="2" effort="10" velocity="2"/></joint>
  <joint name="j3" type="prismatic"><parent link="l2"/><child link="l3"/>
    <origin xyz="0 0 0.25" rpy="0 0.5 0"/><axis xyz="1 0 0"/>
    <limit lower="0" upper="0.2" effort="10" velocity="1"/></joint>
  <joint name="j4" type="revolute"><parent link="l3"/><child link="l4"/>
    <origin xyz="0.3 0 0" rpy="0 0 -0.7"/><axis xyz="1 0 0"/>
    <limit lower="-3" upper="3" effort="10" velocity="2"/></joint>
</robot>
"""


def _compare(model: mujoco.MjModel, chain: KinematicChain, joints: list[str], lower: np.ndarray,
             upper: np.ndarray, site: int = -1, body: int = -1, n: int = 200) -> float:
    data = mujoco.MjData(model)
    adr = [int(model.joint(j).qposadr[0]) for j in joints]
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(n):
        q = rng.uniform(lower, upper)
        data.qpos[adr] = q
        mujoco.mj_kinematics(model, data)
        ref = data.site_xpos[site] if site >= 0 else data.xpos[body]
        worst = max(worst, float(np.abs(chain.tool_position(q) - ref).max()))
    return worst


@pytest.mark.parametrize("robot", SHIPPED)
def test_numpy_fk_matches_mujoco_on_random_poses(robot: str) -> None:
    spec = spec_from_files(DESCRIPTIONS / robot)
    assert spec.kinematics is not None, f"{robot}: the loader built no chain"
    model = load_model(spec.model_path)
    err = _compare(model, spec.kinematics, list(spec.joint_names), spec.lower, spec.upper,
                   site=model.site(spec.tool_site).id)
    assert err < 1e-6


@pytest.mark.parametrize("robot", SHIPPED)
def test_jacobian_matches_mujoco(robot: str) -> None:
    spec = spec_from_files(DESCRIPTIONS / robot)
    model = load_model(spec.model_path)
    data = mujoco.MjData(model)
    adr = [int(model.joint(j).qposadr[0]) for j in spec.joint_names]
    dof = [int(model.joint(j).dofadr[0]) for j in spec.joint_names]
    site = model.site(spec.tool_site).id
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.uniform(spec.lower, spec.upper)
        data.qpos[adr] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        jp, jr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        mujoco.mj_jacSite(model, data, jp, jr, site)
        np.testing.assert_allclose(spec.kinematics.jacobian(q), np.vstack([jp, jr])[:, dof],
                                   atol=1e-9)


def test_urdf_chain_matches_mujoco(tmp_path: Path) -> None:
    (tmp_path / "bent.urdf").write_text(URDF)
    model = mujoco.MjModel.from_xml_path(str(tmp_path / "bent.urdf"))
    joints = ["j1", "j2", "j3", "j4"]
    chain = chain_from_model(model, joints, tool_body="l4")
    err = _compare(model, chain, joints, np.array([-3, -2, 0, -3]), np.array([3, 2, 0.2, 3]),
                   body=model.body("l4").id)
    assert err < 1e-6
    moved = chain.tool_position(np.array([0.0, 0.0, 0.1, 0.0]))
    assert not np.allclose(moved, chain.tool_position(np.zeros(4)))  # the slide moves the tool


def test_chain_travels_in_the_spec_dict_and_json() -> None:
    spec = load_robot("care_arm")
    back = RobotSpec.from_dict(json.loads(spec.to_json()))
    q = np.random.default_rng(2).uniform(spec.lower, spec.upper)
    assert back.kinematics is not None
    np.testing.assert_array_equal(back.kinematics.tool_position(q), spec.kinematics.tool_position(q))
    assert back == spec


def test_garbled_chain_in_a_spec_dict_is_named() -> None:
    d = load_robot("care_arm").to_dict()
    d["kinematics"]["bodies"][1]["joints"][0]["axis"] = [0, 0]
    with pytest.raises(RobotSpecError, match="kinematics: expected 3 finite numbers"):
        RobotSpec.from_dict(d)
    d = load_robot("care_arm").to_dict()
    d["kinematics"]["n_joints"] = 3
    with pytest.raises(RobotSpecError, match="kinematics"):
        RobotSpec.from_dict(d)


def test_a_passive_joint_on_the_path_is_refused() -> None:
    spec = load_robot("care_arm")
    model = load_model(spec.model_path)
    with pytest.raises(KinematicsError, match="'elbow' moves the tool 'tool' but is not commanded"):
        chain_from_model(model, [j for j in spec.joint_names if j != "elbow"], tool_site="tool")
    with pytest.raises(KinematicsError, match="no site 'nope'"):
        chain_from_model(model, spec.joint_names, tool_site="nope")


def test_wrong_length_joint_vector_is_named() -> None:
    with pytest.raises(KinematicsError, match="needs 7 joint values"):
        load_robot("care_arm").kinematics.tool_position(np.zeros(6))


def test_kinematics_imports_no_mujoco() -> None:
    code = ("import sys, json; import karakuri.robot.kinematics, karakuri.robot.spec, "
            "karakuri.robot.dynamics, karakuri.robot.care_safety; "
            "print(json.dumps(sorted(m for m in ('mujoco', 'torch') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
