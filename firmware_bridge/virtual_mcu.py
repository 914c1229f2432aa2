"""A virtual MCU: a robot's MuJoCo model behind a pseudo-terminal that speaks the wire protocol.

The host opens the pty's slave side with pyserial exactly as it opens a real USB serial port.
Behind it, :class:`~karakuri.firmware_bridge.mcu_core.McuCore` runs the MCU behaviour
(handshake, watchdog, category-1 stop, e-stop latch, re-arm) and the robot's MuJoCo model
stands in for motors and encoders.

**Servo.**  The joint servo is the model's MuJoCo position actuators:
``clip(kp (q_ref − q) + kv (v_ref − dq) + tau_ff, ±force range)``, both feed-forwards inside
the actuator's force clip (``mujoco_plant.MujocoPlant.step``), stepped at the model's ``dt``
(0.002 s for the industrial arm: a 500 Hz servo, not the 1 kHz of a typical firmware; the
MCU clock is the simulation time).  Physics is paced to the wall clock; when the process falls
more than ``max_lag_s`` behind it skips ahead rather than stepping in a burst, and counts an
overrun.

**Faults** (:class:`~karakuri.firmware_bridge.fault_channel.FaultConfig`): corrupt bytes,
drop or delay frames in either direction, cut the link (both directions silent), or unplug
the port (the pty disappears, as a USB cable pulled out; :meth:`VirtualMCU.replug` brings a
new one back behind the same ``link_path``).

Runs in a thread (:meth:`VirtualMCU.start`, tests) or in the foreground (:meth:`VirtualMCU.run`,
``karakuri sil``).  This module needs MuJoCo; nothing else in ``firmware_bridge`` does.
"""

from __future__ import annotations

import collections
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import mujoco
import numpy as np

from karakuri.firmware_bridge.fault_channel import FaultConfig
from karakuri.firmware_bridge.mcu_core import McuCore, McuLimits, McuMode
from karakuri.firmware_bridge.mujoco_plant import MujocoPlant
from karakuri.firmware_bridge.virtual_mcu_config import VirtualMCUConfig
from karakuri.robot.link import StatusBits
from karakuri.robot.spec import RobotSpec

T = TypeVar("T")


