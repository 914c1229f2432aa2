"""Issue 11 finding 2 on the virtual MCU's plant: no fault or command leaves the envelope.

Each test drives :class:`McuCore` and the industrial arm's MuJoCo plant in lock step (no pty,
no threads: deterministic) and replays one of the issue's reproductions: a link cut during a
fast motion, a joint at 1.5 rad/s at the trip, an ESTOP during a step, velocity feed-forward
while holding.  The envelope: no joint faster than its velocity limit (plus the servo's
tracking overshoot, 10 %), none past a position limit (plus the MCU's fault margin), and the
stop never speeds a joint up.
"""

from __future__ import annotations

import numpy as np
import pytest

from karakuri.firmware_bridge.mcu_core import McuCore, McuLimits, McuMode
from karakuri.firmware_bridge.protocol import Arm, Command, Estop, Hello, Message, encode_frame
from karakuri.robot.link import CommandMode

mujoco = pytest.importorskip("mujoco")
from karakuri.firmware_bridge.mujoco_plant import MujocoPlant  # noqa: E402
from karakuri.robot.registry import load_robot  # noqa: E402

SPEED_SLACK = 1.10  # the PD servo's overshoot of a reference that moves at the limit


class Arm7:
    """Industrial arm plant + MCU core on one clock; records every measured sample."""

    def __init__(self) -> None:
        self.spec = load_robot("industrial_arm")
        self.plant = MujocoPlant(self.spec)
        s = self.spec
        self.limits = McuLimits(s.joint_hash(), s.lower, s.upper, s.velocity_limit,
                                s.effort_limit, s.accel_limit)
        self.core = McuCore(self.limits, self.plant.dt, 0.02)
        self.core.reset(self.plant.sample()[0])
        self.seq = 0
        self.qs: list[np.ndarray] = []
        self.dqs: list[np.ndarray] = []

    @property
    def t(self) -> float:
        return float(self.plant.data.time)

    def send(self, msg: Message) -> None:
        self.seq += 1
        q, dq, _ = self.plant.sample()
        self.core.receive(encode_frame(msg, self.seq, 0), self.t, q, dq)

    def run(self, seconds: float, cmd: Command | None = None, period: float = 0.02) -> None:
        """Step for ``seconds`` s, sending ``cmd`` every ``period`` s if given."""
        every = round(period / self.plant.dt)
        for k in range(round(seconds / self.plant.dt)):
            if cmd is not None and k % every == 0:
                self.send(cmd)
            self.plant.step(self.core.q_ref, self.core.v_ref, self.core.tau_ff)
            q, dq, eff = self.plant.sample()
            self.qs.append(q)
            self.dqs.append(dq)
            self.core.tick(self.t, q, dq, eff)

    def armed(self) -> Arm7:
        self.run(0.1)  # settle (the finger starts on its stop), disarmed, then forget it
        self.qs.clear()
        self.dqs.clear()
        self.send(Hello(20000, 20000))
        self.send(Arm(1))
        assert self.core.mode is McuMode.ARMED
        return self

    def envelope_violations(self) -> list[str]:
        q, dq = np.array(self.qs), np.array(self.dqs)
        lim, names = self.limits, self.spec.joint_names
        out = []
        over = np.abs(dq).max(axis=0) / lim.velocity_limit
        out += [f"{names[j]} at {over[j]:.2f} x its velocity limit"
                for j in np.flatnonzero(over > SPEED_SLACK)]
        lo, hi = lim.lower - lim.position_margin, lim.upper + lim.position_margin
        out += [f"{names[j]} reached {q[:, j].min():.3f}..{q[:, j].max():.3f}, limits "
                f"{lim.lower[j]:.3f}..{lim.upper[j]:.3f}"
                for j in range(q.shape[1]) if q[:, j].min() < lo[j] or q[:, j].max() > hi[j]]
        return out


def far_command(rig: Arm7) -> Command:
    """Every joint's target at its upper limit: the MCU slews there at the velocity limit."""
    return Command(CommandMode.POSITION, rig.limits.upper)


def test_link_cut_during_a_fast_motion_stops_inside_the_envelope():
    rig = Arm7().armed()
    cmd = far_command(rig)
    rig.run(0.3, cmd)  # moving at the velocity limit toward the upper limits
    assert np.abs(rig.dqs[-1][:6]).max() > 2.5
    rig.run(0.12)  # the link is cut for 120 ms: the watchdog trips at 50 ms
    rig.run(1.0, cmd)  # back, but the MCU is faulted and ignores COMMANDs
    assert rig.core.mode is McuMode.FAULTED
    assert rig.envelope_violations() == []


def test_a_joint_at_1_5_rad_s_at_the_trip_stops_within_its_braking_distance():
    rig = Arm7().armed()
    pan = 0
    rig.plant.data.qvel[rig.plant.dadr[pan]] = 1.5  # moving when the ESTOP arrives
    rig.send(Estop())
    q0 = rig.plant.sample()[0][pan]
    rig.run(0.5)
    q, dq = np.array(rig.qs)[:, pan], np.array(rig.dqs)[:, pan]
    assert np.abs(dq).max() <= 1.5 + 1e-6  # never faster than at the trip
    a = rig.limits.stop_decel[pan]
    assert q.max() - q0 == pytest.approx(1.5**2 / (2 * a), abs=0.02)  # 0.075 rad
    assert rig.core.mode is McuMode.FAULTED and abs(dq[-1]) < 0.01


def test_estop_during_a_step_never_exceeds_the_limits():
    rig = Arm7().armed()
    step = Command(CommandMode.POSITION, rig.limits.upper)  # a step to every upper limit
    rig.run(0.2, step)
    rig.send(Estop())
    rig.run(1.0)
    assert rig.core.mode is McuMode.FAULTED
    assert rig.envelope_violations() == []


def test_velocity_feed_forward_cannot_run_a_holding_joint_away():
    rig = Arm7().armed()
    q0 = rig.plant.sample()[0]
    vmax = rig.limits.velocity_limit
    rig.run(1.0, Command(CommandMode.HOLD, q0, velocity=vmax))  # HOLD ignores its arrays
    np.testing.assert_allclose(rig.qs[-1], q0, atol=0.01)
    effort = rig.limits.effort_limit * (np.arange(7) < 6)  # the finger would press on its stop
    here = Command(CommandMode.POSITION, q0, velocity=vmax, effort=effort)
    rig.run(2.0, here)  # full feed-forward at a fixed target: the servo's effort clip holds it
    assert rig.core.mode is McuMode.ARMED
    assert rig.envelope_violations() == []
    drift = np.abs(rig.qs[-1] - q0)[:6]
    assert drift.max() < 0.5, drift  # a bounded offset (kv v + tau) / kp, not a runaway
    assert np.abs(rig.dqs[-1]).max() < 0.05  # and it settles there
