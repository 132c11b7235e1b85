"""The ``tora2`` console entry point as a user meets it: usage errors, progress bars, Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAR = REPO / "examples" / "entities" / "yellow_star.png"
CIRCLE = REPO / "examples" / "tracks" / "tora_circle.txt"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def tora2(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300, **kwargs)


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "-p", "x", "--frames", "abc"], "error: Invalid value for '--frames' / '-f': "),
        (["generate", "-p", "x", "--no-such-flag"], "error: No such option: --no-such-flag"),
        (["generate"], "error: Missing option '--prompt' / '-p'. (see `tora2 generate --help`)"),
        (["no-such-command"], "error: No such command 'no-such-command'. (see `tora2 --help`)"),
        (["batch", "--batch-size", "two", "jobs.yaml", "--out", "o"], "error: Invalid value for '--batch-size' / '-b': "),
    ],
)
def test_usage_errors_are_one_line(args, message):
    result = tora2(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""


def generate_args(out: Path, steps: int = 2) -> list:
    return ["generate", "-p", "a yellow star", "--entity", STAR, "--path", CIRCLE, "--steps", steps, "--seed", 0,
            "-o", out]


def test_no_progress_bar_escape_codes_when_not_a_terminal(tmp_path):
    quiet = tora2(*generate_args(tmp_path / "a.mp4"))  # stderr is a pipe: bars off by default
    assert quiet.returncode == 0, quiet.stderr
    assert "\r" not in quiet.stderr and "\x1b[" not in quiet.stderr and "it/s" not in quiet.stderr
    assert "Loading pipeline components" not in quiet.stderr
    loud = tora2(*generate_args(tmp_path / "b.mp4"), "--progress")
    assert loud.returncode == 0 and "denoising" in loud.stderr  # --progress forces them on
    silent = tora2(*generate_args(tmp_path / "c.mp4"), "--no-progress")
    assert silent.returncode == 0 and "\r" not in silent.stderr and "denoising" not in silent.stderr


def test_eval_has_no_bar_escape_codes_when_not_a_terminal(tmp_path):
    args = ["eval", "--cases", 1, "--steps", 1, "-o", tmp_path / "r.json"]  # the embedded model
    quiet = tora2(*args)
    assert quiet.returncode == 0, quiet.stderr
    assert "\r" not in quiet.stderr and "\x1b[" not in quiet.stderr and "Loading pipeline components" not in quiet.stderr
    loud = tora2(*args, "--progress")
    assert loud.returncode == 0 and "evaluating" in loud.stderr and "s/step" not in loud.stderr  # cases, not every step


@pytest.mark.parametrize("delay", [0.0, 5.0], ids=["while-importing", "while-loading-or-denoising"])
def test_ctrl_c_stops_generate_even_when_started_with_sigint_ignored(tmp_path, delay):
    out = tmp_path / "long.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", *map(str, generate_args(out, steps=1000))], cwd=REPO,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # as `cmd &` in a script
    try:
        while "entities:" not in (proc.stderr.readline() or "entities:"):
            pass  # the plan is printed before the model loads
        time.sleep(delay)  # 0: in the middle of importing torch (Ctrl-C then comes out wrapped); 5: loading or denoising
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "error: interrupted"
    assert not out.exists() and not list(tmp_path.iterdir())  # no partial output


def test_an_interrupt_wrapped_by_an_import_is_still_an_interrupt():
    from cli.errors import interrupted

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as inner:
            raise RuntimeError("Error calling __set_name__") from inner
    except RuntimeError as outer:
        assert interrupted(outer)
    assert not interrupted(RuntimeError("plain"))
