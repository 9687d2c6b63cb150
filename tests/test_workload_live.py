"""The live solver on a workload prior fitted on a pilot bank (``Budget.from_pilot``): it stops
where the simulator's ``workload`` rule (:class:`WorkloadBayes`) does, one sample at a time, in
fewer requests. The upstream is ``tests/fake_upstream.py`` (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_upstream import MODEL, FakeUpstream
from test_api import rule_stop

from ttscale import Budget, TTScale
from ttscale.adaptive.workload_prior import WorkloadBayes
from ttscale.errors import ConfigError
from ttscale.records.bank import BankWriter
from ttscale.records.models import Record, Sample


def _pilot(path: Path, questions: int = 60, n: int = 8, seed: int = 0) -> Path:
    """A pilot of unlabelled questions: a third unanimous, the rest split between two or more answers."""
    rng = np.random.default_rng(seed)
    with BankWriter(path) as writer:
        for q in range(questions):
            shares = [(1.0, 0.0, 0.0), (0.6, 0.3, 0.1), (0.45, 0.35, 0.2)][q % 3]
            answers = rng.choice(["a", "b", "c"], size=n, p=shares)
            writer.append(Record(id=f"q{q}", problem="p", samples=[Sample(answer=str(a)) for a in answers]))
    return path


def test_from_pilot_fits_the_prior_and_validates(tmp_path: Path) -> None:
    budget = Budget.from_pilot(_pilot(tmp_path / "pilot.jsonl"), samples=16, price=0.005, pilot=2)
    assert budget.adaptive and budget.samples == 16 and budget.price == 0.005 and budget.pilot == 2
    assert budget.workload is not None and abs(sum(w for w, *_ in budget.workload) - 1) < 1e-9
    default = Budget.from_pilot(tmp_path / "pilot.jsonl")
    assert default.samples == 8  # the pilot's pool
    with pytest.raises(ConfigError, match="budget.workload"):
        Budget(samples=8, workload=budget.workload)  # a prior without adaptive stops nothing
    with pytest.raises(ConfigError, match="budget.price"):
        Budget(samples=8, adaptive=True, workload=budget.workload, price=1.0)
    one = tmp_path / "one.jsonl"
    with BankWriter(one) as writer:
        writer.append(Record(id="q", samples=[Sample(answer="a")]))
    with pytest.raises(ConfigError, match="pilot"):
        Budget.from_pilot(one)


def test_live_workload_budget_stops_where_the_workload_rule_does(upstream: FakeUpstream, tmp_path: Path) -> None:
    K = 24
    budget = Budget.from_pilot(_pilot(tmp_path / "pilot.jsonl"), samples=K, price=1e-3)
    rule = WorkloadBayes(budget.price, components=budget.workload)
    prompts = [f"[hard] q{i}" for i in range(6)] + ["[easy] e"]
    with TTScale(base_url=upstream.url, model=MODEL, max_retries=1, seed=7) as t:
        sols = t.solve_many(prompts, budget=budget)
    for sol in sols:
        expect = rule_stop(rule, sol.candidate_answers, K)
        assert sol.samples == expect
        if expect < K:
            assert sol.stopped == "settled"
    easy, hard = sols[-1], sols[:-1]
    assert easy.samples < np.mean([s.samples for s in hard])
    assert all(s.requests < s.samples for s in hard if s.samples > 3)  # drawn in rounds, not one by one


def test_proxy_adaptive_requests_stop_on_the_servers_workload_prior(upstream: FakeUpstream, tmp_path: Path) -> None:
    """``ttscale serve --workload-pilot BANK``: adaptive requests stop where WorkloadBayes on the
    prior fitted on the pilot does; the flag's errors name it."""
    import openai
    from fake_upstream import ThreadServer
    from typer.testing import CliRunner

    from ttscale.cli.app import app
    from ttscale.live.serve.app import create_app
    from ttscale.live.serve.config import ServeConfig

    K = 16
    budget = Budget.from_pilot(_pilot(tmp_path / "pilot.jsonl"), samples=K, price=1e-3)
    server = ThreadServer(create_app(ServeConfig(upstream=upstream.url, max_retries=1, timeout=10.0, n=K, adaptive=True,
                                                 workload=budget.workload, workload_price=1e-3))).start()
    rule = WorkloadBayes(1e-3, components=budget.workload)
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30)
        used = []
        for i, prompt in enumerate([f"[hard] q{i}" for i in range(4)] + ["[easy] e"]):
            resp = client.completions.create(model=MODEL, prompt=prompt, seed=i, extra_body={"ttscale": {"candidates": True}})
            tts = resp.model_extra["ttscale"]
            assert tts["samples"] == rule_stop(rule, [c["answer"] for c in tts["candidates"]], K)
            used.append(tts["samples"])
        assert used[-1] < max(used[:-1])  # the easy one stops sooner
    finally:
        server.stop()
    runner = CliRunner()
    for args, needle in ((["--workload-pilot", str(tmp_path / "missing.jsonl")], "missing.jsonl"),
                         (["--workload-pilot", str(tmp_path / "pilot.jsonl"), "--workload-price", "2"], "--workload-price")):
        result = runner.invoke(app, ["serve", "--upstream", upstream.url, *args])
        assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output, result.output
