"""Run a manifest's jobs: skip finished ones, batch equal shapes, write atomically, log to the ledger.

The runner knows nothing about models. A :class:`Backend` supplies four callables:

* ``check(job)``: model-specific validation (sizes the VAE and patching can take); raise
  ``InputError``.
* ``prepare(job)``: the job's conditioning (entity photos → specs/tokens, cached across jobs).
* ``generate(jobs, prepared)``: one batched forward pass; returns one result per job.
* ``write(job, result, path)``: write the result (a video) to ``path``.
* ``batch_key(job)``: jobs with equal keys may share one forward (default: equal sizes and settings).

Recipe of :func:`run_batch`:

1. Read every ledger file of ``out_dir``; take this rank's shard of the manifest.
2. Skip units whose last record is ``done`` with the output present and unchanged (size and
   sha256), and units whose last record is ``failed`` unless ``retry_failed``.
3. Record invalid units (manifest errors, ``check``) as failed; the others go on.
4. Group the rest by shape, cut into batches of ``batch_size``; for each batch: record ``running``,
   prepare, generate, then per job write to a temporary file beside the output, hash it, rename it
   into place and record ``done``. A failing batch is retried one job at a time so that one bad
   job does not fail its neighbours.

A kill loses at most the batch in flight: its ``running`` records have no ``done`` after them, so
the next run does them again; a half-written video is only ever a hidden temporary file.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tora2.batch.ledger import Ledger, check_output, file_sha256, latest, merge_ledgers, read_all
from tora2.batch.manifest import Job, Manifest
from tora2.batch.sharding import DistributedEnv, group_batches, shard
from tora2.errors import InputError, Tora2Error


class AbortBatch(InputError):
    """An error that concerns every job (the model cannot be loaded): the run stops instead of
    recording it against each job. Already-finished jobs keep their records."""


@dataclass
class Backend:
    generate: Callable[[list[Job], list[Any]], list[Any]]
    write: Callable[[Job, Any, Path], None]
    prepare: Callable[[Job], Any] = lambda job: None
    check: Callable[[Job], None] = lambda job: None
    batch_key: Callable[[Job], Any] = lambda job: job.shape  # jobs with equal keys may share a forward


@dataclass
class JobResult:
    id: str
    status: str  # "done", "failed", "skipped" (already done), "pending" (not run: earlier failure)
    output: str | None = None
    seconds: float | None = None
    error: str | None = None


@dataclass
class RunReport:
    """What one process did. ``results`` covers this rank's shard, in manifest order."""

    rank: int
    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> int:
        return self.count("failed")


