"""Solving questions live: sample candidates through any sampler, stop when the vote settles, choose.

The engine behind the Python API (:mod:`ttscale.live.api`) and the proxy (:mod:`ttscale.live.serve`).
A :class:`~ttscale.live.budget.Budget` says how many samples a question may get and whether to
stop early; the :class:`Solver` draws them in rounds (one request per question per round, so the prompt is
prefilled once per round), classifies the answers, runs the policy and returns a
:class:`~ttscale.live.solution.Solution` per question: the chosen answer and its full text, the vote, what was spent.

Rounds are shared by all questions of a call, so an offline engine batches them together and an
HTTP backend overlaps them. Under a total budget for many questions the planner's online
allocator (:class:`ttscale.adaptive.allocate.OnlineAllocator`) decides who gets the next samples.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ttscale.adaptive.allocate import OnlineAllocator
from ttscale.adaptive.stopping import LiveStop, SettledMajority
from ttscale.adaptive.workload_prior import WorkloadBayes
from ttscale.answers import AnswerClassifier, EquivalenceConfig
from ttscale.answers.candidates import NO_ANSWER, Candidates
from ttscale.early_stop.params import LOW_CONFIDENCE, EarlyStopParams
from ttscale.errors import ConfigError, TTScaleError
from ttscale.live.budget import Budget
from ttscale.live.solution import Question, Solution, last_user_text
from ttscale.planning.cost import Prices, dollars
from ttscale.records.models import Sample
from ttscale.sampling.sampler import (
    MAX_SEED,
    Sampler,
    SampleRequest,
    SampleResult,
    request_seed,
)
from ttscale.selection.fields import LOGPROBS, REFERENCE, REWARDS
from ttscale.selection.policy import Policy, load_policy
from ttscale.validation import is_int, is_number

log = logging.getLogger(__name__)

# Budget, Question, Solution and last_user_text live in their own modules; imported from here too.
__all__ = ["Budget", "Question", "Solution", "SolveError", "Solver", "check_policy_needs", "last_user_text"]


EMPTY_ROUNDS = 2
"""Rounds in a row that may yield no usable candidate (a backend answering without choices) before
a question gives up: with no candidate yet it fails with :class:`SolveError`, otherwise it stops
(``stopped="degraded"``) with what it has. Samples a round asked for and did not get count as
drawn, so no budget can be spent on nothing for ever."""


_PLAIN = re.compile(r"-?[0-9][0-9,]{0,19}(\.[0-9]{1,12})?")
"""An answer that is a plain number (short: no pathological parsing), compared by value."""


class SolveError(TTScaleError, RuntimeError):
    """No candidate of a question could be drawn (every request to the backend failed)."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass
class _State:
    """A question being solved."""

    question: Question
    candidates: list[Sample] = field(default_factory=list)
    results: list[SampleResult] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    failed: int = 0
    empty_rounds: int = 0
    """Rounds in a row that gave no candidate (see EMPTY_ROUNDS)."""
    notes: list[str] = field(default_factory=list)
    """What the solution should say about how it was reached (answer comparison cut short)."""
    errors: list[str] = field(default_factory=list)
    stopped: str | None = None
    error: BaseException | None = None
    early_stop: EarlyStopParams | None = None
    """The early stop of the sampler drawing this question's traces (None: off)."""
    warmup_lowest: list[float | None] = field(default_factory=list)
    """Early stop: the lowest group confidences of the question's warm-up traces so far, in draw
    order (sent with every later request, so the threshold is calibrated once per question)."""

    @property
    def n(self) -> int:
        return len(self.candidates)

    def add(self, result: SampleResult) -> None:
        self.candidates.extend(result.candidates)
        billed = result.extra.get("prompt_tokens_billed") or result.prompt_tokens or 0
        self.prompt_tokens += int(billed)
        self.completion_tokens += int(result.completion_tokens or 0)
        self.requests += max(1, int(result.extra.get("requests", 1)))
        if self.early_stop is not None and self.early_stop.calibrated:
            # A warm-up trace ran in full untracked: it has no threshold and was not stopped (one
            # without tokens has no lowest group confidence either: it counts, as None).
            self.warmup_lowest += [(c.model_extra or {}).get("lowest_group_confidence") for c in result.candidates
                                   if c.finish != LOW_CONFIDENCE and "early_stop_threshold" not in (c.model_extra or {})]

    def prior_warmup(self) -> tuple[float | None, ...]:
        """The ``early_stop_warmup`` of the question's next request (see SampleRequest)."""
        if self.early_stop is None or not self.early_stop.calibrated:
            return ()
        return tuple(self.warmup_lowest[: self.early_stop.warmup])

    def early_stop_report(self) -> dict[str, Any] | None:
        """What the early stop did to this question (None when it was off): traces stopped, the
        tokens they generated (counted in ``completion_tokens`` too), warm-up traces, threshold."""
        if self.early_stop is None:
            return None
        stopped = [c for c in self.candidates if c.finish == LOW_CONFIDENCE]
        limits = [(c.model_extra or {}).get("early_stop_threshold") for c in self.candidates]
        known = [x for x in limits if x is not None]
        return {"stopped": len(stopped), "stopped_tokens": sum(c.tokens or 0 for c in stopped),
                "warmup": len(self.warmup_lowest) if self.early_stop.calibrated else 0,
                "threshold": known[-1] if known else None, "params": self.early_stop.model_dump()}


