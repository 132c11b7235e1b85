"""The batch ledger: an append-only JSONL log of what happened to each job.

One record a line::

    {"job": "park:seed0", "fingerprint": "…", "status": "running" | "done" | "failed",
     "output": "park_seed0.mp4", "sha256": "…", "bytes": 12345, "seconds": 1.9,
     "error": "…", "rank": 0, "time": 1763700000.1}

A job's state is its last record (by file order within a shard, by ``time`` across shards) whose
``fingerprint`` matches the current manifest; an edited job therefore starts fresh.

Crash safety: every record is one ``write`` of one line to a file opened with ``O_APPEND``, flushed
and fsynced before the job it announces is considered finished. A kill can at worst leave a torn
last line, which readers skip. A job whose last record is ``running`` was in flight when the run
died: it is pending again.

Several processes: rank ``r`` appends only to ``ledger.rank<r>.jsonl``; readers read the merged
``ledger.jsonl`` plus every shard, so the state is right whether or not shards were merged.
:func:`merge_ledgers` folds the shards into ``ledger.jsonl`` (atomically: temp file + rename) and
removes them; it is idempotent, so a crash between the rename and the removals repeats harmlessly.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tora2.io import atomic_output

LEDGER_NAME = "ledger.jsonl"
SHARD_GLOB = "ledger.rank*.jsonl"
STATUSES = ("running", "done", "failed")


def shard_path(out_dir: str | os.PathLike, rank: int) -> Path:
    return Path(out_dir) / f"ledger.rank{rank}.jsonl"


def ledger_files(out_dir: str | os.PathLike) -> list[Path]:
    """The merged ledger (if any) followed by every rank shard, in rank order."""
    out_dir = Path(out_dir)
    shards = sorted(out_dir.glob(SHARD_GLOB), key=lambda p: _rank_of(p))
    merged = out_dir / LEDGER_NAME
    return ([merged] if merged.is_file() else []) + shards


def _rank_of(path: Path) -> int:
    digits = path.name[len("ledger.rank"):-len(".jsonl")]
    return int(digits) if digits.isdigit() else 1 << 30


def read_records(path: str | os.PathLike) -> list[dict]:
    """Every whole record of one ledger file; torn or foreign lines are skipped."""
    records = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write
        if isinstance(record, dict) and isinstance(record.get("job"), str) and record.get("status") in STATUSES:
            records.append(record)
    return records


def read_all(out_dir: str | os.PathLike) -> list[dict]:
    """Records of the merged ledger and all shards, in time order (stable within a file)."""
    records = [r for path in ledger_files(out_dir) for r in read_records(path)]
    return sorted(records, key=lambda r: float(r.get("time", 0.0)))


def latest(records: list[dict]) -> dict[tuple[str, str], dict]:
    """(job id, fingerprint) → that job's last record."""
    state: dict[tuple[str, str], dict] = {}
    for record in records:
        state[(record["job"], record.get("fingerprint", ""))] = record
    return state


class Ledger:
    """Appends this process's records to its own shard and answers "what is this job's state?"."""

    def __init__(self, out_dir: str | os.PathLike, rank: int = 0):
        self.out_dir = Path(out_dir)
        self.rank = rank
        self.path = shard_path(self.out_dir, rank)
        self.state = latest(read_all(self.out_dir))
        self._torn = _ends_torn(self.path)  # a kill mid-write left half a line: start on a fresh one

    def last(self, job_id: str, fingerprint: str) -> dict | None:
        return self.state.get((job_id, fingerprint))

    def append(self, job_id: str, fingerprint: str, status: str, **fields) -> dict:
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        record = {"job": job_id, "fingerprint": fingerprint, "status": status, **fields,
                  "rank": self.rank, "time": round(time.time(), 6)}
        line = ("\n" if self._torn else "") + json.dumps(record, sort_keys=False) + "\n"
        self._torn = False
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one write of one line: concurrent appenders never interleave lines
            os.fsync(fd)
        finally:
            os.close(fd)
        self.state[(job_id, fingerprint)] = record
        return record


def _ends_torn(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False


def merge_ledgers(out_dir: str | os.PathLike) -> Path:
    """Fold every rank shard into ``ledger.jsonl`` (time order, exact duplicates dropped), remove them."""
    out_dir = Path(out_dir)
    files = ledger_files(out_dir)
    shards = [p for p in files if p.name != LEDGER_NAME]
    merged = out_dir / LEDGER_NAME
    if not shards:
        return merged
    seen: set[str] = set()
    lines = []
    for record in read_all(out_dir):
        line = json.dumps(record, sort_keys=True)
        if line not in seen:
            seen.add(line)
            lines.append(line)
    with atomic_output(merged, suffix=".tmp", make_parents=False) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())  # the shards are deleted next: the merged ledger must be on disk
    for shard in shards:
        shard.unlink(missing_ok=True)
    return merged


# ---------------------------------------------------------------------------------------------- outputs


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class OutputCheck:
    intact: bool
    reason: str  # "" when intact, else why the job must run again


def check_output(out_dir: str | os.PathLike, record: dict) -> OutputCheck:
    """Is a ``done`` record's output still there, with the size and hash it was written with?"""
    path = Path(out_dir) / record.get("output", "")
    if not record.get("output") or not path.is_file():
        return OutputCheck(False, "output missing")
    if path.stat().st_size != record.get("bytes"):
        return OutputCheck(False, "output size changed")
    if file_sha256(path) != record.get("sha256"):
        return OutputCheck(False, "output hash changed")
    return OutputCheck(True, "")


__all__ = ["LEDGER_NAME", "Ledger", "check_output", "file_sha256", "latest", "ledger_files", "merge_ledgers",
           "read_all", "read_records", "shard_path"]
