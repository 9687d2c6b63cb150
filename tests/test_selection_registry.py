"""The selector registry: deprecated names, exact closed forms, and the one missing-fields check."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ttscale.answers.candidates import Candidates
from ttscale.errors import ConfigError
from ttscale.estimate.evaluate import evaluate, exact_form
from ttscale.estimate.exact import best_of_n_at_k, candidates_to_arrays, majority_at_k
from ttscale.selection.ahead import DEFAULT_MARGIN, first_to_ahead, is_ahead
from ttscale.selection.fields import (
    LOGPROBS,
    REFERENCE,
    REWARDS,
    fields_of,
    missing_fields,
)
from ttscale.selection.policy import RENAMED_PRESETS, Policy, load_policy, preset_names
from ttscale.selection.registry import get_selector, list_selectors


def bank(seed: int, problems: int = 6, n: int = 10, C: int = 4) -> list[Candidates]:
    rng = np.random.default_rng(seed)
    return [
        Candidates(
            classes=rng.integers(-1, C, size=n),
            class_correct=rng.random(C) < 0.4,
            rewards=rng.normal(size=n),
            logprobs=-rng.exponential(size=n),
        )
        for _ in range(problems)
    ]


# --------------------------------------------------------------------------- deprecated names


@pytest.mark.parametrize(("old", "new", "params"), [
    ("pass-at-k", "top-k-answers", {"answers": 2}),
    ("first-to-ahead-by-k", "first-to-ahead", {"margin": 3}),
])
def test_an_old_selector_name_warns_and_selects_as_the_new_one(old, new, params):
    with pytest.warns(DeprecationWarning, match=f"'{old}' is deprecated; use '{new}'"):
        sel = get_selector(old)
    assert sel is get_selector(new)
    assert old not in list_selectors() and new in list_selectors()
    for c in bank(1):
        a = sel(c, np.random.default_rng(7), **params)
        b = get_selector(new)(c, np.random.default_rng(7), **params)
        assert a == b


def test_a_policy_file_with_an_old_selector_name_loads_under_the_new_name(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('selector = "pass-at-k"\n[params]\nanswers = 3\n', encoding="utf-8")
    with pytest.warns(DeprecationWarning, match="top-k-answers"):
        policy = load_policy(str(path))
    assert policy.selector == "top-k-answers" and policy.params.answers == 3


def test_the_old_preset_name_warns_loads_the_new_preset_and_keeps_its_name():
    assert RENAMED_PRESETS == {"pass-at-k-majority": "top-k-answers"}
    assert "pass-at-k-majority" not in preset_names()
    new = load_policy("top-k-answers:answers=8")
    with pytest.warns(DeprecationWarning, match="'pass-at-k-majority' is deprecated; use 'top-k-answers'"):
        old = load_policy("pass-at-k-majority:answers=8")
    assert old.name == "pass-at-k-majority:answers=8"  # results stay keyed by the name asked for
    assert (old.selector, old.params, old.source) == (new.selector, new.params, new.source)
    problems = bank(2)
    got = evaluate(problems, [old], [1, 4, 10], draws=50, seed=3)
    want = evaluate(problems, [new], [1, 4, 10], draws=50, seed=3)
    assert got.policies["pass-at-k-majority:answers=8"] == want.policies["top-k-answers:answers=8"]


def test_new_names_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_policy("top-k-answers")
        load_policy("first-to-ahead")
        get_selector("first-to-ahead")


# --------------------------------------------------------------------------- exact forms


def test_exactly_majority_and_best_of_n_with_one_answer_have_closed_forms():
    exact = {name for name in list_selectors() if get_selector(name).exact is not None}
    assert exact == {"majority", "best-of-n"}
    one = {name for name in list_selectors() if exact_form(Policy(name="p", selector=name, params=_params(name))) is not None}
    assert one == {"majority", "best-of-n"}
    for name in ("majority", "best-of-n"):
        assert get_selector(name).exact_form({"answers": 2}) is None  # k answers: resampled


def _params(name: str) -> dict:
    return {"answers": 1} if name == "top-k-answers" else {}


def test_the_registered_forms_are_the_exact_estimators():
    problems, ks = bank(3), [1, 2, 5, 10]
    counts, correct, n = candidates_to_arrays(problems)
    np.testing.assert_array_equal(get_selector("majority").exact_form({})(problems, ks), majority_at_k(counts, correct, n, ks))
    np.testing.assert_array_equal(
        get_selector("best-of-n").exact_form({})(problems, ks),
        best_of_n_at_k([p.rewards for p in problems], [p.correct for p in problems], ks),
    )


def test_evaluate_reports_exact_only_where_a_closed_form_exists():
    policies = [load_policy(s) for s in ("majority", "best-of-n", "majority:answers=2", "top-k-answers:answers=1", "oracle")]
    result = evaluate(bank(4), policies, [1, 3], draws=20, seed=0)
    methods = {name: c.method for name, c in result.policies.items()}
    assert methods == {
        "majority": "exact", "best-of-n": "exact", "majority:answers=2": "resampled",
        "top-k-answers:answers=1": "resampled", "oracle": "resampled",
    }
    assert all((c.stderr is None) == (c.method == "exact") for c in result.policies.values())


# --------------------------------------------------------------------------- fields and first-to-ahead


def test_one_missing_fields_check_for_candidates_banks_and_field_sets():
    scored, bare = bank(5)[0], Candidates(classes=np.array([0, 1]), class_correct=np.array([True, False]))
    assert fields_of(scored) == {REFERENCE, REWARDS, LOGPROBS}
    assert fields_of(bare) == {REFERENCE}
    assert fields_of([scored, bare]) == {REFERENCE}  # a bank has a field only when every problem does
    assert fields_of(set()) == frozenset()
    assert missing_fields({REWARDS}, {LOGPROBS}) == {REWARDS}
    policy = load_policy("best-of-majority")
    assert policy.missing([scored, scored]) == frozenset()
    assert policy.missing([scored, bare]) == {REWARDS}
    assert policy.missing({LOGPROBS}) == {REWARDS}
    assert load_policy("oracle").missing({REWARDS, LOGPROBS}) == {REFERENCE}  # live solving has no reference


def test_first_to_ahead_has_one_rule_and_one_default():
    from ttscale.adaptive.stopping import FirstToAhead

    assert FirstToAhead().margin == DEFAULT_MARGIN == get_selector("first-to-ahead").validate({}).margin
    assert load_policy("first-to-ahead").params.margin == DEFAULT_MARGIN
    assert is_ahead(3, 1, 2) and not is_ahead(3, 2, 2)
    np.testing.assert_array_equal(is_ahead(np.array([3, 3]), np.array([1, 2]), 2), [True, False])
    seq = np.array([0, 1, 1, 0, 1, 1])  # class 1 first leads by 2 at the sixth sample (4 to 2)
    assert first_to_ahead(seq) == (1, 5) == first_to_ahead(seq, DEFAULT_MARGIN)
    assert FirstToAhead().stop_point(seq) == 6


def test_unknown_selector_lists_current_names_only():
    with pytest.raises(ConfigError, match="top-k-answers") as exc:
        get_selector("pass@k")
    assert "pass-at-k," not in str(exc.value)
