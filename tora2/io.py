"""Atomic file output: every file tora2 writes goes to a temporary file beside its target and is
renamed into place only when complete, so an interrupted run never leaves a partial file and
concurrent writers never interleave (the last complete rename wins)."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str | None = None, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (mode 0644), on any
    exception (KeyboardInterrupt included) it is removed. ``suffix`` defaults to the target's, so
    writers that pick a format by extension (imageio, PIL, numpy) still work."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(data: Any, path: str | os.PathLike, indent: int = 2) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=indent, default=str) + "\n")
