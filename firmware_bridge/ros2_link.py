"""ROS 2 link: drive a ros2_control robot through its topics, with the same loop as over serial.

State comes from ``sensor_msgs/JointState`` (``joint_states``), matched to the robot's joints
by name; commands go to a ``forward_command_controller`` (``std_msgs/Float64MultiArray`` on
``<controller>/commands``) or a ``joint_trajectory_controller`` (``trajectory_msgs/
JointTrajectory`` on ``<controller>/joint_trajectory``).  A single-threaded executor spins in
its own thread; the control thread only reads the newest state and publishes.  See
``docs/ros2.md``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import numpy as np

from karakuri.firmware_bridge.ros2_config import CONTROLLER_TYPES, Ros2LinkConfig
from karakuri.firmware_bridge.ros2_node import NodeThread, make_qos, stamp_ns
from karakuri.robot.link import (
    CommandMode,
    JointState,
    LinkCounters,
    LinkError,
    NotConnectedError,
    StatusBits,
)
from karakuri.robot.spec import RobotSpec

try:
    from builtin_interfaces.msg import Duration as DurationMsg
    from sensor_msgs.msg import JointState as JointStateMsg
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
except ImportError as e:
    raise ImportError(
        f"the ROS 2 link needs the ROS 2 message packages ({e.name!r} is missing); install "
        "the ros2 extra: pip install 'karakuri[ros2]'"
    ) from e

__all__ = ["Ros2Link", "Ros2LinkConfig"]

log = logging.getLogger(__name__)

_PARTIAL_GRACE_S = 1.0  # after the first JointState, how long connect waits for missing joints
_RT_SAMPLES = 100_000


class Ros2Link:
    """A :class:`~karakuri.robot.link.Link` over ROS 2 topics to ros2_control.

    Args:
        spec: The robot; its joint names (with ``config.joint_prefix``) are looked up in
            every JointState by name.
        config: Topics, controller and QoS.
        control_period_s: The loop's period, s; a joint_trajectory_controller command reaches
            its point after this long. Default: one period at ``spec.control_rate_hz``.
    """

    def __init__(self, spec: RobotSpec, config: Ros2LinkConfig | None = None,
                 control_period_s: float | None = None) -> None:
        self.spec = spec
        self.config = config or Ros2LinkConfig()
        self.control_period_s = float(control_period_s or 1.0 / spec.control_rate_hz)
        cfg = self.config
        self._ros_names = tuple(cfg.joint_prefix + j for j in spec.joint_names)
        order = cfg.command_joints or spec.joint_names
        if sorted(order) != sorted(spec.joint_names):
            raise ValueError(f"command_joints {list(order)} must be the robot's joints "
                             f"{list(spec.joint_names)} in the controller's order")
        self._cmd_perm = np.array([spec.index(j) for j in order])  # command slot -> spec index
        self._cmd_names = [cfg.joint_prefix + j for j in order]
        self._node: NodeThread | None = None
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        n = self.spec.n_joints
        self._maps: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._q, self._v, self._e = np.zeros(n), np.zeros(n), np.zeros(n)
        self._t = np.full(n, -np.inf)
        self._seen = np.zeros(n, dtype=bool)
        self._names_seen: set[str] = set()
        self._latest: JointState | None = None
        self._rejecting = False
        self._stale = False
        self._estopped = False
        self._hold: np.ndarray | None = None
        self._faults: list[str] = []
        self._c = LinkCounters()
        self._last_seq: dict[bytes, int] = {}
        self._pending: collections.deque[tuple[int, float]] = collections.deque(maxlen=256)
        self._rt: collections.deque[float] = collections.deque(maxlen=_RT_SAMPLES)

    # ---------------------------------------------------------------- lifecycle
    def connect(self) -> None:
        """Start the node, wait for every joint in JointState and for the controller.

        Raises:
            LinkError: no JointState came, a joint is missing from it (the message names it
                and lists what came), or nobody subscribes to the command topic.
        """
        if self._node is not None:
            return
        self._reset()
        cfg = self.config
        node = NodeThread(cfg.node_name, cfg.namespace, cfg.domain_id)
        self._node = node
        try:
            sub_qos = make_qos(cfg.state_qos_depth, cfg.state_qos_reliability)
            self._sub = node.node.create_subscription(
                JointStateMsg, cfg.joint_states_topic, self._on_state, sub_qos)
            msg_type = Float64MultiArray if cfg.controller_type == CONTROLLER_TYPES[0] \
                else JointTrajectory
            self._pub = node.node.create_publisher(
                msg_type, cfg.command_topic,
                make_qos(cfg.command_qos_depth, cfg.command_qos_reliability))
            self._tfs = DurationMsg(sec=int(self.control_period_s),
                                    nanosec=int(self.control_period_s % 1 * 1e9))
            node.node.create_timer(max(cfg.stale_after_s / 2, 0.005), self._watchdog)
            node.start()
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _wait_ready(self) -> None:
        cfg, node = self.config, self._node
        assert node is not None  # for the type checker; set by connect
        deadline = time.monotonic() + cfg.connect_timeout_s
        first: float | None = None
        while time.monotonic() < deadline:
            need_sub = cfg.require_command_subscriber and self._pub.get_subscription_count() == 0
            if self._latest is not None and not need_sub:
                return
            if self._c.frames_rx and first is None:
                first = time.monotonic()
            if first is not None and self._latest is None \
                    and time.monotonic() - first > _PARTIAL_GRACE_S:
                break
            time.sleep(0.01)
        state_topic = node.node.resolve_topic_name(cfg.joint_states_topic)
        cmd_topic = node.node.resolve_topic_name(cfg.command_topic)
        missing = [j for j in self._ros_names if j not in self._names_seen]
        if self._latest is None and self._c.frames_rx and not missing:
            raise LinkError(
                f"every JointState on {state_topic} was rejected ({self._c.frames_rx} came, "
                f"{self._c.length_errors} malformed); last fault: "
                f"{(self._faults or ['none'])[-1]}")
        if self._latest is None and self._c.frames_rx:
            raise LinkError(
                f"JointState on {state_topic} has no joint {missing[0]!r} (missing: {missing}); "
                f"robot {self.spec.name!r} needs {list(self._ros_names)}; the messages carried "
                f"{sorted(self._names_seen)}. Fix the names or set link.joint_prefix.")
        if self._latest is None:
            pubs = self._sub.get_publisher_count() if hasattr(self._sub, "get_publisher_count") \
                else node.node.count_publishers(state_topic)
            raise LinkError(
                f"no JointState on {state_topic} within {cfg.connect_timeout_s} s "
                f"({pubs} publisher(s) matched, domain id {node.domain_id}); is the robot "
                f"driver and its joint_state_broadcaster running?")
        raise LinkError(
            f"nobody subscribes to {cmd_topic} within {cfg.connect_timeout_s} s: is the "
            f"{cfg.controller_type} {cfg.controller_name!r} loaded and active? "
            f"(ros2 control list_controllers)")

    def close(self) -> None:
        """Stop the executor thread, destroy the node and shut the context down; idempotent."""
        node, self._node = self._node, None
        if node is not None and not node.close():
            log.warning("ROS 2 executor thread of %s did not stop in time", self.config.node_name)

    def __enter__(self) -> Ros2Link:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_connected(self) -> bool:
        """True between a successful connect and close."""
        return self._node is not None and self._latest is not None

    def _require(self) -> None:
        if not self.is_connected:
            raise NotConnectedError(f"Ros2Link {self.config.node_name!r} is not connected; "
                                    "call connect() first")

    # ---------------------------------------------------------------- state (executor thread)
    def _map_for(self, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        m = self._maps.get(names)
        if m is None:
            where = {name: i for i, name in enumerate(names)}
            self._names_seen.update(names[:256])
            dst = [k for k, j in enumerate(self._ros_names) if j in where]
            m = (np.array([where[self._ros_names[k]] for k in dst], dtype=np.intp),
                 np.array(dst, dtype=np.intp))
            if len(self._maps) < 64:
                self._maps[names] = m
        return m

    def _on_state(self, msg: JointStateMsg, info: dict[str, Any]) -> None:
        recv_mono, recv_wall = time.monotonic(), time.time_ns()
        c = self._c
        c.frames_rx += 1
        self._count_gaps(info)
        src, dst = self._map_for(tuple(msg.name))
        n_msg = len(msg.name)
        pos, vel, eff = (np.asarray(a, dtype=np.float64)
                         for a in (msg.position, msg.velocity, msg.effort))
        if len(pos) != n_msg or len(vel) not in (0, n_msg) or len(eff) not in (0, n_msg):
            c.length_errors += 1
            return
        bad = ~np.isfinite(pos[src])
        bad |= ~np.isfinite(vel[src]) if len(vel) else False
        bad |= ~np.isfinite(eff[src]) if len(eff) else False
        if np.any(bad):
            self._reject_nonfinite([self._ros_names[d] for d in dst[bad]])
            return
        self._rejecting = False
        ns = stamp_ns(msg.header.stamp)
        if not self.config.use_header_stamp or ns == 0:
            if self.config.use_header_stamp:
                c.extra["unstamped"] = c.extra.get("unstamped", 0) + 1
            ns = recv_wall
        age = (recv_wall - ns) * 1e-9
        if age < 0:
            c.extra["future_stamps"] = c.extra.get("future_stamps", 0) + 1
            age = 0.0
        elif age > self.config.stale_after_s:
            c.extra["late_msgs"] = c.extra.get("late_msgs", 0) + 1
        t = recv_mono - age
        if len(vel):
            self._v[dst] = vel[src]
        else:  # no velocity published: finite difference per joint
            dt = t - self._t[dst]
            ok = self._seen[dst] & (dt > 1e-6)
            self._v[dst] = np.where(ok, (pos[src] - self._q[dst]) / np.where(ok, dt, 1.0), 0.0)
        self._q[dst], self._t[dst], self._seen[dst] = pos[src], t, True
        self._e[dst] = eff[src] if len(eff) else 0.0
        if not self._seen.all():
            return
        state = JointState(
            position=self._frozen(self._q), velocity=self._frozen(self._v),
            effort=self._frozen(self._e), stamp=float(self._t.min()),
            device_time_us=ns // 1000, seq=int(info.get("publication_sequence_number") or 0),
            status=StatusBits.ESTOP if self._estopped else StatusBits.ARMED)
        self._latest = state
        self._match_round_trips(ns, recv_mono)

    @staticmethod
    def _frozen(a: np.ndarray) -> np.ndarray:
        out = a.copy()
        out.setflags(write=False)
        return out

    def _count_gaps(self, info: dict[str, Any]) -> None:
        seq, gid = info.get("publication_sequence_number"), info.get("publisher_gid")
        if not seq or not gid:
            return
        key = bytes(gid.get("data", b"")) if isinstance(gid, dict) else bytes(gid)
        last = self._last_seq.get(key)
        if last is not None and seq > last + 1:
            self._c.seq_gaps += seq - last - 1
        self._last_seq[key] = seq

    def _reject_nonfinite(self, joints: list[str]) -> None:
        c = self._c
        c.extra["rejected_nonfinite"] = c.extra.get("rejected_nonfinite", 0) + 1
        if not self._rejecting:  # one fault per run of bad messages
            self._rejecting = True
            self._faults.append(f"non-finite JointState value for {joints}; sample rejected")
            log.error("rejected a JointState with non-finite values for %s", joints)

    def _watchdog(self) -> None:
        age = self.state_age_s()
        stale = age > self.config.stale_after_s
        if stale and not self._stale and self._latest is not None:
            self._c.timeouts += 1
            line = (f"joint_states stale: newest sample is {age * 1e3:.0f} ms old "
                    f"(stale_after_s={self.config.stale_after_s})")
            if self._c.timeouts == 1:  # later episodes are counted in timeouts, not listed
                self._faults.append(line + "; further stale episodes are counted in timeouts")
            log.warning("%s", line)
        self._stale = stale

    # ---------------------------------------------------------------- Link API
    def latest_state(self) -> JointState | None:
        """The newest complete state (joints in the spec's order); never blocks.

        ``stamp`` is when the robot sampled it (from ``header.stamp``) on this host's
        monotonic clock, so ``time.monotonic() - stamp`` is its age.
        """
        self._require()
        return self._latest

    def state_age_s(self) -> float:
        """Age of the newest complete state, s (inf before the first)."""
        latest = self._latest
        return float("inf") if latest is None else time.monotonic() - latest.stamp

    @property
    def is_stale(self) -> bool:
        """True when the newest state is older than ``config.stale_after_s``."""
        return self.state_age_s() > self.config.stale_after_s

    def send_command(self, q_target: np.ndarray, mode: CommandMode = CommandMode.POSITION) -> None:
        """Publish joint position targets, rad, spec order, shape (n_joints,); never blocks.

        A HOLD command, a latched e-stop, or a non-finite target (refused, counted, reported
        as a fault) publishes the position measured when holding began instead.
        """
        self._require()
        q = np.asarray(q_target, dtype=np.float64)
        if q.shape != (self.spec.n_joints,):
            raise ValueError(f"q_target has shape {q.shape}, expected ({self.spec.n_joints},) "
                             f"for joints {list(self.spec.joint_names)}")
        if mode == CommandMode.POSITION and not self._estopped and np.all(np.isfinite(q)):
            self._hold = None
        else:
            if mode == CommandMode.POSITION and not self._estopped:
                n_bad = self._c.extra.get("cmd_nonfinite", 0)
                self._c.extra["cmd_nonfinite"] = n_bad + 1
                if n_bad == 0:  # reported once; the count says how many followed
                    self._faults.append("non-finite command refused; holding")
            if self._hold is None:
                self._hold = np.array(self._latest.position)  # type: ignore[union-attr]
            q = self._hold
        self._publish(q)

    def _publish(self, q: np.ndarray) -> None:
        out = q[self._cmd_perm].tolist()
        if self.config.controller_type == CONTROLLER_TYPES[0]:
            msg: Any = Float64MultiArray(data=out)
        else:
            msg = JointTrajectory(joint_names=self._cmd_names, points=[
                JointTrajectoryPoint(positions=out, time_from_start=self._tfs)])
        with self._lock:
            self._pending.append((time.time_ns(), time.monotonic()))
        self._pub.publish(msg)
        self._c.frames_tx += 1

    def _match_round_trips(self, sample_ns: int, recv_mono: float) -> None:
        with self._lock:
            while self._pending and self._pending[0][0] <= sample_ns:
                self._rt.append(recv_mono - self._pending.popleft()[1])

    def round_trip(self) -> dict[str, float]:
        """Command published -> first state sampled after it: count and p50/p99/max, ms."""
        with self._lock:
            rt = np.array(self._rt) * 1e3
        if rt.size == 0:
            return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"),
                    "max_ms": float("nan")}
        p50, p99 = np.percentile(rt, [50, 99])
        return {"n": int(rt.size), "p50_ms": float(p50), "p99_ms": float(p99),
                "max_ms": float(rt.max())}

    def estop(self) -> None:
        """Latch a software stop: hold the measured pose until :meth:`rearm` and a command.

        ROS 2 has no standard e-stop topic; the robot's hardware e-stop stays the real one.
        """
        self._require()
        self._estopped = True
        self.send_command(np.zeros(self.spec.n_joints), CommandMode.HOLD)

    def rearm(self) -> None:
        """Clear the latched stop; the robot keeps holding until the next POSITION command."""
        self._require()
        self._estopped = False

    def faults(self) -> list[str]:
        """Faults seen since connect (non-finite states or commands, stale stream), oldest first."""
        return list(self._faults)

    def counters(self) -> LinkCounters:
        """Counters since connect; ``extra`` adds rejections and the round trip in µs."""
        c = self._c
        rt = self.round_trip()
        extra = dict(c.extra)
        extra["stale"] = int(self.is_stale)
        extra["rt_n"] = rt["n"]
        if rt["n"]:
            extra.update(rt_p50_us=round(rt["p50_ms"] * 1e3), rt_p99_us=round(rt["p99_ms"] * 1e3),
                         rt_max_us=round(rt["max_ms"] * 1e3))
        return LinkCounters(frames_rx=c.frames_rx, frames_tx=c.frames_tx,
                            crc_errors=c.crc_errors, length_errors=c.length_errors,
                            seq_gaps=c.seq_gaps, timeouts=c.timeouts, reconnects=c.reconnects,
                            extra=extra)
