"""``tora2 batch MANIFEST --out DIR``: many generation jobs, one model load, resumable, shardable.

The command wires the library's runner (``tora2.batch``) to the pipeline and the entity encoders:
the model is loaded once per process (lazily: a rerun with nothing left to do loads nothing), each
reference photo is segmented and encoded once per process and cached on disk across runs
(``EntityCache``), and jobs with equal sizes, settings and entities share one batched forward.
Under ``torchrun``/``accelerate launch`` each process takes its shard (RANK/WORLD_SIZE) and uses
GPU LOCAL_RANK; see docs/batch.md.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import typer

from cli.errors import handle_errors
from tora2.errors import InputError


class PipelineBackend:
    """The runner's four callables on top of ``Tora2Pipeline`` and ``entities``."""

    def __init__(self, model: str | None, out_dir: Path, device: str | None):
        self.model = model
        self.out_dir = out_dir
        self.device = device
        self.pipe = None
        self.model_id = None
        self.cache = None
        self.prepared: dict[tuple, object] = {}  # (image, text, kind) → PreparedEntity with tokens
        self.load_seconds = 0.0

    def load(self):
        if self.pipe is None:
            from entities import EntityCache
            from tora2.pipelines.embedded import load_pipeline

            # Component classes must be imported before from_pretrained can name them.
            import tora2.models.encoders  # noqa: F401
            import tora2.models.personalization  # noqa: F401
            import tora2.models.transformer_tora2  # noqa: F401
            from tora2.batch.runner import AbortBatch

            start = time.perf_counter()
            try:
                self.pipe, self.model_id = load_pipeline(self.model)
            except InputError as error:
                raise AbortBatch(str(error)) from None  # every job would fail the same way: stop
            if self.device is not None:
                self.pipe.to(self.device)
            self.pipe.set_progress_bar_config(disable=True)  # the batch has its own bar, over jobs
            from cli.generate import MOTION_CACHE_BYTES

            self.pipe.enable_motion_modulation_cache(max_bytes=MOTION_CACHE_BYTES)
            self.cache = EntityCache()
            self.load_seconds = time.perf_counter() - start
        return self.pipe

    # -- Backend.check
    def check(self, job) -> None:
        from tora2.pipelines.conditioning import check_frame_size

        pipe = self.load()
        check_frame_size(pipe.vae, pipe.transformer.config.patch_size, job.num_frames, job.height, job.width)
        if len(job.entities) > pipe.max_entities:
            raise InputError(f"{len(job.entities)} entities but model {self.model_id} supports at most {pipe.max_entities}; drop some")
        if any(e.image is not None for e in job.entities) and pipe.image_encoder is None:
            raise InputError(f"model {self.model_id} has no image_encoder to encode entity images; use a model folder that has one")

    # -- Backend.prepare: entity photos → EntitySpec with tokens, each photo once per process
    def prepare(self, job):
        from entities import encode_entity, load_prepared, prepare_entity
        from tora2.specs import EntitySpec

        pipe = self.load()
        specs = []
        for entity in job.entities:
            if entity.image is None:
                specs.append(EntitySpec(entity.text, trajectory=entity.trajectory, visible=entity.visible, kind=entity.kind))
                continue
            key = (entity.image, entity.text, entity.kind)
            if key not in self.prepared:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # GrabCut fallback notes stay in prepared.meta
                    if Path(entity.image).is_dir():
                        prepared = load_prepared(entity.image)
                        if entity.kind != "auto":
                            prepared.kind = entity.kind
                        prepared.text = entity.text
                    else:
                        prepared = prepare_entity(entity.image, entity.text, kind=entity.kind)
                    tokens = encode_entity(prepared, pipe.image_encoder, pipe.face_encoder, cache=self.cache)
                self.prepared[key] = (prepared, tokens)
            prepared, tokens = self.prepared[key]
            spec = prepared.to_spec(trajectory=entity.trajectory, visible=entity.visible)
            spec.tokens = tokens
            specs.append(spec)
        return specs

    # -- Backend.batch_key: jobs of one shape share a forward (each prompt brings its own entities)
    @staticmethod
    def batch_key(job):
        return (job.shape, job.negative_prompt is None)

    # -- Backend.generate: one batched forward
    def generate(self, jobs, prepared):
        import torch

        pipe = self.load()
        first = jobs[0]
        kwargs = {}
        if first.num_inference_steps is not None:
            kwargs["num_inference_steps"] = first.num_inference_steps
        if first.guidance_scale is not None:
            kwargs["guidance_scale"] = first.guidance_scale
        negative = None
        if any(j.negative_prompt is not None for j in jobs):
            negative = [j.negative_prompt or "" for j in jobs]
        result = pipe(
            [j.prompt for j in jobs], entities=list(prepared), negative_prompt=negative,
            num_frames=first.num_frames, height=first.height, width=first.width,
            generator=[torch.Generator("cpu").manual_seed(j.seed) for j in jobs],
            output_type="np", **kwargs,
        )  # CPU generators: the same noise on every device, as in tora2 generate
        return list(result.frames)  # B × (F, H, W, 3) in [0, 1]

    # -- Backend.write: the video (to the runner's temporary path), then its sidecar
    def write(self, job, frames, path: Path) -> None:
        from tora2.pipelines.video_io import sidecar_path, write_json_atomic, write_video

        write_video(frames, path, job.fps)
        final = self.out_dir / job.output
        sidecar = {
            "job": job.id, "prompt": job.prompt, "negative_prompt": job.negative_prompt, "seed": job.seed,
            "model": self.model_id, "num_frames": job.num_frames, "height": job.height, "width": job.width,
            "fps": job.fps, "num_inference_steps": job.num_inference_steps, "guidance_scale": job.guidance_scale,
            "entities": [{"text": e.text, "image": e.image, "kind": e.kind,
                          "points": None if e.trajectory is None else e.trajectory.round(2).tolist()} for e in job.entities],
            "fingerprint": job.fingerprint,
        }
        write_json_atomic(sidecar, sidecar_path(final))

    def runner_backend(self):
        from tora2.batch import Backend

        return Backend(generate=self.generate, write=self.write, prepare=self.prepare, check=self.check,
                       batch_key=self.batch_key)


