"""A simulated ros2_control robot: a robot's MuJoCo model behind ros2_control's topics.

It publishes ``sensor_msgs/JointState`` on ``joint_states`` like a joint_state_broadcaster
(header stamps = the sample's wall time) and obeys the command topic of one active controller:

- ``forward_command_controller``: ``std_msgs/Float64MultiArray`` on ``<name>/commands``, one
  value per joint in the controller's configured joint order; a message of the wrong length
  is rejected and logged as the real controller does, and the previous command stays.
- ``joint_trajectory_controller``: ``trajectory_msgs/JointTrajectory`` on
  ``<name>/joint_trajectory``; joints matched by name, positions interpolated linearly from
  the current reference (as the real controller does for position-only points); a new
  trajectory replaces the old one; an empty one holds the current position.

Unlike real hardware drivers, the simulated hardware refuses non-finite targets (counted).
Run it in a thread for tests (:class:`Ros2SimRobot`) or as a process::

    python -m karakuri.firmware_bridge.ros2_sim --robot industrial_arm
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from karakuri.firmware_bridge.mujoco_plant import MujocoPlant
from karakuri.firmware_bridge.ros2_config import (
    CONTROLLER_TYPES,
    ControllerType,
    command_topic,
    resolve_controller,
)
from karakuri.firmware_bridge.ros2_node import NodeThread, make_qos, stamp_ns, time_msg
from karakuri.robot.dataclass_cli import add_dataclass_args, dataclass_from_args
from karakuri.robot.registry import load_robot

try:
    from sensor_msgs.msg import JointState as JointStateMsg
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory
except ImportError as e:
    raise ImportError(f"the ROS 2 simulated robot needs {e.name!r}; install the ros2 extra: "
                      "pip install 'karakuri[ros2]'") from e

log = logging.getLogger(__name__)
_MAX_CATCHUP_S = 0.1  # further behind than this, the sim skips ahead instead of racing


@dataclass(frozen=True)
class Ros2SimConfig:
    """What the simulated ros2_control robot is and how it talks.

    Attributes:
        robot: Registry name or sidecar path of the robot to simulate.
        controller_type: The active controller: forward_command_controller or
            joint_trajectory_controller.
        controller_name: The controller's name; empty = ros2_control's usual one for the type.
        command_joints: The controller's configured joint order (no prefix); empty = the
            spec's order.
        joint_prefix: Prepended to the robot's joint names on the ROS side.
        joint_states_topic: Where joint states are published (relative to namespace).
        state_rate_hz: Joint state publish rate, which is also the physics catch-up rate, Hz.
        state_qos_reliability: reliable (joint_state_broadcaster's default) or best_effort.
        scramble_seed: -1 = publish joints in the spec's order; otherwise in a fixed
            permutation drawn from this seed (for tests of name matching).
        hold_on_timeout_s: 0 = keep the last command forever (as ros2_control does);
            > 0 = hold the measured pose after this long without a command, s.
        node_name: ROS node name.
        namespace: ROS namespace, e.g. /arm1; empty = root.
        domain_id: ROS domain id; None = from ROS_DOMAIN_ID.
    """

    robot: str = "industrial_arm"
    controller_type: ControllerType = "forward_command_controller"
    controller_name: str = ""
    command_joints: tuple[str, ...] = ()
    joint_prefix: str = ""
    joint_states_topic: str = "joint_states"
    state_rate_hz: float = 250.0
    state_qos_reliability: str = "reliable"
    scramble_seed: int = -1
    hold_on_timeout_s: float = 0.0
    node_name: str = "karakuri_sim_robot"
    namespace: str = ""
    domain_id: int | None = None

    def __post_init__(self) -> None:
        resolve_controller(self)
        if not 1.0 <= self.state_rate_hz <= 2000.0:
            raise ValueError(f"state_rate_hz {self.state_rate_hz} is outside [1, 2000]")
        if self.state_qos_reliability not in ("reliable", "best_effort"):
            raise ValueError(f"state_qos_reliability {self.state_qos_reliability!r}; allowed: "
                             "['reliable', 'best_effort']")
        if self.hold_on_timeout_s < 0:
            raise ValueError(f"hold_on_timeout_s must be >= 0, got {self.hold_on_timeout_s}")


@dataclass
class SimFaults:
    """Faults the simulated robot injects into its joint states (tests set these live).

    Attributes:
        pause: Publish nothing while true (a stalled driver).
        nan_joint: Publish NaN as this joint's position (no prefix); empty = none.
        omit_joints: Leave these joints (no prefix) out of every message.
        stamp_offset_s: Added to every header stamp, s (negative = old samples).
    """

    pause: bool = False
    nan_joint: str = ""
    omit_joints: tuple[str, ...] = ()
    stamp_offset_s: float = 0.0


class Ros2SimRobot:
    """The robot's MuJoCo model in real time behind ros2_control topics, in its own thread.

    Args:
        config: What to simulate and how it talks.
        faults: Faults to inject into joint states; changeable while running.

    Example::

        with Ros2SimRobot(Ros2SimConfig(domain_id=42)) as sim:
            ...  # a link in the same process (or another) on domain 42 drives it
            q = sim.measured_q()
    """

    def __init__(self, config: Ros2SimConfig | None = None,
                 faults: SimFaults | None = None) -> None:
        self.config = cfg = config or Ros2SimConfig()
        self.faults = faults or SimFaults()
        self.spec = spec = load_robot(cfg.robot)
        self.plant = MujocoPlant(spec)
        n = spec.n_joints
        order = cfg.command_joints or spec.joint_names
        if sorted(order) != sorted(spec.joint_names):
            raise ValueError(f"command_joints {list(order)} must be a permutation of "
                             f"{list(spec.joint_names)}")
        self._cmd_to_spec = np.array([spec.index(j) for j in order])
        perm = np.arange(n) if cfg.scramble_seed < 0 \
            else np.random.default_rng(cfg.scramble_seed).permutation(n)
        self.publish_order = tuple(spec.joint_names[i] for i in perm)
        self._target = np.array(spec.default_pose, dtype=np.float64)
        self._traj: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._last_cmd: float | None = None
        self._holding = False
        self._q = np.array(self._target)
        self.stats: dict[str, int] = dict.fromkeys(
            ("states_published", "commands_applied", "rejected_size", "rejected_nonfinite",
             "rejected_trajectory", "holds", "overruns"), 0)
        self._node: NodeThread | None = None
        self._reset_physics()

    def _reset_physics(self) -> None:
        self.plant.reset(self._target, settle_s=0.2)  # settle coupled joints
        self._sample()

    def _sample(self) -> None:
        self._q, self._dq, self._effort = self.plant.sample()
        self._tool = self.plant.tool_position() if self.plant.site >= 0 else np.zeros(3)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Ros2SimRobot:
        """Start the node and its real-time physics in a background thread."""
        if self._node is not None:
            return self
        cfg = self.config
        node = self._node = NodeThread(cfg.node_name, cfg.namespace, cfg.domain_id)
        n = node.node
        self._pub = n.create_publisher(JointStateMsg, cfg.joint_states_topic,
                                       make_qos(10, cfg.state_qos_reliability))
        topic = command_topic(cfg.controller_type, cfg.controller_name)
        if cfg.controller_type == CONTROLLER_TYPES[0]:
            msg_type, callback = Float64MultiArray, self._on_forward
        else:
            msg_type, callback = JointTrajectory, self._on_trajectory
        n.create_subscription(msg_type, topic, callback, make_qos(10, "reliable"))
        self.command_topic = n.resolve_topic_name(topic)
        self.joint_states_topic = n.resolve_topic_name(cfg.joint_states_topic)
        self._t0 = time.monotonic()
        self._steps = 0
        n.create_timer(1.0 / cfg.state_rate_hz, self._tick)
        node.start()
        return self

    def close(self) -> None:
        """Stop the thread and the node; idempotent."""
        node, self._node = self._node, None
        if node is not None:
            node.close()

    def __enter__(self) -> Ros2SimRobot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def domain_id(self) -> int | None:
        """The ROS domain id in use while running, else None."""
        return None if self._node is None else self._node.domain_id

    def measured_q(self) -> np.ndarray:
        """Measured joint positions in the spec's order, rad (m for the gripper)."""
        return self._q.copy()

    def tool_position(self) -> np.ndarray:
        """Tool centre point (the spec's tool site), m, base frame. Shape: (3,)."""
        return self._tool.copy()

    def target_q(self) -> np.ndarray:
        """The position targets the simulated hardware is tracking, spec order."""
        return self._target.copy()

    # ---------------------------------------------------------------- commands
    def _command_received(self) -> None:
        self._last_cmd = time.monotonic()
        self._holding = False
        self.stats["commands_applied"] += 1

    def _on_forward(self, msg: Float64MultiArray) -> None:
        data = np.asarray(msg.data, dtype=np.float64)
        n = self.spec.n_joints
        if data.size != n:
            self.stats["rejected_size"] += 1
            self._node.node.get_logger().error(  # type: ignore[union-attr]
                f"command size ({data.size}) does not match number of interfaces ({n})",
                throttle_duration_sec=1.0)
            return
        if not np.all(np.isfinite(data)):
            self.stats["rejected_nonfinite"] += 1
            self._node.node.get_logger().error(  # type: ignore[union-attr]
                "simulated hardware refused non-finite command", throttle_duration_sec=1.0)
            return
        self._traj = None
        self._target[self._cmd_to_spec] = data
        self._command_received()

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        err = self._check_trajectory(msg)
        if err:
            self.stats["rejected_trajectory"] += 1
            self._node.node.get_logger().error(  # type: ignore[union-attr]
                f"rejected trajectory: {err}", throttle_duration_sec=1.0)
            return
        if not msg.points:  # an empty trajectory stops motion: hold where we are
            self._traj = None
            self._target = self._q.copy()
            self._command_received()
            return
        pre = self.config.joint_prefix
        idx = np.array([self.spec.index(j[len(pre):]) for j in msg.joint_names])
        times = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
                          for p in msg.points])
        points = np.empty((len(msg.points), self.spec.n_joints))
        for k, p in enumerate(msg.points):
            points[k, idx] = p.positions
        ns = stamp_ns(msg.header.stamp)
        start = time.monotonic() - (time.time_ns() - ns) * 1e-9 if ns else time.monotonic()
        self._traj = (start, self._target.copy(), times, points)
        self._command_received()

    def _check_trajectory(self, msg: JointTrajectory) -> str:
        pre, names = self.config.joint_prefix, list(msg.joint_names)
        want = sorted(pre + j for j in self.spec.joint_names)
        if sorted(names) != want:
            return f"joints {names} do not match the controller's joints {want}"
        last = 0.0
        for k, p in enumerate(msg.points):
            t = p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
            if len(p.positions) != len(names):
                return f"point {k} has {len(p.positions)} positions for {len(names)} joints"
            if not np.all(np.isfinite(p.positions)):
                return f"point {k} has non-finite positions"
            if (t <= last and k > 0) or t < 0:
                return f"time_from_start of point {k} ({t} s) is not increasing"
            last = t
        return ""

    def _reference(self, now: float) -> None:
        start, q0, times, points = self._traj  # type: ignore[misc]
        t = now - start
        if t <= 0:
            return
        k = int(np.searchsorted(times, t))
        if k >= len(times):
            self._target = points[-1].copy()
            self._traj = None
            return
        t_prev, q_prev = (0.0, q0) if k == 0 else (times[k - 1], points[k - 1])
        a = (t - t_prev) / max(times[k] - t_prev, 1e-9)
        self._target = q_prev + a * (points[k] - q_prev)

    # ---------------------------------------------------------------- physics + state
    def _tick(self) -> None:
        dt = self.plant.dt
        now = time.monotonic()
        due = int((now - self._t0) / dt)
        if due - self._steps > _MAX_CATCHUP_S / dt:
            self.stats["overruns"] += 1
            self._steps = due - 1
        timeout = self.config.hold_on_timeout_s
        if timeout and self._last_cmd is not None and not self._holding \
                and now - self._last_cmd > timeout:
            self._holding, self._traj = True, None
            self._target = self._q.copy()
            self.stats["holds"] += 1
            self._node.node.get_logger().warning(  # type: ignore[union-attr]
                f"no command for {timeout} s: holding the measured pose")
        while self._steps < due:
            self._steps += 1
            if self._traj is not None:
                self._reference(self._t0 + self._steps * dt)
            self.plant.step(self._target)
        self._sample()
        self._publish_state()

    def _publish_state(self) -> None:
        f = self.faults
        if f.pause:
            return
        spec, pre = self.spec, self.config.joint_prefix
        names = [j for j in self.publish_order if j not in f.omit_joints]
        idx = [spec.index(j) for j in names]
        q = self._q[idx]
        if f.nan_joint in names:
            q[names.index(f.nan_joint)] = np.nan
        msg = JointStateMsg()
        msg.header.stamp = time_msg(time.time_ns() + int(f.stamp_offset_s * 1e9))
        msg.name = [pre + j for j in names]
        msg.position = q.tolist()
        msg.velocity = self._dq[idx].tolist()
        msg.effort = self._effort[idx].tolist()
        self._pub.publish(msg)
        self.stats["states_published"] += 1


def main(argv: list[str] | None = None) -> int:
    """``python -m karakuri.firmware_bridge.ros2_sim``: run the simulated robot until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m karakuri.firmware_bridge.ros2_sim",
        description="A simulated ros2_control robot (MuJoCo) on ROS 2 topics.")
    add_dataclass_args(parser, Ros2SimConfig)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sim = Ros2SimRobot(dataclass_from_args(Ros2SimConfig, args))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sim.start()
    cfg = sim.config
    print(f"ros2_sim: {cfg.robot} on domain {sim.domain_id}: "
          f"{sim.joint_states_topic} at {cfg.state_rate_hz:g} Hz, {cfg.controller_type} on "
          f"{sim.command_topic}", flush=True)
    try:
        stop.wait()
    finally:
        sim.close()
        summary: dict[str, Any] = dict(sim.stats)
        q = " ".join(f"{v:.4f}" for v in sim.measured_q())
        print(f"ros2_sim: stopped; {summary}\nros2_sim: final q [{q}]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
