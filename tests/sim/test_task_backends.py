"""pick_place and handover on the warp backend: the same trajectories as C MuJoCo (warp on
CPU, slow: kernels compile for a minute), and no host syncs in the task code on a GPU."""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("KARAKURI_NO_GPU_EXTRA") == "1":  # set by make when EXTRAS leaves out gpu
    pytest.skip("KARAKURI_NO_GPU_EXTRA=1: the gpu extra is deliberately not installed",
                allow_module_level=True)

import mujoco_warp  # noqa: F401  (no gpu extra: a collection error, not a skip)

from karakuri.sim.env import BatchedEnv
from karakuri.sim.registry import make_task

N = 3
TASKS = ("pick_place", "handover")


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_randomized_task_matches_the_cpu_backend(task: str) -> None:
    envs = [BatchedEnv(make_task(task), N, backend=b, device="cpu", seed=5) for b in
            ("cpu", "warp")]
    g = torch.Generator().manual_seed(2)
    first = [e.reset()["critic"] for e in envs]
    torch.testing.assert_close(first[1], first[0], atol=1e-4, rtol=0)
    for _ in range(15):
        a = (torch.rand(N, envs[0].action_size, generator=g) * 2 - 1) * 0.5
        (oc, rc, tc, *_), (ow, rw, tw, *_) = (e.step(a) for e in envs)
        torch.testing.assert_close(ow["critic"], oc["critic"], atol=2e-3, rtol=0)
        torch.testing.assert_close(rw, rc, atol=2e-3, rtol=0)
        assert torch.equal(tw, tc)
    for e in envs:
        e.close()


@pytest.mark.gpu
@pytest.mark.parametrize("task", TASKS)
def test_task_code_makes_no_host_syncs_on_cuda(task: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    env = BatchedEnv(make_task(task), 8, backend="warp", device="cuda", seed=0)
    env.reset()
    a = torch.zeros(8, env.action_size, device="cuda")
    env.step(a)  # compiles and captures
    t, p = env.task, env.physics
    mask = torch.arange(8, device="cuda") % 2 == 0
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any torch op that waits for the GPU raises
    try:
        t.signals(p)
        t.reward_terms(p, a, a)
        t.terminated(p)
        t.success(p)
        t.metrics(p)
        t.stage_flags(p)
        env._track_stages()  # the stage funnel's per-step update
        t.reset_worlds(mask, p)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    env.close()
