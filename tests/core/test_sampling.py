"""llm2tflite.core.sampling: greedy, temperature, top-k, top-p, seeded (numpy only, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from llm2tflite.core.sampling import GREEDY, Sampler, nucleus_size, top_k_candidates


def _draws(settings: Sampler, logits, count: int) -> np.ndarray:
    pick = settings.start()
    return np.array([pick(logits) for _ in range(count)])


def _random_logits(seed: int, size: int = 1000, scale: float = 3.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(size) * scale).astype(np.float32)


def test_greedy_is_argmax_and_lowest_id_on_ties():
    logits = _random_logits(0)
    assert GREEDY.start()(logits) == int(np.argmax(logits))
    tied = np.array([0.1, 2.0, -1.0, 2.0], np.float32)
    assert GREEDY.start()(tied) == 1
    assert Sampler(temperature=0.0, top_k=50, seed=3).start()(tied) == 1


@pytest.mark.parametrize("temperature", [0.3, 1.0, 5.0])
def test_top_k_one_equals_greedy(temperature):
    for seed in range(5):
        logits = _random_logits(seed)
        settings = Sampler(temperature=temperature, top_k=1, seed=seed)
        assert settings.greedy
        assert set(_draws(settings, logits, 20)) == {int(np.argmax(logits))}


def test_same_seed_same_ids_other_seed_other_ids():
    logits = _random_logits(1, scale=1.0)
    settings = Sampler(temperature=1.0, top_k=100, top_p=0.95, seed=1234)
    first, second = _draws(settings, logits, 200), _draws(settings, logits, 200)
    assert first.tolist() == second.tolist()
    other = _draws(Sampler(temperature=1.0, top_k=100, top_p=0.95, seed=1235), logits, 200)
    assert other.tolist() != first.tolist()
    # Draws vary within one generation (a sampler, not a constant).
    assert len(set(first.tolist())) > 10


def test_top_k_draws_only_the_k_most_likely_and_all_of_them():
    logits = _random_logits(2, scale=0.5)
    k = 5
    draws = _draws(Sampler(temperature=1.0, top_k=k, seed=0), logits, 3000)
    assert set(draws.tolist()) == set(np.argsort(-logits)[:k].tolist())


def test_top_k_ties_keep_the_lowest_ids():
    logits = np.array([1.0, 3.0, 2.0, 2.0, 2.0, 0.5], np.float32)
    assert top_k_candidates(logits, 3).tolist() == [1, 2, 3]
    assert top_k_candidates(logits, 6).tolist() == [1, 2, 3, 4, 0, 5]


def test_top_p_keeps_the_smallest_set_with_enough_mass():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    assert nucleus_size(probs, 0.5) == 1
    assert nucleus_size(probs, 0.51) == 2
    assert nucleus_size(probs, 0.8) == 2
    assert nucleus_size(probs, 0.81) == 3
    assert nucleus_size(probs, 0.999) == 4
    logits = np.log(np.array([0.05, 0.5, 0.15, 0.3])).astype(np.float32)  # shuffled ids
    for top_p, support in [(0.5, {1}), (0.75, {1, 3}), (0.9, {1, 3, 2}), (0.99, {0, 1, 2, 3})]:
        draws = _draws(Sampler(temperature=1.0, top_p=top_p, seed=7), logits, 2000)
        assert set(draws.tolist()) == support, top_p


def test_top_p_on_a_flat_vocabulary_sorts_everything():
    """The nucleus outgrows the first candidates examined: same rule, full sort."""
    size = 5000
    logits = np.zeros(size, np.float32)
    logits[:10] = 0.01  # ten slightly likelier tokens first in the order
    draws = _draws(Sampler(temperature=1.0, top_p=0.5, seed=0), logits, 4000)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    kept = nucleus_size(np.sort(probs)[::-1], 0.5)
    assert kept > 256
    # The kept set is the ten likelier ids and then the lowest ids among the ties.
    assert 256 < draws.max() < kept
    assert len(set(draws.tolist())) > 0.7 * kept


def test_temperature_draws_follow_the_softmax():
    logits = np.array([2.0, 1.0, 0.0, -1.0], np.float32)
    for temperature in (0.5, 2.0):
        draws = _draws(Sampler(temperature=temperature, seed=11), logits, 20000)
        frequencies = np.bincount(draws, minlength=4) / draws.size
        expected = np.exp(logits / temperature) / np.exp(logits / temperature).sum()
        # 20000 draws: the standard error of each frequency is below 0.0036.
        np.testing.assert_allclose(frequencies, expected, atol=0.015)


def test_top_k_then_top_p_renormalise_within_the_k():
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1])).astype(np.float32)
    # top-k 2 leaves {0: 4/7, 1: 3/7}; top-p 0.5 then keeps id 0 alone.
    assert set(_draws(Sampler(temperature=1.0, top_k=2, top_p=0.5, seed=0), logits, 500)) == {0}
    assert set(_draws(Sampler(temperature=1.0, top_k=2, top_p=0.6, seed=0), logits, 500)) == {0, 1}


@pytest.mark.parametrize(
    "arguments",
    [
        dict(temperature=-1),
        dict(temperature=float("nan")),
        dict(top_k=0),
        dict(top_p=0.0),
        dict(top_p=1.5),
    ],
)
def test_invalid_settings_are_refused(arguments):
    with pytest.raises(ValueError):
        Sampler(**arguments)


def test_describe():
    assert GREEDY.describe() == "greedy"
    assert Sampler(temperature=0.7, top_k=40, top_p=0.9, seed=5).describe() == (
        "temperature=0.7, top_k=40, top_p=0.9, seed=5"
    )
