"""Exact replay of vote-count stopping rules, and the best any vote-only rule can do on a bank.

``ttscale.adaptive.simulate`` shuffles each question's samples a few times and runs every rule on every
shuffle; its figures carry permutation noise (0.02-0.2 point on real banks, as large as the gaps
users compare). Here the expectation over *every* order is computed exactly.

Under the replay (a question's K-sample prefix of a uniformly random order of its bank samples),
the sorted vote counts plus the number of samples without an answer are a sufficient statistic:
given them, the order says nothing more about the question. So a question is a distribution over
states s = (counts, no-answer count) after n = 1..K samples, and with the bank's questions pooled
(each with weight 1/Q) the states form a Markov chain: P(s' | s) = L(s') ways(s' -> s) / ((n+1)
L(s)), where L is the pooled probability of a state and ways counts the samples of s' whose removal
leaves s (under exchangeable draws the last of n+1 samples is any of them with equal chance). Each
question's L is enumerated by folding in its answer classes one at a time, P(counts c) =
prod_i C(m_i, c_i) / C(N, n), merging partial states with the same sorted counts.

On these tables:

* :meth:`VoteStates.evaluate` scores any rule that reads the vote counts (ASC, PPR-1v1,
  first-to-ahead; not ESC, which reads the order) exactly: mean samples and tie-credited accuracy;
* :meth:`VoteStates.bayes` is backward induction for the rule maximising accuracy - price * samples
  when the rule knows the bank's own per-question answer distributions as its prior (not which
  question it faces). Sweeping the price traces a frontier no vote-only rule or allocator passes:
  answering the plurality (as every rule here does), or the class most likely correct.

Cost: a few seconds for banks whose questions have a handful of answer classes (GPT-4 on GSM8K,
1315 x 12: 328 states); minutes for scattered answers (Llama-2-13B, 400 x 40 of 48: 736,042 states).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from math import comb, factorial

import numpy as np
from scipy.sparse import csr_matrix

from ttscale.adaptive.simulate import RulePoint
from ttscale.adaptive.stopping import StoppingRule, VoteTrajectories
from ttscale.answers.candidates import Candidates
from ttscale.errors import ConfigError, EstimationError
from ttscale.limits import check_memory, env_limit
from ttscale.validation import check_count

__all__ = ["State", "VoteStates", "bayes_frontier", "check_exact_states", "crossfit_bayes_frontier", "exact_rule_points",
           "held_out_bayes_frontier", "largest_exact_k", "samples_to_reach", "state_bound"]

State = tuple[tuple[int, ...], int]
"""(vote counts sorted descending, samples without an answer)."""

DEFAULT_PRICES = np.concatenate([np.geomspace(1e-5, 0.2, 120), [0.0]])
"""Prices per sample (accuracy per sample) swept for the Bayes frontier."""


STATE_BYTES = 1024
"""Memory per vote state of the tables (state keys, probabilities, per-level arrays, transitions):
about 1 KiB measured on banks of 40-100 samples per question with 10-30 answer classes."""


MAX_EXACT_SAMPLES = 2048
"""Most samples per question the exact tables replay (already 2 answers of 1,024 give a million states;
the majority estimate behind the replay stops at 1,000)."""


def state_bound(problems: Sequence[Candidates], max_samples: int, stop_at: float = float("inf")) -> float:
    """An upper bound on :attr:`VoteStates.states`, computed in milliseconds before anything is built.

    A question's sorted vote counts after n draws fit under its sorted class sizes, so every pooled
    state is a partition fitting under the pointwise largest class-size profile of the questions
    (with at most the most no-answer samples any question has). Partitions under that profile are
    counted row by row; ``stop_at`` ends the count once it is passed (then inf). Within 1.5-3x of
    the real count on the shared banks (Llama-2 GSM8K at 40: 1.1 M vs 736,042).
    """
    K = int(max_samples)
    profile = np.zeros(0, dtype=np.int64)
    no_answer = 0
    for p in problems:
        if p.n < K:
            continue
        sizes = np.bincount(p.classes[p.classes >= 0])
        sizes = np.sort(sizes[sizes > 0])[::-1]
        if sizes.size > profile.size:
            profile = np.pad(profile, (0, sizes.size - profile.size))
        profile[: sizes.size] = np.maximum(profile[: sizes.size], sizes)
        no_answer = max(no_answer, int((p.classes < 0).sum()))
    answered = np.arange(K + 1)
    z_choices = np.minimum(no_answer, K - answered) + 1  # no-answer counts that fit beside a answered votes
    top = min(int(profile[0]) if profile.size else 0, K)
    # last[v, a]: partitions of a whose last (smallest) row so far is v; row 0 is "no row yet" at v = top
    last = np.zeros((top + 1, K + 1))
    last[top, 0] = 1.0
    partitions = np.zeros(K + 1)
    partitions[0] = 1.0
    for cap in np.minimum(profile[:K], top):
        at_least = np.cumsum(last[::-1], axis=0)[::-1][: cap + 1]  # at_least[v]: rows so far ending at >= v
        last = np.zeros((cap + 1, K + 1))  # the profile falls, so rows below never exceed cap: the table shrinks
        for v in range(1, cap + 1):
            last[v, v:] = at_least[v, : K + 1 - v]
        partitions += last.sum(axis=0)
        if float(partitions @ z_choices) - 1 > stop_at:
            return float("inf")
        if not last.any():
            break
    return float(partitions @ z_choices) - 1  # less the empty state (n = 0)


def check_exact_states(problems: Sequence[Candidates], max_samples: int, option: str = "--max-k") -> None:
    """Refuse to build :class:`VoteStates` whose tables would need more than
    ``TTSCALE_MAX_ARRAY_BYTES`` (estimated with :func:`state_bound`), naming the size and
    ``option`` (fewer samples per question means far fewer states)."""
    if int(max_samples) > MAX_EXACT_SAMPLES:
        raise ConfigError(option, int(max_samples), f"at most {MAX_EXACT_SAMPLES:,} samples per question for the exact tables "
                                                     f"(their states grow with its square at least; lower {option})")
    far = 1000.0 * env_limit("TTSCALE_MAX_ARRAY_BYTES") / STATE_BYTES  # past this the count stops: the answer is no anyway
    states = state_bound(problems, max_samples, stop_at=far)
    shown = f"more than {far:,.0f}" if states == float("inf") else f"up to {states:,.0f}"
    check_memory(option, int(max_samples), STATE_BYTES * min(states, far),
                 what=f"the exact vote-state tables ({shown} states at {int(max_samples)} samples per question)")


def largest_exact_k(problems: Sequence[Candidates], max_samples: int) -> int | None:
    """The largest K <= ``max_samples`` whose exact tables :func:`check_exact_states` accepts (None
    when not even K = 1 fits). Tables shrink with K, so the search walks down from ``max_samples``:
    at most ``max_samples`` checks, each a bounded state count."""
    for k in range(min(int(max_samples), MAX_EXACT_SAMPLES), 0, -1):
        try:
            check_exact_states(problems, k)
        except ConfigError:
            continue
        return k
    return None


def _group_options(m: int, g: int, room: int) -> list[tuple[tuple[int, ...], int, float]]:
    """Ways g interchangeable wrong classes of m samples each can contribute at most ``room`` votes:
    (their nonzero counts sorted descending, total, weight = ordered assignments x prod C(m, c)).
    Only totals within ``room`` are listed (1,000 classes of 5 have 10^13 ways to vote in all)."""
    options = []
    for k in _vote_splits(g, m, room):  # k[c] classes drawn c times (c = 1..m)
        drawn = sum(k)
        ways = factorial(g) // factorial(g - drawn)
        for kc in k:
            ways //= factorial(kc)
        w = float(ways)
        for c, kc in enumerate(k, start=1):
            w *= comb(m, c) ** kc
        counts = tuple(c for c in range(m, 0, -1) for _ in range(k[c - 1]))
        options.append((counts, sum(counts), w))
    return options


def _vote_splits(classes: int, largest: int, room: int) -> list[tuple[int, ...]]:
    """Every (k_1..k_largest) with k_c classes drawn c times: sum k_c <= classes, sum c k_c <= room."""
    top = min(largest, room)  # a class cannot give more votes than there is room for
    out: list[tuple[int, ...]] = []
    todo: list[tuple[int, int, int, tuple[int, ...]]] = [(top, classes, room, ())]  # (next c, classes left, room left, k_(c+1)..)
    while todo:
        c, left, space, tail = todo.pop()
        if c == 0:
            out.append(tail + (0,) * (largest - top))
            continue
        todo.extend((c - 1, left - kc, space - kc * c, (kc,) + tail) for kc in range(min(left, space // c) + 1))
    return out


def _add_question(classes: np.ndarray, class_correct: np.ndarray, K: int, weight: float,
                  L: dict[State, float], A: dict[State, dict[int, float]]) -> None:
    """Add one question's probability of every state after n <= K draws without replacement to L,
    and to A[s][v] the part where the correct class has v votes.

    Classes are folded in one group at a time: the correct class alone, then the wrong classes
    grouped by size (interchangeable: a question's many one-off answers fold in one step),
    merging partial states with the same sorted counts. P(counts c) = prod_i C(m_i, c_i) / C(N, n).
    """
    N = classes.size
    counts = np.bincount(classes[classes >= 0], minlength=class_correct.size)
    m0 = int((classes < 0).sum())
    # partial state (sorted nonzero counts, no-answer count, correct class's count) -> prod C(m_i, c_i)
    part: dict[tuple[tuple[int, ...], int, int], float] = {((), c, 0): float(comb(m0, c)) for c in range(min(m0, K) + 1)}
    correct = np.zeros(counts.size, dtype=bool)
    correct[: class_correct.size] = class_correct
    groups: list[tuple[bool, list[tuple[tuple[int, ...], int, float]]]] = [
        (True, [((c,) if c else (), c, float(comb(int(m), c))) for c in range(int(m) + 1)]) for m in counts[(counts > 0) & correct]]
    sizes, numbers = np.unique(counts[(counts > 0) & ~correct], return_counts=True)
    groups += [(False, _group_options(int(m), int(g), K)) for m, g in zip(sizes, numbers)]
    for is_correct, options in groups:
        nxt: dict[tuple[tuple[int, ...], int, int], float] = defaultdict(float)
        for (votes, z, cc), w in part.items():
            room = K - sum(votes) - z
            for add, total, ow in options:
                if total > room:
                    continue
                key = (tuple(sorted(votes + add, reverse=True)) if add else votes, z, total if is_correct else cc)
                nxt[key] += w * ow
        part = nxt
    for (votes, z, cc), w in part.items():
        n = sum(votes) + z
        if n:
            p = weight * w / comb(N, n)
            L[(votes, z)] += p
            if cc:
                A[(votes, z)][cc] += p


class VoteStates:
    """The pooled vote-state chain of a bank's questions replayed up to K samples (see the module doc).

    Per number of samples n: ``levels[n]`` the states, ``prob[n]`` their probabilities, ``v1``/``v2``/
    ``distinct`` the top two counts and distinct answers, ``plurality_credit`` / ``best_credit`` the
    chance that the tie-credited plurality / the class most likely correct is right given the state,
    and ``trans[n]`` the sparse transition matrix to n + 1.
    """

    def __init__(self, problems: Sequence[Candidates], max_samples: int) -> None:
        K = int(max_samples)
        if K < 1:
            raise ConfigError("max_samples", max_samples, "an integer >= 1")
        kept = [p for p in problems if p.n >= K]
        if not kept:
            raise EstimationError(f"no question has {K} samples to replay")
        check_exact_states(kept, K, option="max_samples")
        L: dict[State, float] = defaultdict(float)
        A: dict[State, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for p in kept:
            _add_question(p.classes, p.class_correct, K, 1.0 / len(kept), L, A)
        self.max_samples, self.questions = K, len(kept)
        self._scores: dict[tuple, dict[int, np.ndarray]] = {}
        by_n: dict[int, list[State]] = defaultdict(list)
        for s in L:
            by_n[sum(s[0]) + s[1]].append(s)
        self.levels = [by_n[n] for n in range(K + 1)]
        self.prob = [np.array([L[s] for s in lv]) for lv in self.levels]
        self.plurality_credit, self.best_credit = [], []
        self.v1, self.v2, self.distinct, self.answered = [], [], [], []
        for lv in self.levels:
            plural, best = np.zeros(len(lv)), np.zeros(len(lv))
            for i, (votes, z) in enumerate(lv):
                if not votes:
                    continue
                a = A[(votes, z)]
                mult: dict[int, int] = defaultdict(int)
                for v in votes:
                    mult[v] += 1
                plural[i] = a.get(votes[0], 0.0) / mult[votes[0]] / L[(votes, z)]
                best[i] = max(a.get(v, 0.0) / k for v, k in mult.items()) / L[(votes, z)]
            self.plurality_credit.append(plural)
            self.best_credit.append(best)
            self.v1.append(np.array([s[0][0] if s[0] else 0 for s in lv], dtype=np.int64))
            self.v2.append(np.array([s[0][1] if len(s[0]) > 1 else 0 for s in lv], dtype=np.int64))
            self.distinct.append(np.array([len(s[0]) for s in lv], dtype=np.int64))
            self.answered.append(np.array([sum(s[0]) for s in lv], dtype=np.int64))
        index = [{s: i for i, s in enumerate(lv)} for lv in self.levels]
        self.trans: list[csr_matrix | None] = [None] * (K + 1)
        for n in range(1, K):
            rows, cols, vals = [], [], []
            for j, (votes, z) in enumerate(self.levels[n + 1]):
                l2 = L[(votes, z)]
                for v in sorted(set(votes)):
                    lst = list(votes)
                    lst[lst.index(v)] = v - 1
                    prev = (tuple(sorted((c for c in lst if c > 0), reverse=True)), z)
                    rows.append(index[n][prev])
                    cols.append(j)
                    vals.append(l2 * v * votes.count(v) / (n + 1) / L[prev])
                if z:
                    rows.append(index[n][(votes, z - 1)])
                    cols.append(j)
                    vals.append(l2 * z / (n + 1) / L[(votes, z - 1)])
            self.trans[n] = csr_matrix((vals, (rows, cols)), shape=(len(self.levels[n]), len(self.levels[n + 1])))

    @property
    def states(self) -> int:
        return sum(len(lv) for lv in self.levels)

    def _backward(self, credit: list[np.ndarray], go_on: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
                  price: float) -> tuple[float, float]:
        """(mean samples, accuracy) of the policy that continues where ``go_on(n, continuation value,
        stop value)`` says, answering with ``credit`` at the stop."""
        K = self.max_samples
        value, samples, acc = credit[K].copy(), np.zeros(len(self.levels[K])), credit[K].copy()
        for n in range(K - 1, 0, -1):
            P = self.trans[n]
            cont_value = P @ value - price
            cont = go_on(n, cont_value, credit[n]) & (np.diff(P.indptr) > 0)
            value = np.where(cont, cont_value, credit[n])
            samples = np.where(cont, 1.0 + P @ samples, 0.0)
            acc = np.where(cont, P @ acc, credit[n])
        if not len(self.levels[1]):
            return 1.0, 0.0
        w = self.prob[1] / self.prob[1].sum()
        return 1.0 + float(w @ samples), float(w @ acc)

    def run_policy(self, continue_at: Callable[[int], np.ndarray]) -> tuple[float, float]:
        """Exact (mean samples, accuracy) of the policy that, after n samples, draws another where
        ``continue_at(n)`` (bool over ``levels[n]``) says, answering the plurality at the stop."""
        return self._backward(self.plurality_credit, lambda n, cont_value, stop_value: continue_at(n), 0.0)

    def evaluate(self, rule: StoppingRule, pilot: int = 1, step: int = 1) -> tuple[float, float]:
        """Exact (mean samples, accuracy) of ``rule`` over every order of every question's samples.

        ``pilot``/``step``: samples are drawn in rounds (``pilot`` first, then ``step`` at a time) and
        the rule is consulted only after a round, as the live solver does (``ttscale.live.solve.Budget``).
        """
        if rule.reads_order:
            raise ConfigError("rule", rule.name, "a rule that reads vote counts only (not the order of the votes)")
        check_count("pilot", pilot, 1)
        check_count("step", step, 1)

        # Rules whose stop is "score >= parameter" (the default rule) score every state once per
        # table, however many parameter values are swept.
        key = rule.score_key()
        cache = self.__dict__.setdefault("_scores", {}).setdefault(key, {}) if key is not None else None

        def continue_at(n: int) -> np.ndarray:
            if n < pilot or (n - pilot) % step:
                return np.ones(len(self.levels[n]), dtype=bool)  # mid-round: no check
            v1 = self.v1[n][:, None]
            traj = VoteTrajectories(v1=v1, v2=self.v2[n][:, None], distinct=self.distinct[n][:, None], run=np.zeros_like(v1),
                                    answered=self.answered[n][:, None], samples=np.full_like(v1, n), horizon=self.max_samples)
            if cache is None:
                stop = rule.stop_mask(traj)[:, 0]
            else:
                if n not in cache:
                    cache[n] = rule.score(traj)[:, 0]
                stop = rule.stop_on_score(cache[n])
            return ~(stop & (v1[:, 0] > 0))

        return self.run_policy(continue_at)

    def bayes(self, price: float, plurality: bool = True) -> tuple[float, float]:
        """(mean samples, accuracy) of the Bayes-optimal vote-only rule at ``price`` accuracy per sample,
        with the bank as its prior; answering the plurality, or (``plurality=False``) the likeliest class."""
        credit = self.plurality_credit if plurality else self.best_credit
        return self._backward(credit, lambda n, cont_value, stop_value: cont_value > stop_value, float(price))

    def bayes_decisions(self, price: float) -> list[np.ndarray | None]:
        """Per number of samples n, where the Bayes-optimal rule answering the plurality draws another
        sample (bool over ``levels[n]``; None at n = 0 and K): the policy :meth:`bayes` scores."""
        decisions: list[np.ndarray | None] = [None] * (self.max_samples + 1)

        def keep(n: int, cont_value: np.ndarray, stop_value: np.ndarray) -> np.ndarray:
            decisions[n] = (cont_value > stop_value) & (np.diff(self.trans[n].indptr) > 0)
            return decisions[n]

        self._backward(self.plurality_credit, keep, float(price))
        return decisions


def exact_rule_points(states: VoteStates, rules: dict[str, list[StoppingRule]]) -> dict[str, list[RulePoint]]:
    """Every count-reading rule at every grid value, scored exactly (stderr 0, no token figures)."""
    out: dict[str, list[RulePoint]] = {}
    for name, grid in rules.items():
        if grid and not grid[0].reads_order:
            out[name] = [RulePoint(param=float(r.param), accuracy=acc, stderr=0.0, mean_samples=s, mean_tokens=None)
                         for r in grid for s, acc in [states.evaluate(r)]]
    return out


def bayes_frontier(states: VoteStates, plurality: bool = True, prices: Sequence[float] = DEFAULT_PRICES) -> list[tuple[float, float]]:
    """(mean samples, accuracy) of the Bayes-optimal vote-only rule at each price."""
    return [states.bayes(p, plurality) for p in prices]


def crossfit_bayes_frontier(halves: Sequence[VoteStates], prices: Sequence[float] = DEFAULT_PRICES) -> list[tuple[float, float]]:
    """The vote-only bound held out: the Bayes rule with one half of a bank's questions as its prior
    (:meth:`VoteStates.bayes_decisions`), scored exactly on the other half and the other way round,
    the two halves weighted by their questions (:func:`held_out_bayes_frontier` on the two pairs)."""
    if len(halves) != 2:
        raise ConfigError("halves", len(halves), "two tables of the same max_samples")
    return held_out_bayes_frontier([(halves[0], halves[1]), (halves[1], halves[0])], prices)


def held_out_bayes_frontier(pairs: Sequence[tuple[VoteStates, VoteStates]],
                           prices: Sequence[float] = DEFAULT_PRICES) -> list[tuple[float, float]]:
    """Per price, (mean samples, accuracy) of the Bayes rule with each pair's first table (the
    training questions) as its prior, scored exactly on the pair's second (disjoint test questions),
    the test tables weighted by their questions: k-fold cross-fitting with the folds as the test
    tables and their complements as the training ones. A state the training questions never reach
    draws another sample (the prior gives it no answer to trust)."""
    if not pairs or len({t.max_samples for pair in pairs for t in pair}) != 1:
        raise ConfigError("pairs", len(pairs), "one or more (train, test) tables of the same max_samples")
    K = pairs[0][0].max_samples
    total = sum(test.questions for _, test in pairs)
    # Where each test state sits in its training tables (-1: never reached there).
    where = []
    for train, test in pairs:
        index = [{st: i for i, st in enumerate(lv)} for lv in train.levels]
        where.append([np.array([index[n].get(st, -1) for st in test.levels[n]], dtype=np.int64) for n in range(K + 1)])
    out = []
    for price in prices:
        samples = acc = 0.0
        for (train, test), at in zip(pairs, where):
            decisions = train.bayes_decisions(float(price))

            def continue_at(n: int, decisions=decisions, at=at) -> np.ndarray:
                d = decisions[n]
                return np.ones(at[n].size, dtype=bool) if d is None else np.where(at[n] >= 0, d[np.maximum(at[n], 0)], True)

            s_, a = test.run_policy(continue_at)
            samples += test.questions / total * s_
            acc += test.questions / total * a
        out.append((samples, acc))
    return out


def samples_to_reach(points: Sequence[tuple[float, float]], target: float) -> float | None:
    """Fewest mean samples reaching ``target`` accuracy on the upper hull of (samples, accuracy)
    points, mixing two policies at random between them; None when no point reaches it."""
    pts = sorted(points)
    best = None
    for i, (s0, a0) in enumerate(pts):
        if a0 >= target:
            best = s0 if best is None else min(best, s0)
        for s1, a1 in pts[i + 1:]:
            if a0 < target <= a1:
                s = s0 + (target - a0) / (a1 - a0) * (s1 - s0)
                best = s if best is None else min(best, s)
    return best
