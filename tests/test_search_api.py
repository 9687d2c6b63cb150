"""``TTScale(..., search={...}, prm=...)``: checked before any engine is built, then answered by
step-level search through the API's own vLLM engine (real engine, packaged model, oracle scorer)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ttscale import TTScale
from ttscale.errors import ConfigError
from ttscale.planning.cost import Prices, dollars
from ttscale.records.datasets import Problem, load_dataset
from ttscale.search import SearchParams, search_problems
from ttscale.search.oracle import OracleStepScorer

HARD = load_dataset("arith-hard", limit=4)
ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
SEARCH = {"method": "beam", "width": 4, "keep": 1}


@pytest.mark.parametrize(
    ("kwargs", "name", "expected"),
    [
        ({"search": {"width": 0}, "prm": "oracle"}, "search.width", ">= 1"),
        ({"search": {"method": "dvts", "width": 6, "keep": 4}, "prm": "oracle"}, "search.keep", "divisor of width"),
        ({"search": {"beams": 2}, "prm": "oracle"}, "search.beams", ""),
        ({"search": "beam", "prm": "oracle"}, "search", "mapping of search fields"),
        ({"search": SEARCH}, "prm", "step scorer"),
        ({"search": SEARCH, "prm": "nonsense"}, "prm", "oracle"),
        ({"search": SEARCH, "prm": object()}, "prm", "score_steps"),
        ({"prm": "oracle"}, "prm", "search=... too"),
    ],
)
def test_bad_search_options_are_refused_before_the_engine_is_built(kwargs: dict, name: str, expected: str) -> None:
    # backend="vllm" would take 20 s to build: the error must come first (no vllm import needed).
    with pytest.raises(ConfigError) as info:
        TTScale(backend="vllm", model="arith-tiny", **kwargs)
    assert info.value.parameter == name and expected in str(info.value)


def test_search_needs_an_engine_that_continues_steps() -> None:
    with pytest.raises(ConfigError, match="a vLLM engine .* or base_url"):
        TTScale(backend="hf", model="arith-tiny", search=SEARCH, prm="oracle")


@pytest.fixture(scope="module")
def tts() -> Iterator[TTScale]:
    if os.environ.get("TTSCALE_SKIP_VLLM") == "1":
        pytest.skip("TTSCALE_SKIP_VLLM=1")
    pytest.importorskip("vllm")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ENV.items():
            mp.setenv(key, value)
        with TTScale(backend="vllm", model="arith-tiny", sampling={"temperature": 1.3}, search=SEARCH, prm="oracle", seed=2,
                     prices=Prices(0.5, 2.0)) as t:
            yield t


@pytest.mark.vllm
@pytest.mark.slow
def test_solve_by_beam_search_on_the_real_engine(tts: TTScale) -> None:
    sols = tts.solve_many([p.problem for p in HARD])
    assert sum(s.answer == p.answer for s, p in zip(sols, HARD)) >= 3  # oracle-guided: nearly always right
    for s in sols:
        cost = s.search["cost"]  # type: ignore[index]
        assert s.policy == "search:beam" and s.search["params"]["width"] == 4  # type: ignore[index]
        assert s.completion_tokens == cost["generated_tokens"] > 0 and s.prompt_tokens == cost["prompt_tokens"] > 0
        assert s.requests == cost["requests"] >= cost["rounds"] > 0
        assert s.cost == pytest.approx(dollars(s.prompt_tokens, s.completion_tokens, Prices(0.5, 2.0)))
        assert 1 <= s.samples == len(s.candidates) <= 4
        if s.answer is not None:
            assert s.text is not None and s.text.rstrip().endswith(f"#### {s.answer}")
            assert s.candidates[s.chosen_index].reward == max(c.reward for c in s.candidates)  # type: ignore[index]
    # The same search as the step generator run directly on the API's engine (questions are q1..q4).
    from ttscale.search.vllm_steps import VLLMStepGenerator

    gen = VLLMStepGenerator(None, tts.sampler.config, llm=tts.sampler.llm)  # type: ignore[attr-defined]
    problems = [Problem(f"q{i + 1}", p.problem) for i, p in enumerate(HARD)]
    direct = {r.problem.id: r for r in search_problems(problems, gen, OracleStepScorer(), SearchParams(**SEARCH, seed=2))}
    for q, s in zip(problems, sols):
        assert [c.text for c in s.candidates] == [b.text for b in direct[q.id].candidates]
        assert s.completion_tokens == direct[q.id].cost.generated_tokens
    with pytest.raises(ConfigError, match="budget"):
        tts.solve(HARD[0].problem, budget=8)
    assert tts.solve(HARD[0].problem).to_dict()["search"]["method"] == "beam"