def _vote_counts(classes: np.ndarray) -> np.ndarray:
    ok = classes[classes >= 0]
    return np.bincount(ok) if ok.size else np.zeros(0, dtype=np.int64)


def _all_or_none(values: list[Any], dtype: Any) -> np.ndarray | None:
    """The values as an array when every candidate has one, else None (a policy then says it is missing)."""
    return None if any(v is None for v in values) else np.array(values, dtype=dtype)


def check_policy_needs(policy: Policy, *, scorer: bool, logprobs: bool, scorer_option: str = "scorer=...") -> None:
    """Raise ConfigError when ``policy`` needs what live solving cannot give: a reference answer
    (evaluation only), rewards without a scorer (named ``scorer_option`` in the message), or
    log-probs the sampling does not return."""
    have = {field for field, ok in ((REWARDS, scorer), (LOGPROBS, logprobs)) if ok}  # never a reference
    missing = policy.missing(have)
    if REFERENCE in missing:
        raise ConfigError("policy", policy.name, "a policy that needs no reference answer (this one is for evaluation only)")
    if REWARDS in missing:
        raise ConfigError("policy", policy.name, f"a policy without rewards, or a scorer ({scorer_option}) to compute them")
    if LOGPROBS in missing:
        raise ConfigError("policy", policy.name, "a policy without log-probs, or sampling with logprobs=True")


