"""The SIL parity bound: a correct system passes with probability >= 1 - alpha, a broken one not."""

import numpy as np
import pytest

from karakuri.launch.parity import FLIP_RATE, PARITY_ALPHA, ParityResult, allowed_gap


def test_the_bound_of_the_parity_tests():
    assert (allowed_gap(12), allowed_gap(20), allowed_gap(40)) == (3, 4, 6)
    assert allowed_gap(0) == 0 and allowed_gap(12, flip_rate=0.0) == 0


@pytest.mark.parametrize("n", [5, 12, 20, 40, 100])
def test_a_correct_system_fails_at_most_alpha_and_the_bound_is_the_smallest(n):
    """Sampled independently of the closed form: Binomial(n, FLIP_RATE) discordant episodes."""
    k = allowed_gap(n)
    flips = np.random.default_rng(n).binomial(n, FLIP_RATE, 400_000)
    assert np.mean(flips > k) <= PARITY_ALPHA + 0.001
    assert np.mean(flips > k - 1) > PARITY_ALPHA  # one episode fewer would fail too often


def test_gap_in_episodes():
    r = ParityResult(loop_success=9 / 12, sim_success=1.0, episodes=12, deploy=None, sim={})
    assert r.gap_episodes == 3 and r.gap_pp == pytest.approx(25.0)
    assert ParityResult(1 / 12, 1.0, 12, None, {}).gap_episodes > allowed_gap(12)  # the UR5e
