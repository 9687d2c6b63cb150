"""The Python API (``ttscale.TTScale``) against a real local HTTP server and the in-process embedded model.

The HTTP upstream is ``tests/fake_upstream.py`` (answers instantly, right with a known
probability); the API against the real vLLM engine and server is in test_vllm.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from fake_upstream import MODEL, FakeUpstream, free_port, right_answer

from ttscale import Budget, TTScale
from ttscale.errors import ConfigError
from ttscale.sampling.backends.openai import ServerError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _reset(upstream: FakeUpstream) -> None:
    upstream.reset()


def tts(upstream: FakeUpstream, **kw) -> TTScale:
    return TTScale(base_url=upstream.url, model=MODEL, **{"max_retries": 1, "seed": 7, **kw})


def is_right(sol, prompt: str) -> bool:
    return sol.answer == str(right_answer(prompt))


def test_solve_returns_answer_vote_tokens_and_cost(upstream: FakeUpstream) -> None:
    with tts(upstream, prices=(1.0, 2.0), budget=8) as t:
        sol = t.solve("What is 2 + 2?")
    assert sol.samples == 8 and sum(sol.vote.values()) == 8 and len(sol.candidates) == 8
    assert sol.answer == max(sol.vote, key=sol.vote.get) and sol.support == [float(sol.vote[sol.answer])]
    assert sol.text is not None and sol.text.endswith(f"#### {sol.answer}")
    assert sol.requests == 1 and sol.completion_tokens == sum(c.tokens for c in sol.candidates)
    assert sol.cost == pytest.approx((sol.prompt_tokens * 1.0 + sol.completion_tokens * 2.0) / 1e6)
    assert sol.stopped == "budget"


def test_majority_of_many_beats_one_sample_and_is_reproducible(upstream: FakeUpstream) -> None:
    prompts = [f"Problem {i}" for i in range(40)]
    with tts(upstream, budget=9, concurrency=8) as t:
        sols = t.solve_many(prompts)
        singles = t.solve_many(prompts, budget=1)
    with tts(upstream, budget=9) as t:
        again = t.solve_many(prompts)
    maj = np.mean([is_right(s, p) for s, p in zip(sols, prompts)])
    one = np.mean([is_right(s, p) for s, p in zip(singles, prompts)])
    assert maj >= 0.8 and maj > one + 0.1  # p_right = 0.6 per sample
    assert [s.vote for s in sols] == [s.vote for s in again]  # same seed, same call order


def test_adaptive_budget_stops_early_on_easy_questions(upstream: FakeUpstream) -> None:
    with tts(upstream) as t:
        easy, hard = t.solve_many(["[easy] one", "[hard] two"], budget=Budget(samples=32, adaptive=True, pilot=4, step=2))
    from ttscale.adaptive.stopping import SettledMajority

    # the first round is the pilot or, if more, the fewest agreeing votes that settle the default rule
    assert easy.stopped == "settled" and easy.samples == max(4, SettledMajority().samples_to_stop(0, 0, 0, 0, 32))
    assert easy.requests == 1
    assert hard.samples > easy.samples


def test_total_budget_goes_to_the_unsettled_questions(upstream: FakeUpstream) -> None:
    prompts = [f"[easy] q{i}" for i in range(10)] + [f"[hard] q{i}" for i in range(10)]
    with tts(upstream) as t:
        sols = t.solve_many(prompts, budget={"samples": 32, "adaptive": True, "pilot": 4}, total_budget=300)
    used = np.array([s.samples for s in sols])
    assert used.sum() <= 300
    assert used[:10].mean() == 4 and used[10:].mean() > 10
    with pytest.raises(ConfigError, match="adaptive"):
        tts(upstream).solve_many(prompts, total_budget=100)


def test_chat_messages_and_async(upstream: FakeUpstream) -> None:
    t = tts(upstream, budget=4)

    async def main():
        try:
            return await asyncio.gather(t.asolve({"messages": [{"role": "user", "content": "chat q"}]}), t.asolve("plain q"))
        finally:
            await t.aclose()

    chat, plain = asyncio.run(main())
    assert chat.samples == 4 and plain.samples == 4 and chat.text and plain.text


def test_degrades_when_some_of_the_n_fail(upstream: FakeUpstream) -> None:
    from ttscale.sampling.sampler import request_seed

    upstream.fail_multi = True
    with tts(upstream, budget=6) as t:
        seed = request_seed(7, "q1", 0)  # the first question of a fresh TTScale is q1
        upstream.fail_seeds = {seed + 1}
        sol = t.solve("degrade me")
    assert sol.samples == 5 and sol.failed_samples == 1 and any("500" in e for e in sol.errors)
    assert sol.to_dict()["degraded"]["failed_samples"] == 1


def test_errors_are_typed(upstream: FakeUpstream) -> None:
    with pytest.raises(ConfigError, match="exactly one way"):
        TTScale(base_url=upstream.url, backend="hf")
    with pytest.raises(ConfigError, match="scorer"):
        TTScale(base_url=upstream.url, policy="best-of-n")
    with pytest.raises(ConfigError, match="budget.samples"):
        TTScale(base_url=upstream.url, budget=0)
    with pytest.raises(ConfigError, match="budget.confidence"):
        Budget(confidence=0.3)
    down = TTScale(base_url=f"http://127.0.0.1:{free_port()}/v1", model=MODEL, max_retries=0)
    with pytest.raises(ServerError, match="cannot reach"):
        down.solve("anyone there?")
    out = down.solve_many(["a", "b"], return_exceptions=True)
    assert all(isinstance(o, ServerError) for o in out)
    down.close()


class LengthScorer:
    """A user's scorer: prefers shorter candidates (the API takes any object with ``score``)."""

    name = "length"

    def score(self, problems: list[str], candidates: list[list[str]]) -> list[list[float]]:
        return [[-float(len(c)) for c in cands] for cands in candidates]

    def close(self) -> None:
        pass


