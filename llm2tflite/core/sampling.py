"""Choose the next token from a model's logits: greedy, temperature, top-k, top-p; seeded.

The LiteRT route's models return logits and leave the choice to the runtime (the codelab route's
sampler is traced into its graph). A :class:`Sampler` is the user's settings; ``sampler.start()``
gives a :class:`TokenSampler` with its own ``numpy.random.Generator``, so one generation with a
given seed always draws the same ids, whatever ran before it.

The steps, in the usual order (Hugging Face's ``generate``, LiteRT-LM's CPU sampler):

1. ``temperature`` divides the logits (``0`` means greedy: the most likely token, the lowest id
   on a tie, as KerasHub's ``GreedySampler``);
2. ``top_k`` keeps the k most likely tokens;
3. ``top_p`` keeps the smallest set of most likely tokens whose probability mass (after 1 and 2)
   is at least p (always at least one token);
4. one token is drawn from what is left, renormalised.

Greedy also results from ``top_k=1``. Light: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Candidates examined before a full sort in top-p: the nucleus almost always lies within them,
# and when it does not the full sort runs (same result, only slower).
_TOP_P_FIRST_CANDIDATES = 256


@dataclass(frozen=True)
class Sampler:
    """How to pick tokens. The default is greedy decoding."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def __post_init__(self):
        if not (self.temperature >= 0 and np.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1

    def describe(self) -> str:
        if self.greedy:
            return "greedy"
        parts = [f"temperature={self.temperature:g}"]
        if self.top_k is not None:
            parts.append(f"top_k={self.top_k}")
        if self.top_p is not None and self.top_p < 1:
            parts.append(f"top_p={self.top_p:g}")
        parts.append(f"seed={self.seed}" if self.seed is not None else "unseeded")
        return ", ".join(parts)

    def start(self) -> TokenSampler:
        """A sampler for one generation (a fresh random generator from ``seed``)."""
        return TokenSampler(self)


GREEDY = Sampler()


def top_k_candidates(logits: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k largest logits, most likely first (lower id first on ties)."""
    k = min(k, logits.shape[0])
    if k < logits.shape[0]:
        candidates = np.argpartition(-logits, k - 1)[:k]
        # argpartition keeps the k-th value's ties arbitrarily: keep the lowest ids among them.
        kth = logits[candidates].min()
        tied = np.flatnonzero(logits == kth)
        if tied.size > np.count_nonzero(logits[candidates] == kth):
            above = candidates[logits[candidates] > kth]
            candidates = np.concatenate([above, tied[: k - above.size]])
    else:
        candidates = np.arange(k)
    order = np.lexsort((candidates, -logits[candidates]))
    return candidates[order]


def _softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


def nucleus_size(sorted_probs: np.ndarray, top_p: float) -> int:
    """Tokens kept by top-p: the shortest prefix of ``sorted_probs`` (descending) with mass >= p.

    ``sorted_probs`` may be the most likely part of the distribution only, as long as its mass
    reaches ``top_p``; if rounding leaves it a hair short, all of it is kept.
    """
    cumulative = np.cumsum(sorted_probs, dtype=np.float64)
    index = int(np.searchsorted(cumulative, top_p, side="left"))
    return min(index + 1, sorted_probs.shape[0])


class TokenSampler:
    """One generation's token picker (see the module docstring for the steps)."""

    def __init__(self, settings: Sampler = GREEDY):
        self.settings = settings
        self.rng = np.random.default_rng(settings.seed)

    def __call__(self, logits) -> int:
        logits = np.asarray(logits).reshape(-1)
        settings = self.settings
        if settings.greedy:
            return int(np.argmax(logits))
        scores = logits.astype(np.float64) / settings.temperature
        candidates = None
        if settings.top_k is not None and settings.top_k < scores.shape[0]:
            candidates = top_k_candidates(scores, settings.top_k)
        if settings.top_p is not None and settings.top_p < 1:
            candidates, probs = self._nucleus(scores, candidates, settings.top_p)
        elif candidates is not None:
            probs = _softmax(scores[candidates])
        else:
            probs = _softmax(scores)
        choice = self.rng.choice(probs.shape[0], p=probs)
        return int(choice if candidates is None else candidates[choice])

    @staticmethod
    def _nucleus(scores, candidates, top_p):
        """(kept ids, their renormalised probabilities) for top-p over ``candidates``."""
        if candidates is None:
            # Probabilities over the whole vocabulary; the nucleus is usually among the most
            # likely few hundred, checked before sorting everything.
            probs_all = _softmax(scores)
            first = top_k_candidates(scores, min(_TOP_P_FIRST_CANDIDATES, scores.shape[0]))
            if probs_all[first].sum() >= top_p or first.shape[0] == scores.shape[0]:
                candidates = first
            else:
                candidates = top_k_candidates(scores, scores.shape[0])
            probs = probs_all[candidates]
        else:
            probs = _softmax(scores[candidates])
        kept = nucleus_size(probs, top_p)
        probs = probs[:kept]
        return candidates[:kept], probs / probs.sum()
