"""Search behind the Python API: ``TTScale(..., search={"method": "beam", "width": 4}, prm=...)``.

The API's own engine generates the steps (an in-process ``vllm.LLM`` continues cached prefixes; a
``base_url`` server continues the prompt text), ``prm`` scores them, and each question's answer is
its best-scored final candidate that states one. The :class:`~ttscale.live.solution.Solution`
carries what the search cost: generated tokens of every expansion (pruned ones too) as completion
tokens, the prompt tokens of every step request, and ``search`` (method, parameters, full cost).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ttscale.errors import ConfigError
from ttscale.live.solution import Question, Solution
from ttscale.planning.cost import Prices, dollars
from ttscale.records.datasets import Problem
from ttscale.search.algorithms import ProblemResult, search_problems
from ttscale.search.bank import candidate_sample
from ttscale.search.params import SearchParams
from ttscale.search.steps import StepGenerator, StepScorer


def search_params(value: SearchParams | Mapping[str, Any]) -> SearchParams:
    """``SearchParams`` from the API's ``search=`` mapping; a bad field is named ``search.<field>``."""
    if isinstance(value, SearchParams):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError("search", value, 'a mapping of search fields ({"method": "beam", "width": 4, ...}) or SearchParams')
    try:
        return SearchParams(**{str(k): v for k, v in value.items()})
    except ConfigError as exc:
        raise ConfigError(f"search.{exc.parameter}", exc.value, exc.expected) from None


def step_scorer(prm: Any) -> StepScorer:
    """A step scorer object as it is, or one by name (oracle, prm, prm:FOLDER, vllm-prm[:FOLDER])."""
    if prm is None:
        raise ConfigError("prm", None, "a step scorer for search=...: 'oracle' (the arithmetic task's checker), "
                          "'prm', 'prm:FOLDER', 'vllm-prm[:FOLDER]' or an object with score_steps()")
    if isinstance(prm, str):
        from ttscale.search.prm_steps import resolve_step_scorer

        try:
            return resolve_step_scorer(prm)
        except ConfigError as exc:
            raise ConfigError("prm", prm, exc.expected) from None
    if not callable(getattr(prm, "score_steps", None)):
        raise ConfigError("prm", type(prm).__name__, "a step scorer name or an object with score_steps(items) -> StepScores")
    return prm  # type: ignore[no-any-return]


def step_generator(sampler: Any, params: SearchParams, *, model: str | None, base_url: str | None, client: Mapping[str, Any]) -> StepGenerator:
    """Steps through the API's engine: its ``vllm.LLM`` when it has one, else the ``base_url`` server."""
    if type(sampler).__name__ == "VLLMSampler":  # by name: importing the class would import vllm
        from ttscale.search.vllm_steps import VLLMStepGenerator

        return VLLMStepGenerator(None, sampler.config, separator=params.separator, llm=sampler.llm)
    if base_url is not None:
        from ttscale.search.openai_steps import OpenAIStepGenerator

        return OpenAIStepGenerator(model, sampler.config, separator=params.separator, base_url=base_url, **dict(client))
    raise ConfigError("search", params.method.value, "a vLLM engine (backend='vllm' or engine=...) or base_url=...: "
                      "search continues partial solutions step by step, which this backend cannot")


class SearchSolver:
    """Answers questions by step-level search (one batched generator and scorer call per round)."""

    def __init__(self, generator: StepGenerator, scorer: StepScorer, params: SearchParams, *, prices: Prices | None = None,
                 in_flight: int = 64) -> None:
        self.generator = generator
        self.scorer = scorer
        self.params = params
        self.prices = prices
        self.in_flight = in_flight

    def solve(self, questions: Sequence[Question]) -> list[Solution]:
        for q in questions:
            if q.messages is not None:
                raise ConfigError("prompt", q.id, "a prompt string with search=... (chat messages are not continued step by step)")
        problems = [Problem(id=q.id, problem=q.problem) for q in questions]
        if len({p.id for p in problems}) != len(problems):
            raise ConfigError("prompt", [p.id for p in problems], "questions with distinct ids")
        done = {r.problem.id: r for r in search_problems(problems, self.generator, self.scorer, self.params, in_flight=self.in_flight)}
        return [self._solution(done[p.id]) for p in problems]

    def _solution(self, result: ProblemResult) -> Solution:
        name = getattr(self.scorer, "name", "prm")
        samples = [candidate_sample(b, name) for b in result.candidates]  # best score first
        answers = [s.answer for s in samples]
        index = next((i for i, a in enumerate(answers) if a is not None), None)
        votes = Counter(a for a in answers if a is not None)
        cost = result.cost
        total = cost.generated_tokens
        return Solution(
            answer=answers[index] if index is not None else None, answers=[answers[index]] if index is not None else [],
            support=[samples[index].reward] if index is not None else [], text=samples[index].text if index is not None else None,
            vote=dict(votes.most_common()), samples=len(samples), requests=cost.requests, prompt_tokens=cost.prompt_tokens,
            completion_tokens=total, cost=dollars(cost.prompt_tokens, total, self.prices) if self.prices is not None else None,
            policy=f"search:{self.params.method.value}", stopped="search", candidates=samples, chosen_index=index,
            candidate_answers=answers,
            search={"method": self.params.method.value, "scorer": name, "params": self.params.to_json(), "cost": cost.to_json()},
        )

    def close(self) -> None:
        getattr(self.scorer, "close", lambda: None)()