def _sample_size(model: str | None) -> tuple[int, int, int]:
    """The model's (num_frames, height, width), read from its config files (no weights loaded)."""
    from cli.generate import _model_info
    from tora2.pipelines.embedded import resolve_model

    info = _model_info(resolve_model(model)[0])
    return info.frames, info.height, info.width


@handle_errors
def batch(
    manifest: Path = typer.Argument(..., help="Job manifest: .yaml (defaults + jobs) or .jsonl (one job a line)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: videos, sidecars and the ledger."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", min=1, help="Jobs per forward pass (jobs of the same shape and entities)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run jobs that failed in an earlier run again."),
    merge: bool = typer.Option(False, "--merge", help="Only merge the per-rank ledger shards in --out and print the summary."),
    model: Optional[Path] = typer.Option(None, "--model", help="Tora2 pipeline folder; overrides the manifest's model."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A progress bar with ETA over the jobs."),
):
    """Run every job of MANIFEST into --out; finished jobs are skipped, failed ones recorded."""
    from tora2.batch import distributed_env, finish, format_summary, init_distributed, merge_ledgers, run_batch, summarize
    from tora2.batch.manifest import manifest_model, parse_manifest, read_manifest_data

    env = distributed_env()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is a file; pass a folder")
    data = read_manifest_data(manifest)
    model_path = str(model) if model is not None else manifest_model(data, manifest.parent, str(manifest))
    jobs = parse_manifest(data, base=manifest.parent, source=str(manifest), sample_size=_sample_size(model_path))

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

    device = f"cuda:{env.local_rank}" if torch.cuda.is_available() else None
    grouped = init_distributed(env)
    backend = PipelineBackend(model_path, out, device)
    report = run_batch(jobs, out, backend.runner_backend(), batch_size=batch_size, retry_failed=retry_failed,
                       env=env, progress=progress)
    merged = finish(env, out, grouped)
    if merged:  # one process, or rank 0 after the barrier: the whole manifest
        rows = summarize(jobs, out)
    else:  # this rank's shard; `tora2 batch --merge` shows the whole manifest
        rows = summarize(jobs, out, [j for j in jobs.jobs if j.id in {r.id for r in report.results}])
    prefix = f"[rank {env.rank}] " if env.distributed else ""
    typer.echo(prefix + format_summary(rows, report).replace("\n", "\n" + prefix))
    if backend.pipe is not None:
        print(f"{prefix}model {backend.model_id} loaded in {backend.load_seconds:.1f} s; entity cache "
              f"{backend.cache.hits} hits, {backend.cache.misses} misses", file=sys.stderr)
    if not merged and env.distributed and env.is_main:
        print(f"{prefix}ledger shards left in {out}: merge them with `tora2 batch {manifest} --out {out} --merge`",
              file=sys.stderr)
    if any(r.status != "done" for r in rows):
        raise typer.Exit(1)


if __name__ == "__main__":  # `python -m cli.batch MANIFEST --out DIR`: the same command, standalone
    typer.run(batch)
