"""``ttscale score KIND BANK``: fill ``rewards[NAME]`` on every sample of a bank with a scorer, resumably.

One subcommand per scorer kind, each with the options that kind uses plus the shared ones (``--name``,
``--out``, ``--default``, ``--batch-problems``, ``--json``, ``--quiet``). The old form
``ttscale score BANK --scorer KIND ...`` still works for one release: it is routed to the subcommand
with a deprecation note on stderr (options that kind never used are dropped, as they were ignored).
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from ttscale.cli.console import deprecated, err, handle_errors, progress_bar
from ttscale.cli.sampling_options import engine_args, parse_seed
from ttscale.errors import ConfigError
from ttscale.scoring.confidence import TokenMetric
from ttscale.scoring.judge import OnUnparsed
from ttscale.scoring.prm import StepAggregation
from ttscale.scoring.registry import SCORERS, ScorerKind

# --- the old form: `ttscale score BANK --scorer KIND ...` (deprecated) ------------------------

_RENAMED = {"--judge-n": "--n", "--judge-max-tokens": "--max-tokens", "--judge-temperature": "--temperature",
            "--judge-seed": "--seed", "--judge-chat": "--chat", "--judge-raw": "--raw", "--judge-system": "--system",
            "--judge-model": "--model"}
"""Old option names of the judge's options (the ``judge-`` prefix is the subcommand now)."""
_OLD_FLAGS = {"--default", "--json", "--quiet", "-q", "--judge-chat", "--judge-raw", "--help"}
"""Options of the old form that take no value (every other old option takes one)."""


def _is_old_form(args: list[str], commands: dict[str, click.Command]) -> bool:
    if any(a in ("--scorer", "-s") or a.startswith("--scorer=") for a in args):
        return True
    return bool(args) and not args[0].startswith("-") and args[0] not in commands


@handle_errors
def _route_old_form(args: list[str], commands: dict[str, click.Command]) -> list[str]:
    """The old form's arguments rewritten for the subcommand of ``--scorer`` (default confidence)."""
    kind, rest, i = "confidence", [], 0
    while i < len(args):
        a = args[i]
        if a in ("--scorer", "-s") and i + 1 < len(args):
            kind, i = args[i + 1], i + 2
            continue
        if a.startswith("--scorer="):
            kind = a.partition("=")[2]
        else:
            rest.append(a)
        i += 1
    if kind not in commands:
        raise ConfigError("--scorer", kind, "one of " + ", ".join(SCORERS))
    known = {o for p in commands[kind].params for o in (*p.opts, *p.secondary_opts)}
    backend = next((v for a, v in zip(rest, [*rest[1:], ""]) if a in ("--backend", "-b")), "hf")
    backend = next((a.partition("=")[2] for a in rest if a.startswith("--backend=")), backend)
    # The old --judge-model named the served model (over --model) with --backend openai; elsewhere it was ignored.
    served = kind == "judge" and backend == "openai" and any(a.partition("=")[0] == "--judge-model" for a in rest)
    out, dropped, renamed, i = [kind], [], {}, 0
    while i < len(rest):
        a = rest[i]
        if a == "--":
            out += rest[i:]
            break
        if not a.startswith("-") or a == "-":
            out.append(a)
            i += 1
            continue
        name, eq, value = a.partition("=") if a.startswith("--") else (a, "", "")
        takes_value = name not in _OLD_FLAGS and not eq
        span = rest[i:i + 1 + takes_value]
        i += len(span)
        if served and name in ("--model", "-m"):
            continue
        new = _RENAMED.get(name, name) if name != "--judge-model" or served else None
        if new in known or new == "--engine-arg":  # --engine-arg where unused stays an error, as before
            out += [new + eq + value, *span[1:]]
            if new != name:
                renamed[name] = new
        else:
            dropped.append(name)
    note = f"use 'ttscale score {kind} BANK ...'"
    if renamed:
        note += "; renamed: " + ", ".join(f"{a} -> {b}" for a, b in renamed.items())
    if dropped:
        note += f"; ignored: {', '.join(dict.fromkeys(dropped))} (not options of {kind})"
    deprecated(f"'ttscale score BANK --scorer KIND' is deprecated; {note}")
    return out


