"""The fault-injection rig: a virtual MCU, the fault proxy, a real ``karakuri deploy`` between.

``Rig`` starts ``karakuri sil`` (the plant, its own process) and a :class:`FaultProxy` in front
of it (a thread of the test), and
runs ``karakuri deploy`` on a launch file whose serial link points at the proxy's host-side
pty, as a subprocess.  A scenario watches the proxy's clean view of the MCU's STATE stream and
fires faults when the arm moves.  The assertions are made on that view: what the plant really did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx
from launch_files import write_launch
from onnx import TensorProto, helper

from karakuri.firmware_bridge.fault_proxy import DirectionFaults, FaultProxy
from karakuri.firmware_bridge.protocol import Command, State
from karakuri.policies.metadata import PolicyMetadata
from karakuri.robot.link import CommandMode, StatusBits
from karakuri.robot.registry import load_robot
from karakuri.robot.spec import RobotSpec

T = TypeVar("T")
SPEC = load_robot("industrial_arm")
# A far pose inside the limits: the safety filter drives the arm there at its speed limit.
FAR = SPEC.default_pose + np.array([2.0, 1.2, -2.2, 2.0, 2.5, 2.5, -0.04])
SPEED_TOL = 1.05  # measured speed may exceed the limit by 5 % (servo ripple), no more
SPEED_ABS_TOL = 0.05  # rad/s
POS_TOL = 0.02  # rad


def policy_file(path: Path, target: np.ndarray | None = None, *, rate_hz: float | None = None,
                spec_overrides: dict | None = None) -> Path:
    """A hand-built ONNX policy that commands ``target`` (default: the home pose) every tick.

    Args:
        path: Where to write it.
        target: The joint target it outputs, rad. Shape: (n_joints,).
        rate_hz: The control rate its metadata claims (default: the robot's).
        spec_overrides: Values its metadata's robot spec claims instead of the robot's
            (e.g. ``velocity_limit``), as an untrusted file would.
    """
    spec = SPEC
    n, a = spec.n_joints, spec.n_arm
    target = spec.default_pose if target is None else np.asarray(target)
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(name, f32, ["B", size]) for name, size in
              (("joint_pos", n), ("joint_vel", n), ("command", 3), ("last_action", a))]
    outputs = [helper.make_tensor_value_info("joint_target", f32, ["B", n]),
               helper.make_tensor_value_info("action", f32, ["B", a])]
    goal = helper.make_tensor("goal", f32, [n], target.astype(np.float32).tolist())
    zero = helper.make_tensor("zero", f32, [], [0.0])
    nodes = [helper.make_node("Mul", ["joint_pos", "zero"], ["zero_q"]),
             helper.make_node("Add", ["zero_q", "goal"], ["joint_target"]),
             helper.make_node("Mul", ["last_action", "zero"], ["action"])]
    graph = helper.make_graph(nodes, "goal", inputs, outputs, initializer=[goal, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    robot = spec.to_dict()
    rate = rate_hz or spec.control_rate_hz
    robot["control_rate_hz"] = rate
    for key, value in (spec_overrides or {}).items():
        robot[key] = value.tolist() if isinstance(value, np.ndarray) else value
    meta = PolicyMetadata(
        robot_name=spec.name, joint_names=spec.joint_names,
        lower=tuple(robot["lower"]), upper=tuple(robot["upper"]), control_rate_hz=rate,
        action_type="joint_position",
        inputs={"joint_pos": {"shape": ["B", n], "unit": "rad"},
                "joint_vel": {"shape": ["B", n], "unit": "rad/s"},
                "command": {"shape": ["B", 3], "unit": "m"},
                "last_action": {"shape": ["B", a], "unit": "1"}},
        robot_spec=robot, task="reach", run_id="fault-suite")
    helper.set_model_props(model, meta.to_props())
    onnx.save(model, path)
    return path


def launch_file(tmp_path: Path, port: str, policy: Path, *, hold_s: float = 2.0,
                episodes: int = 1, telemetry: str = "run.mcap", name: str = "launch.yaml",
                **extra: object) -> Path:
    """A serial launch file for ``policy`` through ``port`` (the proxy), short episodes.

    Unsigned on purpose (``allow_unsigned``); the audit log stays in ``tmp_path``.
    """
    keys = {"soft_start_s": 0.1, "telemetry": str(tmp_path / telemetry), "allow_unsigned": True,
            "audit_log": str(tmp_path / "audit.jsonl"), **extra}
    return write_launch(tmp_path / name, policy=policy, link={"kind": "serial", "port": port},
                        targets=[[0.4, 0.1, 0.3]] * episodes, hold_s=hold_s, **keys)


class OverloadedError(AssertionError):
    """The deploy ended before the scenario could inject its fault: run it again."""


def _check_alive(proc: subprocess.Popen | None, what: str) -> None:
    if proc is not None and proc.poll() is not None:
        raise OverloadedError(f"the deploy ended (exit {proc.returncode}) before {what}")


LOAD_STOP = re.compile(r"stale STATE|no fresh state|WATCHDOG")
"""Stops a deploy makes by itself when this shared machine starves it (its own late COMMANDs
trip the MCU watchdog, or late STATEs turn stale): in a scenario about another fault they mean
"run it again", and :func:`retrying` does, at most three times, listing each."""


def check_not_starved(out: str) -> None:
    """Raise :class:`OverloadedError` when the deploy stopped for its own lateness (LOAD_STOP)."""
    why = stopped_by(out)
    if LOAD_STOP.search(why):
        raise OverloadedError(f"the deploy stopped for its own lateness: {why[:200]}")


def retrying(scenario: Callable[[], T], attempts: int = 3) -> T:
    """Run ``scenario`` until it gets to inject its fault (the machine is shared and loaded)."""
    reasons = []
    for _ in range(attempts):
        try:
            return scenario()
        except OverloadedError as e:
            reasons.append(str(e).splitlines()[0])
    raise AssertionError(f"the deploy never reached the fault in {attempts} attempts (machine "
                         f"overloaded?): {reasons}")


def exit_code(kind: str) -> int:
    """``karakuri deploy``'s documented exit code for a stop of ``kind`` (loop_stats.EXIT_CODES).

    Before the per-cause codes existed every fault was 1 and a start failure 2.
    """
    from karakuri.robot import loop_stats

    codes = getattr(loop_stats, "EXIT_CODES", None)
    if codes is None:
        return {"ok": 0, "cannot_start": 2}.get(kind, 1)
    return codes[kind]


def stopped_by(out: str) -> str:
    """The ``stopped by:`` text of a deploy's summary ('' when it printed none)."""
    for line in out.splitlines():
        if "stopped by:" in line:
            return line.split("stopped by:", 1)[1].strip()
    return ""


def why_it_stopped(out: str) -> str:
    """The summary's ``stopped by:`` text, or the one-line error of a deploy that never ran."""
    return stopped_by(out) or next((line for line in out.splitlines()
                                    if line.startswith("karakuri deploy:")), "")


@dataclasses.dataclass
class DeployRun:
    """What a deploy returned: exit code and everything it printed."""

    rc: int
    out: str


class Rig:
    """A virtual MCU and the fault proxy in front of it (``with Rig(...) as rig``).

    Args:
        to_mcu: Faults on the way to the MCU from the start.
        to_host: Faults on the way to the host from the start.
        seed: Seed of the proxy's faults.
    """

    def __init__(self, to_mcu: DirectionFaults | None = None,
                 to_host: DirectionFaults | None = None, seed: int = 0) -> None:
        self.spec: RobotSpec = SPEC
        self._faults = (to_mcu, to_host, seed)
        self.mcu: subprocess.Popen | None = None
        self.proxy: FaultProxy | None = None

    def __enter__(self) -> Rig:
        # The MCU runs as its own process (``karakuri sil``), as it would on its own chip: on
        # this shared two-core machine a plant thread inside pytest is starved by the rest.
        self.mcu = subprocess.Popen(
            [sys.executable, "-m", "karakuri.launch.cli", "sil", "--robot", SPEC.name,
             "--state-rate-hz", "200"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=Path(__file__).parent, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        first = self.mcu.stdout.readline()
        if not first.startswith("port: "):
            self.mcu.kill()
            raise AssertionError(f"karakuri sil did not start: {first}{self.mcu.stdout.read()}")
        to_mcu, to_host, seed = self._faults
        self.proxy = FaultProxy(first.split("port: ", 1)[1].strip(), to_mcu, to_host, seed=seed)
        self.proxy.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proxy is not None:
            self.proxy.close()
        if self.mcu is not None:
            self.mcu.terminate()
            try:
                self.mcu.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.mcu.kill()
                self.mcu.wait(timeout=10)

    @property
    def port(self) -> str:
        """The host's port: the proxy's pty."""
        return self.proxy.port

    # ------------------------------------------------------------------ running a deploy
    def deploy(self, launch: Path, scenario: Callable[[Rig, subprocess.Popen], None] | None = None,
               timeout_s: float = 60.0, timing_fault: bool = False, nice: int = 0) -> DeployRun:
        """``karakuri deploy LAUNCH`` as a subprocess; ``scenario(rig, proc)`` runs meanwhile.

        Args:
            launch: The launch file.
            scenario: Injects the fault, typically once the arm moves.
            timeout_s: Longest the deploy may take after the scenario, s.
            timing_fault: The scenario is about timing (a cut, latency): a stale or watchdog
                stop is its outcome, not the machine's load (see :func:`check_not_starved`).
            nice: Run it at this lower priority (a deploy that must not starve another).
        """
        with self.running(launch, nice) as proc:
            if scenario is not None:
                scenario(self, proc)
            out = proc.communicate(timeout=timeout_s)[0]
        if not timing_fault:
            check_not_starved(out)
        return DeployRun(proc.returncode, out)

    def spawn(self, launch: Path, nice: int = 0) -> subprocess.Popen:
        """``karakuri deploy LAUNCH`` as a subprocess (stdout and stderr merged, text)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # 'nice' as a command, not a preexec_fn: without one, Popen uses vfork and does not
        # copy this process's page tables; a plain fork stalled the proxy thread (a test
        # thread) for up to 0.6 s, long enough for the MCU watchdog of the deploy it relays.
        prefix = ["nice", "-n", str(nice)] if nice else []
        return subprocess.Popen([*prefix, sys.executable, "-m", "karakuri.launch.cli", "deploy",
                                 str(launch)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env,
                                cwd=launch.parent)

    @contextlib.contextmanager
    def running(self, launch: Path, nice: int = 0):
        """Spawn a deploy; on any failure inside the block, kill it and show what it printed."""
        proc = self.spawn(launch, nice)
        try:
            yield proc
        except BaseException as e:
            proc.kill()
            out = proc.communicate(timeout=10)[0]
            kind = OverloadedError if isinstance(e, OverloadedError) else AssertionError
            raise kind(f"{e}\n--- karakuri deploy printed ---\n{out}") from e
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    # ------------------------------------------------------------------ the proxy's view
    def states(self) -> list[tuple[float, int, State]]:
        """``(arrival s, MCU time µs, STATE)`` of every STATE the MCU sent, oldest first."""
        return [(t, f.time_us, f.msg) for t, f in self.proxy.frames("to_host")
                if isinstance(f.msg, State)]

    def commands(self) -> list[tuple[float, Command]]:
        """``(arrival s, COMMAND)`` of every COMMAND the host sent, oldest first."""
        return [(t, f.msg) for t, f in self.proxy.frames("to_mcu") if isinstance(f.msg, Command)]

    def wait_moving(self, speed: float = 1.0, proc: subprocess.Popen | None = None,
                    timeout_s: float = 20.0) -> State:
        """Wait until some joint moves faster than ``speed`` rad/s; returns that STATE.

        Raises:
            OverloadedError: ``proc`` ended first (on this shared machine, a deploy that missed its
                deadlines and tripped the MCU watchdog before the fault was injected).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _check_alive(proc, f"the arm moved faster than {speed} rad/s")
            states = self.proxy.latest("to_host", 5)
            for _, f in reversed(states):
                if isinstance(f.msg, State) and np.abs(f.msg.dq).max() > speed:
                    return f.msg
            time.sleep(0.002)
        raise AssertionError(f"the arm never moved faster than {speed} rad/s in {timeout_s} s")

    def wait_driving(self, seconds: float, proc: subprocess.Popen | None = None,
                     timeout_s: float = 20.0) -> None:
        """Wait until the host has sent POSITION commands for ``seconds`` s (see wait_moving)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _check_alive(proc, f"it drove the arm for {seconds} s")
            pos = [t for t, c in self.commands() if c.mode == CommandMode.POSITION]
            if pos and pos[-1] - pos[0] >= seconds:
                return
            time.sleep(0.01)
        raise AssertionError(f"the host did not drive the arm for {seconds} s in {timeout_s} s")

    # ------------------------------------------------------------------ safety assertions
    def assert_inside_envelope(self) -> None:
        """From the first ARM on, no STATE shows a joint past a position or speed limit.

        (Before it, the model settles from its initial pose: the gripper finger moves at up to
        0.6 rad/s in the first physics steps, before any host is connected.)
        """
        states = self.states()
        first = next((i for i, (_, _, s) in enumerate(states) if s.status & StatusBits.ARMED),
                     None)
        assert first is not None, "the MCU never reported ARMED"
        states = states[first:]
        q = np.array([s.q for _, _, s in states])
        dq = np.array([s.dq for _, _, s in states])
        spec = self.spec
        over_v = np.abs(dq) - (spec.velocity_limit * SPEED_TOL + SPEED_ABS_TOL)
        below, above = spec.lower - POS_TOL - q, q - spec.upper - POS_TOL
        for name, excess in (("faster than its velocity limit", over_v),
                             ("below its lower limit", below), ("above its upper limit", above)):
            k, j = np.unravel_index(np.argmax(excess), excess.shape)
            assert excess[k, j] <= 0, (
                f"{spec.joint_names[j]} {name} at MCU t={states[k][1] / 1e6:.3f} s: q="
                f"{q[k, j]:.3f} rad, dq={dq[k, j]:.3f} rad/s (limits [{spec.lower[j]:.3f}, "
                f"{spec.upper[j]:.3f}] rad, {spec.velocity_limit[j]:.3f} rad/s)")

    def assert_stop_never_speeds_up(self, tol: float = 0.1) -> float:
        """From the first STATE with STOPPING (a category-1 stop), no joint gets faster.

        Args:
            tol: Speed allowance for servo ripple, rad/s.

        Returns:
            The MCU time of the trip, s.
        """
        states = self.states()
        trip = next((i for i, (_, _, s) in enumerate(states)
                     if s.status & StatusBits.STOPPING), None)
        assert trip is not None, "the MCU never reported STOPPING"
        # The trip falls between the last STATE without STOPPING and the first with it: the
        # speed at the trip is at most that last speed plus one sample period at the accel limit.
        assert trip >= 1, "the MCU reported STOPPING in its first STATE"
        dt = (states[trip][1] - states[trip - 1][1]) / 1e6
        at_trip = np.abs(states[trip - 1][2].dq) + self.spec.accel_limit * dt
        for _, t_us, s in states[trip:]:
            faster = np.abs(s.dq) - at_trip - tol
            j = int(np.argmax(faster))
            assert faster[j] <= 0, (
                f"{self.spec.joint_names[j]} sped up during the stop: {abs(s.dq[j]):.3f} rad/s "
                f"at MCU t={t_us / 1e6:.3f} s, {at_trip[j]:.3f} rad/s at the trip")
        return states[trip][1] / 1e6

    def last_command(self) -> Command:
        """The last COMMAND the host sent."""
        cmds = self.commands()
        assert cmds, "the host sent no COMMAND"
        return cmds[-1][1]


def sent_arm(rig: Rig) -> bool:
    """Whether the host ever sent ARM to the MCU."""
    from karakuri.firmware_bridge.protocol import Arm

    return any(isinstance(f.msg, Arm) for _, f in rig.proxy.frames("to_mcu"))
