"""Handover on the care arm: success, the speed and force limits, metrics, the moving hand."""

from __future__ import annotations

import pytest
import torch

from karakuri.robot.registry import load_robot
from karakuri.sim.env import BatchedEnv
from karakuri.sim.tasks.handover import (
    FORCE_LIMITS_N,
    REGIONS,
    SPEED_LIMIT,
    Handover,
    HandoverConfig,
)

# Care-arm poses holding the cup upright at the handover point of the hand at rest, and
# 3.5 cm lower (its bottom 7 mm into the palm), rad.
AT_HAND = (0.8042, 0.2262, 2.2833, 0.9103, -1.1485, 1.0853)
ON_PALM = (0.8042, 0.3238, 2.3303, 0.8658, -1.2399, 1.206)


def make(n: int = 1, **cfg) -> BatchedEnv:
    task = Handover(load_robot("care_arm"), HandoverConfig(**cfg))
    return BatchedEnv(task, n, seed=0, randomize=False)


def place(env: BatchedEnv, arm: tuple[float, ...] | None = None,
          hand: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
    """Reset, then put the arm at ``arm`` (default: as reset) and the hand at rest + ``hand``
    (the point the user holds it to; still, so it stays there)."""
    env.reset()
    task, p = env.task, env.physics
    qpos, qvel = p.qpos.clone(), torch.zeros_like(p.qvel)
    if arm is not None:
        qpos[:, env.qpos_idx[: len(arm)]] = torch.tensor(arm)
    qpos[:, task._ref_q] = torch.tensor(hand)
    p.reset_worlds(torch.ones(env.num_worlds, dtype=torch.bool), qpos, qvel)
    p.ctrl[:, env.ctrl_idx] = p.qpos[:, env.qpos_idx]


def sweep(env: BatchedEnv, yaw: float, steps: int = 20) -> tuple[list[dict], list[float]]:
    """Swing the shoulder at full speed; the per-step info and tool speeds."""
    infos, speeds = [], []
    a = torch.zeros(env.num_worlds, env.action_size)
    a[:, 0] = yaw
    for _ in range(steps):
        _, rew, term, _, info = env.step(a)
        infos.append({"reward": float(rew[0]), "terminated": bool(term[0]), **info})
        speeds.append(float(env.raw_signals()["tool_vel"][0].norm()))
        if term[0]:
            break
    return infos, speeds


def test_limits_are_the_cited_numbers() -> None:
    assert SPEED_LIMIT == 0.25
    assert dict(zip(REGIONS, FORCE_LIMITS_N, strict=True)) == {
        "hand": 140.0, "lower_arm": 160.0, "chest": 140.0, "face": 65.0}


def test_fast_tool_near_the_hand_ends_the_episode_with_the_penalty() -> None:
    env = make()
    place(env, hand=(0.0, -0.13, 0.0))  # hand drifted toward the arm: tool within 0.3 m
    infos, speeds = sweep(env, yaw=1.0)
    last = infos[-1]
    assert last["terminated"], f"no violation at tool speeds {speeds}"
    assert last["reward"] <= -env.task.cfg.violation_penalty + 10
    ep = last["episode"]
    assert ep["violation"].item() == 1.0 and ep["success"].item() == 0.0
    assert ep["peak_zone_speed"].item() > SPEED_LIMIT
    env.close()


def test_the_same_speed_away_from_the_hand_is_allowed() -> None:
    env = make()
    place(env)  # hand at rest, 0.4 m away; swing away from it
    infos, speeds = sweep(env, yaw=-1.0)
    assert max(speeds) > SPEED_LIMIT and not any(i["terminated"] for i in infos)
    env.close()


def test_force_over_the_region_limit_ends_the_episode() -> None:
    # the cup pressed onto the palm against the user's arm: a contact on the hand region
    env = make(force_limits=(1.0, *FORCE_LIMITS_N[1:]))
    place(env, arm=ON_PALM)
    _, rew, term, _, info = env.step(torch.zeros(1, env.action_size))
    assert term.item() and info["episode"]["violation"].item() == 1.0
    assert info["episode"]["peak_contact_force"].item() > 1.0
    assert rew.item() < -40
    env.close()


def test_contact_below_the_limit_is_measured_not_ended() -> None:
    env = make()
    place(env, arm=ON_PALM)
    for _ in range(5):
        _, _, term, _, _ = env.step(torch.zeros(1, env.action_size))
        assert not term.item()
    force = env.raw_signals()["person_force"][0]
    assert 0.5 < force[0] < FORCE_LIMITS_N[0] and float(force[1:].abs().sum()) == 0.0
    env.close()


def test_success_only_with_the_cup_at_the_hand() -> None:
    env = make(n=2)
    place(env, arm=AT_HAND)
    assert env.task.success(env.physics).all()
    place(env)  # at home
    assert not env.task.success(env.physics).any()
    env.close()


def test_episode_reports_success_and_safety_metrics() -> None:
    env = make(n=2, episode_s=0.2)
    env.reset()
    for _ in range(env.task.episode_steps):
        _, _, _, trunc, info = env.step(torch.zeros(2, env.action_size))
    assert trunc.all()
    assert set(info["episode"]) >= {"success", "peak_zone_speed", "peak_contact_force",
                                    "violation", "final_distance"}
    env.close()


def test_hand_drifts_slowly_on_its_springs() -> None:
    env = make(n=4, episode_s=2.0)
    env.reset()
    start = env.raw_signals()["hand_pos"].clone()
    peak = 0.0
    for _ in range(50):
        env.step(torch.zeros(4, env.action_size))
        peak = max(peak, float(env.raw_signals()["hand_vel"].norm(dim=-1).max()))
    moved = (env.raw_signals()["hand_pos"] - start).norm(dim=-1)
    assert (moved > 1e-3).any() and peak < 0.1  # moving, and slowly (m/s)
    env.close()


def test_bad_force_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="one value > 0 N per region"):
        HandoverConfig(force_limits=(140.0,))


