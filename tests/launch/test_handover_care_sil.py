"""Care safety in sim-in-the-loop against the handover scene, measured from the plant.

An unsafe policy file (its graph commands, whatever it sees, a pose whose tool lies 11 cm
beyond the user's palm, reached by the joint-speed limits alone: ~0.55 m/s) is deployed with
``launch/handover_sil.yaml``: with the care layers the tool never exceeds 0.25 m/s within
0.3 m of the palm and never drives closer than the minimum separation; without them it
enters the zone at full speed and hits the hand harder.  The care stage also keeps the commanded tool
point within ``max_lead_s`` x the allowed speed of the measured one: before it did, a target
that ran ahead while the cup was held back by the hand was caught up with at 0.27-0.36 m/s on
a loaded machine (the servo moves at about lead / 0.15 s).  A push of the user's hand into the
held cup over the force limit makes a protective stop within two control periods, measured
from the plant's net contact force on the hand, averaged over a control period, first over
the limit to the care stage's stop (both on the host's monotonic clock; lock-step:
``test_handover_care_lockstep.py``).  The
net force (the vector sum of the contact forces on the hand) is what the robot pushes with;
the hand's TOUCH sensor sums the normal forces' magnitudes, so the cup pinched between the
palm and the fingers reads 200-270 N there while the net force is 20-50 N.
The plant is sampled by an observer thread (10 ms; 2 ms while pushing).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

onnx = pytest.importorskip("onnx")
mujoco = pytest.importorskip("mujoco")

from onnx import TensorProto, helper  # noqa: E402

from karakuri.launch import deploy as deploy_mod  # noqa: E402
from karakuri.launch import schema_links  # noqa: E402
from karakuri.launch.schema import load_launch  # noqa: E402
from karakuri.policies.metadata import PolicyMetadata  # noqa: E402
from karakuri.robot.registry import load_robot  # noqa: E402

LAUNCH = Path(__file__).resolve().parents[2] / "launch" / "handover_sil.yaml"
SPEC = load_robot("care_arm")
PALM_REST = np.array([0.48, 0.20, 0.88])  # handover's hand_rest (sim/tasks/handover.py)


def tool_at(offset: tuple[float, float, float]) -> np.ndarray:
    """Joint targets putting the tool at ``PALM_REST + offset`` (m, world; numpy IK)."""
    ch, q = SPEC.kinematics, SPEC.default_pose.copy()
    target = PALM_REST + np.array(offset)
    for _ in range(200):
        jac = ch.jacobian(q)[:3, :6]
        step = jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(3), target - ch(q))
        q[:6] = np.clip(q[:6] + step, SPEC.lower[:6], SPEC.upper[:6])
    assert np.linalg.norm(ch(q) - target) < 1e-6
    return q


def constant_policy(path: Path, goal_q: np.ndarray) -> Path:
    """A handover policy file whose graph commands ``goal_q`` whatever it is given."""
    n, f32 = SPEC.n_joints, TensorProto.FLOAT
    ins = (("joint_pos", n), ("joint_vel", n), ("hand_pos", 3), ("last_action", 6))
    goal = helper.make_tensor("goal", f32, [n], goal_q.astype(np.float32).tolist())
    zero = helper.make_tensor("zero", f32, [], [0.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["joint_pos", "zero"], ["zq"]),
         helper.make_node("Add", ["zq", "goal"], ["joint_target"]),
         helper.make_node("Mul", ["last_action", "zero"], ["action"])],
        "unsafe", [helper.make_tensor_value_info(s, f32, ["B", w]) for s, w in ins],
        [helper.make_tensor_value_info("joint_target", f32, ["B", n]),
         helper.make_tensor_value_info("action", f32, ["B", 6])], initializer=[goal, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    meta = PolicyMetadata(
        robot_name=SPEC.name, joint_names=SPEC.joint_names, lower=tuple(SPEC.lower),
        upper=tuple(SPEC.upper), control_rate_hz=SPEC.control_rate_hz,
        action_type="joint_position", robot_spec=SPEC.to_dict(),
        inputs={s: {"shape": ["B", w], "unit": ""} for s, w in ins}, task="handover",
        run_id="unsafe-on-purpose")
    helper.set_model_props(model, meta.to_props())
    onnx.save(model, path)
    return path


def net_contact_force(m, d, body: int) -> np.ndarray:
    """Vector sum of the contact forces on ``body`` from other bodies, N, world frame."""
    total, buf = np.zeros(3), np.zeros(6)
    for i in range(d.ncon):
        c = d.contact[i]
        b1, b2 = int(m.geom_bodyid[c.geom1]), int(m.geom_bodyid[c.geom2])
        if (b1 == body) == (b2 == body):
            continue
        mujoco.mj_contactForce(m, d, i, buf)
        f = c.frame.reshape(3, 3).T @ buf[:3]  # on geom2, from geom1
        total += f if b2 == body else -f
    return total


class PlantObserver:
    """Samples the SIL plant: time, tool xyz, tool speed, palm xyz, hand and lower-arm TOUCH
    force, net contact force on the hand.

    With ``push``: once the tool has rested near the palm for 0.5 s, the hand is pushed toward the
    tool (a force on the hand body ramping at 1000 N/s to 400 N: a firm push of the hand
    into the held cup), sampled every 2 ms from then on.
    """

    def __init__(self, mcu, period_s: float = 0.01, push: bool = False,
                 ramp: tuple[float, float] = (300.0, 120.0)) -> None:
        m = mcu.plant.model
        self.mcu, self.period, self.push, self.ramp = mcu, period_s, push, ramp
        self.tool = m.site(SPEC.tool_site).id
        self.palm = m.site("ho_palm").id
        self.hand_body = m.body("ho_hand").id
        vel = m.sensor("ho_tool_vel")
        self.vel = slice(int(vel.adr[0]), int(vel.adr[0]) + 3)
        self.force = [int(m.sensor(f"ho_force_{r}").adr[0]) for r in ("hand", "lower_arm")]
        self.rows: list[tuple[float, ...]] = []
        self.push_start: float | None = None
        self._rest_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self, m, d) -> tuple[float, ...]:
        now, speed = time.monotonic(), float(np.linalg.norm(d.sensordata[self.vel]))
        near = np.linalg.norm(d.site_xpos[self.tool] - d.site_xpos[self.palm]) < 0.15
        if self.push and self.push_start is None:
            self._rest_since = (self._rest_since or now) if speed < 0.005 and near else None
            if self._rest_since is not None and now - self._rest_since > 0.5:
                self.push_start, self.period = now, 0.002
        if self.push_start is not None:
            to_tool = d.site_xpos[self.tool] - d.xpos[self.hand_body]
            f = min(self.ramp[0] * (now - self.push_start), self.ramp[1])
            d.xfrc_applied[self.hand_body, :3] = f * to_tool / np.linalg.norm(to_tool)
        return (now, *d.site_xpos[self.tool], speed, *d.site_xpos[self.palm],
                *(float(d.sensordata[i]) for i in self.force),
                float(np.linalg.norm(net_contact_force(m, d, self.hand_body))))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.rows.append(self.mcu.plant_call(self._sample))
            time.sleep(self.period)

    def close(self) -> np.ndarray:
        self._stop.set()
        self._thread.join()
        return np.array(self.rows)


@contextlib.contextmanager
def observed(monkeypatch, box: dict):
    """Run deploys with a :class:`PlantObserver` on their virtual MCU (box['obs'])."""
    orig = schema_links.virtual_mcu

    @contextlib.contextmanager
    def wrapped(*args, **kwargs):
        with orig(*args, **kwargs) as mcu:
            box["obs"] = PlantObserver(mcu, push=box["push"])
            yield mcu

    monkeypatch.setattr(schema_links, "virtual_mcu", wrapped)
    yield box


#: Through the hand: the tool's goal lies 11 cm past the palm, on the far side from home.
THROUGH = (-0.05, 0.10, 0.0)


def run_unsafe(tmp_path: Path, monkeypatch, episodes: int, care: bool, hold_s: float = 3.0,
               goal: tuple[float, float, float] = THROUGH, push: bool = False,
               force_scale: float = 1.0) -> tuple[np.ndarray, object, list[tuple[float, str]]]:
    data = yaml.safe_load(LAUNCH.read_text())
    policy = constant_policy(tmp_path / "unsafe.onnx", tool_at(goal))
    data.update(policy=str(policy), telemetry=None,
                realtime={"sched_fifo_priority": 0, "mlockall": False})
    data["command"].update(hold_s=hold_s, reset_s=1.5)
    data["command"]["plant_signal"].update(count=episodes)
    if not care:
        data["care"] = {"enabled": False}
    data["care"].setdefault("force_limit", {})
    if care:
        data["care"]["force_limit"]["scale"] = force_scale
    p = tmp_path / "unsafe.yaml"
    p.write_text(yaml.safe_dump(data))
    lines: list[tuple[float, str]] = []
    with observed(monkeypatch, {"push": push}) as box:
        result = deploy_mod.deploy(load_launch(p),
                                   log=lambda s: lines.append((time.monotonic(), s)))
        rows = box["obs"].close()
    return rows, result, lines


def judge(rows: np.ndarray) -> tuple[float, float, float]:
    """Peak tool speed within 0.3 m of the palm (m/s), closest approach while driving in (m),
    peak contact force on the hand or lower arm (N).

    "Driving in": the tool's own velocity closes the gap (the hand drifting onto a holding
    tool is not the robot's doing; a holding tool moves < 5 mm/s).
    """
    t, tool, speed, palm = rows[:, 0], rows[:, 1:4], rows[:, 4], rows[:, 5:8]
    gap = np.linalg.norm(tool - palm, axis=1)
    dtool = np.gradient(tool, t, axis=0)
    closing = np.einsum("ij,ij->i", dtool, (palm - tool) / gap[:, None]) > 0.005
    return (float(speed[gap < 0.3].max(initial=0.0)), float(gap[closing].min(initial=np.inf)),
            float(rows[:, 8:10].max()))


def check_unsafe(tmp_path, monkeypatch, episodes: int) -> None:
    min_sep = load_launch(LAUNCH).care.separation.min_separation(1 / SPEC.control_rate_hz)
    rows, result, lines = run_unsafe(tmp_path, monkeypatch, episodes, care=True)
    peak, closest, force = judge(rows)
    summary = result.summary
    assert peak <= 0.25, f"tool at {peak:.3f} m/s within 0.3 m of the hand"
    assert closest >= min_sep, f"tool drove to {closest * 100:.1f} cm of the palm"
    assert len(summary.episodes) == episodes, [line for _, line in lines][-5:]
    assert summary.interventions["ssm_scale"] + summary.interventions["ssm_hold"] > 0
    rows, result, lines = run_unsafe(tmp_path, monkeypatch, 1, care=False)
    peak_off, closest_off, force_off = judge(rows)
    assert any("care safety is OFF" in line for _, line in lines)
    # Without the layer the tool enters the zone at the joints' full speed and hits the hand
    # harder.  (It cannot pass the palm point: the hand's own geometry stops the cup ~8 cm
    # from it either way, so the separation shows in the contact, not in the distance.)
    assert peak_off > 0.25, peak_off
    assert force_off > force, (force_off, force)


def test_unsafe_policy_is_slowed_and_kept_away_short(tmp_path, monkeypatch) -> None:
    check_unsafe(tmp_path, monkeypatch, episodes=2)


@pytest.mark.slow
def test_unsafe_policy_is_slowed_and_kept_away_20_episodes(tmp_path, monkeypatch) -> None:
    check_unsafe(tmp_path, monkeypatch, episodes=20)


def period_mean(t: np.ndarray, f: np.ndarray, period: float) -> np.ndarray:
    """Trailing mean of ``f`` over ``period`` s at each sample time ``t`` (s)."""
    return np.array([f[(t > ti - period) & (t <= ti)].mean() for ti in t])


def push_latency(tmp_path, monkeypatch) -> float:
    """Seconds from the net contact force on the hand, averaged over a control period, first
    over the limit to the stop.

    Averaged: the cup pinched between the palm and the fingers chatters (2 ms samples of the
    net force alternate between 0 and 30-45 N while the push builds up), and a loop that
    reads the efforts once per period can only act on what the arm pushes with over one; a
    2 ms blip over the quasi-static limit is far under the transient limit (2x), which is the
    ISO/TS 15066 limit for contacts that short.
    The care arm's torque limits hold the cup against only ~50 N at this pose: a push over
    the ISO 140 N knocks its wrist past twice its speed limit, which the host's state check
    stops first.  So the launch file tightens the limit (``force_limit.scale`` 0.3: 42 N),
    and the hand is pushed at 300 N/s up to 120 N.
    """
    limit, period = 140.0 * 0.3, 1.0 / SPEC.control_rate_hz
    rows, result, lines = run_unsafe(tmp_path, monkeypatch, 1, care=True, hold_s=6.0,
                                     goal=BESIDE, push=True, force_scale=0.3)
    over = np.flatnonzero(period_mean(rows[:, 0], rows[:, 10], period) > limit)
    assert over.size, f"the push never exceeded {limit} N (peak {rows[:, 10].max():.0f} N)"
    stops = [t for t, line in lines if "protective stop (category 2)" in line]
    assert stops, [line for _, line in lines][-5:]
    assert result.summary.interventions["force_stop"] > 0
    return stops[0] - rows[over[0], 0]


def test_hand_pushed_into_the_cup_stops_within_two_periods(tmp_path, monkeypatch) -> None:
    assert push_latency(tmp_path, monkeypatch) <= 2.0 / SPEC.control_rate_hz


#: Beside the hand: the cup's centre 10 cm from the palm along +x (the arm resists ~46 N
#: there at its torque limits; a firm push still exceeds 140 N in the contact transient).
BESIDE = (0.10, 0.0, 0.0)


def _launch_with(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(LAUNCH.read_text())
    data.update(policy=str(constant_policy(tmp_path / "p.onnx", SPEC.default_pose)),
                telemetry=None, realtime={"sched_fifo_priority": 0, "mlockall": False})
    data["command"]["plant_signal"].update(count=1)
    data.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del data[key]
    p = tmp_path / "launch.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_handover_policy_without_care_section_is_refused_before_arming(tmp_path) -> None:
    from karakuri.launch.schema import LaunchError

    cfg = load_launch(_launch_with(tmp_path, care=None))
    with pytest.raises(LaunchError, match=r"care: missing; the policy was trained for "
                                          r"'handover', next to a person"):
        deploy_mod.deploy(cfg, log=lambda s: None)


@pytest.mark.parametrize(("care", "message"), [
    ({"separation": {"reduced_speed": 0.5}}, r"care.separation: separation.reduced_speed: 0.5"),
    ({"force_limit": {"region": "knee"}}, r"care.force_limit: force_limit.region: 'knee'"),
    ({"person": {"plant_site": 3}}, r"care.person.plant_site: expected a string"),
    ({"speed": 1}, r"care.speed: unknown key 'speed'"),
])
def test_bad_care_keys_are_named_at_load(tmp_path, care, message) -> None:
    from karakuri.launch.schema import LaunchError

    with pytest.raises(LaunchError, match=message):
        load_launch(_launch_with(tmp_path, care=care))


def test_unknown_person_site_is_refused_before_arming(tmp_path) -> None:
    from karakuri.launch.schema import LaunchError

    cfg = load_launch(_launch_with(tmp_path, care={"person": {"plant_site": "nowhere"}}))
    with pytest.raises(LaunchError, match=r"care.person.plant_site: the simulated scene has no "
                                          r"site 'nowhere'"):
        deploy_mod.deploy(cfg, log=lambda s: None)
