"""Small made-up arms for the own-robot tests: a two-joint arm with fingers after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

THIRDPARTY = Path(__file__).resolve().parents[2] / "robot" / "descriptions" / "thirdparty"
ARMS = {
    "ur5e": THIRDPARTY / "ur5e" / "ur5e.yaml",
    "gen3": THIRDPARTY / "kinova_gen3" / "gen3.yaml",
    "fr3": THIRDPARTY / "franka_fr3" / "fr3.yaml",
    "ur5e_urdf": THIRDPARTY / "ur5e_urdf" / "ur5e_urdf.yaml",
}

# {actuators} and {extra} are filled per test: the fingers are passive, tendon-driven or
# joint-driven, and may be coupled by an equality.
ARM_XML = """
<mujoco model="two_link">
  <compiler angle="radian" autolimits="true"/>
  <option integrator="implicitfast"/>
  <worldbody>
    <body name="link1" pos="0 0 0.3">
      <inertial pos="0 0 0.15" mass="2" diaginertia="0.02 0.02 0.002"/>
      <joint name="j1" axis="0 0 1" range="-3 3" armature="0.05" damping="1"/>
      <geom type="capsule" fromto="0 0 0 0 0 0.3" size="0.03" contype="0" conaffinity="0"/>
      <body name="link2" pos="0 0 0.3">
        <inertial pos="0.15 0 0" mass="1" diaginertia="0.01 0.01 0.001"/>
        <joint name="j2" axis="0 1 0" range="-2 2" armature="0.05" damping="1"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.025" contype="0" conaffinity="0"/>
        <body name="hand" pos="0.3 0 0">
          <inertial pos="0 0 0" mass="0.2" diaginertia="1e-4 1e-4 1e-4"/>
          <site name="tcp" pos="0.05 0 0"/>
          <body name="left">
            <inertial pos="0 0 0" mass="0.02" diaginertia="1e-6 1e-6 1e-6"/>
            <joint name="finger1" type="slide" axis="0 1 0" range="0 0.04" armature="0.01"/>
          </body>
          <body name="right">
            <inertial pos="0 0 0" mass="0.02" diaginertia="1e-6 1e-6 1e-6"/>
            <joint name="finger2" type="slide" axis="0 -1 0" range="0 0.04" armature="0.01"/>
          </body>
        </body>
      </body>
    </body>
  </worldbody>
  {extra}
  <actuator>
    <position name="a1" joint="j1" kp="400" kv="40" forcerange="-50 50"/>
    <position name="a2" joint="j2" kp="400" kv="40" forcerange="-50 50"/>
    {actuators}
  </actuator>
</mujoco>
"""

TENDON = """
  <tendon><fixed name="split"><joint joint="finger1" coef="0.5"/>
    <joint joint="finger2" coef="0.5"/></fixed></tendon>
  <equality><joint joint1="finger1" joint2="finger2" solref="0.005 1"/></equality>
"""
TENDON_ACT = ('<general name="grip" tendon="split" forcerange="-100 100" ctrlrange="0 255" '
              'gainprm="0.01568627451 0 0" biastype="affine" biasprm="0 -100 -10"/>')
MIRROR = '<equality><joint joint1="finger2" joint2="finger1" polycoef="0 1 0 0 0"/></equality>'


def write_arm(
    folder: Path, actuators: str = "", extra: str = "", **sidecar: Any
) -> Path:
    """Write the two-link arm and a sidecar for it; returns the sidecar path."""
    (folder / "two_link.xml").write_text(
        ARM_XML.replace("{actuators}", actuators).replace("{extra}", extra)
    )
    sc: dict[str, Any] = {
        "name": "two_link",
        "model": "two_link.xml",
        "arm_joints": ["j1", "j2"],
        "tool_site": "tcp",
        "default_pose": [0.0, 0.5],
        "velocity_limit": [2.0, 2.0],
        "accel_limit": [10.0, 10.0],
    }
    sc.update(sidecar)
    path = folder / "two_link.yaml"
    path.write_text(yaml.safe_dump(sc))
    return path
