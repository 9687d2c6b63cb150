"""The ``ttscale`` command: the app, its logging option, and its sub-commands (``cli/commands/``)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from ttscale.cli.console import show_deprecations, third_party_logs, warn_secrets_in_argv

app = typer.Typer(
    name="ttscale",
    help="Inference-time compute optimizer: which answer to trust, how many samples, what a budget buys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more, vLLM's and transformers' start-up lines too.")] = False) -> None:
    third_party_logs(verbose)
    show_deprecations()
    warn_secrets_in_argv(sys.argv[1:])
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _register_commands() -> None:
    from ttscale.cli.commands.bench import bench_command
    from ttscale.cli.commands.demo import demo_command
    from ttscale.cli.commands.eval import eval_command
    from ttscale.cli.commands.plan import plan_command
    from ttscale.cli.commands.sample import sample_command
    from ttscale.cli.commands.score import score_app
    from ttscale.cli.commands.search import search_command
    from ttscale.cli.commands.serve import serve_command
    from ttscale.cli.commands.serve_model import serve_model_command
    from ttscale.cli.commands.simulate import simulate_command

    app.command("eval")(eval_command)
    app.command("sample")(sample_command)
    app.add_typer(score_app, name="score")
    app.command("demo")(demo_command)
    app.command("plan")(plan_command)
    app.command("simulate")(simulate_command)
    app.command("bench")(bench_command)
    app.command("serve")(serve_command)
    app.command("search")(search_command)
    app.command("serve-model", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(serve_model_command)


_register_commands()


if __name__ == "__main__":  # pragma: no cover
    app()
