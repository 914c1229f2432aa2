"""The warp backend on CPU at tiny sizes: same physics as C MuJoCo, resets, randomization, errors.

These run in the default ``make test``: the gpu extra is installed there, and a missing
``mujoco_warp`` or ``warp`` is a collection error, not a skip (``KARAKURI_NO_GPU_EXTRA=1``
says it is absent on purpose).  Warp compiles the reach scene's kernels on first use (one to
two minutes on two cores; ``make test`` keeps them in ``.venv/warp-cache``); every test but the
box-on-plane overflows reuses them.  Those compile a second scene, so they are ``slow``.
"""

from __future__ import annotations

import os
import sys

import mujoco
import pytest
import torch

if os.environ.get("KARAKURI_NO_GPU_EXTRA") == "1":  # set by make when EXTRAS leaves out gpu
    pytest.skip("KARAKURI_NO_GPU_EXTRA=1: the gpu extra is deliberately not installed",
                allow_module_level=True)

from karakuri.sim.backends import make_physics
from karakuri.sim.cpu_backend import CpuPhysics
from karakuri.sim.env import BatchedEnv, build_model
from karakuri.sim.physics import PhysicsError
from karakuri.sim.registry import make_task
from karakuri.sim.task import Randomization
from karakuri.sim.tasks.reach import Reach, ReachConfig
from karakuri.sim.warp_backend import WarpPhysics
from karakuri.sim.warp_buffers import buffer_sizes

N = 3
ATOL = 1e-4  # float32 (warp) against float64 (C MuJoCo) over 200 physics steps


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    task = make_task("reach")
    return build_model(task.robot, task)