def script_to_hand(env: BatchedEnv, leave_at: list[int | None]) -> dict:
    """One episode per world: a joint-space move to ``AT_HAND`` (every joint in step, the
    fastest at full action) that holds there, or turns back home at step ``leave_at[w]``, or
    (``-1``) stays home; returns the ended episodes' stats."""
    place(env)
    home = env.physics.qpos[:, env.qpos_idx[:6]].clone()
    at_hand = torch.tensor(AT_HAND).expand_as(home)
    for t in range(env.task.episode_steps):
        go = torch.tensor([leave is None or t < leave for leave in leave_at])[:, None]
        target = torch.where(go, at_hand, home)
        a = (target - env.physics.qpos[:, env.qpos_idx[:6]]) / env.task.cfg.action_scale
        a = a / a.abs().amax(dim=-1, keepdim=True).clamp(min=1.0)
        _, _, term, _, info = env.step(a)
        assert not term.any(), "the script violated a limit"
    return info["episode"]


def funnel_of(env: BatchedEnv, ep: dict) -> list[list[float]]:
    """Per world, 1.0 for each stage of the funnel its episode reached."""
    return torch.stack([ep[f"funnel/{s}"] for s in env.task.stages], dim=-1).tolist()


def test_funnel_on_scripted_handovers() -> None:
    """To the hand and held: every stage; stays home: none; at the hand upright for ~0.1 s,
    then back home: the funnel stops before held (0.5 s there upright)."""
    env = make(n=3)
    assert env.task.stages == ("approached", "at_hand", "upright", "held")
    ep = script_to_hand(env, leave_at=[None, -1, 155])
    assert funnel_of(env, ep) == [[1.0] * 4, [0.0] * 4, [1.0, 1.0, 1.0, 0.0]]
    assert ep["success"].tolist() == [1.0, 0.0, 0.0]
    env.close()


@pytest.mark.slow
def test_funnel_stops_at_the_hand_when_the_cup_is_never_upright_enough() -> None:
    env = make(n=1, max_tilt=0.0, episode_s=3.4)  # no tilt passes: at the hand, never upright
    ep = script_to_hand(env, leave_at=[None])
    assert funnel_of(env, ep) == [[1.0, 1.0, 0.0, 0.0]]
    env.close()


def test_monitors_update_in_after_step_and_rewards_have_no_side_effects() -> None:
    """The SIL plant calls after_step once per tick and never reward_terms (issue 12, item 5)."""
    env = make()
    place(env, hand=(0.0, -0.13, 0.0))
    sweep(env, yaw=1.0, steps=3)
    task, p = env.task, env.physics
    before = (task.peak_speed.clone(), task.peak_force.clone(), task.violated.clone(),
              task.held_steps.clone())
    zeros = torch.zeros(1, env.action_size)
    for _ in range(3):
        task.reward_terms(p, zeros, zeros)
    after = (task.peak_speed, task.peak_force, task.violated, task.held_steps)
    assert all(torch.equal(b, a) for b, a in zip(before, after, strict=True))
    task.peak_speed.fill_(0.0)  # after_step alone raises the peak to this state's zone speed
    task.after_step(p)
    speed = torch.linalg.norm(p.sensordata[:, task._vel], dim=-1)
    in_zone = torch.linalg.norm(p.sensordata[:, task._tool] - p.sensordata[:, task._palm],
                                dim=-1) < 0.3
    assert torch.equal(task.peak_speed, speed * in_zone)
    task.after_reset(torch.ones(1, dtype=torch.bool), p)
    assert task.peak_speed.item() == 0.0 and task.held_steps.item() == 0
    assert not task.violated.item()
    env.close()
