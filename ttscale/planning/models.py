"""Compute-optimal planning across models: which bank, how many samples, which rule, or a cascade.

Several banks of the same questions (different models, temperatures or reasoning efforts) are
joined by question ``id``. Every option is scored exactly on the joined banks:

* ``fixed``: majority@N of one bank, N = 1, 2, 4, ... up to its smallest pool (exact over every
  N-subset of each question's samples, ``ttscale.estimate.exact.majority_at_k``); on a bank whose
  samples all carry rewards also the reward-reading presets of :data:`REWARD_POLICIES` at the same
  N (Best-of-N exact, reward-weighted majority by ``ttscale eval``'s seeded resampling);
* ``adaptive``: the live ``default`` rule (:class:`~ttscale.adaptive.stopping.SettledMajority`) at
  several confidences, ASC and first-to-ahead at a few settings (:data:`BASELINE_RULES`), at horizons
  K (powers of two), over every sample order (the exact vote-state tables of ``ttscale simulate --exact``);
* ``cascade``: banks cheapest first (any two or more of them, in that order); each stage but the
  last settles a question or passes it on, the last bank's majority@N' decides the rest. A stage
  is the bank's majority@N settled when ASC's posterior P(leader beats runner-up | v1, v2) >= t,
  or the ``default`` rule with horizon K settled when it stops before K (K samples drawn
  otherwise); the stages of one cascade share t (or the confidence). Replayed exactly per
  question: the chance a stage settles (and settles on a correct plurality, ties credited) and
  its expected samples come from every N-subset (every order) of the question's samples, and the
  banks' samples are independent of each other, so accuracy and expected cost compose stage by stage.

With ``pilot=m`` the same options are predicted from the first m samples per question of each bank:
majority@N by the Dirichlet majority curve model (with its bootstrap interval), adaptive rules and
cascades exactly on pilots completed to the banks' sizes from that model's posterior-predictive urn.
Reward options: at N <= m on the pilots themselves, beyond on the completed pilots, whose drawn
samples carry rewards drawn from the pilot (a seen class: one of its rewards; a new answer: the
question's mean pilot reward plus a pilot residual of samples as right or wrong).
Costs per question: the prompt once per request plus N x the question's mean generated tokens.

``target`` from a pilot asks the predicted accuracy minus ``margin`` x the lower half-interval to
reach it (:data:`TARGET_MARGIN`, chosen held out); on the full banks (no pilot) the point value.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import betainc
from scipy.stats import norm

from ttscale.answers.candidates import NO_ANSWER, Candidates
from ttscale.errors import ConfigError, EstimationError
from ttscale.estimate import exact as estimate
from ttscale.planning.cost import ModelCostSpec, Prices, kinetics_eflops

__all__ = ["BankCost", "ModelBank", "ModelPlan", "PlanOption", "cascade_settle", "join_banks", "load_costs",
           "default_settle", "plan_options", "predict_options", "recommend_for_target", "reward_accuracy", "rewarded_banks",
           "simulate_cascade", "simulate_chain"]

CASCADE_THRESHOLDS = (0.8, 0.9, 0.95, 0.99)
"""ASC posteriors at which a cheaper bank's votes count as settled."""
CASCADE_CONFIDENCES = (0.8, 0.9, 0.95, 0.99)
"""The default rule's confidences as a settle test: a stage is settled when the rule stops before its horizon."""
CASCADE_HORIZONS = (4, 8, 16)
"""The default rule's horizons K replayed as a cascade stage (up to ``cascade_max_n`` and the bank's pool)."""
ADAPTIVE_MAX_STATES = 50_000
"""Largest exact vote-state table (an upper bound, ``state_bound``) built for a default-rule horizon
without being asked: about 10 s (Llama-2-13B on GSM8K: 3,369 states at K=16, 213,165 at K=32)."""
FRONTIER_STEP = 1e-4
"""Accuracy (a hundredth of a point) an option must add over every cheaper one to join the frontier:
the default rule's strictest settings differ from majority@K by less, at a higher cost."""
TARGET_MARGIN = 0.5
"""With a pilot, ``--target`` asks the recommended option's predicted accuracy minus this many lower
half-intervals (accuracy - low, at ``level``) to reach the target (if none does, the option with the
most to spare): chosen leave-one-corpus-out by ``evals/plan_models_holdout.py`` (0 is the point
prediction). Held out on four corpora it lifts the share of recommendations reaching the target on
the full banks from 0.71 to 0.91 (never lower on any corpus) at 1.46x instead of 1.00x the truly
cheapest option's cost. (Before majority@N's interval carried its extrapolation term, 2.0 with the
cheapest point as the fallback: 0.77 at 1.40x.)"""
ADAPTIVE_CONFIDENCES = (0.6, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995)
"""The ``default`` rule's confidences replayed (a subset of its grid: the tables are shared, each is a second)."""
BASELINE_RULES: dict[str, tuple[float, ...]] = {"asc": (0.9, 0.95, 0.99), "first-to-ahead": (2, 3, 4)}
"""The published stopping rules replayed per bank beside ``default`` on the same exact tables (ASC's
posterior threshold, first-to-ahead's margin), so the frontier shows when one of them is cheaper."""
REWARD_POLICIES = ("best-of-n", "weighted-majority")
"""Policy presets that read the samples' rewards, offered as fixed options at every N on banks whose
samples all carry rewards (the presets ``ttscale eval -p`` loads, with the same estimators)."""
REWARD_DRAWS = 1000
"""Resampling draws per question and N for a reward policy without a closed form (``ttscale eval``'s
default, so the planner's weighted-majority equals eval's at the same seed)."""
SETTING_LETTER = {"asc": "t", "first-to-ahead": "m"}
"""How a rule's setting is printed: t (ASC's threshold), m (first-to-ahead's margin), else c (a confidence)."""


def setting_letter(policy: str) -> str:
    """``t``, ``m`` or ``c`` for a policy like ``asc@8``, ``first-to-ahead@16``, ``default@4``."""
    return SETTING_LETTER.get(policy.split("@")[0], "c")


@dataclass(frozen=True)
class BankCost:
    """What one bank's samples cost: prices per million tokens and tokens per question."""

    prices: Prices | None
    prompt_tokens: float
    """Mean prompt tokens per question (problem text / 4 unless given)."""
    output_tokens: float
    """Mean generated tokens per sample over the joined questions."""
    output_from: str
    """``bank`` (the samples' ``tokens``) or ``option`` (--output-tokens / the costs file)."""
    spec: ModelCostSpec | None = None
    """Active parameters, KV bytes per token, GQA ratio and arithmetic intensity: Kinetics eFLOPs."""

    def to_json(self) -> dict:
        out = {"price_in": None if self.prices is None else self.prices.input,
               "price_out": None if self.prices is None else self.prices.output,
               "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
               "output_tokens_from": self.output_from}
        if self.spec is not None:
            out.update(active_params=self.spec.active_params, kv_bytes=self.spec.kv_bytes_per_token,
                       gqa=self.spec.gqa_ratio, intensity=self.spec.arithmetic_intensity)
        return out


