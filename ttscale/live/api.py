"""The Python API: wrap a model server (or an in-process engine) and get answers you can trust.

::

    from ttscale import TTScale

    tts = TTScale(base_url="http://127.0.0.1:8000/v1", model="my-model", policy="majority", budget=8)
    sol = tts.solve("What is 17 * 23? Put the answer in \\\\boxed{}.")
    sol.answer, sol.vote, sol.samples, sol.total_tokens, sol.cost

    sols = tts.solve_many(questions, budget={"samples": 16, "adaptive": True}, total_budget=4000)

Backends: ``base_url`` (any OpenAI-compatible server: vLLM's, SGLang, TGI, OpenAI), ``engine``
(an in-process ``vllm.LLM`` you built), ``backend="vllm"|"hf"`` with ``model`` (ttscale builds
the engine), or ``sampler`` (any :class:`ttscale.sampling.sampler.Sampler`). The blocking methods run the
async ones on a private event loop thread, so they also work inside Jupyter.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from ttscale.early_stop.params import EarlyStopParams, parse_early_stop
from ttscale.errors import ConfigError
from ttscale.live.budget import Budget
from ttscale.live.samplers import build_sampler
from ttscale.live.solution import Question, Solution, last_user_text
from ttscale.live.solve import Solver
from ttscale.planning.cost import Prices
from ttscale.sampling.model_defaults import with_model_defaults
from ttscale.sampling.sampler import Sampler, SamplingConfig, request_seed
from ttscale.selection.policy import Policy, load_policy
from ttscale.validation import is_int

__all__ = ["Budget", "Solution", "TTScale"]

T = TypeVar("T")


class _LoopThread:
    """An event loop in a daemon thread: blocking calls submit coroutines to it.

    One loop for the object's life keeps the HTTP client's connections (bound to a loop) alive
    between calls, and works where a loop is already running (Jupyter), unlike ``asyncio.run``.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ttscale-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


def _sampling(value: SamplingConfig | Mapping[str, Any] | None, model: str | None,
              early_stop: EarlyStopParams | None = None) -> SamplingConfig:
    """The sampling config: the caller's fields over the model folder's ``ttscale.json`` (its prompt
    template, temperature, ...; see :mod:`ttscale.sampling.model_defaults`); log-probs stay on by default.
    ``early_stop`` (``TTScale(early_stop=...)``) goes in as the config's own (checked against its
    ``max_tokens`` there); given in ``sampling`` as well, it is refused rather than one silently winning."""
    given = value.model_dump(include=value.model_fields_set) if isinstance(value, SamplingConfig) else dict(value or {})
    if early_stop is not None:
        if given.get("early_stop") is not None:
            raise ConfigError("early_stop", early_stop.model_dump(), "one early stop: early_stop=... or sampling's early_stop, not both")
        given["early_stop"] = early_stop
    merged = with_model_defaults(model, given)
    if isinstance(value, SamplingConfig) and early_stop is None and merged == given:
        return value
    return SamplingConfig.from_dict(merged, source="sampling")


def _search(search: Mapping[str, Any] | Any | None, prm: Any | None, seed: int | None) -> tuple[Any, Any] | None:
    """The checked search parameters and step scorer of ``search=``/``prm=`` (None: sampling)."""
    if search is None:
        if prm is not None:
            raise ConfigError("prm", prm, "search=... too (prm scores the steps of a search; scorer=... scores whole samples)")
        return None
    from ttscale.live.search import search_params, step_scorer

    params = search_params(search)
    if seed is not None and not (isinstance(search, Mapping) and "seed" in search):
        params = params.model_copy(update={"seed": seed})
    return params, step_scorer(prm)


def _check_early_stop(params: EarlyStopParams | None, sampler: Sampler | None, search: bool) -> None:
    """Refuse an early stop that would not apply: with a search (its steps are scored, not
    tracked), or beside a ``sampler`` built with another (its own config is what it uses)."""
    if params is None:
        return
    if search:
        raise ConfigError("early_stop", params.model_dump(), "None with search=... (a search prunes by step scores instead)")
    if sampler is not None and getattr(sampler.config, "early_stop", None) != params:
        raise ConfigError("early_stop", params.model_dump(),
                          "None with sampler=... (set it in that sampler's own SamplingConfig: it samples with its config)")