def test_reward_policy_with_a_scorer(upstream: FakeUpstream) -> None:
    with tts(upstream, policy="best-of-n", scorer=LengthScorer(), budget=8) as t:
        sol = t.solve("reward me")
    shortest = min(sol.candidates, key=lambda c: len(c.text))
    assert sol.text is not None and len(sol.text) == len(shortest.text)


def test_in_process_transformers_engine_on_the_embedded_model() -> None:
    rows = [json.loads(line) for line in (ROOT / "ttscale/data/arith_test.jsonl").read_text().splitlines()[:6]]
    with TTScale(backend="hf", model="arith-tiny", budget=4, seed=0, sampling={"template": "arith", "max_tokens": 96}) as t:
        sols = t.solve_many([r["problem"] for r in rows])
    assert all(s.samples == 4 and s.prompt_tokens > 0 and s.completion_tokens > 0 for s in sols)
    assert all(s.answer is None or s.answer.lstrip("-").isdigit() for s in sols)
    assert all(s.text is None or "####" in s.text for s in sols)


def test_total_budget_with_every_request_failing_ends(upstream: FakeUpstream) -> None:
    down = TTScale(base_url=f"http://127.0.0.1:{free_port()}/v1", model=MODEL, max_retries=0)
    out = down.solve_many(["a", "b"], budget={"samples": 8, "adaptive": True}, total_budget=16, return_exceptions=True)
    assert all(isinstance(o, ServerError) for o in out)
    down.close()


def test_token_cap_stops_drawing(upstream: FakeUpstream) -> None:
    with tts(upstream) as t:
        sol = t.solve("cap me", budget=Budget(samples=32, tokens=60, pilot=2, step=2))
    per_sample = sol.completion_tokens / sol.samples
    assert sol.stopped == "tokens" and sol.completion_tokens <= 60 and sol.completion_tokens + 2 * per_sample > 60


def test_failed_calls_are_retried_by_the_client_and_counted(upstream: FakeUpstream) -> None:
    """429 (with Retry-After) and 5xx are retried by the openai client; every attempt is counted;
    a call that keeps failing names its attempts and the last failure."""
    from fault_proxy import FaultProxy

    with FaultProxy(upstream.url.removesuffix("/v1")) as proxy:
        proxy.inject("429", "500", "503")
        with TTScale(base_url=proxy.url + "/v1", model=MODEL, budget=4, max_retries=3, seed=1) as t:
            sol = t.solve("retry me")
            assert sol.samples == 4 and sol.failed_samples == 0
            assert t.sampler.calls == 4  # one request with n=4, tried 4 times
        assert [e.status for e in proxy.completions(status=None)] == [429, 500, 503, 200]
        proxy.inject("500", "500", "500")
        with TTScale(base_url=proxy.url + "/v1", model=MODEL, budget=1, max_retries=2) as t, \
                pytest.raises(ServerError, match=r"failed 3 times, last: HTTP 500: injected 500") as info:
            t.solve("give up")
        assert info.value.kind == "status" and info.value.status == 500


def test_budget_is_a_frozen_validated_model() -> None:
    b = Budget(samples=16, adaptive=True)
    assert Budget.of({"pilot": 2}, b) == Budget(samples=16, adaptive=True, pilot=2) and hash(b) == hash(Budget(samples=16, adaptive=True))
    with pytest.raises(ValueError):
        b.samples = 3  # type: ignore[misc]
    for bad, name in (({"samples": True}, "budget.samples"), ({"pilot": 1.5}, "budget.pilot"), ({"dollars": 0}, "budget.dollars"),
                      ({"bogus": 1}, "budget.bogus"), ({"confidence": 1.0}, "budget.confidence")):
        with pytest.raises(ConfigError, match=name):
            Budget.of(bad)