@dataclass
class ModelBank:
    """One bank restricted to the joined questions (in the join's order), with per-question costs."""

    path: str
    """The path as given on the command line (the option's ``bank``)."""
    questions_in_file: int
    candidates: list[Candidates]
    prompt: np.ndarray
    """(Q,) prompt tokens per question."""
    out: np.ndarray
    """(Q,) mean generated tokens per sample per question."""
    cost: BankCost

    def dollars(self, prompt: np.ndarray | float, output: np.ndarray | float) -> np.ndarray | float | None:
        p = self.cost.prices
        return None if p is None else (np.asarray(prompt) * p.input + np.asarray(output) * p.output) / 1e6

    def eflops(self, samples: np.ndarray | float, prompt: np.ndarray | None = None,
               out: np.ndarray | float | None = None) -> np.ndarray | float | None:
        """Kinetics eFLOPs of ``samples`` samples of one request per question (affine in the
        samples, so an expected count gives the expected eFLOPs); None without a spec."""
        spec = self.cost.spec
        if spec is None:
            return None
        return kinetics_eflops(spec, samples, self.prompt if prompt is None else prompt, self.out if out is None else out)

    @property
    def per_sample(self) -> float:
        """Cost of one more sample per question (dollars, else eFLOPs, else tokens): orders a cascade."""
        d = self.dollars(0.0, float(self.out.mean()))
        if d is not None:
            return float(d)
        f = self.eflops(1.0, np.zeros(1), float(self.out.mean()))
        return float(np.mean(f)) if f is not None else float(self.out.mean())

    def ns(self) -> list[int]:
        top = min(c.n for c in self.candidates)
        return [1 << i for i in range(int(math.log2(top)) + 1)] if top >= 1 else []


@dataclass(frozen=True)
class PlanOption:
    """One way to spend: a bank's majority@N (or a reward policy's, ``best-of-n@N``), its adaptive
    rule at a setting, or a cascade."""

    bank: str | tuple[str, ...]
    kind: str
    """``fixed``, ``adaptive`` or ``cascade``."""
    policy: str
    n: int | None
    param: float | None
    accuracy: float
    low: float
    high: float
    tokens_per_question: float
    dollars_per_question: float | None
    exact: float | None = None
    """With a pilot: the option's exact accuracy on the full banks (None without a pilot)."""
    eflops_per_question: float | None = None
    """Kinetics eFLOPs per question when every bank has a model spec."""

    @property
    def label(self) -> str:
        banks = " > ".join(self.bank) if isinstance(self.bank, tuple) else self.bank
        setting = "" if self.param is None else f" ({setting_letter(self.policy)}={self.param:g})"
        return f"{banks}: {self.policy}{setting}"

    def cost(self, basis: bool | str) -> float:
        """Cost per question on ``basis``: ``dollars`` (or True), ``eflops``, else tokens."""
        if basis in (True, "dollars") and self.dollars_per_question is not None:
            return float(self.dollars_per_question)
        if basis == "eflops" and self.eflops_per_question is not None:
            return float(self.eflops_per_question)
        return self.tokens_per_question

    def to_json(self) -> dict:
        return {"bank": list(self.bank) if isinstance(self.bank, tuple) else self.bank, "kind": self.kind,
                "policy": self.policy, "n": self.n, "param": self.param, "accuracy": self.accuracy, "low": self.low,
                "high": self.high, "tokens_per_question": self.tokens_per_question,
                "dollars_per_question": self.dollars_per_question, "eflops_per_question": self.eflops_per_question}


@dataclass
class ModelPlan:
    """The options over the joined banks, their Pareto frontier and the recommended one."""

    questions: int
    banks: list[ModelBank]
    options: list[PlanOption]
    frontier: list[int]
    recommended: int
    reason: str
    pilot: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def priced(self) -> bool:
        return all(b.cost.prices is not None for b in self.banks)

    @property
    def basis(self) -> str:
        """What options are compared on: ``dollars`` (every bank priced), ``eflops`` (every bank has a spec), ``tokens``."""
        return cost_basis(self.banks)

    @property
    def best(self) -> PlanOption:
        return self.options[self.recommended]

    def to_json(self) -> dict:
        return {"questions": self.questions,
                "banks": [{"path": b.path, "questions": b.questions_in_file, "cost": b.cost.to_json()} for b in self.banks],
                "options": [o.to_json() for o in self.options], "frontier": list(self.frontier),
                "recommended": {"option": self.recommended, "reason": self.reason}}


# ----------------------------------------------------------------------------------------- costs

def _positive(value: object, what: str, name: str) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(name, value, what) from None
    if not (math.isfinite(x) and x >= 0):
        raise ConfigError(name, value, what)
    return x


def parse_cost(text: str) -> tuple[str, Prices]:
    """``BANK=IN,OUT`` (dollars per million input/output tokens) -> (bank, prices)."""
    bank, sep, rest = text.rpartition("=")
    parts = rest.split(",")
    if not sep or not bank or len(parts) != 2:
        raise ConfigError("--cost", text, "BANK=IN,OUT: dollars per million input and output tokens (e.g. a.jsonl=0.2,0.2)")
    return bank, Prices(input=_positive(parts[0], "a price >= 0 in BANK=IN,OUT", "--cost"),
                        output=_positive(parts[1], "a price >= 0 in BANK=IN,OUT", "--cost"))