class Solver:
    """Draws, stops and chooses for a batch of questions through one sampler.

    ``degrade``: when a request for several samples keeps failing with a server error, ask for
    them one by one and go on with those that arrive (the solution says so); otherwise fail.
    """

    answer_seconds: float | None = None
    scorer_option: str = "scorer=..."
    """How errors name the way to give this solver a scorer (the proxy: ``ttscale serve --scorer``)."""

    def __init__(
        self,
        sampler: Sampler,
        policy: str | Policy = "majority",
        *,
        equivalence: EquivalenceConfig | str = "math",
        scorer: Any | None = None,
        prices: Prices | None = None,
        degrade: bool = True,
        seed: int = 0,
        logprobs: bool | None = None,
        answer_seconds: float | None = None,
    ) -> None:
        self.sampler = sampler
        if answer_seconds is not None and not (is_number(answer_seconds) and answer_seconds > 0):
            raise ConfigError("answer_seconds", answer_seconds, "a number of seconds > 0, or None (no limit)")
        self.answer_seconds = answer_seconds
        """Seconds math-verify may spend classifying one question's answers (each round, and the
        final vote); past it the rest are compared as strings and the solution's notes say so."""
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        self.equivalence = equivalence if isinstance(equivalence, EquivalenceConfig) else EquivalenceConfig(mode=equivalence)
        self._classifier = AnswerClassifier(self.equivalence)  # its caches carry across rounds
        self.scorer = scorer
        self.prices = prices
        self.degrade = degrade
        self.seed = seed
        self.logprobs = bool(getattr(sampler.config, "logprobs", False)) if logprobs is None else logprobs
        """Whether candidates come with log-probs (a proxy asks for them per request)."""
        self.check_policy(self.policy)

    def check_policy(self, policy: Policy) -> None:
        """Raise ConfigError when ``policy`` needs what this solver cannot give (a reference, rewards)."""
        check_policy_needs(policy, scorer=self.scorer is not None, logprobs=self.logprobs, scorer_option=self.scorer_option)

    # ------------------------------------------------------------------------------ public

    async def solve(self, questions: Sequence[Question], budget: Budget, *, total: int | None = None,
                    policy: Policy | None = None, return_exceptions: bool = False,
                    sampler: Sampler | None = None) -> list[Solution | BaseException]:
        """Solve every question; ``total`` caps the samples of all questions together (adaptive only).

        With ``return_exceptions`` a question whose every request failed gets its exception in
        its place; otherwise the first such failure is raised (after the round it happened in).
        ``sampler`` draws instead of the solver's own for this call (a proxy request's early stop).
        """
        sampler = sampler or self.sampler
        early_stop = getattr(sampler.config, "early_stop", None)
        policy = policy or self.policy
        if policy is not self.policy:
            self.check_policy(policy)
        if total is not None and (not is_int(total) or total < 1):
            raise ConfigError("total_budget", total, "an integer number of samples >= 1")
        states = [_State(q, early_stop=early_stop) for q in questions]
        if not states:
            return []
        allocator = None
        if total is not None:
            allocator = OnlineAllocator(max_per_question=budget.samples, pilot=min(budget.pilot, budget.samples),
                                        round_share=0.5, step=budget.step, settle=1.0 - budget.confidence)
            allocator.start(len(states))
        while True:
            plan = self._plan(states, budget, allocator, total)
            if not plan.any():
                break
            before = [st.n for st in states]
            await self._draw(states, plan, sampler)
            if allocator is not None:
                self._observe(allocator, states, plan, before)
            failed = [s for s in states if s.error is not None]
            if failed and not return_exceptions:
                raise failed[0].error  # type: ignore[misc]
        return await asyncio.gather(*(self._finish(s, policy, budget) for s in states), return_exceptions=return_exceptions)

    # ------------------------------------------------------------------------------ rounds

    def _plan(self, states: list[_State], budget: Budget, allocator: OnlineAllocator | None, total: int | None) -> np.ndarray:
        """Samples each question gets in the next round (zeros: done); sets ``stopped``."""
        plan = np.zeros(len(states), dtype=np.int64)
        if allocator is not None:
            spent = sum(s.n + s.failed for s in states)
            left = max(0, (total or 0) - spent)
            errored = np.array([s.error is not None for s in states])
            if errored.all():
                return plan
            if spent == 0 and not errored.any():  # the pilot in one request per question (the allocator would take a round per sample)
                pilot = np.minimum(allocator.pilot, max(1, left // len(states)))
                plan = np.full(len(states), pilot, dtype=np.int64)
                plan[np.cumsum(plan) > left] = 0
                return plan
            plan = allocator.next_round(left)
            for i, s in enumerate(states):
                if s.error is not None:
                    plan[i] = 0
            if not plan.any():
                for s in states:
                    s.stopped = s.stopped or ("budget" if s.n >= budget.samples else "allocator")
            return plan
        rule = live_rule(budget)
        for i, s in enumerate(states):
            if s.stopped is not None or s.error is not None:
                continue
            have = s.n + s.failed
            left = budget.samples - have
            if left <= 0:
                s.stopped = "budget"
                continue
            if not budget.in_rounds:
                plan[i] = left if have == 0 else 0
                if have:
                    s.stopped = "budget"
                continue
            top = self._top_votes(s) if rule is not None else (0, 0, 0)
            if have and rule is not None and top[0] > 0 and rule.live_stops(top, have, budget.samples):
                s.stopped = "settled"
                continue
            want = min(left, budget.pilot if have == 0 else budget.step)
            if rule is not None:
                # The fewest samples after which the vote could settle: drawn at once, they stop
                # exactly where checking after every sample would (in fewer round trips).
                want = min(left, max(want, rule.live_samples_to_stop(top, have, budget.samples)))
            cap = self._cap(s, budget, want)
            if cap == 0:
                s.stopped = "tokens" if budget.tokens is not None and self._over_tokens(s, budget, 1) else "dollars"
                continue
            plan[i] = cap
        return plan

    def _top_votes(self, s: _State) -> tuple[int, int, int]:
        """(leader's votes, runner-up's votes, all other answered samples) of a question so far."""
        counts = np.sort(_vote_counts(np.asarray(self._classes(s), dtype=np.int64)))[::-1]
        if counts.size == 0:
            return 0, 0, 0
        v1, v2 = int(counts[0]), int(counts[1]) if counts.size > 1 else 0
        return v1, v2, int(counts.sum()) - v1 - v2

    def _classes(self, s: _State) -> list[int]:
        """Class ids of a question's answers so far under the solver's answer equivalence (the same
        classes the final vote and banks use: "1/2" and "0.5" are one answer)."""
        ids, _ = self._classify(self._classifier, s)
        return [int(i) for i in ids]

    def _classify(self, classifier: AnswerClassifier, s: _State) -> tuple[np.ndarray, list[str]]:
        """Answer classes of a question's candidates within ``answer_seconds`` (noted when it ran out)."""
        deadline = None if self.answer_seconds is None else time.monotonic() + self.answer_seconds
        before = classifier.stats.over_budget
        ids, reps = classifier.classify([c.answer for c in s.candidates], deadline=deadline)
        if classifier.stats.over_budget > before and not s.notes:
            s.notes.append(f"answer comparison ran over its {self.answer_seconds:g} s budget: "
                           "some answers were compared as strings only")
        return ids, reps

    def _observe(self, allocator: OnlineAllocator, states: list[_State], plan: np.ndarray, before: list[int]) -> None:
        """Tell the allocator what this round drew; failed samples count as drawn without an answer."""
        for q in np.flatnonzero(plan > 0):
            classes = self._classes(states[q])[before[q]:]
            missing = max(0, int(plan[q]) - len(classes))
            allocator.observe(int(q), np.asarray(classes + [NO_ANSWER] * missing, dtype=np.int64))

    def _mean_tokens(self, s: _State) -> float:
        return s.completion_tokens / s.n if s.n else 0.0

    def _over_tokens(self, s: _State, budget: Budget, more: int) -> bool:
        return budget.tokens is not None and s.n > 0 and s.completion_tokens + more * self._mean_tokens(s) > budget.tokens

    def _over_dollars(self, s: _State, budget: Budget, more: int) -> bool:
        if budget.dollars is None or self.prices is None or s.n == 0:
            return False
        prompt_per_request = s.prompt_tokens / max(1, s.requests)
        spent = dollars(s.prompt_tokens, s.completion_tokens, self.prices)
        return spent + dollars(prompt_per_request, more * self._mean_tokens(s), self.prices) > budget.dollars

    def _cap(self, s: _State, budget: Budget, want: int) -> int:
        while want > 0 and (self._over_tokens(s, budget, want) or self._over_dollars(s, budget, want)):
            want -= 1
        return want

    async def _draw(self, states: list[_State], plan: np.ndarray, sampler: Sampler) -> None:
        chosen = [int(q) for q in np.flatnonzero(plan > 0)]
        reqs = []
        for q in chosen:
            s = states[q]
            qn = s.question
            drawn = s.n + s.failed
            seed = None if qn.seed is None else qn.seed if drawn == 0 else request_seed(qn.seed, qn.id, drawn)
            reqs.append(SampleRequest(id=qn.id, problem=qn.problem, n=int(plan[q]), seed=seed, round=drawn,
                                      messages=qn.messages, overrides=qn.overrides, early_stop_warmup=s.prior_warmup()))
        batch = max(1, int(getattr(sampler, "batch_size", 1) or 1))
        if batch > 1:  # an offline engine: one generate call per batch of requests, no partial failures
            for lo in range(0, len(reqs), batch):
                part = reqs[lo : lo + batch]
                try:
                    results = await sampler.agenerate(part)
                except Exception as exc:  # noqa: BLE001 - the engine failed: every question of the batch fails
                    for q in chosen[lo : lo + batch]:
                        states[q].error = SolveError(f"question {states[q].question.id!r}: {exc}", exc)
                    continue
                for q, res in zip(chosen[lo : lo + batch], results):
                    states[q].add(res)
                    states[q].failed += max(0, int(plan[q]) - len(res.candidates))
                    self._count_empty(states[q], len(res.candidates))
            return
        if len(reqs) == 1:  # one question (a proxied request): no task to gather
            try:
                outcomes: list[Any] = [await self._one(reqs[0], sampler)]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - as gather(return_exceptions=True) would give it
                outcomes = [exc]
        else:
            outcomes = await asyncio.gather(*(self._one(r, sampler) for r in reqs), return_exceptions=True)
        for q, req, out in zip(chosen, reqs, outcomes):
            s = states[q]
            if isinstance(out, BaseException):
                if isinstance(out, asyncio.CancelledError):
                    raise out
                if s.n == 0:
                    s.error = out if isinstance(out, TTScaleError) else SolveError(f"question {s.question.id!r}: {out}", out)
                else:  # a later round failed: keep what the earlier rounds drew
                    s.failed += req.n
                    s.errors.append(str(out))
                    s.stopped = "degraded"
                continue
            result, failed, errors = out
            if result is not None:
                s.add(result)
                failed += max(0, req.n - failed - len(result.candidates))  # asked for and never came
            s.failed += failed
            s.errors.extend(errors)
            if result is None:
                s.error = SolveError(f"question {s.question.id!r}: every request failed: {errors[0] if errors else 'no candidates'}")
            else:
                self._count_empty(s, len(result.candidates))

    @staticmethod
    def _count_empty(s: _State, got: int) -> None:
        """A round with no candidate counts toward EMPTY_ROUNDS; at the limit the question ends."""
        if got:
            s.empty_rounds = 0
            return
        s.empty_rounds += 1
        s.errors.append("a round returned no candidates")
        if s.empty_rounds < EMPTY_ROUNDS:
            return
        if s.n == 0:
            s.error = SolveError(f"question {s.question.id!r}: {s.empty_rounds} rounds in a row returned no candidates "
                                 "(the backend answered without any)")
        else:
            s.stopped = "degraded"

    async def _one(self, req: SampleRequest, sampler: Sampler) -> tuple[SampleResult | None, int, list[str]]:
        """One request; on a lasting server error with n > 1, degrade to n single requests."""
        from ttscale.sampling.backends.openai import Failure, ServerError

        try:
            results = await sampler.agenerate([req])
            return results[0], 0, []
        except ServerError as exc:
            if not self.degrade or req.n == 1 or exc.kind is not Failure.STATUS:
                raise
            log.warning("request %r for %d samples failed (%s): asking one by one", req.id, req.n, exc)
            first = str(exc)
        singles = [
            SampleRequest(id=req.id, problem=req.problem, n=1, round=req.round + i,
                          seed=None if req.seed is None else (req.seed + i) % (MAX_SEED + 1),
                          messages=req.messages, overrides=req.overrides, early_stop_warmup=req.early_stop_warmup)
            for i in range(req.n)
        ]
        outs = await asyncio.gather(*(sampler.agenerate([r]) for r in singles), return_exceptions=True)
        got = [o[0] for o in outs if not isinstance(o, BaseException)]
        errors = [first] + [str(o) for o in outs if isinstance(o, BaseException)]
        failed = req.n - len(got)
        if not got:
            if any(isinstance(o, asyncio.CancelledError) for o in outs):
                raise asyncio.CancelledError
            return None, failed, errors
        merged = SampleResult(
            request=req, candidates=[c for r in got for c in r.candidates],
            prompt_tokens=got[0].prompt_tokens, completion_tokens=sum(r.completion_tokens for r in got),
            latency=max(r.latency for r in got), calls=sum(r.calls for r in got),
            extra={"prompt_tokens_billed": sum(int(r.extra.get("prompt_tokens_billed") or r.prompt_tokens or 0) for r in got),
                   "requests": len(got)},
        )
        return merged, failed, errors[:5]

    # ------------------------------------------------------------------------------ choosing

    async def _finish(self, s: _State, policy: Policy, budget: Budget) -> Solution:
        if s.error is not None:
            raise s.error
        if REWARDS in policy.needs:
            scored = await asyncio.to_thread(self.scorer.score, [s.question.problem], [[c.text for c in s.candidates]])  # type: ignore[union-attr]
            # Each candidate keeps its score: the solution (and the proxy's candidates) show why it won.
            s.candidates = [c.model_copy(update={"reward": float(r)}) for c, r in zip(s.candidates, scored[0])]
        if all(c.answer is None or _PLAIN.fullmatch(c.answer) for c in s.candidates):
            # Plain numbers are classed by value, without math-verify: choosing takes tens of
            # microseconds, less than handing it to a thread (a proxy's main cost per request).
            return self._choose(s, policy, budget)
        return await asyncio.to_thread(self._choose, s, policy, budget)

    def _choose(self, s: _State, policy: Policy, budget: Budget) -> Solution:
        ids, reps = self._classify(self._classifier, s)  # shared: its caches (thread-safe) make repeated answers cheap
        ids = np.asarray(ids, dtype=np.int64)
        cands = Candidates(classes=ids, class_correct=np.zeros(len(reps), dtype=bool),
                           rewards=_all_or_none([c.reward for c in s.candidates], np.float64),
                           logprobs=_all_or_none([c.mean_logprob for c in s.candidates], np.float64),
                           tokens=_all_or_none([c.tokens for c in s.candidates], np.int64), answers=tuple(reps))
        if policy.missing(cands):
            raise ConfigError("policy", policy.name, f"candidates with {', '.join(sorted(policy.missing(cands)))} (the backend returned none)")
        rng = np.random.default_rng(request_seed(self.seed, s.question.id, 0))  # ties broken the same way every run
        selection = policy.select(cands, rng)
        chosen = [reps[c] for c in selection.classes if c >= 0]
        counts = _vote_counts(ids)
        order = np.argsort(-counts, kind="stable")
        vote = {reps[c]: int(counts[c]) for c in order if counts[c] > 0}
        index = selection.sample
        text = s.candidates[index].text if index is not None else None
        cost = dollars(s.prompt_tokens, s.completion_tokens, self.prices) if self.prices is not None else None
        notes = list(s.notes)
        if s.candidates and all(c.finish == "length" for c in s.candidates):
            # A server's default max_tokens can be tiny (vLLM's /v1/completions: 16): a unanimous
            # vote of cut-off texts looks as sure as a right one.
            which = "the only candidate" if len(s.candidates) == 1 else f"all {len(s.candidates)} candidates"
            notes.append(f"{which} stopped at max_tokens (finish 'length'): answers may be cut short; send a larger max_tokens")
        return Solution(
            answer=chosen[0] if chosen else None, answers=chosen, support=[float(x) for x in selection.support],
            text=text, vote=vote, samples=s.n, requests=s.requests, prompt_tokens=s.prompt_tokens,
            completion_tokens=s.completion_tokens, cost=cost, policy=policy.name,
            stopped=s.stopped or "budget", candidates=list(s.candidates), chosen_index=index,
            failed_samples=s.failed, errors=s.errors,
            candidate_answers=[reps[c] if c >= 0 else None for c in ids], notes=notes,
            early_stop=s.early_stop_report(),
        )


def live_rule(budget: Budget) -> LiveStop | None:
    """The stop an adaptive budget runs: the Bayes-optimal one under its workload prior, else the
    ``default`` rule at its confidence (None: not adaptive)."""
    if not budget.adaptive:
        return None
    if budget.workload is not None:
        return WorkloadBayes(budget.price, components=budget.workload)
    return SettledMajority(budget.confidence)
