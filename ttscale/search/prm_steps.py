"""A process reward model as the search's step scorer, and step scorers by name.

:class:`PRMStepScorer` wraps either PRM backend of :mod:`ttscale.scoring.prm` (transformers
``ProcessRewardScorer`` or vLLM pooling ``VLLMProcessRewardScorer``). Each search step is one PRM
step: the PRM reads ``template(problem) + step_1 + TAG + ... + step_k + TAG`` (steps stripped of
their separator and of the tag text), so a branch gets exactly one score per step, in one batched
call per round. Tokens the PRM read are counted per branch.

Names (:func:`resolve_step_scorer`): ``oracle`` (the arithmetic task's exact checker), ``prm``
(the embedded arith-prm-tiny through transformers), ``prm:FOLDER`` (any
``Qwen2ForProcessRewardModel`` folder through transformers), ``vllm-prm`` / ``vllm-prm:FOLDER``
(the same through vLLM's pooling runner).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ttscale.arith.paths import PRM_NAME, prm_dir
from ttscale.errors import ConfigError
from ttscale.search.branch import SearchError
from ttscale.search.steps import StepScorer, StepScores

PRM_MODEL_NAME = PRM_NAME
SCORER_NAMES = ("oracle", "prm", "prm:FOLDER", "vllm-prm", "vllm-prm:FOLDER")
"""What :func:`resolve_step_scorer` accepts (FOLDER: a Qwen2ForProcessRewardModel folder)."""


def prm_model_dir() -> Path:
    """The committed folder of the tiny arithmetic PRM (a ``Qwen2ForProcessRewardModel``)."""
    return prm_dir()


class PRMStepScorer:
    """A PRM backend of :mod:`ttscale.scoring.prm` (its ``config``, ``tokenizer`` and ``_logits``) as a
    :class:`StepScorer`. ``name`` labels the rewards in a bank; ``label`` (default: the name) is what
    errors call the scorer, e.g. the ``prm:FOLDER`` the user typed."""

    def __init__(self, prm: Any, *, name: str | None = None, label: str | None = None) -> None:
        self.prm = prm
        self.name = name or prm.name
        self.label = label or self.name

    def encode(self, problem: str, steps: Sequence[str]) -> list[int]:
        """Token ids of one partial solution: one tag after each step, empty steps included (they
        are scored like any other: a blank line is a step the search made)."""
        c = self.prm.config
        tag = c.step_tag
        text = c.template.format(problem=problem.replace(tag, ""))
        text += "".join(s.replace(tag, "").strip() + tag for s in steps)
        ids = list(self.prm.tokenizer(text)["input_ids"])
        if len(ids) > c.max_length:  # the engine's limit: a cut prefix would drop steps' tags
            raise SearchError(f"step scorer {self.label!r}: a partial solution of {len(ids)} tokens is longer than the PRM's "
                              f"max_length {c.max_length} (fewer steps: --max-steps, or a PRM with a longer context)")
        return ids

    def score_steps(self, items: Sequence[tuple[str, Sequence[str]]]) -> StepScores:
        from ttscale.scoring.prm import step_probabilities

        inputs = [self.encode(problem, steps) for problem, steps in items]
        logits = self.prm._logits(inputs) if inputs else []
        if len(logits) != len(inputs):
            raise SearchError(f"step scorer {self.label!r}: {len(logits)} answers for {len(inputs)} partial solutions")
        scores: list[list[float]] = []
        for (problem, steps), rows in zip(items, logits):
            if len(rows) != len(steps):
                raise SearchError(f"step scorer {self.label!r}: {len(rows)} step scores for {len(steps)} steps "
                                  f"(problem {problem[:60]!r})")
            probs = step_probabilities(rows, self.prm.config.label) if all(_finite(r) for r in rows) else [math.nan]
            if any(not math.isfinite(p) for p in probs):
                raise SearchError(f"step scorer {self.label!r}: a non-finite step score (NaN or inf logits) "
                                  f"for problem {problem[:60]!r}")
            scores.append(probs)
        return StepScores(scores, [len(ids) for ids in inputs])

    def close(self) -> None:
        close = getattr(self.prm, "close", None)
        if close is not None:
            close()


def _finite(row: Sequence[float]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in row)


def resolve_step_scorer(spec: str, *, batch_size: int = 64, engine_args: dict[str, Any] | None = None) -> StepScorer:
    """The step scorer a name stands for (see the module docstring); ConfigError names ``scorer``
    and the accepted forms otherwise. ``engine_args``: extra ``vllm.LLM`` arguments for vllm-prm."""
    kind, _, folder = spec.partition(":")
    if kind == "oracle" and not folder:
        from ttscale.search.oracle import OracleStepScorer

        return OracleStepScorer()
    if kind not in ("prm", "vllm-prm") or (":" in spec and not folder):
        raise ConfigError("scorer", spec, "one of " + ", ".join(SCORER_NAMES))
    path = Path(folder) if folder else prm_model_dir()
    if not (path / "config.json").is_file():
        raise ConfigError("scorer", spec, f"a PRM model folder with config.json ({path} has none)")
    from ttscale.scoring.prm import PRMConfig, ProcessRewardScorer, VLLMProcessRewardScorer

    if kind == "prm":  # positions past the model's own are noise, not scores: the config caps the input
        positions = json.loads((path / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings") or 4096
        config = PRMConfig(model=str(path), batch_size=batch_size, max_length=min(4096, int(positions)))
        return PRMStepScorer(ProcessRewardScorer(config), name=kind, label=spec)
    config = PRMConfig(model=str(path), engine_args=dict(engine_args or {}))
    return PRMStepScorer(VLLMProcessRewardScorer(config), name=kind, label=spec)