class _ScoreGroup(TyperGroup):
    """``score``'s subcommands, plus the deprecated ``score BANK --scorer KIND`` form routed to them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if _is_old_form(args, self.commands):
            args = _route_old_form(args, self.commands)
        return super().parse_args(ctx, args)


score_app = typer.Typer(
    cls=_ScoreGroup,
    no_args_is_help=True,
    help="Score every sample of a bank and store it under the scorer's name; rerunning resumes "
         "(scored samples are skipped). One subcommand per scorer kind.",
)

# --- options ----------------------------------------------------------------------------------

Bank = Annotated[Path, typer.Argument(help="Bank file (JSONL) to score.")]
Name = Annotated[str | None, typer.Option("--name", help="Name the scores are stored under (default: the scorer kind).")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Output bank (default: rewrite BANK in place, atomically).")]
Default = Annotated[bool, typer.Option("--default", help="Also set each sample's 'reward' (the default scorer).")]
BatchProblems = Annotated[int, typer.Option("--batch-problems", help="Problems per scoring batch (a kill loses at most one).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Sequences per forward pass.")]
EngineArg = Annotated[list[str] | None, typer.Option("--engine-arg", help="vllm.LLM argument KEY=VALUE (repeatable), e.g. max_model_len=4096, dtype=bfloat16, tensor_parallel_size=2.")]
CausalLM = Annotated[str | None, typer.Option("--model", "-m", help="Causal LM folder for a teacher-forced forward pass; 'arith-tiny' is the packaged model.")]
Classifier = Annotated[str, typer.Option("--model", "-m", help="Sequence-classification model folder (the reward model).")]
ClassifierTemplate = Annotated[str | None, typer.Option("--template", help="Classifier input with {problem} and {candidate} (default: problem, newline, candidate).")]
PRMModel = Annotated[str, typer.Option("--model", "-m", help="Qwen2ForProcessRewardModel folder.")]
PRMTemplate = Annotated[str | None, typer.Option("--template", help="The prompt before the steps, {problem} ('qwen-prm': Qwen2.5-Math-PRM's).")]
Aggregation = Annotated[StepAggregation, typer.Option("--aggregation", help="Step scores to one reward.")]
Separator = Annotated[str, typer.Option("--separator", help="Steps are the non-empty pieces between this (escapes such as \\n\\n understood; default one step per line).")]
StepTag = Annotated[str, typer.Option("--step-tag", help="The model's step-separator token.")]
Label = Annotated[int, typer.Option("--label", help="Index of the 'good' label of the 2-label head.")]
EmptyScore = Annotated[float, typer.Option("--empty-score", help="Reward of a candidate with no steps.")]


class JudgeBackend(str, enum.Enum):
    """The sampler backends a judge runs on (the ones that take a prompt and return replies)."""

    HF = "hf"
    VLLM = "vllm"
    OPENAI = "openai"


# --- running ----------------------------------------------------------------------------------


def _run(kind: ScorerKind, model: str | None, options: dict[str, Any], *, bank: Path, name: str | None, out: Path | None,
         default: bool, batch_problems: int, as_json: bool, quiet: bool) -> None:
    """Build the scorer, score the bank, print the summary (the same for every kind)."""
    from ttscale.scoring.registry import make_scorer
    from ttscale.scoring.resumable import score_bank

    if not bank.is_file():
        raise ConfigError("BANK", str(bank), "an existing bank file (JSONL)")
    instance = make_scorer(kind.value, model, name=name, **options)
    try:
        with progress_bar(disable=quiet) as bar:
            task = bar.add_task(f"scoring ({instance.name})", total=None)
            stats = score_bank(bank, instance, out, default=default, batch_problems=batch_problems,
                               on_start=lambda total: bar.update(task, total=total),
                               on_batch=lambda done, total: bar.update(task, completed=done))
    finally:
        instance.close()
    summary = {"out": str(stats.out), "name": instance.name, "problems": stats.problems, "samples": stats.samples,
               "scored": stats.scored, "skipped": stats.skipped, "resumed": stats.resumed}
    if hasattr(instance, "unparsed"):
        summary["unparsed"] = instance.unparsed
    if hasattr(instance, "truncated"):
        summary["truncated"] = instance.truncated
    if hasattr(instance, "forced"):
        summary["forward_pass"] = instance.forced
    if as_json:
        print(json.dumps(summary))
        return
    err.print(f"{stats.out}: {stats.scored} samples scored as rewards.{instance.name} "
              f"({stats.skipped} already scored, {stats.resumed} resumed) over {stats.problems} problems", soft_wrap=True)


def _resolve(model: str | None) -> str | None:
    from ttscale.arith.paths import resolve_model

    return resolve_model(model)


def _confidence_template(template: str | None, model: str | None) -> str:
    if template in (None, "auto"):
        return "arith" if "arith" in str(model or "") else "{problem}"
    return template


def _separator(separator: str) -> str:
    try:
        # Shells pass "\n\n" as backslashes; backslashreplace keeps non-ASCII text intact through the decode.
        return separator.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        raise ConfigError("--separator", separator, "a string with valid escapes such as \\n") from None


# --- subcommands --------------------------------------------------------------------------------

_CONFIDENCE_TEMPLATE = "The sampling prompt template, {problem} ('auto': arith for arith-tiny)."


@score_app.command("confidence")
@handle_errors
def confidence_command(
    bank: Bank,
    model: CausalLM = None,
    template: Annotated[str | None, typer.Option("--template", help=_CONFIDENCE_TEMPLATE)] = None,
    batch_size: BatchSize = 8,
    name: Name = None, out: Out = None, default: Default = False, batch_problems: BatchProblems = 8,
    as_json: AsJson = False, quiet: Quiet = False,
) -> None:
    """Mean token log-prob: the one the sampler stored, else a forward pass of --model."""
    options = {"template": _confidence_template(template, model), "batch_size": batch_size}
    _run(ScorerKind.CONFIDENCE, _resolve(model), options, bank=bank, name=name, out=out, default=default,
         batch_problems=batch_problems, as_json=as_json, quiet=quiet)


@score_app.command("lowest-group-confidence")
@handle_errors
def lowest_group_confidence_command(
    bank: Bank,
    model: CausalLM = None,
    window: Annotated[int, typer.Option("--window", help="Tokens per sliding group (DeepConf: 2048).")] = 2048,
    top_k: Annotated[int, typer.Option("--top-k", help="Top-k log-probs per token confidence.")] = 20,
    token_metric: Annotated[TokenMetric, typer.Option("--token-metric", help="deepconf (-mean top-k log-prob) or logprob (the token's own).")] = TokenMetric.DEEPCONF,
    template: Annotated[str | None, typer.Option("--template", help=_CONFIDENCE_TEMPLATE)] = None,
    batch_size: BatchSize = 8,
    name: Name = None, out: Out = None, default: Default = False, batch_problems: BatchProblems = 8,
    as_json: AsJson = False, quiet: Quiet = False,
) -> None:
    """DeepConf's lowest group confidence: a forward pass of --model (banks hold no per-token distributions)."""
    options = {"template": _confidence_template(template, model), "batch_size": batch_size, "window": window,
               "top_k": top_k, "token_metric": token_metric}
    _run(ScorerKind.LOWEST_GROUP_CONFIDENCE, _resolve(model), options, bank=bank, name=name, out=out, default=default,
         batch_problems=batch_problems, as_json=as_json, quiet=quiet)