def one_line(error: BaseException) -> str:
    """An exception as one line; library errors keep their message, others get their type too."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, Tora2Error) or (isinstance(error, ValueError) and text):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_batch(
    manifest: Manifest,
    out_dir: str | os.PathLike,
    backend: Backend,
    *,
    batch_size: int = 1,
    retry_failed: bool = False,
    env: DistributedEnv = DistributedEnv(),
    progress: bool = False,
) -> RunReport:
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_dir, env.rank)
    ledger = Ledger(out_dir, env.rank)
    report = RunReport(rank=env.rank)
    results: dict[str, JobResult] = {}

    # 1-3. this rank's units: skip finished, record invalid, keep the rest.
    mine = shard(manifest.jobs, env.rank, env.world_size)
    pending: list[Job] = []
    for job in mine:
        last = ledger.last(job.id, job.fingerprint)
        if last is not None and last["status"] == "done" and check_output(out_dir, last).intact:
            results[job.id] = JobResult(job.id, "skipped", last.get("output"), last.get("seconds"))
        elif last is not None and last["status"] == "failed" and not retry_failed:
            results[job.id] = JobResult(job.id, "failed", job.output, None, last.get("error"))
        else:
            pending.append(job)

    bar = _progress_bar(len(mine), len(mine) - len(pending), env, enabled=progress)
    try:
        valid = []
        for job in pending:
            error = job.error
            if error is None:
                try:
                    backend.check(job)
                except AbortBatch:
                    raise
                except Exception as exc:  # noqa: BLE001  (any failure is this job's, recorded, and the run goes on)
                    error = one_line(exc)
            if error is not None:
                results[job.id] = _fail(ledger, job, error)
                bar.update(1)
            else:
                valid.append(job)

        # 4. batches of equal shape.
        for batch in group_batches(valid, key=backend.batch_key, batch_size=batch_size):
            for result in _run_batch(batch, backend, ledger, out_dir):
                results[result.id] = result
                bar.update(1)
    finally:
        bar.close()
    report.results = [results.get(j.id, JobResult(j.id, "pending", j.output)) for j in mine]
    report.seconds = time.perf_counter() - start
    return report


def _run_batch(batch: list[Job], backend: Backend, ledger: Ledger, out_dir: Path) -> list[JobResult]:
    for job in batch:
        ledger.append(job.id, job.fingerprint, "running", output=job.output, batch=len(batch))
    start = time.perf_counter()
    prepared, ready, results = [], [], []
    for job in batch:
        try:
            prepared.append(backend.prepare(job))
            ready.append(job)
        except AbortBatch:
            raise
        except Exception as exc:  # noqa: BLE001
            results.append(_fail(ledger, job, one_line(exc)))
    if not ready:
        return results
    try:
        outputs = backend.generate(ready, prepared)
        if len(outputs) != len(ready):
            raise RuntimeError(f"the backend returned {len(outputs)} results for {len(ready)} jobs")
    except AbortBatch:
        raise
    except Exception as exc:  # noqa: BLE001
        if len(ready) == 1:
            return results + [_fail(ledger, ready[0], one_line(exc))]
        # Isolate the culprit: run the batch again one job at a time.
        return results + [r for job in ready for r in _run_batch([job], backend, ledger, out_dir)]
    share = (time.perf_counter() - start) / len(ready)  # the batch's time, split evenly
    for job, output in zip(ready, outputs):
        write_start = time.perf_counter()
        try:
            digest, size = _write_atomic(backend, job, output, out_dir, ledger.rank)
        except Exception as exc:  # noqa: BLE001
            results.append(_fail(ledger, job, one_line(exc)))
            continue
        seconds = round(share + time.perf_counter() - write_start, 4)
        ledger.append(job.id, job.fingerprint, "done", output=job.output, sha256=digest, bytes=size,
                      seconds=seconds, batch=len(ready))
        results.append(JobResult(job.id, "done", job.output, seconds))
    return results


def _fail(ledger: Ledger, job: Job, error: str) -> JobResult:
    ledger.append(job.id, job.fingerprint, "failed", output=job.output, error=error)
    return JobResult(job.id, "failed", job.output, None, error)


TEMP_MARK = ".tora2-rank"


def _write_atomic(backend: Backend, job: Job, output: Any, out_dir: Path, rank: int) -> tuple[str, int]:
    """Write to a hidden temporary file beside the output, hash it, then rename it into place."""
    final = out_dir / job.output
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}{TEMP_MARK}{rank}.", suffix=final.suffix)
    os.close(fd)
    tmp = Path(tmp)
    try:
        backend.write(job, output, tmp)
        digest, size = file_sha256(tmp), tmp.stat().st_size
        if size == 0:
            raise RuntimeError(f"writing {job.output} produced an empty file")
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest, size


def _remove_stale_temporaries(out_dir: Path, rank: int) -> None:
    """Temporary files this rank left behind when it was killed (other ranks' are theirs)."""
    for path in out_dir.rglob(f".*{TEMP_MARK}{rank}.*"):
        if path.is_file():
            path.unlink(missing_ok=True)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, initial: int, env: DistributedEnv, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    desc = f"rank {env.rank}" if env.distributed else "jobs"
    return tqdm(total=total, initial=initial, desc=desc, unit="job", position=env.rank if env.distributed else None,
                file=sys.stderr, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------- all ranks


def init_distributed(env: DistributedEnv) -> bool:
    """Join the launcher's process group (gloo: it only carries a barrier) when one is configured.

    ``torchrun`` and ``accelerate launch`` set ``MASTER_ADDR``/``MASTER_PORT``; processes started
    with only ``RANK``/``WORLD_SIZE`` have no group, and their shards are merged later.
    """
    if not env.distributed or "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        return False
    import datetime

    import torch.distributed as dist

    if not dist.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=env.rank, world_size=env.world_size,
                                timeout=datetime.timedelta(hours=24))  # a rank may render for hours
    return True


def finish(env: DistributedEnv, out_dir: str | os.PathLike, grouped: bool) -> bool:
    """After this rank's jobs: merge the ledger shards if this process may. Returns whether it did.

    One process: merge now. A process group: wait for every rank at a barrier, rank 0 merges. Ranks
    without a group leave their shards; ``tora2 batch --merge`` (or the next single-process run)
    merges them.
    """
    if not env.distributed:
        merge_ledgers(out_dir)
        return True
    if not grouped:
        return False
    import torch.distributed as dist

    dist.barrier()
    if env.is_main:
        merge_ledgers(out_dir)
    dist.barrier()  # nobody reads the shards while rank 0 removes them
    return env.is_main


# ---------------------------------------------------------------------------------------------- summaries


@dataclass
class SummaryRow:
    id: str
    status: str  # done, failed, running (in flight or killed), pending (never ran)
    output: str | None
    seconds: float | None
    error: str | None


def summarize(manifest: Manifest, out_dir: str | os.PathLike, jobs: list[Job] | None = None) -> list[SummaryRow]:
    """The ledger's view of ``jobs`` (default: the whole manifest), with outputs re-checked."""
    state = latest(read_all(out_dir))
    rows = []
    for job in manifest.jobs if jobs is None else jobs:
        last = state.get((job.id, job.fingerprint))
        if last is None:
            rows.append(SummaryRow(job.id, "pending", job.output, None, job.error))
            continue
        status = last["status"]
        error = last.get("error")
        if status == "done" and not (check := check_output(out_dir, last)).intact:
            status, error = "pending", check.reason
        rows.append(SummaryRow(job.id, status, last.get("output"), last.get("seconds"), error))
    return rows


def format_summary(rows: list[SummaryRow], report: RunReport | None = None) -> str:
    """A fixed-width table, then one line of counts."""
    headers = ("job", "status", "seconds", "output / error")
    lines = [[r.id, r.status, f"{r.seconds:.2f}" if r.seconds is not None else "-",
              (r.error if r.status != "done" and r.error else r.output) or "-"] for r in rows]
    widths = [max(len(headers[c]), *(len(line[c]) for line in lines)) if lines else len(headers[c]) for c in range(3)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers[:3], widths)) + "  " + headers[3]]
    out += ["  ".join(v.ljust(w) for v, w in zip(line[:3], widths)) + "  " + line[3] for line in lines]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    total = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    tail = f"{len(rows)} jobs: {total}"
    if report is not None:
        ran = report.count("done")
        tail += f" ({ran} run now, {report.count('skipped')} already done, {report.seconds:.1f} s)"
    return "\n".join(out + [tail])


__all__ = ["AbortBatch", "Backend", "JobResult", "RunReport", "SummaryRow", "finish", "format_summary", "init_distributed",
           "one_line", "run_batch", "summarize"]