def _start(model: mujoco.MjModel, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Around the arm's home pose (at qpos0 the fingers start inside the floor)."""
    qpos = torch.as_tensor(model.qpos0, dtype=torch.float32).repeat(N, 1)
    qpos[:, :7] = torch.tensor(make_task("reach").robot.default_pose, dtype=torch.float32)
    qpos[:, :6] += (torch.rand(N, 6, generator=g) - 0.5) * 0.6
    qvel = (torch.rand(N, model.nv, generator=g) - 0.5) * 0.2
    return qpos, qvel


def _drive(physics: list, model: mujoco.MjModel, steps: int, seed: int = 0) -> list[list]:
    """Same start and controls on every backend; returns (qpos, qvel, sensors) per step."""
    g = torch.Generator().manual_seed(seed)
    qpos, qvel = _start(model, g)
    mask = torch.ones(N, dtype=torch.bool)
    out: list[list] = [[] for _ in physics]
    for p in physics:
        p.reset_worlds(mask, qpos, qvel)
    for _ in range(steps):
        ctrl = torch.zeros(N, model.nu)
        ctrl[:, :6] = qpos[:, :6] + (torch.rand(N, 6, generator=g) - 0.5) * 0.5
        ctrl[:, 6] = 0.02
        for p, rec in zip(physics, out, strict=True):
            p.ctrl[:] = ctrl
            p.step(10)
            rec.append((p.qpos.clone(), p.qvel.clone(), p.sensordata.clone()))
    return out


def test_same_start_and_controls_give_the_cpu_backend_trajectory(model) -> None:
    cpu, warp = _drive([CpuPhysics(model, N), WarpPhysics(model, N, device="cpu")], model, 20)
    for (qc, vc, sc), (qw, vw, sw) in zip(cpu, warp, strict=True):
        torch.testing.assert_close(qw, qc, atol=ATOL, rtol=0)
        torch.testing.assert_close(vw, vc, atol=10 * ATOL, rtol=0)  # rad/s
        torch.testing.assert_close(sw, sc, atol=ATOL, rtol=0)
    assert not torch.allclose(warp[0][0], warp[-1][0])  # the arm moved


def test_graph_replay_equals_plain_calls(model) -> None:
    a, b = _drive(
        [WarpPhysics(model, N, device="cpu"), WarpPhysics(model, N, device="cpu", graph=False)],
        model,
        5,
    )
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            torch.testing.assert_close(u, v, atol=0, rtol=0)


def test_reset_touches_only_masked_worlds_and_matches_mj_forward(model) -> None:
    cpu, warp = CpuPhysics(model, N), WarpPhysics(model, N, device="cpu")
    _drive([cpu, warp], model, 3)
    keep_q, keep_s = warp.qpos[1].clone(), warp.sensordata[1].clone()
    mask = torch.tensor([True, False, True])
    qpos, qvel = _start(model, torch.Generator().manual_seed(5))
    for p in (cpu, warp):
        p.reset_worlds(mask, qpos, qvel)
    assert torch.equal(warp.qpos[1], keep_q) and torch.equal(warp.sensordata[1], keep_s)
    torch.testing.assert_close(warp.qpos[mask], qpos[mask], atol=0, rtol=0)
    torch.testing.assert_close(warp.sensordata, cpu.sensordata, atol=ATOL, rtol=0)
    assert torch.all(warp.ctrl[mask] == 0)  # cleared as by mj_resetData
    for p in (cpu, warp):
        p.ctrl[:] = qpos[:, :7]
        p.step(10)
    torch.testing.assert_close(warp.qpos, cpu.qpos, atol=ATOL, rtol=0)


def test_per_world_model_params_match_the_cpu_backend(model) -> None:
    cpu, warp = CpuPhysics(model, N), WarpPhysics(model, N, device="cpu")
    mask = torch.tensor([True, True, False])
    gain = torch.as_tensor(model.actuator_gainprm, dtype=torch.float32).repeat(N, 1, 1)
    bias = torch.as_tensor(model.actuator_biasprm, dtype=torch.float32).repeat(N, 1, 1)
    scale = torch.tensor([0.5, 1.5, 3.0])[:, None]
    gain[..., 0] *= scale
    bias[..., 1] *= scale
    bias[..., 2] *= scale
    damping = torch.as_tensor(model.dof_damping, dtype=torch.float32) * scale
    mass = torch.as_tensor(model.body_mass, dtype=torch.float32) * scale
    params = {
        "actuator_gainprm": gain,
        "actuator_biasprm": bias,
        "dof_damping": damping,
        "body_mass": mass,
    }
    for p in (cpu, warp):
        p.set_model_params(mask, params)
    plain = WarpPhysics(model, N, device="cpu")
    c, w, u = _drive([cpu, warp, plain], model, 10)
    torch.testing.assert_close(w[-1][0], c[-1][0], atol=ATOL, rtol=0)
    assert (w[-1][0][:2] - u[-1][0][:2]).abs().max() > 1e-3  # randomized worlds differ
    torch.testing.assert_close(w[-1][0][2], u[-1][0][2], atol=0, rtol=0)  # world 2 untouched


def test_unbatchable_or_unknown_fields_are_named(model) -> None:
    warp = WarpPhysics(model, N, device="cpu")
    mask = torch.ones(N, dtype=torch.bool)
    with pytest.raises(ValueError, match="'geom_type' cannot differ between worlds"):
        warp.set_model_params(mask, {"geom_type": torch.zeros(N, model.ngeom)})
    with pytest.raises(ValueError, match="no field 'not_a_field'"):
        warp.set_model_params(mask, {"not_a_field": torch.zeros(N, 1)})
    with pytest.raises(ValueError, match=r"dof_damping: expected .* \(3, 8\)"):
        warp.set_model_params(mask, {"dof_damping": torch.zeros(N, 2)})


def test_warp_backend_without_the_gpu_extra_is_a_one_line_error(model, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mujoco_warp", None)  # import mujoco_warp now fails
    monkeypatch.delitem(sys.modules, "karakuri.sim.warp_backend")
    with pytest.raises(ValueError, match=r"needs the gpu extra \(mujoco_warp is not import"):
        make_physics("warp", model, 1, "cpu")


BOX_ON_PLANE = """
<mujoco>
  <worldbody>
    <geom type="plane" size="1 1 0.1"/>
    <body pos="0 0 0.2"><freejoint/><geom type="box" size="0.1 0.1 0.1"/></body>
  </worldbody>
</mujoco>
"""


def test_buffer_sizes_come_from_the_model_and_can_be_overridden(model, monkeypatch) -> None:
    nconmax, njmax = buffer_sizes(model)
    # two finger pads can touch the floor (a box under a plane: up to 8 contacts each)
    assert nconmax == 16
    assert njmax == 1 + 6 + 8 + 4 * 16  # finger mirror, joint friction, limits, condim-4 contacts
    monkeypatch.setenv("KARAKURI_WARP_NCONMAX", "32")
    assert buffer_sizes(model)[0] == 32
    assert buffer_sizes(model, nconmax=12)[0] == 12
    monkeypatch.setenv("KARAKURI_WARP_NJMAX", "lots")
    with pytest.raises(ValueError, match="KARAKURI_WARP_NJMAX='lots'"):
        buffer_sizes(model)


@pytest.mark.slow  # a second scene: its kernels compile for another half minute
@pytest.mark.parametrize(
    ("setting", "kwargs"), [("nconmax", {"nconmax": 1}), ("njmax", {"njmax": 2})]
)
def test_a_buffer_overflow_names_the_setting_and_how_to_raise_it(setting, kwargs) -> None:
    box = mujoco.MjModel.from_xml_string(BOX_ON_PLANE)
    warp = WarpPhysics(box, 2, device="cpu", **kwargs)
    with pytest.raises(PhysicsError, match=rf"{setting} is \d+ per world: set KARAKURI_WARP_"):
        for _ in range(30):  # the box lands after ~0.1 s
            warp.step(25)


def test_non_finite_state_is_a_named_error(model) -> None:
    warp = WarpPhysics(model, N, device="cpu")
    qpos, qvel = _start(model, torch.Generator().manual_seed(0))
    qvel[1, 2] = float("nan")
    warp.reset_worlds(torch.ones(N, dtype=torch.bool), qpos, qvel)
    with pytest.raises(PhysicsError, match=r"non-finite physics state in worlds \[1\]"):
        warp.step(2)


def test_env_with_randomization_matches_the_cpu_backend() -> None:
    rand = Randomization(
        friction=(0.5, 1.5),
        mass=(0.8, 1.2),
        actuator_gain=(0.7, 1.3),
        joint_damping=(0.5, 2.0),
        obs_noise=1.0,
        action_latency_steps=1,
    )
    envs = []
    for backend in ("cpu", "warp"):
        task = Reach(make_task("reach").robot, ReachConfig(episode_s=0.2, randomize=rand))
        envs.append(BatchedEnv(task, N, backend=backend, device="cpu", seed=3))
    g = torch.Generator().manual_seed(1)
    first = [e.reset()["critic"] for e in envs]
    torch.testing.assert_close(first[1], first[0], atol=ATOL, rtol=0)
    for _ in range(25):  # crosses two auto-resets, each re-sampling the model
        a = torch.rand(N, envs[0].action_size, generator=g) * 2 - 1
        (oc, rc, *_), (ow, rw, *_) = (e.step(a) for e in envs)
        torch.testing.assert_close(ow["critic"], oc["critic"], atol=1e-3, rtol=0)
        torch.testing.assert_close(rw, rc, atol=1e-3, rtol=0)
    gains = envs[1].physics._model_view("actuator_gainprm")[:, 0, 0]
    assert len(set(gains.tolist())) == N  # one sampled gain per world
    for e in envs:
        e.close()


@pytest.mark.gpu
def test_on_cuda_graphs_match_the_cpu_backend_without_torch_host_syncs(model) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    cpu, warp = CpuPhysics(model, N), WarpPhysics(model, N, device="cuda")
    assert warp.qpos.is_cuda and warp._graph  # graphs need warp's memory pool (on by default)
    _drive([cpu, warp], model, 2)  # compiles and captures
    mask = torch.tensor([True, False, True], device="cuda")
    qpos, qvel = (x.cuda() for x in _start(model, torch.Generator().manual_seed(2)))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any torch op that waits for the GPU raises
    try:
        for _ in range(3):
            warp.step(10)
            warp.reset_worlds(mask, qpos, qvel)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu.reset_worlds(mask.cpu(), qpos.cpu(), qvel.cpu())
    warp.ctrl[:] = cpu.ctrl.cuda()
    cpu_traj, warp_traj = [], []
    for _ in range(10):
        cpu.step(10)
        warp.step(10)
        cpu_traj.append(cpu.qpos[mask.cpu()].clone())
        warp_traj.append(warp.qpos[mask].cpu())
    warp.check()
    torch.testing.assert_close(torch.stack(warp_traj), torch.stack(cpu_traj), atol=ATOL, rtol=0)
