"""Planning across banks (`ttscale plan A B ...`, ``ttscale.plan_models``): the join, exact options,
cascades against a brute-force replay, pilots, the frontier, the JSON contract and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ttscale
from ttscale.answers.candidates import Candidates
from ttscale.cli.app import app
from ttscale.errors import ConfigError, EstimationError
from ttscale.planning.cost import Prices
from ttscale.planning.models import cascade_settle, fixed_exact, pareto, simulate_cascade, PlanOption

runner = CliRunner()


def write_bank(path: Path, rows: list[tuple[str, list[str | None], int | None]], reference: str = "1") -> Path:
    """rows: (id, answers, tokens per sample or None)."""
    with open(path, "w") as fh:
        for qid, answers, tok in rows:
            samples = [{"answer": a} if tok is None else {"answer": a, "tokens": tok} for a in answers]
            fh.write(json.dumps({"id": qid, "problem": "x" * 40, "reference": reference, "samples": samples}) + "\n")
    return path


def random_pools(seed: int, questions: int, n: int, p_right: float) -> list[list[str | None]]:
    rng = np.random.default_rng(seed)
    pools = []
    for _ in range(questions):
        p = rng.beta(4 * p_right, 4 * (1 - p_right))
        pools.append([None if rng.random() < 0.05 else "1" if rng.random() < p else str(rng.integers(2, 5)) for _ in range(n)])
    return pools


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    weak = [(f"q{i}", a, 100) for i, a in enumerate(random_pools(0, 30, 8, 0.5))]
    strong = [(f"q{i}", a, 300) for i, a in enumerate(random_pools(1, 30, 4, 0.85))]
    weak.append(("hard", ["2"] * 8, 100))  # never solved: no option reaches 100%
    strong.append(("hard", ["3"] * 4, 300))
    strong.append(("extra", ["1"] * 4, 300))  # not in the weak bank: dropped with a note
    return write_bank(tmp_path / "weak.jsonl", weak), write_bank(tmp_path / "strong.jsonl", strong)


def cands(rows: list[list[int]], correct: int = 0, classes: int = 4) -> list[Candidates]:
    return [Candidates(classes=np.array(r), class_correct=np.arange(classes) == correct) for r in rows]


def test_cascade_exact_equals_brute_force() -> None:
    rng = np.random.default_rng(3)
    cheap = cands([list(rng.choice([-1, 0, 1, 2, 3], size=8, p=[0.1, 0.4, 0.3, 0.1, 0.1])) for _ in range(12)])
    dear = cands([list(rng.choice([0, 1, 2], size=5, p=[0.7, 0.2, 0.1])) for _ in range(12)])
    ns = [1, 2, 4, 8]
    settled, right = cascade_settle(cheap, ns, (0.8, 0.95))
    acc_dear = fixed_exact(dear, [1, 2, 4])
    for i, n in enumerate(ns):
        for t_i, t in enumerate((0.8, 0.95)):
            for j, nb in enumerate([1, 2, 4]):
                exact = float(np.mean(right[:, i, t_i] + (1 - settled[:, i, t_i]) * acc_dear[:, j]))
                brute = simulate_cascade(cheap, dear, n, nb, t, draws=2000, seed=i * 7 + j)
                # 24,000 credits in [0, 1]: standard error below 0.0033
                assert abs(exact - brute) < 0.015, (n, t, nb, exact, brute)
    # an always-settled question (8 identical votes) is never escalated at N=8
    one = cands([[0] * 8])
    s, r = cascade_settle(one, [8], (0.99,))
    assert s[0, 0, 0] == pytest.approx(1.0) and r[0, 0, 0] == pytest.approx(1.0)


def test_cascade_settle_matches_every_subset() -> None:
    """Direct enumeration of all N-subsets of one question."""
    from itertools import combinations

    from scipy.special import betainc

    q = cands([[0, 0, 1, 1, 2, -1]])[0]
    for n in (2, 3, 4):
        subs = list(combinations(range(q.n), n))
        s_tot = r_tot = 0.0
        for sub in subs:
            cls = q.classes[list(sub)]
            votes = np.bincount(cls[cls >= 0], minlength=4)
            srt = np.sort(votes)[::-1]
            ok = srt[0] > 0 and betainc(srt[1] + 1.0, srt[0] + 1.0, 0.5) >= 0.8
            top = np.flatnonzero(votes == votes.max())
            s_tot += ok
            r_tot += ok * q.class_correct[top].mean()
        s, r = cascade_settle([q], [n], (0.8,))
        assert s[0, 0, 0] == pytest.approx(s_tot / len(subs))
        assert r[0, 0, 0] == pytest.approx(r_tot / len(subs))


def test_plan_models_api_join_options_frontier(pair: tuple[Path, Path]) -> None:
    weak, strong = pair
    plan = ttscale.plan_models([weak, strong], prices={str(weak): Prices(input=0.2, output=0.2), str(strong): Prices(input=30, output=60)},
                               target=0.8, horizon=4)
    assert plan.questions == 31
    assert any("dropped 1 of" in n for n in plan.notes)
    kinds = {o.kind for o in plan.options}
    assert kinds == {"fixed", "adaptive", "cascade"}
    fixed = [o for o in plan.options if o.kind == "fixed"]
    assert [o.n for o in fixed if o.bank == str(weak)] == [1, 2, 4, 8]
    assert [o.n for o in fixed if o.bank == str(strong)] == [1, 2, 4]
    # costs: weak majority@2 = prompt 10 tokens + 2 x 100
    w2 = next(o for o in fixed if o.bank == str(weak) and o.n == 2)
    assert w2.tokens_per_question == pytest.approx(10 + 200)
    assert w2.dollars_per_question == pytest.approx((10 * 0.2 + 200 * 0.2) / 1e6)
    cascades = [o for o in plan.options if o.kind == "cascade"]
    assert all(o.bank == (str(weak), str(strong)) for o in cascades)  # cheaper bank first
    for o in plan.options:
        assert o.low <= o.accuracy <= o.high and all(math.isfinite(x) for x in (o.accuracy, o.low, o.high))
    # the frontier: rising accuracy with rising cost, and no option dominates one on it
    front = [plan.options[i] for i in plan.frontier]
    assert all(a.accuracy < b.accuracy and a.dollars_per_question <= b.dollars_per_question for a, b in zip(front, front[1:]))
    for f in front:
        assert not any(o.accuracy > f.accuracy and o.dollars_per_question < f.dollars_per_question for o in plan.options)
    rec = plan.best
    assert rec.accuracy >= 0.8
    assert all(o.dollars_per_question >= rec.dollars_per_question for o in plan.options if o.accuracy >= 0.8)


def test_pareto_keeps_only_undominated() -> None:
    mk = lambda acc, usd: PlanOption("a", "fixed", "m", 1, None, acc, acc, acc, 1.0, usd)  # noqa: E731
    opts = [mk(0.5, 1.0), mk(0.6, 2.0), mk(0.55, 3.0), mk(0.7, 3.0), mk(0.7, 4.0)]
    assert pareto(opts, dollars=True) == [0, 1, 3]


def test_pilot_predictions_carry_exact_values(pair: tuple[Path, Path]) -> None:
    weak, strong = pair
    exact = ttscale.plan_models([weak, strong], horizon=4)
    pred = ttscale.plan_models([weak, strong], horizon=4, pilot=4)
    assert [o.policy for o in pred.options] == [o.policy for o in exact.options]
    for e, p in zip(exact.options, pred.options):
        assert p.exact == pytest.approx(e.accuracy)
        assert p.low <= p.accuracy <= p.high
    # majority@N within the pilot: the curve model matches the pilot's exact value closely
    w1 = next(o for o in pred.options if o.kind == "fixed" and o.n == 1 and o.bank == str(weak))
    assert abs(w1.accuracy - w1.exact) < 0.1
    assert any("no prices" in n for n in pred.notes)


def test_cli_json_contract(pair: tuple[Path, Path]) -> None:
    weak, strong = pair
    r = runner.invoke(app, ["plan", str(weak), str(strong), "--cost", f"{weak}=0.2,0.2", "--cost", f"{strong}=30,60",
                            "--budget-dollars", "0.005", "--horizon", "4", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert set(data) == {"questions", "banks", "options", "frontier", "recommended"}
    assert data["questions"] == 31
    assert [b["path"] for b in data["banks"]] == [str(weak), str(strong)]
    assert [b["questions"] for b in data["banks"]] == [31, 32]
    assert data["banks"][1]["cost"]["price_out"] == 60
    keys = {"bank", "kind", "policy", "n", "param", "accuracy", "low", "high", "tokens_per_question", "dollars_per_question",
            "eflops_per_question"}
    for o in data["options"]:
        assert set(o) == keys
        assert 0 <= o["accuracy"] <= 1
        assert o["kind"] in ("fixed", "adaptive", "cascade")
        assert isinstance(o["bank"], list if o["kind"] == "cascade" else str)
    rec = data["options"][data["recommended"]["option"]]
    assert rec["dollars_per_question"] * 31 <= 0.005
    within = [o["accuracy"] for o in data["options"] if o["dollars_per_question"] * 31 <= 0.005]
    assert rec["accuracy"] == max(within)
    assert "within the budget" in data["recommended"]["reason"]


def test_cli_table_and_plot(pair: tuple[Path, Path], tmp_path: Path) -> None:
    weak, strong = pair
    costs = tmp_path / "costs.toml"
    costs.write_text(f'[banks."{weak}"]\nprice_in = 0.2\nprice_out = 0.2\n[banks."{strong}"]\nprice_in = 30\nprice_out = 60\n')
    png = tmp_path / "front.png"
    r = runner.invoke(app, ["plan", str(weak), str(strong), "--costs", str(costs), "--target", "0.7", "--horizon", "4",
                            "--pilot", "4", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert "Pareto frontier" in r.stdout and "recommended: option" in r.stdout and "exact %" in r.stdout
    assert png.stat().st_size > 5000


def run_err(*args: str) -> str:
    r = runner.invoke(app, ["plan", *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "nan" not in r.output.lower()
    return " ".join(r.output.split())


def test_bad_input(pair: tuple[Path, Path], tmp_path: Path) -> None:
    weak, strong = pair
    other = write_bank(tmp_path / "other.jsonl", [("z1", ["1", "2"], 5), ("z2", ["2", "2"], 5)])
    assert "share no question id" in run_err(str(weak), str(other))
    no_tokens = write_bank(tmp_path / "notok.jsonl", [(f"q{i}", ["1", "2", "1"], None) for i in range(30)])
    msg = run_err(str(weak), str(no_tokens))
    assert "--output-tokens" in msg and "notok.jsonl" in msg and "tokens" in msg
    # with --output-tokens for that bank it runs
    ok = runner.invoke(app, ["plan", str(weak), str(no_tokens), "--output-tokens", f"{no_tokens}=50", "--horizon", "2", "--json"])
    assert ok.exit_code == 0, ok.output
    msg = run_err(str(weak), str(strong), "--cost", f"{weak}=0.2,0.2")
    assert "--cost" in msg and "strong.jsonl" in msg
    msg = run_err(str(weak), str(strong), "--target", "0.999", "--horizon", "4")
    assert "no option is predicted to reach 0.999" in msg and "the best is" in msg and "at 0." in msg
    assert "BANK=IN,OUT" in run_err(str(weak), str(strong), "--cost", "0.2,0.2")
    assert "--budget-dollars" in run_err(str(weak), str(strong), "--budget-dollars", "1")
    assert "--price-in" in run_err(str(weak), str(strong), "--price-in", "1")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('[banks."x"]\nprice_in = "a"\n')
    assert "bad.toml" in run_err(str(weak), str(strong), "--costs", str(bad_toml))


def test_api_errors_are_typed(pair: tuple[Path, Path]) -> None:
    weak, strong = pair
    with pytest.raises(ConfigError, match="one or more banks"):
        ttscale.plan_models([])
    alone = ttscale.plan_models([weak], horizon=4)  # one bank: its own options, no cascades
    assert {o.kind for o in alone.options} == {"fixed", "adaptive"} and alone.questions == 31
    with pytest.raises(EstimationError, match="no option"):
        ttscale.plan_models([weak, strong], target=1.0, horizon=4)


def test_target_names_the_option_whose_interval_clears_it(pair: tuple[Path, Path]) -> None:
    """The recommendation is the cheapest point prediction over the target; a note names the
    cheapest option whose whole interval is over it (or says none is)."""
    weak, strong = pair
    prices = {str(weak): Prices(input=0.2, output=0.2), str(strong): Prices(input=30, output=60)}
    plan = ttscale.plan_models([weak, strong], prices=prices, target=0.8, horizon=4)
    sure = [i for i, o in enumerate(plan.options) if o.low >= 0.8]
    notes = [n for n in plan.notes if "wholly above 0.8" in n]
    if not sure:
        assert len(notes) == 1 and notes[0].startswith("no option's interval")
        return
    safe = min(sure, key=lambda i: (plan.options[i].dollars_per_question, -plan.options[i].accuracy))
    assert plan.options[safe].dollars_per_question >= plan.best.dollars_per_question
    if safe == plan.recommended:
        assert notes == []
    else:
        assert len(notes) == 1 and f"option {safe}," in notes[0] and "x the recommended cost" in notes[0]


def test_default_settle_matches_every_order() -> None:
    """The default rule as a settle test, against a direct enumeration of every order of one question."""
    from itertools import permutations

    from ttscale.adaptive.stopping import SettledMajority
    from ttscale.planning.models import default_settle

    q = cands([[0, 0, 0, 1, 2, -1]])[0]
    rule = SettledMajority()
    for K in (2, 4):
        for conf in (0.6, 0.9):
            tot_s = tot_r = tot_n = 0.0
            orders = list(permutations(range(q.n)))
            for perm in orders:
                cls = q.classes[list(perm)]
                used, ok, credit = K, False, 0.0
                for m in range(1, K):
                    votes = np.bincount(cls[:m][cls[:m] >= 0], minlength=4)
                    srt = np.sort(votes)[::-1]
                    if srt[0] > 0 and rule.hold_probability(srt[0], srt[1], votes.sum() - srt[0] - srt[1], K - m) >= conf:
                        top = np.flatnonzero(votes == votes.max())
                        used, ok, credit = m, True, q.class_correct[top].mean()
                        break
                tot_s += ok
                tot_r += credit
                tot_n += used
            s, r, n = default_settle([q], [K], [conf])
            assert s[0, 0, 0] == pytest.approx(tot_s / len(orders))
            assert r[0, 0, 0] == pytest.approx(tot_r / len(orders))
            assert n[0, 0, 0] == pytest.approx(tot_n / len(orders))
    # unanimous votes settle before the horizon; a split that stays split never does at a strict confidence
    s, _, _ = default_settle(cands([[0] * 8]), [8], [0.99])
    assert s[0, 0, 0] == pytest.approx(1.0)


def test_three_bank_cascade_exact_equals_brute_force(tmp_path: Path) -> None:
    """Cascades through three banks (ASC- and default-rule-settled) replayed exactly in the plan, against
    a seeded brute-force simulation of the same cascade; accuracy and samples drawn."""
    from ttscale.planning.models import join_banks, plan_options, simulate_chain

    pools = [random_pools(7, 14, 8, 0.45), random_pools(8, 14, 8, 0.7), random_pools(9, 14, 4, 0.9)]
    costs = (10, 40, 200)
    rows = [[(f"q{i}", a, c) for i, a in enumerate(p)] for p, c in zip(pools, costs)]
    paths = [str(write_bank(tmp_path / f"b{k}.jsonl", r)) for k, r in enumerate(rows)]
    plan = ttscale.plan_models(paths, adaptive=False, cascade_max_n=8)
    chains = [o for o in plan.options if o.kind == "cascade" and len(o.bank) == 3]
    assert {o.bank for o in chains} == {tuple(paths)}  # cheapest first
    assert {o.policy.split("@")[0] for o in chains} == {"asc", "default"}
    banks = [read.candidates for read in (ttscale.read_bank(p) for p in paths)]
    picked = [next(o for o in chains if o.policy == "asc@4>asc@4>majority@1" and o.param == 0.9),
              next(o for o in chains if o.policy == "default@4>default@8>majority@2" and o.param == 0.8)]
    for k, o in enumerate(picked):
        kind = o.policy.split("@")[0]
        stages = [(banks[0], kind, int(o.policy.split(">")[0].split("@")[1]), o.param),
                  (banks[1], kind, int(o.policy.split(">")[1].split("@")[1]), o.param)]
        n_last = int(o.policy.split("@")[-1])
        acc, reached, drawn = simulate_chain(stages, banks[2], n_last, draws=2000, seed=k)
        # 28,000 credits in [0, 1]: standard error below 0.003
        assert abs(o.accuracy - acc) < 0.012, (o.policy, o.accuracy, acc)
        # tokens per question: a prompt of 10 tokens per bank reached plus its samples' tokens
        brute_tokens = float(np.sum(10 * reached + drawn * np.array(costs)))
        assert o.tokens_per_question == pytest.approx(brute_tokens, rel=0.02), (o.policy, o.tokens_per_question, brute_tokens)
        assert 0 < reached[2] < reached[1] < 1  # some questions settle at each stage, some reach the last
    assert len(chains) == len({(o.policy, o.param) for o in chains})  # each setting once


def test_eflops_across_banks(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """Kinetics eFLOPs per bank from the costs file: each option's expected eFLOPs, options compared on them."""
    from ttscale.planning.cost import ModelCostSpec, kinetics_eflops

    weak, strong = pair
    costs = tmp_path / "flops.toml"
    costs.write_text(f'[banks."{weak}"]\nactive_params = 1e9\nkv_bytes = 1e5\n'
                     f'[banks."{strong}"]\nactive_params = 7e10\nkv_bytes = 3e5\ngqa = 8\n')
    r = runner.invoke(app, ["plan", str(weak), str(strong), "--costs", str(costs), "--horizon", "4", "--target", "0.7", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["banks"][1]["cost"]["active_params"] == 7e10 and data["banks"][1]["cost"]["gqa"] == 8
    opts = data["options"]
    w4 = next(o for o in opts if o["kind"] == "fixed" and o["bank"] == str(weak) and o["n"] == 4)
    assert w4["eflops_per_question"] == pytest.approx(float(kinetics_eflops(ModelCostSpec(active_params=1e9, kv_bytes_per_token=1e5),
                                                                             4, 10.0, 100.0)))
    # a cascade costs its first bank's samples plus the escalated share of the second's
    casc = next(o for o in opts if o["kind"] == "cascade" and o["policy"] == "asc@4>majority@1" and o["param"] == 0.9)
    s1 = next(o for o in opts if o["kind"] == "fixed" and o["bank"] == str(strong) and o["n"] == 1)
    assert w4["eflops_per_question"] < casc["eflops_per_question"] < w4["eflops_per_question"] + s1["eflops_per_question"]
    # the recommendation is the cheapest in eFLOPs among the options reaching the target
    rec = opts[data["recommended"]["option"]]
    assert rec["accuracy"] >= 0.7
    assert all(o["eflops_per_question"] >= rec["eflops_per_question"] for o in opts if o["accuracy"] >= 0.7)
    front = [opts[i]["eflops_per_question"] for i in data["frontier"]]
    assert front == sorted(front)
    # every bank or none; the one-bank flags point to the costs file
    half = tmp_path / "half.toml"
    half.write_text(f'[banks."{weak}"]\nactive_params = 1e9\nkv_bytes = 1e5\n')
    msg = run_err(str(weak), str(strong), "--costs", str(half))
    assert "active_params and kv_bytes for every bank" in msg and "strong.jsonl" in msg
    one = tmp_path / "one.toml"
    one.write_text(f'[banks."{weak}"]\nactive_params = 1e9\n')
    assert "both active_params and kv_bytes" in run_err(str(weak), str(strong), "--costs", str(one))
    assert "--costs" in run_err(str(weak), str(strong), "--active-params", "1e9", "--kv-bytes", "1e5")


def test_margin_rule_for_targets() -> None:
    """--target from a pilot: the cheapest option whose accuracy minus margin x its lower half-interval
    reaches the target; the point rule at margin 0; when nothing clears the margin, the option with the most to spare."""
    from ttscale.planning.models import recommend_for_target

    mk = lambda acc, low, usd: PlanOption("a", "fixed", f"majority@{usd:g}", 1, None, acc, low, min(1.0, 2 * acc - low), 1.0, usd)  # noqa: E731
    opts = [mk(0.905, 0.85, 1.0), mk(0.93, 0.90, 2.0), mk(0.95, 0.94, 4.0)]
    assert recommend_for_target(opts, 0.9, True, 0.0)[0] == 0
    rec, reason, notes = recommend_for_target(opts, 0.9, True, 0.5)  # 0.905 - 0.0275 < 0.9 <= 0.93 - 0.015
    assert rec == 1 and "0.5 x its lower half-interval" in reason
    assert any("option 0" in n and "2.00x as much" in n for n in notes)
    assert recommend_for_target(opts, 0.9, True, 1.0)[0] == 1  # 0.93 - 0.03 = 0.90 reaches it
    assert recommend_for_target(opts, 0.9, True, 2.0)[0] == 2
    rec, reason, _ = recommend_for_target(opts, 0.945, True, 2.0)  # nothing clears 2 half-intervals: the most to spare
    assert rec == 2 and "none does with 2" in reason
    # of two over the target that both miss the margin, the one with the higher accuracy - margin x half, not the cheapest
    wide = [mk(0.95, 0.80, 1.0), mk(0.935, 0.92, 3.0)]
    assert recommend_for_target(wide, 0.93, True, 2.0)[0] == 1  # 0.95 - 0.30 < 0.935 - 0.03 < 0.93
    assert recommend_for_target(wide, 0.93, True, 0.0)[0] == 0
    with pytest.raises(EstimationError, match="the best is a: majority@4 at 0.950"):
        recommend_for_target(opts, 0.96, True, 1.0)


def test_pilot_target_uses_the_shipped_margin(pair: tuple[Path, Path]) -> None:
    """From a pilot, --target recommends by the held-out margin and says so; on the full banks, by the point value."""
    from ttscale.planning.models import TARGET_MARGIN

    weak, strong = pair
    r = runner.invoke(app, ["plan", str(weak), str(strong), "--pilot", "4", "--target", "0.6", "--horizon", "4", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    reason, rec = data["recommended"]["reason"], data["options"][data["recommended"]["option"]]
    assert f"{TARGET_MARGIN:g} x its lower half-interval" in reason
    if "none does" not in reason:
        assert rec["accuracy"] - TARGET_MARGIN * (rec["accuracy"] - rec["low"]) >= 0.6
    exact = ttscale.plan_models([weak, strong], target=0.6, horizon=4)
    assert exact.reason == "cheapest option predicted to reach 0.6"


def test_asc_and_first_to_ahead_options_equal_a_brute_force_replay(tmp_path: Path) -> None:
    """Each bank's ASC and first-to-ahead options (beside `default`) against every ordered draw of
    K samples from its pool: stop at the first n where the rule fires (or at K), answer the plurality
    of the n votes (ties credited by the share right)."""
    from itertools import permutations

    from scipy.special import betainc

    def pools(seed: int, n: int) -> list[list[str | None]]:
        rng = np.random.default_rng(seed)
        return [[str(a) for a in rng.choice(["1", "2", "3"], size=n, p=rng.dirichlet([2, 1, 1]))] for _ in range(12)]

    weak = write_bank(tmp_path / "a.jsonl", [(f"q{i}", p, 50) for i, p in enumerate(pools(3, 6))])
    strong = write_bank(tmp_path / "b.jsonl", [(f"q{i}", p, 500) for i, p in enumerate(pools(4, 6))])
    plan = ttscale.plan_models([weak, strong], horizon=4, cascade_max_n=2)
    answers = [[s.answer for s in rec.samples] for rec in ttscale.read_bank(weak).bank.records]
    K = 4

    def replay(stop) -> tuple[float, float]:  # (mean samples, accuracy) over every ordered K-draw
        samples, acc = [], []
        for pool in answers:
            s = a = 0.0
            draws = list(permutations(range(len(pool)), K))
            for order in draws:
                votes: dict[str, int] = {}
                for n, i in enumerate(order, 1):
                    votes[pool[i]] = votes.get(pool[i], 0) + 1
                    top = sorted(votes.values(), reverse=True) + [0]
                    if n == K or stop(top[0], top[1]):
                        break
                best = max(votes.values())
                leaders = [c for c, v in votes.items() if v == best]
                s += n
                a += sum(c == "1" for c in leaders) / len(leaders)
            samples.append(s / len(draws))
            acc.append(a / len(draws))
        return float(np.mean(samples)), float(np.mean(acc))

    rules = {"asc": lambda t: (lambda v1, v2: betainc(v2 + 1, v1 + 1, 0.5) >= t),
             "first-to-ahead": lambda m: (lambda v1, v2: v1 - v2 >= m)}
    seen = 0
    for o in plan.options:
        name = o.policy.split("@")[0]
        if o.kind == "adaptive" and o.bank == str(weak) and o.n == K and name in rules:
            samples, acc = replay(rules[name](o.param))
            assert o.accuracy == pytest.approx(acc, abs=1e-9)
            assert o.tokens_per_question == pytest.approx(10 + samples * 50, rel=1e-9)  # prompt once + samples x 50
            seen += 1
    assert seen == 6  # 3 ASC thresholds, 3 first-to-ahead margins


def test_options_beyond_the_pilot_carry_the_extrapolation_term() -> None:
    """Adaptive rules and cascades scored on completed pilots get majority@N's extrapolation term
    (spread x their departure from the model's majority at the pilot size) once they read past it."""
    from ttscale.curves.majority import EXTRAPOLATION_SPREAD
    from ttscale.planning.models import _widened

    at_pilot = {"a": 0.60, "b": 0.70}
    beyond = PlanOption("a", "adaptive", "default@16", 16, 0.9, 0.75, 0.73, 0.77, 100.0, None)
    wide = _widened(beyond, 8, at_pilot, 0.95)
    extra = EXTRAPOLATION_SPREAD * 0.15
    assert wide.accuracy == beyond.accuracy
    assert wide.low == pytest.approx(0.75 - math.hypot(0.02, extra))
    assert wide.high == pytest.approx(min(1.0, 0.75 + math.hypot(0.02, extra)))
    # a cascade is judged by its last bank and last stage's N
    cascade = PlanOption(("a", "b"), "cascade", "asc@4>majority@12", 4, 0.9, 0.72, 0.70, 0.74, 100.0, None)
    assert _widened(cascade, 8, at_pilot, 0.95).low == pytest.approx(0.72 - math.hypot(0.02, EXTRAPOLATION_SPREAD * 0.02))
    # within the pilot: unchanged; a lower level: narrower
    inside = PlanOption("a", "adaptive", "default@8", 8, 0.9, 0.75, 0.73, 0.77, 100.0, None)
    assert _widened(inside, 8, at_pilot, 0.95) == inside
    assert _widened(beyond, 8, at_pilot, 0.5).low > wide.low
