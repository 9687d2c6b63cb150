"""Selectors: semantics on hand-made candidates, tie-breaking statistics, parameter errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import stats

from ttscale.answers.candidates import NO_ANSWER, Candidates, Selection
from ttscale.errors import ConfigError
from ttscale.selection.fields import MissingFieldError
from ttscale.selection.params import validate_params
from ttscale.selection.registry import get_selector, list_selectors, register_selector
from ttscale.selection.ties import rank_random, top_k_random

ALL = [
    "best-of-majority", "best-of-n", "confidence-vote", "first-to-ahead", "majority",
    "majority-of-bests", "oracle", "top-k-answers", "weighted-majority",
]


def cands(classes, rewards=None, logprobs=None, correct=None) -> Candidates:
    classes = np.asarray(classes, dtype=np.int64)
    C = int(classes.max()) + 1 if (classes >= 0).any() else 0
    if correct is None:
        correct = np.zeros(C, dtype=bool)
    return Candidates(
        classes=classes,
        class_correct=np.asarray(correct, dtype=bool),
        rewards=None if rewards is None else np.asarray(rewards, dtype=np.float64),
        logprobs=None if logprobs is None else np.asarray(logprobs, dtype=np.float64),
    )


def run(name, c, seed=0, **params) -> Selection:
    return get_selector(name)(c, np.random.default_rng(seed), **params)


def winners(name, c, trials=3000, **params) -> np.ndarray:
    """How often each class is chosen first over ``trials`` seeds."""
    sel = get_selector(name)
    p = sel.validate(params)
    out = np.zeros(c.num_classes, dtype=np.int64)
    for seed in range(trials):
        out[sel.run(c, np.random.default_rng(seed), p).classes[0]] += 1
    return out


def assert_uniform(counts, expected_share) -> None:
    expected = np.asarray(expected_share, dtype=np.float64) * counts.sum()
    keep = expected > 0
    assert counts[~keep].sum() == 0, counts
    assert stats.chisquare(counts[keep], expected[keep]).pvalue > 1e-4, counts


# --------------------------------------------------------------------------- helper


def test_rank_random_orders_best_first_and_shuffles_ties_uniformly():
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    firsts = np.zeros(5, dtype=np.int64)
    for seed in range(3000):
        order = rank_random(scores, np.random.default_rng(seed))
        assert sorted(order[:3].tolist()) == [1, 2, 4]
        assert order[3:].tolist() == [3, 0]
        firsts[order[0]] += 1
    assert_uniform(firsts, [0, 1 / 3, 1 / 3, 0, 1 / 3])


def test_rank_random_nan_last_eligible_only_and_float_noise_ties():
    rng = np.random.default_rng(0)
    order = rank_random(np.array([np.nan, 1.0, -np.inf, 5.0]), rng)
    assert order[:2].tolist() == [3, 1] and set(order[2:].tolist()) == {0, 2}
    assert rank_random(np.array([9.0, 1.0, 2.0]), rng, eligible=np.array([False, True, True])).tolist() == [2, 1]
    assert rank_random(np.array([1.0]), rng, eligible=np.array([False])).size == 0
    # 0.1 + 0.2 != 0.3 in floats, but they are the same score
    firsts = {int(top_k_random(np.array([0.1 + 0.2, 0.3]), 1, np.random.default_rng(s))[0]) for s in range(50)}
    assert firsts == {0, 1}


# --------------------------------------------------------------------------- registry & params


def test_registry_lists_every_selector_and_rejects_unknown_names():
    assert list_selectors() == sorted(ALL)
    with pytest.raises(ConfigError) as exc:
        get_selector("majorty")
    assert "majority" in str(exc.value) and "best-of-n" in str(exc.value)
    with pytest.raises(ValueError, match="already registered"):
        register_selector("majority", get_selector("majority").params_model)(lambda c, r, p: Selection((), ()))


@pytest.mark.parametrize("name", ALL)
def test_every_parameter_is_documented_and_models_are_frozen(name):
    model = get_selector(name).params_model
    assert model.model_config.get("frozen") is True
    for field, info in model.model_fields.items():
        assert info.description, f"{name}.{field} has no docstring"


@pytest.mark.parametrize(
    "name, params, parameter, fragment",
    [
        ("majority", {"answers": 0}, "answers", ">= 1"),
        ("majority", {"answers": True}, "answers", "integer"),
        ("majority", {"answers": 1.5}, "answers", "integer"),
        ("majority", {"votes": 3}, "votes", "answers"),
        ("best-of-majority", {"alpha": 1.5}, "alpha", "<= 1"),
        ("best-of-majority", {"score": "median"}, "score", "'max' or 'mean'"),
        ("best-of-majority", {"fallback": "guess"}, "fallback", "abstain"),
        ("weighted-majority", {"temperature": 0}, "temperature", "> 0"),
        ("weighted-majority", {"temperature": float("inf")}, "temperature", "finite"),
        ("weighted-majority", {"source": "confidence", "transform": "linear"}, "transform", "softmax"),
        ("confidence-vote", {"fraction": 0.0}, "fraction", "> 0"),
        ("confidence-vote", {"weighted": "yes"}, "weighted", "true or false"),
        ("first-to-ahead", {"margin": 0}, "margin", ">= 1"),
        ("top-k-answers", {}, "answers", "required"),
    ],
)
def test_bad_parameters_name_the_parameter_and_what_was_expected(name, params, parameter, fragment):
    with pytest.raises(ConfigError) as exc:
        run(name, cands([0, 1], rewards=[1, 2], logprobs=[-1, -2]), **params)
    assert exc.value.parameter == parameter
    assert fragment in exc.value.expected


def test_validate_params_adds_source_and_prefix():
    model = get_selector("best-of-majority").params_model
    with pytest.raises(ConfigError) as exc:
        validate_params(model, {"alpha": -1}, source="x.toml", prefix="params.")
    assert exc.value.parameter == "params.alpha" and exc.value.source == "x.toml"
    assert str(exc.value).startswith("x.toml: params.alpha=-1")
    p = validate_params(model, {"alpha": 0.3, "score": "mean"})
    assert validate_params(model, p) is p
    with pytest.raises(ValidationError, match="frozen"):
        p.alpha = 0.5


@pytest.mark.parametrize(
    "name, params, field",
    [
        ("best-of-n", {}, "rewards"),
        ("best-of-majority", {}, "rewards"),
        ("majority-of-bests", {}, "rewards"),
        ("weighted-majority", {}, "rewards"),
        ("weighted-majority", {"source": "confidence"}, "logprobs"),
        ("confidence-vote", {}, "logprobs"),
    ],
)
def test_missing_fields_raise_a_clear_typed_error(name, params, field):
    with pytest.raises(MissingFieldError) as exc:
        run(name, cands([0, 1, 1]), **params)
    assert isinstance(exc.value, ConfigError)
    assert exc.value.field == field and name in str(exc.value) and field in str(exc.value)
    assert field in get_selector(name).validate(params).needs()


@pytest.mark.parametrize("name", ["majority", "first-to-ahead", "oracle"])
def test_vote_only_selectors_need_nothing_but_answers(name):
    assert run(name, cands([2, 0, 2])).classes == (2,)
    assert get_selector(name).validate({}).needs() <= {"reference"}


# --------------------------------------------------------------------------- majority & pass-at-k


def test_majority_counts_votes_and_ignores_no_answer():
    c = cands([NO_ANSWER, NO_ANSWER, NO_ANSWER, 1, 0, 1])
    sel = run("majority", c)
    assert sel.classes == (1,) and sel.support == (2.0,)
    assert c.classes[sel.sample] == 1


def test_majority_ties_are_uniform():
    assert_uniform(winners("majority", cands([0, 1, 2, 2, 1, 0, 3])), [1 / 3, 1 / 3, 1 / 3, 0])


def test_all_no_answer_abstains_for_every_selector():
    c = cands([NO_ANSWER] * 4, rewards=[1, 2, 3, 4], logprobs=[-1, -2, -3, -4])
    c = Candidates(c.classes, np.array([True]), c.rewards, c.logprobs)  # one class nobody chose
    for name in ALL:
        params = {"answers": 2} if name == "top-k-answers" else {}
        sel = run(name, c, **params)
        assert sel.classes == () and sel.sample is None, name


def test_k_answers_best_first_with_support():
    c = cands([0, 1, 1, 2, 2, 2, NO_ANSWER, 3])
    sel = run("majority", c, answers=3)
    assert sel.classes[:2] == (2, 1) and sel.classes[2] in (0, 3) and sel.support == (3.0, 2.0, 1.0)
    assert run("top-k-answers", c, answers=2).classes == (2, 1)
    assert run("top-k-answers", c, answers=10).classes[:2] == (2, 1)  # only classes with votes
    assert len(run("top-k-answers", c, answers=10).classes) == 4


def test_pass_at_k_tie_at_the_cut_is_uniform():
    c = cands([0, 0, 0, 1, 2, 3])  # classes 1..3 tie for the second slot
    seconds = np.zeros(4, dtype=np.int64)
    for seed in range(3000):
        sel = run("top-k-answers", c, seed, answers=2)
        assert sel.classes[0] == 0
        seconds[sel.classes[1]] += 1
    assert_uniform(seconds, [0, 1 / 3, 1 / 3, 1 / 3])


def test_oracle_prefers_a_correct_class_then_votes():
    c = cands([0, 0, 0, 1, 2], correct=[False, False, True])
    assert run("oracle", c).classes == (2,)
    assert run("oracle", c, answers=2).classes == (2, 0)
    assert run("oracle", cands([0, 0, 1], correct=[False, False])).classes == (0,)


# --------------------------------------------------------------------------- weighted majority


def test_weighted_majority_by_reward_can_beat_the_count():
    c = cands([0, 0, 0, 1], rewards=[0.0, 0.0, 0.0, 5.0])
    sel = run("weighted-majority", c)
    assert sel.classes == (1,) and sel.sample == 3
    # weights exp(r): 3 * 1 vs e^5
    assert sel.support[0] == pytest.approx(np.exp(5) / (3 + np.exp(5)))
    # a large temperature flattens the weights into a plain vote
    assert run("weighted-majority", c, temperature=100.0).classes == (0,)


def test_weighted_majority_support_is_a_share_and_ignores_no_answer():
    c = cands([0, 1, 2, NO_ANSWER], rewards=[1.0, 2.0, 0.5, 100.0])
    sel = run("weighted-majority", c, answers=3)
    assert sel.classes == (1, 0, 2)
    assert sum(sel.support) == pytest.approx(1.0)


def test_weighted_majority_by_confidence_uses_exp_logprob():
    c = cands([0, 0, 1], logprobs=[-2.0, -2.0, -0.1])
    sel = run("weighted-majority", c, source="confidence")
    w = np.exp([-2.0, -2.0, -0.1])
    assert sel.classes == (1,)
    assert sel.support[0] == pytest.approx(w[2] / w.sum())


def test_weighted_majority_linear_and_sigmoid_transforms():
    c = cands([0, 0, 1], rewards=[0.3, 0.3, 0.5])
    assert run("weighted-majority", c, transform="linear").support[0] == pytest.approx(0.6 / 1.1)
    assert run("weighted-majority", c, transform="sigmoid").classes == (0,)
    with pytest.raises(ConfigError, match="non-negative"):
        run("weighted-majority", cands([0, 1], rewards=[-1.0, 1.0]), transform="linear")


def test_weighted_majority_equal_weights_tie_uniformly():
    c = cands([0, 1, 1, 0], rewards=[0.1, 0.2, 0.1, 0.2])  # same multiset of weights, other order
    assert_uniform(winners("weighted-majority", c, trials=2000), [0.5, 0.5])


def test_nan_rewards_weigh_nothing_and_rank_last():
    c = cands([0, 1, 1], rewards=[1.0, np.nan, np.nan])
    assert run("weighted-majority", c).classes == (0,)
    assert run("best-of-n", c).classes == (0,)


# --------------------------------------------------------------------------- best-of-n


def test_best_of_n_picks_the_highest_reward_answered_sample():
    c = cands([0, 1, NO_ANSWER, 2, 1], rewards=[0.1, 0.7, 9.0, 0.5, 0.2])
    sel = run("best-of-n", c)
    assert sel == Selection((1,), (0.7,), sample=1)
    sel = run("best-of-n", c, answers=3)
    assert sel.classes == (1, 2, 0) and sel.support == (0.7, 0.5, 0.1)


def test_best_of_n_reward_ties_are_uniform_over_samples():
    c = cands([0, 1, 1], rewards=[2.0, 2.0, 2.0])  # class 1 holds 2 of the 3 tied samples
    assert_uniform(winners("best-of-n", c), [1 / 3, 2 / 3])


# --------------------------------------------------------------------------- best-of-majority


def test_bom_filters_by_frequency_then_ranks_by_reward():
    # n = 10: class 0 has 5 votes, class 1 has 3, class 2 has 1 (with the best reward), 1 no-answer
    classes = [0, 0, 0, 0, 0, 1, 1, 1, 2, NO_ANSWER]
    rewards = [0.1, 0.2, 0.1, 0.1, 0.3, 0.9, 0.1, 0.1, 5.0, 9.0]
    c = cands(classes, rewards=rewards)
    assert run("best-of-majority", c, alpha=0.2).classes == (1,)  # class 2 (1/10) filtered out
    sel = run("best-of-majority", c, alpha=0.2, answers=3)
    assert sel.classes == (1, 0) and sel.support == (0.9, 0.3)  # only two pass
    assert run("best-of-majority", c, alpha=0.2, answers=3, fill=True).classes == (1, 0, 2)
    assert run("best-of-majority", c, alpha=0.0).classes == (2,)  # everything passes: best-of-n by class
    assert run("best-of-majority", c, alpha=0.5).classes == (0,)  # 5/10 >= 0.5 (inclusive)
    sel = run("best-of-majority", c, alpha=0.2, score="mean")
    assert sel.classes == (1,) and sel.support[0] == pytest.approx(1.1 / 3)
    assert c.classes[sel.sample] == 1 and c.rewards[sel.sample] == 0.9


def test_bom_frequency_counts_samples_without_an_answer():
    c = cands([0, 0, NO_ANSWER, NO_ANSWER], rewards=[1, 1, 1, 1])
    assert run("best-of-majority", c, alpha=0.5).classes == (0,)
    assert run("best-of-majority", c, alpha=0.6, fallback="abstain").classes == ()


def test_bom_fallbacks_when_nothing_passes():
    c = cands([0, 0, 1, 2, 3, 4], rewards=[0.0, 0.0, 0.0, 0.0, 0.0, 3.0])
    assert run("best-of-majority", c, alpha=0.5).classes == (0,)  # majority
    assert run("best-of-majority", c, alpha=0.5, fallback="majority", answers=2).classes[0] == 0
    assert run("best-of-majority", c, alpha=0.5, fallback="reward").classes == (4,)
    assert run("best-of-majority", c, alpha=0.5, fallback="abstain") == Selection((), ())


def test_bom_class_ties_are_uniform():
    c = cands([0, 0, 1, 1, 2], rewards=[1.0, 0.5, 1.0, 0.2, 7.0])
    assert_uniform(winners("best-of-majority", c, trials=2000, alpha=0.4), [0.5, 0.5, 0])


# --------------------------------------------------------------------------- majority of bests


def test_mob_votes_among_the_top_rewarded_samples():
    classes = [0, 0, 0, 1, 1, NO_ANSWER]
    rewards = [0.1, 0.2, 0.3, 0.9, 0.8, 10.0]
    c = cands(classes, rewards=rewards)
    assert run("majority", c).classes == (0,)
    assert run("majority-of-bests", c, top=2).classes == (1,)
    assert run("majority-of-bests", c, top=2).support == (2.0,)
    assert run("majority-of-bests", c, top=5).classes == (0,)
    assert run("majority-of-bests", c, fraction=0.4).classes == (1,)  # ceil(0.4 * 5) = 2 answered
    assert run("majority-of-bests", c, top=3, fraction=1.0).classes == (1,)  # top wins
    assert run("majority-of-bests", c, top=99).classes == (0,)  # capped at the answered count


def test_mob_tie_at_the_cut_is_uniform():
    c = cands([0, 1, 2], rewards=[1.0, 1.0, 1.0])
    assert_uniform(winners("majority-of-bests", c, trials=2000, top=1), [1 / 3, 1 / 3, 1 / 3])


# --------------------------------------------------------------------------- confidence vote


def test_confidence_vote_keeps_the_most_confident_fraction():
    classes = [0, 0, 0, 1, 1, NO_ANSWER]
    logprobs = [-3.0, -2.5, -2.0, -0.1, -0.2, -0.01]
    c = cands(classes, logprobs=logprobs)
    assert run("confidence-vote", c, fraction=1.0).classes == (0,)
    assert run("confidence-vote", c, fraction=0.4).classes == (1,)  # 2 of 5 answered kept
    sel = run("confidence-vote", c, fraction=0.4, weighted=True)
    assert sel.classes == (1,) and sel.support[0] == pytest.approx(np.exp(-0.1) + np.exp(-0.2))
    # 0.7 * 10 = 7.000000000000001 must keep 7, not 8
    c10 = cands([0] * 7 + [1] * 3, logprobs=[-1.0] * 7 + [-2.0] * 3)
    assert run("confidence-vote", c10, fraction=0.7).support == (7.0,)


# --------------------------------------------------------------------------- first to ahead by k


def test_first_to_ahead_stops_at_the_first_lead_of_k():
    c = cands([0, 1, 1, 0, 0, 0, 1, 1, 1, 1])
    sel = run("first-to-ahead", c, margin=2)
    assert sel.classes == (0,) and sel.sample == 5 and sel.support == (4.0,)


def test_first_to_ahead_respects_order_not_the_final_majority():
    c = cands([1, 1, 0, 0, 0, 0, 0])
    assert run("majority", c).classes == (0,)
    sel = run("first-to-ahead", c, margin=2)
    assert sel.classes == (1,) and sel.sample == 1  # decided after 2 samples
    assert run("first-to-ahead", c, margin=3).classes == (0,)


def test_first_to_ahead_leads_every_other_class_and_skips_no_answer():
    # after sample 4 class 0 has 3 votes, classes 1 and 2 one each: ahead of both by 2
    c = cands([0, 1, NO_ANSWER, 0, 2, 0])
    sel = run("first-to-ahead", c, margin=2)
    assert sel.classes == (0,) and sel.sample == 5
    assert run("first-to-ahead", cands([NO_ANSWER, 3, 1]), margin=1).sample == 1
    sel = run("first-to-ahead", c, margin=2, answers=3)
    assert sel.classes[0] == 0 and set(sel.classes[1:]) == {1, 2} and sel.support[1:] == (1.0, 1.0)


def test_first_to_ahead_falls_back_to_majority_with_uniform_ties():
    c = cands([0, 1, 0, 1, 2])
    assert_uniform(winners("first-to-ahead", c, trials=2000, margin=3), [0.5, 0.5, 0])


# --------------------------------------------------------------------------- properties


@st.composite
def random_candidates(draw):
    n = draw(st.integers(1, 12))
    C = draw(st.integers(1, 4))
    classes = draw(st.lists(st.integers(-1, C - 1), min_size=n, max_size=n))
    rewards = draw(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 2.0]), min_size=n, max_size=n))
    logprobs = draw(st.lists(st.sampled_from([-3.0, -1.0, -0.2]), min_size=n, max_size=n))
    correct = draw(st.lists(st.booleans(), min_size=C, max_size=C))
    return Candidates(
        classes=np.array(classes, dtype=np.int64),
        class_correct=np.array(correct),
        rewards=np.array(rewards),
        logprobs=np.array(logprobs),
    )


@settings(max_examples=60, deadline=None)
@given(c=random_candidates(), k=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_every_selector_returns_distinct_answered_classes(c, k, seed):
    answered = set(c.classes[c.classes >= 0].tolist())
    for name in ALL:
        sel = run(name, c, seed, answers=k)
        assert sel == run(name, c, seed, answers=k), "same seed, same answer"
        assert len(sel.classes) == len(set(sel.classes)) <= k
        assert set(sel.classes) <= answered
        assert len(sel.support) == len(sel.classes)
        if answered and name != "best-of-majority":
            assert sel.classes, name
        if sel.classes:
            assert c.classes[sel.sample] == sel.classes[0], name
        if name in ("majority", "top-k-answers", "best-of-n", "weighted-majority", "majority-of-bests"):
            assert list(sel.support) == sorted(sel.support, reverse=True), name
        if name in ("majority", "top-k-answers") and sel.classes:
            assert sel.support[0] == c.counts().max()
