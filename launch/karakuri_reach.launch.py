# ruff: noqa: N999  (ROS 2 launch files are named NAME.launch.py by convention)
"""ROS 2 launch file: the simulated ros2_control robot and ``karakuri deploy``, together.

For people who start everything with ``ros2 launch``::

    ros2 launch launch/karakuri_reach.launch.py
    ros2 launch launch/karakuri_reach.launch.py simulate:=false launch_file:=/cell/reach.yaml

Arguments: ``launch_file`` (a Karakuri launch file with ``link: {kind: ros2}``; default
``reach_ros2.yaml`` beside this file), ``robot`` (what the simulated node runs),
``simulate`` (false on a real cell, where the robot's own ros2_control driver runs), and
``python`` (an interpreter that has Karakuri with the ``ros2`` extra; default: the one
running ``ros2 launch``).  The launch ends when ``karakuri deploy`` ends.

The ``launch`` package comes with a ROS 2 installation (it is not on PyPI); this file
imports it only inside :func:`generate_launch_description`, so the command builders below can
be used and tested without it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_LAUNCH_FILE = HERE / "reach_ros2.yaml"


def sim_command(robot: Any = "industrial_arm", python: Any = sys.executable,
                extra: Sequence[Any] = ()) -> list[Any]:
    """The simulated robot node's command line (items may be launch substitutions)."""
    return [python, "-m", "karakuri.firmware_bridge.ros2_sim", "--robot", robot, *extra]


def deploy_command(launch_file: Any = DEFAULT_LAUNCH_FILE, python: Any = sys.executable,
                   extra: Sequence[Any] = ()) -> list[Any]:
    """``karakuri deploy LAUNCH_FILE`` as a command line (items may be substitutions)."""
    return [python, "-m", "karakuri.launch.cli", "deploy", str(launch_file)
            if isinstance(launch_file, Path) else launch_file, *extra]


def generate_launch_description() -> Any:
    """The launch description ``ros2 launch`` runs: both processes, ending with deploy."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, ExecuteProcess, Shutdown
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration

    arg = LaunchConfiguration
    sim = ExecuteProcess(
        cmd=sim_command(arg("robot"), arg("python")), name="karakuri_sim_robot",
        output="screen", condition=IfCondition(arg("simulate")))
    deploy = ExecuteProcess(
        cmd=deploy_command(arg("launch_file"), arg("python")), name="karakuri_deploy",
        output="screen", emulate_tty=True, on_exit=[Shutdown(reason="karakuri deploy ended")])
    return LaunchDescription([
        DeclareLaunchArgument("launch_file", default_value=str(DEFAULT_LAUNCH_FILE),
                              description="Karakuri launch file (link kind ros2)"),
        DeclareLaunchArgument("robot", default_value="industrial_arm",
                              description="robot the simulated ros2_control node runs"),
        DeclareLaunchArgument("simulate", default_value="true",
                              description="start the simulated robot (false on a real cell)"),
        DeclareLaunchArgument("python", default_value=sys.executable,
                              description="Python with karakuri[ros2] installed"),
        sim,
        deploy,
    ])