def rule_stop(rule: object, answers: list[str | None], horizon: int) -> int:
    """Samples after which ``rule`` (a simulator stopping rule) stops a question whose answers arrive
    in this order, checking after every sample (the horizon when it never does)."""
    from dataclasses import replace

    from ttscale.adaptive.stopping import vote_trajectories

    ids: dict[str | None, int] = {}
    seq = np.array([-1 if a is None else ids.setdefault(a, len(ids)) for a in answers])
    traj = replace(vote_trajectories(seq[None, :]), horizon=horizon)
    mask = rule.stop_mask(traj)[0] & (traj.v1[0] > 0)  # type: ignore[attr-defined]
    return int(mask.argmax()) + 1 if mask.any() else horizon


def test_default_adaptive_budget_stops_where_the_default_rule_does_in_few_requests(upstream: FakeUpstream) -> None:
    """Budget(adaptive=True) runs the simulator's ``default`` rule: each round draws the fewest samples
    after which the vote could settle, so the stop is the one-sample-at-a-time stop, in fewer requests."""
    from ttscale.adaptive.stopping import SettledMajority

    K = 24
    prompts = [f"[hard] q{i}" for i in range(6)] + ["[easy] e"]
    with tts(upstream) as t:
        sols = t.solve_many(prompts, budget=Budget(samples=K, adaptive=True))
    rule = SettledMajority(Budget().confidence)
    for sol in sols:
        expect = rule_stop(rule, sol.candidate_answers, K)
        assert sol.samples == expect
        assert sol.stopped == ("settled" if expect < K else sol.stopped)
    easy = sols[-1]
    assert easy.stopped == "settled" and easy.samples == rule.samples_to_stop(0, 0, 0, 0, K) and easy.requests == 1
    hard = sols[:-1]
    assert np.mean([s.samples for s in hard]) > 4 and all(s.requests < s.samples for s in hard if s.samples > 3)


def test_the_live_stop_counts_equivalent_answers_as_one() -> None:
    from ttscale.live.solve import Solver, _State
    from ttscale.live.solution import Question
    from ttscale.records.models import Sample

    solver = Solver.__new__(Solver)
    from ttscale.answers import AnswerClassifier, EquivalenceConfig

    solver._classifier = AnswerClassifier(EquivalenceConfig(mode="math"))
    state = _State(Question(id="q", problem="p"), candidates=[Sample(text=f"#### {a}", answer=a) for a in ("1/2", "0.5", "\\frac{1}{2}", "3")])
    assert solver._top_votes(state) == (3, 1, 0)


def test_embedded_model_brings_its_prompt_template_and_sampling_defaults() -> None:
    """No sampling settings: the model folder's ttscale.json decides (the plain template scored 2.7%)."""
    rows = [json.loads(line) for line in (ROOT / "ttscale/data/arith_test.jsonl").read_text().splitlines()[:12]]
    with TTScale(backend="hf", model="arith-tiny", budget=4, seed=0) as t:
        config = t.sampler.config
        sols = t.solve_many([r["problem"] for r in rows])
    assert config.template == "Question: {problem}\nAnswer:\n" and config.temperature == 1.3 and config.max_tokens == 160
    right = sum(s.answer == str(r["answer"]) for s, r in zip(sols, rows))
    assert right >= 6, f"{right}/12 right with the model's own template"
    with TTScale(backend="hf", model="arith-tiny", sampling={"temperature": 0.5, "template": "plain"}) as t:
        assert (t.sampler.config.temperature, t.sampler.config.template, t.sampler.config.max_tokens) == (0.5, "{problem}", 160)


def test_a_bad_model_settings_file_names_the_file_and_field(tmp_path: Path) -> None:
    from ttscale.sampling.model_defaults import model_settings, sampling_defaults

    assert sampling_defaults(tmp_path) == {} and sampling_defaults("some/hub-model") == {}
    (tmp_path / "ttscale.json").write_text(json.dumps({"sampling": {"temprature": 1.0}}))
    with pytest.raises(ConfigError, match=r"ttscale\.json: sampling: temprature"):
        model_settings(tmp_path)
    bad = tmp_path / "b"
    bad.mkdir()
    (bad / "ttscale.json").write_text(json.dumps({"sampling": {}, "server": {}}))
    with pytest.raises(ConfigError, match=r"ttscale\.json: server.*only the tables 'sampling', 'engine'"):
        model_settings(bad)
    (bad / "ttscale.json").write_text("{not json")
    with pytest.raises(ConfigError, match="a readable JSON object"):
        model_settings(bad)


def test_model_settings_agree_with_what_vllm_serve_uses() -> None:
    """vLLM's server samples at generation_config.json's settings when a client sends none (the proxy
    forwards none): they must be ttscale.json's, or the proxy and the API would sample differently."""
    from ttscale.arith.paths import model_dir
    from ttscale.sampling.model_defaults import engine_defaults, sampling_defaults

    generation = json.loads((model_dir() / "generation_config.json").read_text())
    own = sampling_defaults("arith-tiny")
    assert (own["temperature"], own["max_tokens"]) == (generation["temperature"], generation["max_new_tokens"])
    config = json.loads((model_dir() / "config.json").read_text())
    assert engine_defaults("arith-tiny")["dtype"] == config["dtype"] == "float32"
    assert engine_defaults("arith-tiny")["max_model_len"] == config["max_position_embeddings"]
