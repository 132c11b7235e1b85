"""``tora2``: the Typer app. Each command group lives in its own module; each command is a thin
call into the library wrapped by ``cli.errors.handle_errors`` (one-line errors, exit code 2 for bad
input, ``TORA2_DEBUG=1`` for the traceback)."""

from __future__ import annotations

import os
import sys

import tora2  # noqa: F401  (applies the torchvision shim before anything imports torchvision)
import typer

from cli import batch, convert, data, entity, generate, info, studio, synth, track
from cli import eval as eval_cli
from cli.errors import interrupted, restore_interrupt
from cli import train as train_cli

app = typer.Typer(
    name="tora2",
    help="Multi-entity, trajectory-controlled, appearance-personalised video generation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("generate")(generate.generate)
app.command("convert-tora")(convert.convert_tora)
app.command("batch")(batch.batch)
app.command("info")(info.info)
app.add_typer(track.app, name="track")
app.add_typer(entity.app, name="entity")
train_cli.register(app)  # train, finetune
data.app.command("synth")(synth.synth)
app.add_typer(data.app, name="data")
app.command("eval")(eval_cli.evaluate)
app.command("studio")(studio.studio)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``tora2``). Usage errors (unknown option, ``--frames abc``) come out in the
    same one-line ``error:`` form as every other bad input, with exit code 2."""
    try:  # typer ≥ 0.20 vendors click as typer._click
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover
        from click import exceptions as click

    restore_interrupt()  # as early as possible: a process started with SIGINT ignored can still be stopped
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="tora2", standalone_mode=False)
    except click.UsageError as error:
        where = error.ctx.command_path if error.ctx is not None else "tora2"
        message = " ".join(error.format_message().split())
        print(f"error: {message} (see `{where} --help`)", file=sys.stderr)
        sys.exit(2)
    except click.ClickException as error:
        print(f"error: {' '.join(error.format_message().split())}", file=sys.stderr)
        sys.exit(error.exit_code)
    except BaseException as error:  # Ctrl-C (click's Abort, or wrapped by an import it struck) is one line too
        if isinstance(error, SystemExit) or not (interrupted(error) or type(error).__name__ == "Abort"):
            raise
        print("error: interrupted", file=sys.stderr)
        code = 130
    _exit(code if isinstance(code, int) else 0)


def _exit(code: int) -> None:
    """Exit with ``code``. After Ctrl-C (130) leave before the interpreter's finalisation: a SIGINT
    that struck inside torch's C code could still turn the exit into death by signal (status −2,
    measured 1 run in 4 of a 2000-step generate) after the one-line error was printed; every output
    is already written atomically or removed by then."""
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    main()