@score_app.command("reward-model")
@handle_errors
def reward_model_command(
    bank: Bank,
    model: Classifier,
    template: ClassifierTemplate = None,
    batch_size: BatchSize = 8,
    name: Name = None, out: Out = None, default: Default = False, batch_problems: BatchProblems = 8,
    as_json: AsJson = False, quiet: Quiet = False,
) -> None:
    """A reward model (a sequence classifier) in transformers, on CPU."""
    options: dict[str, Any] = {"batch_size": batch_size}
    if template:
        options["template"] = template
    _run(ScorerKind.REWARD_MODEL, _resolve(model), options, bank=bank, name=name, out=out, default=default,
         batch_problems=batch_problems, as_json=as_json, quiet=quiet)


@score_app.command("vllm-reward")
@handle_errors
def vllm_reward_command(
    bank: Bank,
    model: Classifier,
    template: ClassifierTemplate = None,
    engine_arg: EngineArg = None,
    name: Name = None, out: Out = None, default: Default = False, batch_problems: BatchProblems = 8,
    as_json: AsJson = False, quiet: Quiet = False,
) -> None:
    """A reward model (a sequence classifier) through vLLM's pooling runner."""
    options: dict[str, Any] = {}
    if template:
        options["template"] = template
    if engine_arg:
        options["engine_args"] = engine_args(engine_arg)
    _run(ScorerKind.VLLM_REWARD, _resolve(model), options, bank=bank, name=name, out=out, default=default,
         batch_problems=batch_problems, as_json=as_json, quiet=quiet)


def _prm_options(template: str | None, aggregation: StepAggregation, separator: str, step_tag: str, label: int,
                 empty_score: float) -> dict[str, Any]:
    options: dict[str, Any] = {"aggregation": aggregation, "separator": _separator(separator), "step_tag": step_tag,
                               "label": label, "empty_score": empty_score}
    if template:
        options["template"] = template
    return options


@score_app.command("prm")
@handle_errors
def prm_command(
    bank: Bank,
    model: PRMModel,
    template: PRMTemplate = None,
    aggregation: Aggregation = StepAggregation.MIN,
    separator: Separator = "\\n",
    step_tag: StepTag = "<extra_0>",
    label: Label = 1,
    empty_score: EmptyScore = 0.0,
    batch_size: BatchSize = 8,
    name: Name = None, out: Out = None, default: Default = False, batch_problems: BatchProblems = 8,
    as_json: AsJson = False, quiet: Quiet = False,
) -> None:
    """A process reward model (per-step scores, aggregated) in transformers, on CPU."""
    options = _prm_options(template, aggregation, separator, step_tag, label, empty_score) | {"batch_size": batch_size}
    _run(ScorerKind.PRM, _resolve(model), options, bank=bank, name=name, out=out, default=default,
         batch_problems=batch_problems, as_json=as_json, quiet=quiet)


