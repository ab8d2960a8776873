"""The `envkit` command line."""

from __future__ import annotations

import importlib
import os
import signal
import sys

import click

from envkit import __version__
from envkit.errors import SUBCOMMAND, EnvkitError
from envkit.exitcodes import INTERRUPTED, raise_terminated
from envkit.masking import mask_text
from envkit.terminal import echo


class LazyGroup(click.Group):
    """A group whose other commands are imported when one is run or the help lists them: `envkit doctor`
    loads none of train's, build's, budget's or matrix's modules (issue #16: the doctor's start-up)."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        """In the order a user meets them (doctor first, then the lazy ones as COMMANDS lists them), not A-Z."""
        return list(dict.fromkeys([*super().list_commands(ctx), *self.lazy]))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command's first sentence whole, wrapped, where click would cut it at the terminal's width."""
        rows = [(name, self.get_command(ctx, name).get_short_help_str(limit=200)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, _, attribute = self.lazy[name].partition(":")
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        """The one place a command's error becomes its exit: a UsageError or Failure (envkit.errors) is one line,
        ``envkit COMMAND: message``, and its exit code.  Ctrl-C exits 130 (128 + SIGINT, the shell's convention)
        in one line; click's own answer is "Aborted!" and exit 1, which a script cannot tell from a failure."""
        try:
            return super().invoke(ctx)
        except EnvkitError as exc:
            command = " ".join(filter(None, [ctx.invoked_subcommand, ctx.meta.get(SUBCOMMAND)]))
            # masked: an --index-url's credentials, echoed by a resolver; printable: a path or name is anyone's
            echo(f"envkit {command}: {mask_text(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo(f"envkit {ctx.invoked_subcommand}: interrupted", err=True)
            sys.exit(INTERRUPTED)


# Every command but doctor: name -> "module:attribute", in the order of a user's path (`envkit --help` lists them so).
COMMANDS = {"train": "envkit.train.cli:train", "generate": "envkit.train.cli:generate",
            "report": "envkit.train.cli:report", "recipes": "envkit.recipe.cli:recipes",
            "budget": "envkit.budget.cli:budget", "build": "envkit.build.cli:build",
            "lock": "envkit.build.cli:lock_command", "matrix": "envkit.matrix.cli:matrix"}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="envkit")
@click.pass_context
def main(ctx: click.Context) -> None:
    """A working GRPO + vLLM environment: check it, lock it, build it, train in it."""
    if os.environ.get("NO_COLOR"):  # https://no-color.org: set and not empty; every command echoes through click
        ctx.color = False


def run() -> None:
    """The `envkit` executable: SIGTERM becomes envkit.exitcodes.Terminated, then the commands run.
    (Training replaces the handler with a checkpoint-and-stop of its own while it trains.)"""
    signal.signal(signal.SIGTERM, raise_terminated)
    main()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (schema envkit.doctor/1).")
@click.option("--facts", "facts_file", type=click.Path(dir_okay=False), help="Replay a saved facts file instead of probing.")
@click.option("--dump-facts", metavar="FILE", help="Write the probed facts to FILE (JSON; - for stdout).")
@click.option("--target", metavar="GPU", help="Check against a catalog GPU (h100, b200, gb10, ...) instead of this machine's.")
@click.option("--target-count", default=1, show_default=True, type=click.IntRange(1, 64), help="How many target GPUs.")
@click.option("--no-gpu", is_flag=True, help="Do not probe GPUs (image builds, CI).")
@click.option("--section", "sections", multiple=True, type=click.Choice(["hardware", "driver", "packages", "rl"]),
              help="Run only the checks of this section (repeatable); e.g. packages in an image build.")
@click.option("--explain", metavar="ID", help="Print the documentation of a check (EK301 or vllm-torch) and exit.")
@click.option("--fix", "show_fix", is_flag=True, help="Print one pip command that repairs every package finding.")
@click.option("--yes", is_flag=True, help="With --fix: run that command.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
@click.option("-v", "--verbose", is_flag=True, help="Show evidence of passing checks and the checks not applicable.")
def doctor(as_json, facts_file, dump_facts, target, target_count, no_gpu, sections, explain, show_fix, yes, strict, verbose) -> None:
    """Check this machine for GRPO training with vLLM generation.

    Exit codes: 0 no failure, 1 a failure (--strict: or a warning), 2 usage error.
    """
    from envkit.doctor import Options, run_doctor

    code = run_doctor(Options(as_json, facts_file, dump_facts, target, target_count, no_gpu, explain, show_fix, yes, strict, verbose, sections))
    sys.exit(code)
