"""The ROS 2 link's configuration: plain Python, importable without rclpy.

A launch-file schema can embed :class:`Ros2LinkConfig` and check a ``kind: ros2`` link section
on a machine without ROS 2; only :mod:`karakuri.firmware_bridge.ros2_link` needs rclpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Literal

ControllerType = Literal["forward_command_controller", "joint_trajectory_controller"]
CONTROLLER_TYPES: tuple[str, ...] = ("forward_command_controller", "joint_trajectory_controller")
# ros2_control's usual controller names for each type.
DEFAULT_CONTROLLER_NAME = {
    "forward_command_controller": "forward_position_controller",
    "joint_trajectory_controller": "joint_trajectory_controller",
}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def command_topic(controller_type: str, controller_name: str) -> str:
    """The topic a ros2_control controller of this type listens on (relative to the namespace)."""
    suffix = "commands" if controller_type == "forward_command_controller" else "joint_trajectory"
    return f"{controller_name}/{suffix}"


def resolve_controller(cfg: Any) -> None:
    """Check ``cfg.controller_type`` and fill the controller defaults, in place.

    Shared by the link's and the simulated robot's configs (frozen dataclasses with
    ``controller_type``, ``controller_name`` and ``command_joints``).

    Raises:
        ValueError: an unknown controller type, naming the allowed ones.
    """
    if cfg.controller_type not in CONTROLLER_TYPES:
        raise ValueError(f"controller_type {cfg.controller_type!r}; allowed: "
                         f"{list(CONTROLLER_TYPES)}")
    if not cfg.controller_name:
        object.__setattr__(cfg, "controller_name", DEFAULT_CONTROLLER_NAME[cfg.controller_type])
    object.__setattr__(cfg, "command_joints", tuple(cfg.command_joints))


@dataclass(frozen=True)
class Ros2LinkConfig:
    """How to reach a ros2_control robot; the ``link:`` section of a launch file (kind ros2).

    Attributes:
        controller_type: ``forward_command_controller`` or ``joint_trajectory_controller``.
        controller_name: The controller's name; empty = ros2_control's usual one for the type
            (``forward_position_controller`` or ``joint_trajectory_controller``).
        joint_states_topic: The JointState topic; relative names resolve in ``namespace``.
        joint_prefix: Prepended to the robot's joint names to get the names on the ROS side.
        command_joints: The controller's configured joint order (its ``joints`` parameter,
            without prefix); empty = the robot spec's order.
        state_qos_depth: History depth of the JointState subscription.
        state_qos_reliability: ``best_effort`` (sensor-data default) or ``reliable``.
        command_qos_depth: History depth of the command publisher.
        command_qos_reliability: ``reliable`` (matches ros2_control's subscribers) or
            ``best_effort``.
        stale_after_s: A state older than this (judged from its header stamp) is stale, s.
        use_header_stamp: Judge age from ``header.stamp``; false = from the receive time.
        connect_timeout_s: How long connect waits for joint states and the controller, s.
        require_command_subscriber: Fail connect when nobody subscribes to the command topic.
        node_name: The link's ROS node name.
        namespace: The ROS namespace of the node (and so of relative topics), e.g. ``/arm1``.
        domain_id: ROS domain id; None = from ``ROS_DOMAIN_ID`` (default 0).
    """

    controller_type: ControllerType = "forward_command_controller"
    controller_name: str = ""
    joint_states_topic: str = "joint_states"
    joint_prefix: str = ""
    command_joints: tuple[str, ...] = ()
    state_qos_depth: int = 5
    state_qos_reliability: Literal["best_effort", "reliable"] = "best_effort"
    command_qos_depth: int = 1
    command_qos_reliability: Literal["best_effort", "reliable"] = "reliable"
    stale_after_s: float = 0.1
    use_header_stamp: bool = True
    connect_timeout_s: float = 10.0
    require_command_subscriber: bool = True
    node_name: str = "karakuri_link"
    namespace: str = ""
    domain_id: int | None = None

    def __post_init__(self) -> None:
        resolve_controller(self)
        for name in ("state_qos_reliability", "command_qos_reliability"):
            if getattr(self, name) not in ("best_effort", "reliable"):
                raise ValueError(f"{name} {getattr(self, name)!r}; allowed: "
                                 "['best_effort', 'reliable']")
        for name in ("state_qos_depth", "command_qos_depth"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("stale_after_s", "connect_timeout_s"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0 s, got {getattr(self, name)}")
        for name in ("node_name", "controller_name"):
            if not _NAME_RE.match(getattr(self, name)):
                raise ValueError(f"{name} {getattr(self, name)!r} is not a valid ROS name "
                                 "(letters, digits, underscores; not starting with a digit)")
        if self.namespace and not self.namespace.startswith("/"):
            raise ValueError(f"namespace {self.namespace!r} must start with '/'")
        if self.domain_id is not None and not 0 <= int(self.domain_id) <= 232:
            raise ValueError(f"domain_id {self.domain_id} is outside 0..232")

    @property
    def command_topic(self) -> str:
        """The controller's command topic, relative to ``namespace``."""
        return command_topic(self.controller_type, self.controller_name)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str = "link") -> Ros2LinkConfig:
        """Build from a launch file's mapping; an unknown key is an error naming it and where."""
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r} for a ros2 link; "
                             f"allowed: {allowed}")
        return cls(**data)