def load_costs(path: str | Path) -> dict[str, dict]:
    """A costs TOML: one table per bank path, ``[banks."a.jsonl"]`` with ``price_in``, ``price_out``
    (dollars per million tokens) and optionally ``output_tokens`` / ``prompt_tokens``; for Kinetics
    eFLOPs ``active_params`` and ``kv_bytes`` (KV bytes per token), optionally ``gqa``, ``intensity``."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError("--costs", str(path), f"a readable TOML file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--costs", str(path), f"valid TOML ({exc})") from None
    banks = data.get("banks")
    if not isinstance(banks, dict) or not all(isinstance(v, dict) for v in banks.values()):
        raise ConfigError("--costs", str(path), 'a [banks."PATH"] table per bank with price_in, price_out')
    out: dict[str, dict] = {}
    for bank, table in banks.items():
        unknown = set(table) - {"price_in", "price_out", "output_tokens", "prompt_tokens", "active_params", "kv_bytes", "gqa", "intensity"}
        if unknown:
            raise ConfigError("--costs", f"{path}: banks.{bank}.{sorted(unknown)[0]}",
                              "only price_in, price_out, output_tokens, prompt_tokens, active_params, kv_bytes, gqa, intensity")
        entry: dict = {}
        for key in table:
            entry[key] = _positive(table[key], "a number >= 0", f"{path}: banks.{bank}.{key}")
        if ("price_in" in entry) != ("price_out" in entry):
            raise ConfigError(f"{path}: banks.{bank}", "one price", "both price_in and price_out")
        out[bank] = entry
    return out


def cost_basis(banks: Sequence[ModelBank]) -> str:
    if all(b.cost.prices is not None for b in banks):
        return "dollars"
    return "eflops" if all(b.cost.spec is not None for b in banks) else "tokens"


def parse_spec(bank: str, table: dict, where: str) -> ModelCostSpec | None:
    """A bank's Kinetics numbers from its costs-file entry (``active_params`` and ``kv_bytes``, optionally
    ``gqa``, ``intensity``), or None when it gives neither."""
    if "active_params" not in table and "kv_bytes" not in table:
        return None
    if "active_params" not in table or "kv_bytes" not in table:
        raise ConfigError(f"{where}: banks.{bank}", "one of active_params, kv_bytes", "both active_params and kv_bytes, for eFLOPs")
    return ModelCostSpec(active_params=table["active_params"], kv_bytes_per_token=table["kv_bytes"],
                         gqa_ratio=table.get("gqa", 1.0), arithmetic_intensity=table.get("intensity", 562.0))


# ------------------------------------------------------------------------------------------ join

def join_banks(banks: Sequence[tuple[str, list[str], list[Candidates], list[str | None]]], *,
               prices: dict[str, Prices] | None = None, output_tokens: dict[str, float] | None = None,
               prompt_tokens: dict[str, float] | None = None,
               specs: dict[str, ModelCostSpec] | None = None) -> tuple[list[ModelBank], list[str]]:
    """Join banks (path, ids, candidates, problem texts) on question id; returns them in the first
    bank's question order and notes (questions dropped). Prices, tokens and eFLOPs specs per bank path."""
    if not banks:
        raise ConfigError("banks", 0, "one or more banks (two or more of the same questions for cascades)")
    prices, output_tokens, prompt_tokens, specs = prices or {}, output_tokens or {}, prompt_tokens or {}, specs or {}
    paths = [b[0] for b in banks]
    if len(set(paths)) < len(paths):
        raise ConfigError("banks", paths, "distinct bank paths")
    for given, name in ((prices, "--cost"), (output_tokens, "--output-tokens"), (prompt_tokens, "prompt_tokens"), (specs, "--costs")):
        stray = set(given) - set(paths)
        if stray:
            raise ConfigError(name, sorted(stray)[0], f"a bank given on the command line ({', '.join(paths)})")
    shared = set(banks[0][1])
    for _, ids, _, _ in banks[1:]:
        shared &= set(ids)
    if not shared:
        raise EstimationError(f"the banks share no question id ({', '.join(f'{p}: {len(i)} questions' for p, i, _, _ in banks)}); "
                              "join banks of the same questions")
    order = [i for i in banks[0][1] if i in shared]
    notes = []
    dropped = [(p, len(ids) - len(order)) for p, ids, _, _ in banks if len(ids) > len(order)]
    if dropped:
        notes.append(f"{len(order)} questions in every bank; dropped " + ", ".join(f"{d} of {p}" for p, d in dropped))
    priced = [p for p in paths if p in prices]
    if priced and len(priced) < len(paths):
        missing = [p for p in paths if p not in prices][0]
        raise ConfigError("--cost", missing, f"a price for every bank: {missing}=IN,OUT (dollars per million input, output tokens) "
                                             "or a [banks] entry in --costs")
    with_spec = [p for p in paths if p in specs]
    if with_spec and len(with_spec) < len(paths):
        missing = [p for p in paths if p not in specs][0]
        raise ConfigError("--costs", missing, f"active_params and kv_bytes for every bank (a [banks.\"{missing}\"] entry) "
                                             "to compare eFLOPs")
    out = []
    for path, ids, cands, texts in banks:
        where = {qid: i for i, qid in enumerate(ids)}
        idx = [where[q] for q in order]
        sel = [cands[i] for i in idx]
        prompt = np.array([len(texts[i] or "") / 4.0 for i in idx]) if path not in prompt_tokens else np.full(len(idx), prompt_tokens[path])
        if path in output_tokens:
            out_q, source = np.full(len(idx), float(output_tokens[path])), "option"
            if not output_tokens[path] > 0:
                raise ConfigError("--output-tokens", output_tokens[path], f"a positive number of tokens per sample for {path}")
        elif all(c.tokens is not None and c.n for c in sel):
            out_q, source = np.array([float(np.mean(c.tokens)) for c in sel]), "bank"
        else:
            raise ConfigError("--output-tokens", None, f"generated tokens per sample for {path}, whose samples carry no 'tokens' "
                                                       f"(--output-tokens {path}=T, or output_tokens in --costs)")
        cost = BankCost(prices.get(path), float(prompt.mean()), float(out_q.mean()), source, specs.get(path))
        out.append(ModelBank(path, len(ids), sel, prompt, out_q, cost))
    return out, notes


# -------------------------------------------------------------------------------- exact scoring

def _interval(per_q: np.ndarray, level: float) -> tuple[float, float, float]:
    """Mean over questions with a normal interval for the question sample."""
    m = float(per_q.mean())
    z = float(norm.ppf(0.5 + level / 2))
    half = z * float(per_q.std(ddof=1)) / math.sqrt(per_q.size) if per_q.size > 1 else 0.0
    return m, max(0.0, m - half), min(1.0, m + half)


def fixed_exact(cands: Sequence[Candidates], ns: Sequence[int]) -> np.ndarray:
    """(Q, len(ns)) exact majority@N per question (ties credited)."""
    counts, correct, n = estimate.candidates_to_arrays(list(cands))
    return np.asarray(estimate.majority_at_k(counts, correct, n, list(ns)), dtype=float)


def reward_accuracy(cands: Sequence[Candidates], ns: Sequence[int], policy: str, seed: int = 0) -> np.ndarray:
    """(Q, len(ns)) accuracy of a reward policy preset per question, by the estimator ``ttscale eval``
    uses for it: the registered exact form (Best-of-N), else seeded resampling (:data:`REWARD_DRAWS`)."""
    from ttscale.estimate.evaluate import exact_form
    from ttscale.estimate.resample import resampled_accuracy
    from ttscale.selection.policy import load_policy

    pol = load_policy(policy)
    form = exact_form(pol)
    if form is not None:
        return np.asarray(form(list(cands), list(ns)), dtype=float)
    return resampled_accuracy(list(cands), pol.selector_fn(), list(ns), draws=REWARD_DRAWS, seed=seed)[0]


def rewarded_banks(banks: Sequence[ModelBank]) -> tuple[list[str], list[str]]:
    """The banks whose joined questions all carry rewards (they get :data:`REWARD_POLICIES` options), and
    a note for each bank where only some do (no reward options: a policy cannot rank unscored samples)."""
    paths, notes = [], []
    for b in banks:
        lacking = sum(c.rewards is None for c in b.candidates)
        if lacking == 0:
            paths.append(b.path)
        elif lacking < len(b.candidates):
            notes.append(f"{b.path}: {lacking} of {len(b.candidates)} joined questions carry no rewards on their samples: "
                         f"no {', '.join(REWARD_POLICIES)} options for this bank (score every sample to get them)")
    return paths, notes