class TTScale:
    """Sample N candidates per question through a model server or engine, and choose by policy.

    Exactly one way in: ``base_url`` (OpenAI-compatible HTTP), ``engine`` (a ``vllm.LLM``),
    ``backend`` (``"vllm"`` or ``"hf"``, built from ``model``), or ``sampler``. ``policy`` is a
    preset name, a TOML path, ``NAME:key=value`` overrides or a :class:`Policy`; ``budget`` the
    default per-question :class:`Budget` (or just samples). ``sampling`` holds temperature,
    max_tokens, template... (:class:`SamplingConfig` or its fields) over the model folder's own
    defaults (``ttscale.json``: the embedded ``arith-tiny`` brings its prompt template); ``prices`` (dollars per
    million input and output tokens) turn tokens into ``Solution.cost``. ``scorer`` computes
    rewards for reward-based policies (see :mod:`ttscale.scoring`).

    ``search`` (a mapping of :class:`~ttscale.search.params.SearchParams` fields, e.g.
    ``{"method": "beam", "width": 4, "keep": 1}``) answers by step-level search instead of
    sampling, through the same vLLM engine or ``base_url`` server; ``prm`` scores its steps (a
    :class:`~ttscale.search.steps.StepScorer`, or ``"oracle"``, ``"prm"``, ``"prm:FOLDER"``,
    ``"vllm-prm[:FOLDER]"``). The answer is the best-scored final candidate's; ``Solution.search``
    holds the search's cost.

    ``early_stop`` (an :class:`~ttscale.early_stop.params.EarlyStopParams` or a mapping of its
    fields, e.g. ``{"eta": 10, "window": 512, "warmup": 8}``) ends low-confidence traces while they
    are generated (DeepConf online; ``base_url``, vLLM and hf backends). Per question the first
    ``warmup`` traces run in full and calibrate the threshold, over as many rounds as it takes,
    and every later trace of the question is held to it; stopped traces do not vote, and
    ``Solution.early_stop`` says how many there were and what they generated.
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        *,
        policy: str | Policy = "majority",
        budget: int | Budget | Mapping[str, Any] = 8,
        api_key: str | None = None,
        engine: Any | None = None,
        backend: str | None = None,
        sampler: Sampler | None = None,
        sampling: SamplingConfig | Mapping[str, Any] | None = None,
        scorer: Any | None = None,
        prices: Prices | tuple[float, float] | None = None,
        equivalence: str = "math",
        concurrency: int = 32,
        timeout: float = 120.0,
        max_retries: int = 3,
        engine_args: Mapping[str, Any] | None = None,
        seed: int | None = None,
        search: Mapping[str, Any] | Any | None = None,
        prm: Any | None = None,
        early_stop: EarlyStopParams | Mapping[str, Any] | None = None,
    ) -> None:
        ways = [name for name, v in (("base_url", base_url), ("engine", engine), ("backend", backend), ("sampler", sampler)) if v is not None]
        if len(ways) != 1:
            raise ConfigError("base_url/engine/backend/sampler", ", ".join(ways) or "none",
                              "exactly one way to the model: base_url=..., engine=vllm.LLM, backend='vllm'|'hf' with model=..., or sampler=...")
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        self.budget = Budget.of(budget)
        if isinstance(prices, tuple):
            prices = Prices(*prices)
        if seed is not None and (not is_int(seed) or seed < 0):
            raise ConfigError("seed", seed, "an integer >= 0 or None (unseeded)")
        self.seed = seed
        search_setup = _search(search, prm, seed)  # checked before an engine is built
        stop_params = parse_early_stop(early_stop)
        config = _sampling(sampling, model if sampler is None and engine is None else None, stop_params)
        _check_early_stop(config.early_stop, sampler, search_setup is not None)
        if sampler is None:
            sampler = build_sampler(base_url=base_url, model=model, engine=engine, backend=backend, config=config,
                                    api_key=api_key, concurrency=concurrency, timeout=timeout, max_retries=max_retries,
                                    engine_args=engine_args)
        self.sampler = sampler
        self.solver = Solver(sampler, self.policy, equivalence=equivalence, scorer=scorer, prices=prices, seed=seed or 0)
        self.searcher = None
        if search_setup is not None:
            from ttscale.live.search import SearchSolver, step_generator

            params, step_scorer = search_setup
            client = {"api_key": api_key, "concurrency": concurrency, "timeout": timeout, "max_retries": max_retries}
            self.searcher = SearchSolver(step_generator(sampler, params, model=model, base_url=base_url, client=client),
                                         step_scorer, params, prices=prices)
        self._loop: _LoopThread | None = None
        self._count = 0

    # ------------------------------------------------------------------------------ async

    def _questions(self, prompts: Sequence[str | Mapping[str, Any]]) -> list[Question]:
        out = []
        for prompt in prompts:
            self._count += 1
            qid = f"q{self._count}"
            if isinstance(prompt, Mapping):
                qid = str(prompt.get("id", qid))
            # Seeded: each question its own stream, the same for the same call order and ids.
            seed = request_seed(self.seed, qid, 0)
            if isinstance(prompt, str):
                out.append(Question(id=qid, problem=prompt, seed=seed))
            elif isinstance(prompt, Mapping) and isinstance(prompt.get("messages"), Sequence):
                messages = tuple(prompt["messages"])
                out.append(Question(id=qid, problem=last_user_text(messages), messages=messages, seed=seed))
            else:
                raise ConfigError("prompt", prompt, "a prompt string or {'messages': [...]} (chat messages)")
        return out

    async def asolve(self, prompt: str | Mapping[str, Any], *, budget: int | Budget | Mapping[str, Any] | None = None,
                     policy: str | Policy | None = None) -> Solution:
        """Solve one question (a prompt string or ``{"messages": [...]}``)."""
        return (await self.asolve_many([prompt], budget=budget, policy=policy))[0]  # type: ignore[return-value]

    async def asolve_many(self, prompts: Sequence[str | Mapping[str, Any]], *, budget: int | Budget | Mapping[str, Any] | None = None,
                          total_budget: int | None = None, policy: str | Policy | None = None,
                          return_exceptions: bool = False) -> list[Solution | BaseException]:
        """Solve many questions together (their requests overlap, at most ``concurrency`` in flight).

        ``total_budget`` (samples for all questions, needs an adaptive budget): the planner's
        online allocator gives each round's samples to the questions whose vote is least settled.
        """
        if self.searcher is not None:
            for name, value in (("budget", budget), ("total_budget", total_budget), ("policy", policy)):
                if value is not None:
                    raise ConfigError(name, value, "None with search=... (the search's width sets the compute; its best-scored answer is chosen)")
            return await asyncio.to_thread(self.searcher.solve, self._questions(prompts))  # type: ignore[arg-type]
        b = Budget.of(budget, self.budget)
        if total_budget is not None and not b.adaptive:
            raise ConfigError("total_budget", total_budget, "an adaptive budget too (budget={'adaptive': True, ...}); "
                              "without it every question gets budget.samples")
        chosen = None if policy is None else (policy if isinstance(policy, Policy) else load_policy(policy))
        return await self.solver.solve(self._questions(prompts), b, total=total_budget, policy=chosen,
                                       return_exceptions=return_exceptions)

    # ------------------------------------------------------------------------------ blocking

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            self._loop = _LoopThread()
        return self._loop.run(coro)

    def solve(self, prompt: str | Mapping[str, Any], *, budget: int | Budget | Mapping[str, Any] | None = None,
              policy: str | Policy | None = None) -> Solution:
        """Blocking :meth:`asolve`."""
        return self._run(self.asolve(prompt, budget=budget, policy=policy))

    def solve_many(self, prompts: Sequence[str | Mapping[str, Any]], *, budget: int | Budget | Mapping[str, Any] | None = None,
                   total_budget: int | None = None, policy: str | Policy | None = None,
                   return_exceptions: bool = False) -> list[Solution | BaseException]:
        """Blocking :meth:`asolve_many`."""
        return self._run(self.asolve_many(prompts, budget=budget, total_budget=total_budget, policy=policy,
                                          return_exceptions=return_exceptions))

    def close(self) -> None:
        """Release the HTTP client or engine and the private loop."""
        if self.searcher is not None:
            self.searcher.close()
        aclose = getattr(self.sampler, "aclose", None)
        if self._loop is not None:
            if aclose is not None:
                self._loop.run(aclose())
            self._loop.stop()
            self._loop = None
        self.sampler.close()

    async def aclose(self) -> None:
        aclose = getattr(self.sampler, "aclose", None)
        if aclose is not None:
            await aclose()

    def __enter__(self) -> TTScale:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