class VirtualMCU:
    """A robot behind a pty: MuJoCo plant + :class:`McuCore` + optional link faults.

    Args:
        spec: The robot (its MJCF, joint order, limits).
        config: How it runs.
        faults: Link faults from the start (see :meth:`inject` to change them later).
        model: Simulate this compiled scene (robot plus a task's objects) instead of the bare
            robot's MJCF; see :meth:`plant_call` to read or lay out its objects.

    Example::

        with VirtualMCU(load_robot("industrial_arm")) as mcu:   # starts a thread
            link = SerialLink(spec, SerialLinkConfig(port=mcu.port))
    """

    def __init__(self, spec: RobotSpec, config: VirtualMCUConfig | None = None,
                 faults: FaultConfig | None = None, model: mujoco.MjModel | None = None) -> None:
        self.spec, self.config = spec, config or VirtualMCUConfig()
        self.plant = MujocoPlant(spec, model)
        rate = self.config.state_rate_hz or spec.control_rate_hz
        limits = McuLimits(spec.joint_hash(), spec.lower, spec.upper, spec.velocity_limit,
                           spec.effort_limit, spec.accel_limit)  # default position margin
        self.core = McuCore(limits, self.plant.dt, 1.0 / rate, self.config.record_commands)
        self.core.reset(self.plant.sample()[0])
        self._lock = threading.RLock()
        self._requests: collections.deque[tuple[Callable[[], None], threading.Event]] = (
            collections.deque())
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = self._slave = -1
        self._slave_path = ""
        self._cut = self._dirty = False
        self.overruns = self.tx_overflows = 0
        self.inject(faults or FaultConfig())

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> str:
        """The path a host opens: ``config.link_path`` if set, else the pty's /dev/pts/N."""
        return self.config.link_path or self._slave_path

    def open(self) -> str:
        """Create the pty (and the ``link_path`` symlink); returns :attr:`port`."""
        with self._lock:
            if self._master < 0:
                self._master, self._slave = os.openpty()
                tty.setraw(self._slave)
                os.set_blocking(self._master, False)
                self._slave_path = os.ttyname(self._slave)
                if self.config.link_path:
                    tmp = f"{self.config.link_path}.tmp{os.getpid()}"
                    os.symlink(self._slave_path, tmp)
                    os.replace(tmp, self.config.link_path)
                self.core.decoder.reset()
                self._dirty = False
        return self.port

    def start(self) -> str:
        """Open the port and run the MCU in a daemon thread; returns :attr:`port`."""
        port = self.open()
        if self._thread is None or not self._thread.is_alive():
            self._stop_event.clear()
            self._thread = threading.Thread(target=self.run, name="virtual-mcu", daemon=True)
            self._thread.start()
        return port

    def request_stop(self) -> None:
        """Ask :meth:`run` to return after the current step (safe from a signal handler)."""
        self._stop_event.set()

    def stop(self) -> None:
        """Stop the thread (if any) and remove the pty; safe to call twice."""
        self._stop_event.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._thread = None
        self._close_port()

    def __enter__(self) -> VirtualMCU:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, duration_s: float | None = None) -> None:
        """Run the MCU in this thread until :meth:`stop` or ``duration_s`` of MCU time, s."""
        self.open()
        dt = self.plant.dt
        next_wall = time.monotonic()
        end = None if duration_s is None else self.sim_time + duration_s
        while not self._stop_event.is_set() and (end is None or self.sim_time < end - 1e-9):
            self._serve_requests()
            wait = next_wall - time.monotonic() if self.config.paced else 0.0
            if wait > 0:
                if self._master < 0:
                    time.sleep(wait)
                    continue
                if select.select([self._master], [], [], wait)[0]:
                    with self._lock:
                        self._service_io(time.monotonic())
                continue
            with self._lock:
                self._service_io(time.monotonic())
                self._step()
            next_wall += dt
            if time.monotonic() - next_wall > self.config.max_lag_s:
                next_wall = time.monotonic()
                self.overruns += 1

    # ------------------------------------------------------------------ for tests and tools
    @property
    def sim_time(self) -> float:
        """The MCU clock (simulation time), s."""
        return self.plant.time

    @property
    def mode(self) -> McuMode:
        """The MCU state (disarmed, armed, stopping, faulted)."""
        return self.core.mode

    @property
    def status(self) -> StatusBits:
        """The status bits the MCU sends in STATE."""
        return self.core.status

    @property
    def applied_commands(self) -> int:
        """COMMANDs applied to the servo since power-up."""
        return self.core.counters.commands_applied

    @property
    def command_log(self) -> list[tuple[float, int, np.ndarray]]:
        """``(mcu_time_s, seq, q_target)`` of each applied COMMAND (``record_commands`` only)."""
        with self._lock:
            return list(self.core.command_log)

    @property
    def events(self) -> list[tuple[float, str]]:
        """``(mcu_time_s, text)`` of MCU state changes, oldest first."""
        with self._lock:
            return list(self.core.events)

    def tool_position(self) -> np.ndarray:
        """Position of the robot's tool site, world frame, m. Shape: (3,)."""
        with self._lock:
            return self.plant.tool_position()

    def plant_call(self, fn: Callable[[mujoco.MjModel, mujoco.MjData], T]) -> T:
        """``fn(model, data)`` on the plant between two physics steps; returns its result.

        For a simulated perception system (read an object's pose) and for laying out a new
        episode's objects (write their qpos, then ``mj_forward``).  ``fn`` must be quick: the
        servo waits for it.
        """
        with self._lock:
            return fn(self.plant.model, self.plant.data)

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Measured positions (rad or m), velocities and efforts. Shape of each: (n_joints,)."""
        with self._lock:
            return self.plant.sample()

    def counters(self) -> dict[str, int]:
        """MCU counters plus injected-fault counts and timing overruns."""
        with self._lock:
            out = dict(asdict(self.core.counters))
            for name, ch in (("rx", self._rx), ("tx", self._tx)):
                out.update({f"{name}_{k}": v for k, v in ch.counters.fault_counts().items()})
            out.update(overruns=self.overruns, tx_overflows=self.tx_overflows)
            return out

    def inject(self, faults: FaultConfig) -> None:
        """Replace the link faults (counts of the previous ones are reset)."""
        def apply() -> None:
            self.faults = faults
            self._rx, self._tx = faults.channels()
        self._call(apply)

    def cut_link(self) -> None:
        """Silence both directions (bytes from the host are read and discarded)."""
        self._call(lambda: self._set_cut(True))

    def restore_link(self) -> None:
        """Undo :meth:`cut_link`."""
        self._call(lambda: self._set_cut(False))

    def unplug(self) -> None:
        """Remove the pty, as a USB cable pulled out; the MCU keeps running (and stops)."""
        def unplug() -> None:
            self._close_port()
            self.core.log(self.sim_time, "port unplugged")
        self._call(unplug)

    def replug(self) -> str:
        """A new pty behind the same ``link_path``; returns :attr:`port`."""
        def replug() -> None:
            self.open()
            self.core.log(self.sim_time, f"port replugged as {self._slave_path}")
        self._call(replug)
        return self.port

    def send_raw(self, data: bytes) -> None:
        """Write ``data`` to the host as is (tests: garbage between frames)."""
        self._call(lambda: self._write(data))

    # ------------------------------------------------------------------ internals
    def _set_cut(self, cut: bool) -> None:
        self._cut = cut
        self.core.log(self.sim_time, "link cut" if cut else "link restored")

    def _call(self, fn: Callable[[], None]) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                fn()
            return
        done = threading.Event()
        self._requests.append((fn, done))
        if not done.wait(timeout=2.0):
            raise TimeoutError("the virtual MCU thread did not serve a request within 2 s")

    def _serve_requests(self) -> None:
        while self._requests:
            fn, done = self._requests.popleft()
            with self._lock:
                fn()
            done.set()

    def _service_io(self, now: float) -> None:
        data = b""
        if self._master >= 0:
            try:
                data = os.read(self._master, 65536)
            except (BlockingIOError, OSError):
                data = b""
        if self._cut:
            data = b""
        if self.faults.applies_to("rx"):
            self._rx.push(data, now)
            data = self._rx.pop(now)
        if data:
            q, dq, _ = self.plant.sample()
            self._send(self.core.receive(data, self.sim_time, q, dq), now)
        if self.faults.applies_to("tx"):
            self._send([], now)

    def _step(self) -> None:
        core = self.core
        self.plant.step(core.q_ref, core.v_ref, core.tau_ff)
        q, dq, effort = self.plant.sample()
        self._send(core.tick(self.sim_time, q, dq, effort), time.monotonic())

    def _send(self, frames: list[bytes], now: float) -> None:
        data = b"".join(frames)
        if self.faults.applies_to("tx"):
            self._tx.push(data, now)
            data = self._tx.pop(now)
        if data and not self._cut:
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self._master < 0:
            return
        if self._dirty:  # a frame was cut short: end it so the host resyncs before this one
            data = b"\x00" + data
        try:
            n = os.write(self._master, data)
        except (BlockingIOError, OSError):
            self.tx_overflows += 1
            return
        self._dirty = n < len(data)
        self.tx_overflows += self._dirty

    def _close_port(self) -> None:
        with self._lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    os.close(fd)
            self._master = self._slave = -1
            link = self.config.link_path
            if link and Path(link).is_symlink():
                Path(link).unlink()
