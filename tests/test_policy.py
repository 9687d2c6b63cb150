"""Policy presets: every shipped preset loads and runs; overrides; clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ttscale.selection.policy as policy_mod
from ttscale.answers.candidates import Candidates, Selection
from ttscale.errors import BankFormatError, ConfigError
from ttscale.selection.policy import (
    Policy,
    list_policies,
    load_policy,
    parse_spec,
    preset_dirs,
    preset_names,
)
from ttscale.selection.fields import MissingFieldError
from ttscale.selection.registry import list_selectors

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (REPO / "policies").glob("*.toml"))

EXPECTED = {
    "majority", "weighted-majority", "confidence-weighted", "best-of-n", "best-of-majority",
    "majority-of-bests", "confidence-vote", "first-to-ahead", "top-k-answers",
}


def random_candidates(seed: int, n: int = 24, C: int = 5, scored: bool = True) -> Candidates:
    rng = np.random.default_rng(seed)
    return Candidates(
        classes=rng.integers(-1, C, size=n),
        class_correct=rng.random(C) < 0.3,
        rewards=rng.normal(size=n) if scored else None,
        logprobs=-rng.exponential(size=n) if scored else None,
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- presets


def test_the_expected_presets_ship_and_cover_every_selector():
    assert EXPECTED <= set(PRESETS)
    assert preset_names() == PRESETS
    assert {p.selector for p in list_policies()} == set(list_selectors())
    assert REPO / "policies" in [Path(str(d)) for d in preset_dirs()]


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_runs(name):
    policy = load_policy(name)
    assert policy.name == name and policy.description.strip()
    assert policy.source is not None and policy.source.endswith(f"{name}.toml")
    assert policy == load_policy(str(REPO / "policies" / f"{name}.toml"))
    select = policy.selector_fn()
    for seed in range(20):
        c = random_candidates(seed)
        sel = select(c, np.random.default_rng(seed))
        assert isinstance(sel, Selection)
        assert 1 <= len(sel.classes) <= policy.params.answers
        assert c.classes[sel.sample] == sel.classes[0]
        assert sel == policy.select(c, np.random.default_rng(seed))


@pytest.mark.parametrize("name", PRESETS)
def test_needs_tell_why_a_policy_cannot_run_on_a_bank(name):
    policy = load_policy(name)
    bare = random_candidates(0, scored=False)
    assert policy.needs <= {"rewards", "logprobs", "reference"}
    assert policy.missing(bare) == policy.needs - {"reference"}
    assert policy.missing(random_candidates(0)) == frozenset()
    if policy.missing(bare):
        with pytest.raises(MissingFieldError, match=name):
            policy.check(bare)
        with pytest.raises(MissingFieldError):
            policy.selector_fn()(bare, np.random.default_rng(0))
    else:
        policy.check(bare)
        policy.selector_fn()(bare, np.random.default_rng(0))


def test_needs_by_preset():
    assert load_policy("majority").needs == frozenset()
    assert load_policy("best-of-n").needs == {"rewards"}
    assert load_policy("weighted-majority").needs == {"rewards"}
    assert load_policy("confidence-weighted").needs == {"logprobs"}
    assert load_policy("confidence-vote").needs == {"logprobs"}


# --------------------------------------------------------------------------- overrides


def test_parse_spec_types_values():
    assert parse_spec("majority") == ("majority", {})
    assert parse_spec("majority:") == ("majority", {})
    base, over = parse_spec("best-of-majority:alpha=0.3, answers=2,fill=true,score=mean,x=\"s\"")
    assert base == "best-of-majority"
    assert over == {"alpha": 0.3, "answers": 2, "fill": True, "score": "mean", "x": "s"}
    assert type(over["answers"]) is int
    assert parse_spec("C:\\p\\my.toml:answers=2") == ("C:\\p\\my.toml", {"answers": 2})
    assert parse_spec("C:\\p\\my.toml") == ("C:\\p\\my.toml", {})
    with pytest.raises(ConfigError, match="key=value"):
        parse_spec("best-of-majority:alpha")
    with pytest.raises(ConfigError, match="key=value"):
        parse_spec("best-of-majority:alpha=0.3,,answers")


def test_overrides_change_params_and_name():
    policy = load_policy("best-of-majority:alpha=0.3,answers=2")
    assert policy.params.alpha == 0.3 and policy.params.answers == 2
    assert policy.params.score == load_policy("best-of-majority").params.score
    assert policy.name == "best-of-majority:alpha=0.3,answers=2"
    assert load_policy("weighted-majority:source=confidence").needs == {"logprobs"}
    assert load_policy("majority-of-bests:top=3").params.top == 3  # top takes precedence over fraction
    assert load_policy("best-of-majority:params.alpha=0.2").params.alpha == 0.2


def test_bad_overrides_name_the_file_and_the_parameter():
    with pytest.raises(ConfigError) as exc:
        load_policy("best-of-majority:alpha=3")
    assert exc.value.parameter == "params.alpha"
    assert "best-of-majority.toml" in exc.value.source and "alpha=3" in exc.value.source
    with pytest.raises(ConfigError, match="a known key") as exc:
        load_policy("majority:alpah=0.3")
    assert exc.value.parameter == "params.alpah"
    with pytest.raises(ConfigError, match="'reward' or 'confidence'"):
        load_policy("weighted-majority:source=conf")


def test_with_params():
    policy = load_policy("majority-of-bests").with_params(fraction=0.25, answers=2)
    assert policy.params.fraction == 0.25 and policy.params.answers == 2
    with pytest.raises(ConfigError):
        load_policy("majority").with_params(alpha=0.1)


# --------------------------------------------------------------------------- files


def test_policy_from_a_path_defaults_the_name_to_the_file(tmp_path):
    path = write(tmp_path, "mine.toml", 'selector = "best-of-majority"\n[params]\nalpha = 0.25\n')
    policy = load_policy(str(path))
    assert policy.name == "mine" and policy.params.alpha == 0.25 and policy.description == ""
    assert load_policy(path) == policy
    assert Policy.from_file(path, overrides={"answers": 3}).params.answers == 3
    assert load_policy(f"{path}:answers=2").params.answers == 2
    minimal = load_policy(str(write(tmp_path, "m.toml", 'selector = "majority"\n')))
    assert minimal.params.answers == 1


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError) as exc:
        load_policy("majorty")
    assert exc.value.parameter == "policy" and "majority" in exc.value.expected
    assert "best-of-majority" in str(exc.value)
    with pytest.raises(ConfigError, match="existing policy"):
        load_policy("no/such/file.toml")


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "syn.toml", 'name = "syn"\nselector = "majority"\n[params\nanswers = 1\n')
    with pytest.raises(BankFormatError) as exc:
        load_policy(str(path))
    assert exc.value.path == str(path) and exc.value.line == 3
    assert f"{path}, line 3" in str(exc.value) and "TOML" in str(exc.value)


@pytest.mark.parametrize(
    "text, parameter, line, fragment",
    [
        ('selector = "best-of-majority"\n\n[params]\nalpha = 0.2\nalfa = 0.3\n', "params.alfa", 5, "alpha"),
        ('selector = "best-of-majority"\n[params]\nanswers = 2\nalpha = 1.5\n', "params.alpha", 4, "<= 1"),
        ('name = "x"\nselector = "majorty"\n', "selector", 2, "best-of-majority"),
        ('description = "no selector"\n', "selector", None, "majority"),
        ('selector = 3\n', "selector", 1, "majority"),
        ('selector = "majority"\n[sampling]\nn = 8\n', "sampling", 2, "selector"),
        ('selector = "majority"\nparams = { answers = 0 }\n', "params.answers", 2, ">= 1"),
        ('selector = "first-to-ahead"\n[params]\nmargin = "two"\n', "params.margin", 3, "integer"),
        ('selector = "confidence-vote"\n[params]\nweighted = 1\n', "params.weighted", 3, "true or false"),
        ('selector = "top-k-answers"\n', "params.answers", None, "required"),
        ('name = ""\nselector = "majority"\n', "name", 1, "at least 1 character"),
        ('selector = "weighted-majority"\n[params]\nsource = "confidence"\ntransform = "linear"\n',
         "params.transform", 4, "softmax"),
    ],
)
def test_bad_policy_files_name_file_line_field_and_expectation(tmp_path, text, parameter, line, fragment):
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError) as exc:
        load_policy(str(path))
    err = exc.value
    assert err.parameter == parameter
    assert err.source == (str(path) if line is None else f"{path}, line {line}")
    assert fragment in err.expected
    assert str(err).startswith(err.source)


def test_a_preset_must_be_named_after_its_file(tmp_path, monkeypatch):
    write(tmp_path, "alpha.toml", 'name = "beta"\nselector = "majority"\n')
    monkeypatch.setattr(policy_mod, "preset_dirs", lambda: [tmp_path])
    with pytest.raises(ConfigError, match="file name"):
        load_policy("alpha")


def test_first_preset_folder_wins(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    write(first, "majority.toml", 'selector = "majority"\ndescription = "first"\n')
    write(second, "majority.toml", 'selector = "majority"\ndescription = "second"\n')
    write(second, "other.toml", 'selector = "best-of-n"\n')
    monkeypatch.setattr(policy_mod, "preset_dirs", lambda: [first, second])
    assert preset_names() == ["majority", "other"]
    assert load_policy("majority").description == "first"
    assert [p.name for p in list_policies()] == ["majority", "other"]


# --------------------------------------------------------------------------- the model


def test_policy_model_validates_params_against_the_selector():
    policy = Policy(name="p", selector="best-of-majority", params={"alpha": 0.2})
    assert type(policy.params).__name__ == "BestOfMajorityParams" and policy.params.alpha == 0.2
    assert Policy(name="p", selector="majority").params.answers == 1
    with pytest.raises(ValueError, match="alpha"):
        Policy(name="p", selector="majority", params={"alpha": 0.2})
    with pytest.raises(ValueError, match="majorty"):
        Policy(name="p", selector="majorty")
    dumped = policy.model_dump(mode="json")
    assert dumped["params"]["score"] == "max"
    assert Policy.from_dict(dumped) == policy
    assert hash(policy) == hash(Policy.from_dict(dumped))