def cascade_settle(cands: Sequence[Candidates], ns: Sequence[int], thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per question, over every N-subset of its samples: P(ASC posterior >= t) and P(that and the
    plurality correct, ties credited); each (Q, len(ns), len(thresholds))."""
    from ttscale.adaptive.exact_replay import _add_question

    K = max(ns)
    ts = np.asarray(thresholds, dtype=float)
    settled = np.zeros((len(cands), len(ns), ts.size))
    right = np.zeros_like(settled)
    for q, p in enumerate(cands):
        L: dict = defaultdict(float)
        A: dict = defaultdict(lambda: defaultdict(float))
        _add_question(p.classes, p.class_correct, K, 1.0, L, A)
        for (votes, z), prob in L.items():
            n = sum(votes) + z
            if n not in ns or not votes:
                continue
            v1, v2 = votes[0], votes[1] if len(votes) > 1 else 0
            ok = betainc(v2 + 1.0, v1 + 1.0, 0.5) >= ts
            j = ns.index(n)
            settled[q, j] += prob * ok
            right[q, j] += A[(votes, z)].get(v1, 0.0) / votes.count(v1) * ok
    return settled, right


def simulate_cascade(cheap: Sequence[Candidates], dear: Sequence[Candidates], n: int, n_dear: int, threshold: float,
                     draws: int, seed: int = 0) -> float:
    """Brute-force seeded replay of a cascade's accuracy: per question and draw, a random N-subset
    of the cheap bank's samples; if its ASC posterior is below ``threshold`` a random N'-subset of
    the dear bank's decides (pluralities with ties credited). The check on :func:`cascade_settle`."""
    rng = np.random.default_rng(seed)

    def plurality(p: Candidates, k: int) -> tuple[float, int, int]:
        cls = p.classes[rng.permutation(p.n)[:k]]
        votes = np.bincount(cls[cls >= 0], minlength=p.num_classes)
        if not votes.any():
            return 0.0, 0, 0
        top = np.flatnonzero(votes == votes.max())
        srt = np.sort(votes)[::-1]
        return float(p.class_correct[top].mean()), int(srt[0]), int(srt[1]) if srt.size > 1 else 0

    total = 0.0
    for a, b in zip(cheap, dear):
        for _ in range(draws):
            credit, v1, v2 = plurality(a, n)
            if not (v1 > 0 and betainc(v2 + 1.0, v1 + 1.0, 0.5) >= threshold):
                credit = plurality(b, n_dear)[0]
            total += credit
    return total / (len(cheap) * draws)


_HOLD: dict[tuple[int, int, int, int], float] = {}
"""The default rule's hold probability per (leader, runner-up, others, remaining): shared by every question."""


def _hold(v1: np.ndarray, v2: np.ndarray, others: np.ndarray, remaining: int) -> np.ndarray:
    from ttscale.adaptive.stopping import SettledMajority

    keys = list(zip(v1.tolist(), v2.tolist(), others.tolist(), [remaining] * v1.size))
    todo = [k for k in dict.fromkeys(keys) if k not in _HOLD]
    if todo:
        a = np.array(todo, dtype=float)
        for k, h in zip(todo, SettledMajority().hold_probability(a[:, 0], a[:, 1], a[:, 2], a[:, 3])):
            _HOLD[k] = float(h)
    return np.array([_HOLD[k] for k in keys])


def default_settle(cands: Sequence[Candidates], horizons: Sequence[int], confidences: Sequence[float]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The default rule as a cascade's settle test, per question over every order of its samples:
    P(the rule stops before its horizon K), P(that and the plurality correct, ties credited) and the
    expected samples drawn (K when it does not stop); each (Q, len(horizons), len(confidences))."""
    from ttscale.adaptive.exact_replay import VoteStates

    shape = (len(cands), len(horizons), len(confidences))
    settled, right, samples = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for q, p in enumerate(cands):
        for k, K in enumerate(horizons):
            st = VoteStates([p], K)
            hold = [np.zeros(0)] + [_hold(st.v1[n], st.v2[n], st.answered[n] - st.v1[n] - st.v2[n], K - n) if n < K
                                    else np.ones(len(st.levels[n])) for n in range(1, K + 1)]
            early = [np.full(len(st.levels[n]), float(n < K)) for n in range(K + 1)]  # a stop at K is no settle
            for c, conf in enumerate(confidences):
                cont = [~((h >= conf) & (st.v1[n] > 0)) if n else np.ones(0, dtype=bool) for n, h in enumerate(hold)]
                go_on = lambda n, *_: cont[n]  # noqa: E731
                used, r = st._backward([e * pc for e, pc in zip(early, st.plurality_credit)], go_on, 0.0)
                _, s = st._backward(early, go_on, 0.0)
                settled[q, k, c], right[q, k, c], samples[q, k, c] = s, r, used
    return settled, right, samples


def simulate_chain(stages: Sequence[tuple[Sequence[Candidates], str, int, float]], last: Sequence[Candidates], n_last: int,
                   draws: int, seed: int = 0) -> tuple[float, np.ndarray, np.ndarray]:
    """Brute-force seeded replay of a cascade of any length: per question and draw, each stage
    (candidates, ``asc`` or ``default``, N or horizon K, threshold or confidence) either settles the
    question with its plurality (ties credited) or passes it on; ``last`` majority@``n_last`` decides
    the rest. ``asc``: a random N-subset, settled when ASC's posterior >= t. ``default``: the bank's
    samples in a random order, one at a time, settled when the default rule stops before K (K
    drawn otherwise). Returns the accuracy and, per bank (the stages, then ``last``), the share of
    questions reaching it and the mean samples drawn from it per question."""
    from ttscale.adaptive.stopping import SettledMajority

    rng = np.random.default_rng(seed)
    rule = SettledMajority()

    def plurality(p: Candidates, cls: np.ndarray) -> tuple[float, int, int, int]:
        votes = np.bincount(cls[cls >= 0], minlength=p.num_classes)
        if not votes.any():
            return 0.0, 0, 0, 0
        top = np.flatnonzero(votes == votes.max())
        srt = np.sort(votes)[::-1]
        v2 = int(srt[1]) if srt.size > 1 else 0
        return float(p.class_correct[top].mean()), int(srt[0]), v2, int(votes.sum()) - int(srt[0]) - v2

    total = 0.0
    reached, drawn = np.zeros(len(stages) + 1), np.zeros(len(stages) + 1)
    for q in range(len(last)):
        for _ in range(draws):
            credit = None
            for i, (cands, kind, n, param) in enumerate(stages):
                p = cands[q]
                reached[i] += 1
                order = p.classes[rng.permutation(p.n)]
                if kind == "asc":
                    c, v1, v2, _ = plurality(p, order[:n])
                    drawn[i] += n
                    if v1 > 0 and betainc(v2 + 1.0, v1 + 1.0, 0.5) >= param:
                        credit = c
                else:
                    for m in range(1, n + 1):
                        c, v1, v2, others = plurality(p, order[:m])
                        if m < n and v1 > 0 and rule.hold_probability(v1, v2, others, n - m) >= param:
                            credit = c
                            break
                    drawn[i] += m
                if credit is not None:
                    break
            if credit is None:
                credit = plurality(last[q], last[q].classes[rng.permutation(last[q].n)[:n_last]])[0]
                reached[-1] += 1
                drawn[-1] += n_last
            total += credit
    runs = len(last) * draws
    return total / runs, reached / runs, drawn / runs


# ------------------------------------------------------------------------------------ pilots

def complete_from_pilot(cands: Sequence[Candidates], pilot: int, sizes: Sequence[int], seed: int) -> tuple[list[Candidates], object]:
    """Each question's first ``pilot`` samples, completed to ``sizes`` samples by draws from the
    Dirichlet majority model's posterior-predictive urn fitted on the pilots (a Pitman-Yor urn:
    seen classes, no answer, the correct answer while unseen, new wrong answers); and the model."""
    from ttscale.curves import DirichletMajorityModel
    from ttscale.curves.majority_prior import posterior_urn

    pil = [c.subset(np.arange(min(pilot, c.n))) for c in cands]
    counts, correct, n = estimate.candidates_to_arrays(pil)
    model = DirichletMajorityModel(n_bootstrap=400, random_state=seed).fit(counts, correct, n)
    alpha, cor, none, unseen_c, new_w, d = posterior_urn(model.prior_, model._data)
    rng = np.random.default_rng(seed)
    rewarded = bool(pil) and all(p.rewards is not None for p in pil)
    residuals = _reward_residuals(pil) if rewarded else {}
    r_rng = np.random.default_rng([seed, 1])  # rewards draw apart: the classes drawn stay as without rewards
    out = []
    for q, p in enumerate(pil):
        C = p.num_classes
        w = list(np.maximum(alpha[q, :C], 0.0))
        ok = list(p.class_correct)
        seq = list(p.classes)
        w_none, w_uc, w_new = float(none[q]), float(unseen_c[q]), float(new_w[q])
        for _ in range(max(int(sizes[q]) - p.n, 0)):
            total = sum(w) + w_none + w_uc + w_new
            u = rng.random() * total
            cum = np.cumsum(w)
            if cum.size and u < cum[-1]:
                c = int(np.searchsorted(cum, u, side="right"))
                w[c] += 1.0
                seq.append(c)
                continue
            u -= cum[-1] if cum.size else 0.0
            if u < w_none:
                w_none += 1.0
                seq.append(-1)
            elif u < w_none + w_uc:
                w.append(1.0 - d)  # the correct answer, first seen
                ok.append(True)
                w_uc = 0.0
                seq.append(len(w) - 1)
            else:
                w.append(1.0 - d)  # a new wrong answer; the urn's new mass grows by the discount
                ok.append(False)
                w_new += d
                seq.append(len(w) - 1)
        tok = None if p.tokens is None else np.full(len(seq), float(np.mean(p.tokens)) if p.n else 0.0)
        classes, correct = np.array(seq, dtype=np.int64), np.array(ok, dtype=bool)
        rewards = _complete_rewards(p, classes, correct, residuals, r_rng) if rewarded else None
        out.append(Candidates(classes=classes, class_correct=correct, rewards=rewards, tokens=tok))
    return out, model


def _sample_kind(classes: np.ndarray, class_correct: np.ndarray) -> np.ndarray:
    """Per sample: 0 no answer, 1 a wrong answer, 2 the correct one."""
    kind = np.zeros(classes.size, dtype=np.int64)
    answered = classes != NO_ANSWER
    kind[answered] = 1 + class_correct[classes[answered]].astype(np.int64)
    return kind


def _reward_residuals(pilots: Sequence[Candidates]) -> dict[tuple[int, int], np.ndarray]:
    """Pooled over the pilots, (kind k, kind j) -> the rewards of kind-k samples minus their question's
    mean kind-j reward, from questions whose pilot holds both (:func:`_sample_kind`; j = -1: the
    question's mean over all samples): how a new kind of answer scores against what a pilot saw."""
    pooled: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)
    for p in pilots:
        if p.n == 0:
            continue
        r = np.asarray(p.rewards, dtype=float)
        kind = _sample_kind(p.classes, p.class_correct)
        means = {j: r[kind == j].mean() for j in range(3) if (kind == j).any()} | {-1: r.mean()}
        for k in range(3):
            for j, m in means.items():
                if j != k and (kind == k).any():
                    pooled[(k, j)].append(r[kind == k] - m)
    return {key: np.concatenate(v) for key, v in pooled.items()}


def _complete_rewards(pilot: Candidates, classes: np.ndarray, correct: np.ndarray,
                      residuals: dict[tuple[int, int], np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Rewards of a completed pilot: the pilot's own, then per drawn sample one of its class's rewards
    so far (no answer counts as a class), for a new class one of the question's pilot rewards of its
    kind, and for a kind the pilot lacks the question's mean reward of a kind it holds (right answers
    first, then wrong, no answer, all) plus a pooled residual against that kind (0 without one)."""
    rewards = list(np.asarray(pilot.rewards, dtype=float))
    kinds = _sample_kind(classes, correct)
    by_class: dict[int, list[float]] = defaultdict(list)
    by_kind: dict[int, list[float]] = defaultdict(list)
    for c, k, r in zip(pilot.classes.tolist(), kinds[:pilot.n].tolist(), rewards):
        by_class[c].append(r)
        by_kind[k].append(r)
    # BoN reads the ranking within a question: a new kind is placed against what this pilot holds.
    means = {j: float(np.mean(v)) for j, v in by_kind.items()} | ({-1: float(np.mean(rewards))} if rewards else {})
    for i in range(pilot.n, classes.size):
        c, k = int(classes[i]), int(kinds[i])
        seen = by_class[c] or by_kind[k]
        if seen:
            r = seen[int(rng.integers(len(seen)))]
        else:
            ref = next((j for j in (2, 1, 0, -1) if j in means and residuals.get((k, j), np.zeros(0)).size), None)
            pool = residuals[(k, ref)] if ref is not None else np.zeros(0)
            r = (means[ref] if ref is not None else means.get(-1, 0.0)) + (float(pool[int(rng.integers(pool.size))]) if pool.size else 0.0)
        by_class[c].append(r)
        rewards.append(r)
    return np.asarray(rewards, dtype=float)


# ------------------------------------------------------------------------------------ options

def adaptive_horizons(bank: ModelBank, horizon: int | None) -> list[int]:
    """The default rule's horizons K replayed: powers of two up to the smallest pool, from 4 on those
    whose exact vote-state tables stay under :data:`ADAPTIVE_MAX_STATES`, or from 2 up to ``horizon``."""
    from ttscale.adaptive.exact_replay import state_bound

    if horizon is not None:  # asked for: every power of two up to it, whatever the tables' size (they check memory)
        return [K for K in bank.ns() if 2 <= K <= horizon]
    return [K for K in bank.ns() if K >= 4 and state_bound(bank.candidates, K, stop_at=ADAPTIVE_MAX_STATES) <= ADAPTIVE_MAX_STATES]


def _score_options(banks: list[ModelBank], cands: list[list[Candidates]], level: float, horizons: dict[str, list[int]],
                   cascade_max_n: int, rewarded: Sequence[str] = (), seed: int = 0) -> list[tuple[PlanOption, np.ndarray | None]]:
    """Every option scored exactly on ``cands`` (one candidate list per bank, joined order), with its
    per-question accuracy where there is one (None for the pooled adaptive tables). The banks in
    ``rewarded`` also get the :data:`REWARD_POLICIES` at each N (``seed``: a resampled one's draws)."""
    from ttscale.adaptive.exact_replay import VoteStates
    from ttscale.adaptive.stopping import ASC, FirstToAhead, SettledMajority

    def rules() -> list[tuple[str, float, Any]]:
        found: list[tuple[str, float, Any]] = [("default", c, SettledMajority(confidence=c)) for c in ADAPTIVE_CONFIDENCES]
        found += [("asc", t, ASC(threshold=t)) for t in BASELINE_RULES["asc"]]
        return found + [("first-to-ahead", m, FirstToAhead(margin=int(m))) for m in BASELINE_RULES["first-to-ahead"]]

    out: list[tuple[PlanOption, np.ndarray | None]] = []
    per_bank_fixed = []
    for b, cs in zip(banks, cands):
        ns = b.ns()
        acc = fixed_exact(cs, ns)
        per_bank_fixed.append((ns, acc))
        for j, n in enumerate(ns):
            tok = b.prompt + n * b.out
            d = b.dollars(b.prompt, n * b.out)
            m, lo, hi = _interval(acc[:, j], level)
            f = b.eflops(n)
            out.append((PlanOption(b.path, "fixed", f"majority@{n}", n, None, m, lo, hi, float(tok.mean()),
                                   None if d is None else float(np.mean(d)),
                                   eflops_per_question=None if f is None else float(np.mean(f))), acc[:, j]))
        if b.path in rewarded:
            out += _reward_options(b, cs, ns, level, seed)
        if horizons.get(b.path):
            for K in horizons[b.path]:
                states = VoteStates(cs, K)
                sd = acc[:, ns.index(K)].std(ddof=1) if len(cs) > 1 else 0.0  # majority@K's spread as the interval's
                z = float(norm.ppf(0.5 + level / 2)) * sd / math.sqrt(len(cs))
                for name, conf, rule in rules():
                    samples, a = states.evaluate(rule)
                    out_tokens = samples * float(b.out.mean())
                    d = b.dollars(float(b.prompt.mean()), out_tokens)
                    f = b.eflops(samples, float(b.prompt.mean()), float(b.out.mean()))  # one request's worth: rounds share the prompt
                    out.append((PlanOption(b.path, "adaptive", f"{name}@{K}", K, float(conf), a, max(0.0, a - z), min(1.0, a + z),
                                           float(b.prompt.mean()) + out_tokens, None if d is None else float(d),
                                           eflops_per_question=None if f is None else float(f)), None))
    order = sorted(range(len(banks)), key=lambda i: banks[i].per_sample)
    gates = {i: _gates(banks[i], cands[i], per_bank_fixed[i][0], cascade_max_n) for i in order[:-1]}
    for chain in _chains(order):
        *firsts, last = chain
        ns_b, acc_b = per_bank_fixed[last]
        for kind, params in (("asc", CASCADE_THRESHOLDS), ("default", CASCADE_CONFIDENCES)):
            for p_i, param in enumerate(params):
                for picks in itertools.product(*(range(len(gates[i][kind][0])) for i in firsts)):
                    for j, nb in enumerate(ns_b):
                        stages = [(banks[i], gates[i][kind][0][g], *(x[:, g, p_i] for x in gates[i][kind][1:]))
                                  for i, g in zip(firsts, picks)]
                        out.append(_chain_option(stages, banks[last], nb, acc_b[:, j], kind, float(param), level))
    return out


def _reward_options(bank: ModelBank, cands: Sequence[Candidates], ns: Sequence[int], level: float, seed: int
                    ) -> list[tuple[PlanOption, np.ndarray | None]]:
    """The :data:`REWARD_POLICIES` at each N on one bank: exact (or eval's resampling) per question, costed
    as majority@N (the same N samples; scoring them is the user's, outside the bank's prices)."""
    out: list[tuple[PlanOption, np.ndarray | None]] = []
    for name in REWARD_POLICIES:
        acc = reward_accuracy(cands, ns, name, seed)
        for j, n in enumerate(ns):
            m, lo, hi = _interval(acc[:, j], level)
            d = bank.dollars(bank.prompt, n * bank.out)
            f = bank.eflops(n)
            out.append((PlanOption(bank.path, "fixed", f"{name}@{n}", n, None, m, lo, hi, float((bank.prompt + n * bank.out).mean()),
                                   None if d is None else float(np.mean(d)),
                                   eflops_per_question=None if f is None else float(np.mean(f))), acc[:, j]))
    return out


def _chains(order: Sequence[int]) -> list[tuple[int, ...]]:
    """Cascades over the banks, cheapest first: every ordered subsequence of two or more banks."""
    return [c for r in range(2, len(order) + 1) for c in itertools.combinations(order, r)]


def _gates(bank: ModelBank, cands: list[Candidates], ns: list[int], max_n: int) -> dict[str, tuple]:
    """A cascade stage's settle statistics on one bank per test: ``asc`` (majority@N settled by ASC's
    posterior) and ``default`` (the default rule stopping before its horizon K): (the Ns or Ks,
    settled, right, samples), the last three (Q, settings, thresholds)."""
    ns_a = [n for n in ns if n <= max_n]
    settled, right = cascade_settle(cands, ns_a, CASCADE_THRESHOLDS)
    samples = np.broadcast_to(np.asarray(ns_a, dtype=float)[None, :, None], settled.shape)
    ks = [K for K in CASCADE_HORIZONS if K <= max_n and K in ns]
    d = default_settle(cands, ks, CASCADE_CONFIDENCES) if ks else (np.zeros((len(cands), 0, len(CASCADE_CONFIDENCES))),) * 3
    return {"asc": (ns_a, settled, right, samples), "default": (ks, *d)}


def _chain_option(stages: list[tuple[ModelBank, int, np.ndarray, np.ndarray, np.ndarray]], last: ModelBank, n_last: int,
                  acc_last: np.ndarray, kind: str, param: float, level: float) -> tuple[PlanOption, np.ndarray]:
    """A cascade's per-question accuracy and cost, composed from the last stage back: a stage keeps
    what it settles (independent banks: a question's later draws do not depend on earlier ones)."""
    acc = acc_last
    tok = last.prompt + n_last * last.out
    usd = last.dollars(last.prompt, n_last * last.out)
    fl = last.eflops(n_last)
    for bank, n, settled, right, samples in reversed(stages):
        go = 1.0 - settled
        acc = right + go * acc
        tok = bank.prompt + samples * bank.out + go * tok
        d = bank.dollars(bank.prompt, samples * bank.out)
        usd = None if d is None or usd is None else d + go * usd
        f = bank.eflops(samples)
        fl = None if f is None or fl is None else f + go * fl
    m, lo, hi = _interval(acc, level)
    policy = ">".join(f"{kind}@{n}" for _, n, *_ in stages) + f">majority@{n_last}"
    return (PlanOption(tuple(b.path for b, *_ in stages) + (last.path,), "cascade", policy, stages[0][1], param, m, lo, hi,
                       float(np.mean(tok)), None if usd is None else float(np.mean(usd)),
                       eflops_per_question=None if fl is None else float(np.mean(fl))), acc)


def pareto(options: Sequence[PlanOption], dollars: bool | str) -> list[int]:
    """Indices of options no cheaper option matches in accuracy (within :data:`FRONTIER_STEP`), cheapest first."""
    idx = sorted(range(len(options)), key=lambda i: (options[i].cost(dollars), -options[i].accuracy))
    front, best = [], -1.0
    for i in idx:
        if options[i].accuracy > best + FRONTIER_STEP:
            front.append(i)
            best = options[i].accuracy
    return front


def _widened(option: PlanOption, pilot: int, at_pilot: dict[str, float], level: float) -> PlanOption:
    """An adaptive rule or cascade scored on completed pilots, its interval widened like majority@N's
    (:class:`~ttscale.curves.DirichletMajorityModel`): the completions come from that model's prior, so
    where the option reads samples beyond the pilot its accuracy is off as far as the prior is, i.e.
    ``extrapolation_spread`` x how far it departs from the model's majority at the pilot size (of
    the last bank, which decides a cascade), in quadrature with the question interval."""
    from ttscale.curves.majority import EXTRAPOLATION_SPREAD, z_ratio

    last = option.bank[-1] if isinstance(option.bank, tuple) else option.bank
    reach = int(option.policy.rsplit("@", 1)[1]) if "@" in option.policy else option.n or 0
    if reach <= pilot or last not in at_pilot:
        return option
    extra = EXTRAPOLATION_SPREAD * z_ratio(level) * abs(option.accuracy - at_pilot[last])
    low = max(0.0, option.accuracy - math.hypot(option.accuracy - option.low, extra))
    high = min(1.0, option.accuracy + math.hypot(option.high - option.accuracy, extra))
    return PlanOption(option.bank, option.kind, option.policy, option.n, option.param, option.accuracy, low, high,
                      option.tokens_per_question, option.dollars_per_question, eflops_per_question=option.eflops_per_question)


def pilot_horizons(banks: list[ModelBank], pilot: int, horizon: int | None, seed: int) -> dict[str, list[int]]:
    """The default rule's horizons replayed from a pilot: those whose tables stay small on the banks
    and on the completed pilots (which scatter more)."""
    out = {}
    for i, b in enumerate(banks):
        done, _ = complete_from_pilot(b.candidates, pilot, [c.n for c in b.candidates], seed + i)
        mine = adaptive_horizons(ModelBank(b.path, 0, done, b.prompt, b.out, b.cost), horizon)
        out[b.path] = [K for K in adaptive_horizons(b, horizon) if K in mine]
    return out


def predict_options(banks: list[ModelBank], pilot: int, *, level: float, horizons: dict[str, list[int]], cascade_max_n: int,
                    seed: int, rewarded: Sequence[str] = ()) -> list[PlanOption]:
    """Every option predicted from each question's first ``pilot`` samples per bank, in the order
    :func:`_score_options` lists them: majority@N from the Dirichlet curve model (its interval),
    reward policies at N <= ``pilot`` on the pilots themselves, the rest exactly on the pilots
    completed from that model's posterior-predictive urn (drawn samples carry drawn rewards; adaptive
    rules and cascades reading beyond the pilot get majority@N's extrapolation term, :func:`_widened`)."""
    models, completed, pilots, ceilings = {}, [], {}, {}
    for i, b in enumerate(banks):
        done, model = complete_from_pilot(b.candidates, pilot, [c.n for c in b.candidates], seed + i)
        completed.append(done)
        models[b.path] = model
        if b.path in rewarded:
            pilots[b.path] = _pilot_reward_options(b, pilot, level, seed)
            ceilings[b.path] = _pass_ceiling(done, b.ns(), level)
    at_pilot = {path: float(model.predict(pilot)) for path, model in models.items()}
    out = []
    for p, _ in _score_options(banks, completed, level, horizons, cascade_max_n, rewarded, seed):
        if p.kind == "fixed" and p.policy.startswith("majority@"):
            model = models[str(p.bank)]
            lo, hi = model.predict_interval(p.n, level)
            p = PlanOption(p.bank, p.kind, p.policy, p.n, p.param, float(model.predict(p.n)), float(lo), float(hi),
                           p.tokens_per_question, p.dollars_per_question, eflops_per_question=p.eflops_per_question)
        elif p.kind == "fixed" and p.policy in pilots[str(p.bank)]:
            p = pilots[str(p.bank)][p.policy]
        elif p.kind != "fixed":
            p = _widened(p, pilot, at_pilot, level)
        elif p.kind == "fixed":
            # Beyond the pilot a reward policy hinges on how the reward ranks answers the pilot never
            # saw: the interval reaches the completed pilots' pass@N (no selector exceeds it) and as
            # far below the point (evals/plan_models_rewards.py: the point missed by up to 13 points).
            top = max(p.high, ceilings[str(p.bank)][p.n])
            p = PlanOption(p.bank, p.kind, p.policy, p.n, p.param, p.accuracy, max(0.0, min(p.low, 2 * p.accuracy - top)),
                           min(1.0, top), p.tokens_per_question, p.dollars_per_question, eflops_per_question=p.eflops_per_question)
        out.append(p)
    return out


def _pass_ceiling(cands: Sequence[Candidates], ns: Sequence[int], level: float) -> dict[int, float]:
    """The upper end of pass@N's interval over questions on (completed) pools, per N: a ceiling on
    any selector's accuracy at N."""
    n = np.array([c.n for c in cands])
    c = np.array([int(x.correct.sum()) for x in cands])
    table = estimate.pass_at_k(n, c, list(ns))
    return {k: _interval(table[:, j], level)[2] for j, k in enumerate(ns)}


def _pilot_reward_options(bank: ModelBank, pilot: int, level: float, seed: int) -> dict[str, PlanOption]:
    """The reward options at N <= ``pilot`` scored on the pilots themselves (every N-subset of a
    question's first ``pilot`` samples: unbiased for the full bank's), by policy name."""
    pil = [c.subset(np.arange(min(pilot, c.n))) for c in bank.candidates]
    ns = [n for n in bank.ns() if n <= min(c.n for c in pil)]
    return {o.policy: o for o, _ in _reward_options(bank, pil, ns, level, seed)}


def recommend_for_target(options: Sequence[PlanOption], target: float, dollars: bool | str, margin: float) -> tuple[int, str, list[str]]:
    """The cheapest option whose predicted accuracy minus ``margin`` x its lower half-interval
    (accuracy - low) reaches ``target``; if none does, of those whose point prediction does, the
    one with the highest accuracy - ``margin`` x (accuracy - low) (the cheapest on a tie).
    Returns (index, reason, notes). ``margin`` 0 is the point rule; 1 asks the whole interval.
    ``dollars``: the cost basis (:meth:`PlanOption.cost`)."""
    def cheapest(pool: list[int]) -> int:
        return min(pool, key=lambda i: (options[i].cost(dollars), -options[i].accuracy))

    reach = [i for i, o in enumerate(options) if o.accuracy >= target]
    if not reach:
        top = max(range(len(options)), key=lambda i: options[i].accuracy)
        o = options[top]
        raise EstimationError(f"no option is predicted to reach {target:g}: the best is {o.label} at "
                              f"{o.accuracy:.3f} [{o.low:.3f}, {o.high:.3f}]; lower --target")
    notes = []
    guarded = [i for i in reach if options[i].accuracy - margin * (options[i].accuracy - options[i].low) >= target]
    if margin <= 0:
        rec, reason = cheapest(reach), f"cheapest option predicted to reach {target:g}"
    elif guarded:
        rec = cheapest(guarded)
        reason = (f"cheapest option predicted to reach {target:g} with {margin:g} x its lower half-interval to spare "
                  f"(accuracy - {margin:g} x (accuracy - low) >= target; the margin is chosen held out, evals/plan_models_holdout.py)")
    else:
        # No option clears the margin: the one most likely to reach the target (the highest guarded value),
        # not the cheapest point over it (held out, that fallback missed most targets on the embedded banks).
        rec = max(reach, key=lambda i: (options[i].accuracy - margin * (options[i].accuracy - options[i].low), -options[i].cost(dollars)))
        reason = (f"option predicted to reach {target:g} with the most to spare (none does with {margin:g} x its lower "
                  f"half-interval to spare; this one has the highest accuracy - {margin:g} x (accuracy - low))")
    point = cheapest(reach)
    if margin > 0 and point != rec:
        o, r = options[point], options[rec]
        ratio = r.cost(dollars) / o.cost(dollars) if o.cost(dollars) > 0 else math.inf
        notes.append(f"the cheapest point prediction over {target:g} is option {point}, {o.label}, {o.accuracy:.3f} "
                     f"[{o.low:.3f}, {o.high:.3f}]: the recommended one costs {ratio:.2f}x as much for the margin")
    # A point prediction just over the target misses it about half the time: name the option
    # whose whole interval clears it too, so the user can buy that margin knowingly.
    sure = [i for i in reach if options[i].low >= target]
    if not sure:
        notes.append(f"no option's interval lies wholly above {target:g}: the recommended one does not guarantee it")
    elif (safe := cheapest(sure)) != rec:
        o, r = options[safe], options[rec]
        ratio = o.cost(dollars) / r.cost(dollars) if r.cost(dollars) > 0 else math.inf
        notes.append(f"cheapest option whose interval lies wholly above {target:g}: option {safe}, {o.label}, "
                     f"{o.accuracy:.3f} [{o.low:.3f}, {o.high:.3f}] at {ratio:.2f}x the recommended cost")
    return rec, reason, notes


def plan_options(banks: list[ModelBank], *, pilot: int | None = None, target: float | None = None,
                 budget_dollars: float | None = None, budget_tokens: float | None = None, per_question: bool = False,
                 level: float = 0.95, horizon: int | None = None, cascade_max_n: int = 16, adaptive: bool = True,
                 seed: int = 0, notes: Sequence[str] = (), margin: float = TARGET_MARGIN) -> ModelPlan:
    """Score every option on the joined banks (or predict it from ``pilot`` samples per question),
    find the Pareto frontier and answer the question asked: ``target`` -> the cheapest option
    predicted to reach it (from a pilot: with ``margin`` x its lower half-interval to spare, see
    :func:`recommend_for_target`); a budget (for all questions unless ``per_question``) -> the most
    accurate option within it; neither -> the cheapest option within 1 point of the most accurate."""
    if sum(x is not None for x in (target, budget_dollars, budget_tokens)) > 1:
        raise ConfigError("--target/--budget-*", "several", "at most one of --target, --budget-dollars, --budget-tokens")
    if target is not None and not (math.isfinite(target) and 0 < target <= 1):
        raise ConfigError("--target", target, "an accuracy in (0, 1] (e.g. 0.9 for 90%)")
    if not (0 < level < 1):
        raise ConfigError("--level", level, "a level in (0, 1)")
    Q = len(banks[0].candidates)
    notes = list(notes)
    full = [b.candidates for b in banks]
    for b in banks:
        if min(c.n for c in b.candidates) < 1:
            raise EstimationError(f"{b.path}: a joined question has no samples")
    rewarded, reward_notes = rewarded_banks(banks)
    notes += reward_notes
    if pilot is None:
        horizons = {b.path: adaptive_horizons(b, horizon) for b in banks} if adaptive else {}
        options = [o for o, _ in _score_options(banks, full, level, horizons, cascade_max_n, rewarded, seed)]
    else:
        if pilot < 2:
            raise ConfigError("--pilot", pilot, "at least 2 samples per question")
        horizons = pilot_horizons(banks, pilot, horizon, seed) if adaptive else {}
        exact = _score_options(banks, full, level, horizons, cascade_max_n, rewarded, seed)
        predicted = predict_options(banks, pilot, level=level, horizons=horizons, cascade_max_n=cascade_max_n, seed=seed,
                                    rewarded=rewarded)
        options = [PlanOption(p.bank, p.kind, p.policy, p.n, p.param, p.accuracy, p.low, p.high, p.tokens_per_question,
                              p.dollars_per_question, exact=o.accuracy, eflops_per_question=p.eflops_per_question)
                   for (o, _), p in zip(exact, predicted)]
        notes.append(f"predicted from the first {pilot} samples per question of each bank; 'exact' is each option on the full banks")
    basis = cost_basis(banks)
    priced = basis == "dollars"
    if basis != "dollars":
        notes.append(f"no prices (--cost): options are compared on {'Kinetics eFLOPs' if basis == 'eflops' else 'tokens'} per question")
    front = pareto(options, basis)
    scale = 1 if per_question else Q
    if target is not None:
        rec, reason, extra = recommend_for_target(options, target, basis, margin if pilot is not None else 0.0)
        notes += extra
    elif budget_dollars is not None or budget_tokens is not None:
        if budget_dollars is not None and not priced:
            raise ConfigError("--budget-dollars", budget_dollars, "prices for every bank (--cost BANK=IN,OUT or --costs)")
        name, value = ("--budget-dollars", budget_dollars) if budget_dollars is not None else ("--budget-tokens", budget_tokens)
        assert value is not None
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(name, value, "a positive budget")
        use_dollars = budget_dollars is not None
        within = [i for i in range(len(options)) if (options[i].dollars_per_question if use_dollars else options[i].tokens_per_question) * scale <= value]
        if not within:
            cheapest = min(options, key=lambda o: o.cost(use_dollars))
            unit = "$" if use_dollars else "tokens "
            raise EstimationError(f"{name} {value:g} buys no option: the cheapest, {cheapest.label}, costs "
                                  f"{unit}{cheapest.cost(use_dollars) * scale:.6g} for {scale} question(s)")
        rec = max(within, key=lambda i: (options[i].accuracy, -options[i].cost(use_dollars)))
        reason = "most accurate option within the budget"
    else:
        top = max(o.accuracy for o in options)
        rec = min((i for i in range(len(options)) if options[i].accuracy >= top - 0.01),
                  key=lambda i: options[i].cost(basis))
        reason = "cheapest option within 1 point of the most accurate (no target or budget given)"
    return ModelPlan(Q, banks, options, front, rec, reason, pilot, notes)