@score_app.command("vllm-prm")
@handle_errors
def vllm_prm_command(
    bank: Bank,
    model: PRMModel,
    template: PRMTemplate = None,
    aggregation: Aggregation = StepAggregation.MIN,
    separator: Separator = "\\n",
    step_tag: StepTag = "<extra_0>",
    label: Label = 1,
    empty_score: EmptyScore = 0.0,
    engine_arg: EngineArg = None,
    name: Name = None, out: Out = None, default: Default = False, batch_problems: BatchProblems = 8,
    as_json: AsJson = False, quiet: Quiet = False,
) -> None:
    """A process reward model (per-step scores, aggregated) through vLLM's pooling runner."""
    options = _prm_options(template, aggregation, separator, step_tag, label, empty_score)
    if engine_arg:
        options["engine_args"] = engine_args(engine_arg)
    _run(ScorerKind.VLLM_PRM, _resolve(model), options, bank=bank, name=name, out=out, default=default,
         batch_problems=batch_problems, as_json=as_json, quiet=quiet)


@score_app.command("judge")
@handle_errors
def judge_command(
    bank: Bank,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Judge model: a folder (hf, vllm; 'arith-tiny' is the packaged model) or the served model name (openai; default the server's first).")] = None,
    backend: Annotated[JudgeBackend, typer.Option("--backend", "-b", help="Sampler backend of the judge.")] = JudgeBackend.HF,
    template: Annotated[str | None, typer.Option("--template", help="Judge prompt with {problem} and {candidate} (default: asks for 'Score: N/10').")] = None,
    n: Annotated[int, typer.Option("--n", help="Replies per candidate (scores averaged).")] = 1,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Most tokens per reply.")] = 64,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Sampling temperature (default 0 with --n 1, else 0.7).")] = None,
    seed: Annotated[str, typer.Option("--seed", help="Base seed of the judge's replies ('none': unseeded).")] = "0",
    chat: Annotated[bool, typer.Option("--chat/--raw", help="Send the prompt as a chat message (instruction-tuned judges).")] = False,
    system: Annotated[str | None, typer.Option("--system", help="System message (with --chat).")] = None,
    on_unparsed: Annotated[OnUnparsed, typer.Option("--on-unparsed", help="An unparsable reply: error, or fallback (score --fallback).")] = OnUnparsed.ERROR,
    fallback: Annotated[float, typer.Option("--fallback", help="Score of an unparsable reply with --on-unparsed fallback.")] = 0.0,
    base_url: Annotated[str, typer.Option("--base-url", help="openai: server URL.")] = "http://127.0.0.1:8000/v1",
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="OPENAI_API_KEY", help="openai: API key (default $OPENAI_API_KEY).")] = None,
    engine_arg: EngineArg = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="hf, vllm: requests per batch.")] = 8,
    name: Name = None, out: Out = None, default: Default = False, batch_problems: BatchProblems = 8,
    as_json: AsJson = False, quiet: Quiet = False,
) -> None:
    """An LLM judge through a sampler backend; each reply is parsed into a score in [0, 1]."""
    from ttscale.sampling.sampler import SamplingConfig

    base_seed = parse_seed(seed)
    if engine_arg and backend is not JudgeBackend.VLLM:
        raise ConfigError("--engine-arg", engine_arg, "only with --backend vllm")
    sampling = SamplingConfig(temperature=temperature if temperature is not None else (0.0 if n == 1 else 0.7),
                              max_tokens=max_tokens, logprobs=False, seed=base_seed,
                              prompt_format="chat" if chat else "raw", system=system)
    options: dict[str, Any] = {"backend": backend.value, "n": n, "on_unparsed": on_unparsed, "fallback": fallback,
                               "sampling": sampling}
    if backend is JudgeBackend.OPENAI:
        options["backend_options"] = {"base_url": base_url, "api_key": api_key}
        resolved = model
    else:
        options["backend_options"] = {"batch_size": batch_size}
        if engine_arg:
            options["backend_options"]["engine_args"] = engine_args(engine_arg)
        resolved = _resolve(model)
    if template:
        options["template"] = template
    _run(ScorerKind.JUDGE, resolved, options, bank=bank, name=name, out=out, default=default,
         batch_problems=batch_problems, as_json=as_json, quiet=quiet)
