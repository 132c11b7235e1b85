"""``tora2 batch MANIFEST --out DIR``: many generation jobs, one model load, resumable, shardable.

The command wires the library's runner (``tora2.batch``) to ``entities.generation.GenerationBackend``,
the same machinery as ``tora2 generate``: every job is checked (sizes, memory, files) before any runs,
the model is loaded once per process (lazily: a rerun with nothing left to do loads nothing), each
reference photo is segmented and encoded once per process and cached on disk across runs, and jobs
with equal sizes, settings and entities share one batched forward.
Under ``torchrun``/``accelerate launch`` each process takes its shard (RANK/WORLD_SIZE) and uses
GPU LOCAL_RANK; see docs/batch.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from cli.errors import handle_errors, progress_default
from tora2.errors import InputError


@handle_errors
def batch(
    manifest: Path = typer.Argument(..., help="Job manifest: .yaml (defaults + jobs) or .jsonl (one job a line)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: videos, sidecars and the ledger."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", help="Jobs per forward pass, 1–64 (jobs of the same shape and entities)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run jobs that failed in an earlier run again."),
    merge: bool = typer.Option(False, "--merge", help="Only merge the per-rank ledger shards in --out and print the summary."),
    model: Optional[Path] = typer.Option(None, "--model", help="Tora2 pipeline folder; overrides the manifest's model."),
    sam: Optional[Path] = typer.Option(None, "--sam", help="SAM checkpoint (.pth) to segment entity photos; without it GrabCut is used."),
    sam_type: str = typer.Option("vit_b", "--sam-type", help="SAM model type of --sam: vit_b, vit_l or vit_h."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="A progress bar with ETA over the jobs (default: on when stderr is a terminal)."),
):
    """Run every job of MANIFEST into --out; finished jobs are skipped, failed ones recorded."""
    from entities.generation import GenerationBackend
    from tora2.batch import distributed_env, finish, format_summary, init_distributed, merge_ledgers, run_batch, summarize
    from tora2.batch.manifest import manifest_model, parse_manifest, read_manifest_data
    from tora2.requests import check_integer

    check_integer(batch_size, "--batch-size", 1, 64)
    env = distributed_env()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is a file; pass a folder")
    data = read_manifest_data(manifest)
    model_path = str(model) if model is not None else manifest_model(data, manifest.parent, str(manifest))
    device = None  # set per rank below, once torch is needed
    backend = GenerationBackend(model_path, out_dir=out, batch_size=batch_size, progress=False,
                                sam_checkpoint=None if sam is None else str(sam), sam_model_type=sam_type)
    info = backend.info
    jobs = parse_manifest(data, base=manifest.parent, source=str(manifest), sample_size=(info.frames, info.height, info.width))

    if merge:
        if env.distributed:
            raise InputError("--merge runs in one process; run it without torchrun / RANK / WORLD_SIZE")
        merge_ledgers(out)
        rows = summarize(jobs, out)
        typer.echo(format_summary(rows))
        if any(r.status != "done" for r in rows):
            raise typer.Exit(1)
        return

    import torch

    if torch.cuda.is_available():
        backend.device = device = f"cuda:{env.local_rank}"
    grouped = init_distributed(env)
    report = run_batch(jobs, out, backend.runner_backend(), batch_size=batch_size, retry_failed=retry_failed,
                       env=env, progress=progress_default(progress))
    merged = finish(env, out, grouped)
    if merged:  # one process, or rank 0 after the barrier: the whole manifest
        rows = summarize(jobs, out)
    else:  # this rank's shard; `tora2 batch --merge` shows the whole manifest
        rows = summarize(jobs, out, [j for j in jobs.jobs if j.id in {r.id for r in report.results}])
    prefix = f"[rank {env.rank}] " if env.distributed else ""
    typer.echo(prefix + format_summary(rows, report).replace("\n", "\n" + prefix))
    if backend.pipe is not None:
        cache = backend.resolver.cache
        print(f"{prefix}model {backend.model_id} loaded in {backend.load_seconds:.1f} s on {device or 'cpu'}; "
              f"entity cache {cache.hits} hits, {cache.misses} misses", file=sys.stderr)
    if not merged and env.distributed and env.is_main:
        print(f"{prefix}ledger shards left in {out}: merge them with `tora2 batch {manifest} --out {out} --merge`",
              file=sys.stderr)
    if any(r.status != "done" for r in rows):
        raise typer.Exit(1)


if __name__ == "__main__":  # `python -m cli.batch MANIFEST --out DIR`: the same command, standalone
    typer.run(batch)
