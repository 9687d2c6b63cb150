"""The three searches as per-problem states: which branches to expand, and what to keep of their children.

Each state answers :meth:`pending` (branches to continue this round and how many ways) and takes
the scored children back in :meth:`advance`; the round loop (:mod:`ttscale.search.algorithms`)
batches every problem's pending expansions into one generator call and one scorer call.
"""

from __future__ import annotations

import numpy as np

from ttscale.search.branch import Branch
from ttscale.search.params import SearchMethod, SearchParams


def _best_first(branches: list[Branch]) -> list[Branch]:
    # Stable: equal scores keep generation order, so a seeded run is reproducible.
    return sorted(branches, key=lambda b: -b.score)


class SearchState:
    def __init__(self, params: SearchParams) -> None:
        self.params = params
        self.round = 0
        self.done = False

    def pending(self) -> list[tuple[Branch, int]]:
        raise NotImplementedError

    def advance(self, children: list[list[Branch]]) -> None:
        """``children[i]``: the scored continuations of ``pending()[i]``."""
        raise NotImplementedError

    def finals(self) -> list[Branch]:
        raise NotImplementedError

    def _last_round(self) -> bool:
        self.round += 1
        return self.round >= self.params.max_steps


def _cut(branches: list[Branch]) -> None:
    for b in branches:
        if b.live:
            b.finish = "length"


class BeamState(SearchState):
    """Beam search: the root is expanded N ways, then the M best live branches ``expand`` ways each;
    finished branches leave the beam for the completed pool; done with N completed (the best N are
    returned) or at max steps (then the best live branches fill the pool up to N)."""

    def __init__(self, params: SearchParams) -> None:
        super().__init__(params)
        self.beams: list[Branch] = [Branch()]
        self.completed: list[Branch] = []

    def pending(self) -> list[tuple[Branch, int]]:
        if self.round == 0:
            return [(self.beams[0], self.params.width)]
        return [(b, self.params.expansions) for b in self.beams]

    def advance(self, children: list[list[Branch]]) -> None:
        flat = [c for group in children for c in group]
        self.completed += [c for c in flat if not c.live]
        live = _best_first([c for c in flat if c.live])
        room = self.params.width - len(self.completed)
        if self._last_round() and room > 0:
            _cut(live)
            self.completed += live[:room]
            live = []
        self.beams = live[: min(self.params.keep, max(room, 0))]
        self.done = not self.beams

    def finals(self) -> list[Branch]:
        return _best_first(self.completed)[: self.params.width]


class DVTSState(SearchState):
    """DVTS: N/M independent subtrees, each keeping its one best child and expanding it M ways.
    A subtree ends when its best child is finished; it contributes the M children of that round
    (the unfinished ones marked ``pruned``), so the problem gets N final candidates."""

    def __init__(self, params: SearchParams) -> None:
        super().__init__(params)
        self.heads: list[Branch | None] = [Branch() for _ in range(params.width // params.keep)]
        self.out: list[list[Branch]] = [[] for _ in self.heads]

    def pending(self) -> list[tuple[Branch, int]]:
        return [(h, self.params.keep) for h in self.heads if h is not None]

    def advance(self, children: list[list[Branch]]) -> None:
        live_trees = [i for i, h in enumerate(self.heads) if h is not None]
        last = self._last_round()
        for tree, group in zip(live_trees, children):
            ranked = _best_first(group)
            if not ranked[0].live or last:
                for c in ranked:
                    if c.live:
                        c.finish = "length" if last else "pruned"
                self.out[tree] = ranked
                self.heads[tree] = None
            else:
                self.heads[tree] = next(c for c in ranked if c.live)
        self.done = all(h is None for h in self.heads)

    def finals(self) -> list[Branch]:
        return _best_first([c for group in self.out for c in group])


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = scores / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


class ParticleState(SearchState):
    """Particle filtering: N particles each take one step per round; then all N (finished ones too,
    which take no more steps) are resampled with replacement by softmax(score / temperature)."""

    def __init__(self, params: SearchParams, rng: np.random.Generator) -> None:
        super().__init__(params)
        self.rng = rng
        self.particles: list[Branch] = [Branch() for _ in range(params.width)]

    def pending(self) -> list[tuple[Branch, int]]:
        return [(p, 1) for p in self.particles if p.live]

    def advance(self, children: list[list[Branch]]) -> None:
        new = iter(children)
        self.particles = [next(new)[0] if p.live else p for p in self.particles]
        if self._last_round():
            _cut(self.particles)
        if all(not p.live for p in self.particles):
            self.done = True
            return
        weights = softmax(np.array([p.score for p in self.particles], dtype=float), self.params.temperature)
        picks = self.rng.choice(len(self.particles), size=len(self.particles), p=weights)
        # Copies: a particle drawn twice is two branches from here on.
        self.particles = [_copy(self.particles[i]) for i in sorted(picks)]

    def finals(self) -> list[Branch]:
        return _best_first(self.particles)


def _copy(b: Branch) -> Branch:
    return Branch(b.steps, list(b.step_scores), b.score, b.finish)


def new_state(params: SearchParams, rng: np.random.Generator) -> SearchState:
    if params.method is SearchMethod.BEAM:
        return BeamState(params)
    if params.method is SearchMethod.DVTS:
        return DVTSState(params)
    return ParticleState(params, rng)
