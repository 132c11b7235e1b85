"""One error boundary for every command: project errors become one line and an exit code.

Applied as a decorator (``@handle_errors``) under ``@app.command()`` so that the behaviour is the same
through the console script and through ``typer.testing.CliRunner``.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Callable, TypeVar

import typer

from tora2.errors import InputError, Tora2Error

F = TypeVar("F", bound=Callable)

INPUT_ERRORS = (InputError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code=code)


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    return text.splitlines()[0] if text else type(error).__name__


def interrupted(error: BaseException) -> bool:
    """Ctrl-C, also when it struck inside an import and came out wrapped in another exception."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def progress_default(progress: bool | None) -> bool:
    """``--progress/--no-progress`` unset: bars only when stderr is a terminal (no escape codes in logs)."""
    return sys.stderr.isatty() if progress is None else progress


def restore_interrupt() -> None:
    """Ctrl-C stops a command even when it was started with SIGINT ignored (``cmd &`` in a script, nohup)."""
    try:
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL):
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: leave the handler to the caller
        pass


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        restore_interrupt()
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except INPUT_ERRORS as error:
            if os.environ.get("TORA2_DEBUG") == "1":
                raise
            raise fail(_one_line(error), code=2) from None
        except Tora2Error as error:
            if os.environ.get("TORA2_DEBUG") == "1":
                raise
            raise fail(_one_line(error), code=1) from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=130) from None
        except Exception as error:
            if interrupted(error):
                raise fail("interrupted", code=130) from None
            raise

    return wrapper  # type: ignore[return-value]
