"""From a resolved request to a written video: the one path that ``tora2 generate`` (one job) and
``tora2 batch`` (many jobs, through ``tora2.batch.run_batch``) share.

    Job of EntityRequest (tora2.requests)
      → check_job            sizes, entity count, memory, readable references (no weights loaded)
      → EntityResolver.spec  prepare (segment, crop, kind) → encode → disk cache → EntitySpec with tokens
      → GenerationBackend.generate   Tora2Pipeline, jobs of one shape in one batched forward
      → write_outputs        video (+ overlay), JSON sidecar, each atomically
"""

from __future__ import annotations

import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tora2.errors import InputError
from tora2.pipelines.model_info import ModelInfo, check_memory, check_size
from tora2.requests import EntityRequest, Job

# γ/β held for the whole generation when they fit (small and mid-size models); 5B recomputes them.
MOTION_CACHE_BYTES = 1 << 30
OFFLOAD_MODES = ("model", "sequential")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


# ---------------------------------------------------------------------------------------------- checks


def check_job(job: Job, info: ModelInfo, batch_size: int = 1) -> int:
    """Everything about ``job`` that can be checked without weights; returns the peak-memory estimate.

    Frame and size rules of the model, its entity limit, the estimate against the memory available
    and that every reference image decodes.
    """
    check_size(info.temporal, info.spatial, info.patch_size, job.num_frames, job.height, job.width)
    if len(job.entities) > info.max_entities:
        raise InputError(f"{len(job.entities)} entities given but model {info.path} supports at most "
                         f"{info.max_entities}; drop some")
    check_references(job.entities)
    guidance = job.guidance_scale is None or job.guidance_scale > 1
    return check_memory(info, job.num_frames, job.height, job.width, batch_size, guidance)


def check_references(requests: list[EntityRequest]) -> None:
    """Unreadable or corrupt reference images (and damaged entity folders) fail before the model loads."""
    from entities.images import load_image

    for request in requests:
        if request.image is None:
            continue
        if Path(request.image).is_dir():
            from entities.prepare import load_prepared  # imports the segmenters (torch): only for folders

            load_prepared(request.image)
        else:
            load_image(request.image)


# ---------------------------------------------------------------------------------------------- entities


class EntityResolver:
    """``EntityRequest`` → ``EntitySpec`` with tokens: prepare (or read an entity folder) → encode →
    disk cache (``EntityCache``); each (image, text, kind) once per process."""

    def __init__(self, image_encoder, face_encoder=None, *, sam_checkpoint: str | None = None,
                 sam_model_type: str = "vit_b", warn: Callable[[str], None] = _stderr):
        from entities.cache import EntityCache

        self.image_encoder = image_encoder
        self.face_encoder = face_encoder
        self.sam_checkpoint = sam_checkpoint
        self.sam_model_type = sam_model_type
        self.warn = warn
        self.cache = EntityCache()
        self._done: dict[tuple, tuple] = {}  # (image, text, kind) → (PreparedEntity, EntityTokens)

    def spec(self, request: EntityRequest):
        from entities.encode import encode_entity
        from entities.prepare import load_prepared, prepare_entity
        from tora2.specs import EntitySpec

        if request.image is None:
            return EntitySpec(request.text, trajectory=request.trajectory, visible=request.visible, kind=request.kind)
        if self.image_encoder is None:
            raise InputError("this model has no image_encoder to encode entity images; use a model folder that has one")
        key = (request.image, request.text, request.kind)
        if key not in self._done:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fallbacks are kept in meta["warnings"], reported once below
                if Path(request.image).is_dir():
                    prepared = load_prepared(request.image)
                    prepared.text = request.text
                    if request.kind != "auto":
                        prepared.kind = request.kind
                else:
                    prepared = prepare_entity(request.image, request.text, kind=request.kind,
                                              sam_checkpoint=self.sam_checkpoint, sam_model_type=self.sam_model_type)
                tokens = encode_entity(prepared, self.image_encoder, self.face_encoder, cache=self.cache)
            for message in prepared.meta.get("warnings", []):
                self.warn(f"warning: {request.image}: {message}")
            self._done[key] = (prepared, tokens)
        prepared, tokens = self._done[key]
        spec = prepared.to_spec(trajectory=request.trajectory, visible=request.visible)
        spec.tokens = tokens
        return spec


# ---------------------------------------------------------------------------------------------- backend


@dataclass
class Generated:
    """One job's result: frames (F, H, W, 3) in [0, 1], the specs it was conditioned on, step times."""

    frames: np.ndarray
    specs: list
    step_seconds: list[float] = field(default_factory=list)


class GenerationBackend:
    """The pipeline behind both commands, loaded lazily (a rerun with nothing to do loads nothing).

    As ``tora2.batch.Backend``: ``check`` (no weights), ``prepare``, ``generate``, ``write``, ``batch_key``.
    """

    def __init__(self, model: str | None = None, *, out_dir: str | Path | None = None, device: str | None = None,
                 offload: str | None = None, lora: str | None = None, progress: bool = False,
                 sam_checkpoint: str | None = None, sam_model_type: str = "vit_b", batch_size: int = 1,
                 warn: Callable[[str], None] = _stderr):
        from tora2.pipelines.embedded import resolve_model
        from tora2.pipelines.model_info import read_model_info

        if offload is not None and offload not in OFFLOAD_MODES:
            raise InputError(f"--offload {offload!r} is not one of {', '.join(OFFLOAD_MODES)}")
        if lora is not None and not Path(lora).is_file():
            raise InputError(f"--lora {lora} does not exist; pass a .safetensors LoRA file")
        self.model_dir, self.model_id = resolve_model(model)
        self.info = read_model_info(self.model_dir)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device, self.offload, self.lora = device, offload, lora
        self.progress, self.batch_size, self.warn = progress, batch_size, warn
        self.sam = (sam_checkpoint, sam_model_type)
        self.pipe = None
        self.resolver: EntityResolver | None = None
        self.load_seconds = 0.0

    # -- loading
    def load(self):
        if self.pipe is not None:
            return self.pipe
        import torch

        from tora2.batch.runner import AbortBatch
        from tora2.pipelines.embedded import load_pipeline
        from tora2.progress import set_loading_bars

        if self.offload == "sequential" and not torch.cuda.is_available():
            raise AbortBatch("--offload sequential needs a CUDA GPU; on CPU run without --offload")
        set_loading_bars(self.progress)
        start = time.perf_counter()
        try:
            pipe, _ = load_pipeline(self.model_dir)
        except InputError as error:
            raise AbortBatch(str(error)) from None  # every job would fail the same way: stop
        if self.lora is not None:
            load_lora(pipe, Path(self.lora))
        if self.offload == "model":
            pipe.enable_model_cpu_offload(device=None if torch.cuda.is_available() else "cpu")
        elif self.offload == "sequential":
            pipe.enable_sequential_cpu_offload()
        elif self.device is not None:
            pipe.to(self.device)
        elif torch.cuda.is_available():
            pipe.to("cuda")
        pipe.set_progress_bar_config(desc="denoising", file=sys.stderr, disable=not self.progress)
        pipe.enable_motion_modulation_cache(max_bytes=MOTION_CACHE_BYTES)
        self.resolver = EntityResolver(pipe.image_encoder, pipe.face_encoder, sam_checkpoint=self.sam[0],
                                       sam_model_type=self.sam[1], warn=self.warn)
        self.pipe = pipe
        self.load_seconds = time.perf_counter() - start
        return pipe

    # -- Backend.check: no weights
    def check(self, job: Job) -> None:
        check_job(job, self.info, self.batch_size)

    # -- Backend.prepare: entity photos → EntitySpec with tokens
    def prepare(self, job: Job) -> list:
        self.load()
        return [self.resolver.spec(r) for r in job.entities]

    # -- Backend.batch_key: jobs of one shape share a forward (each prompt brings its own entities)
    @staticmethod
    def batch_key(job: Job):
        return (job.shape, job.negative_prompt is None)

    # -- Backend.generate: one batched forward
    def generate(self, jobs: list[Job], prepared: list[list]) -> list[Generated]:
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
        )  # CPU generators: the same noise on every device
        return [Generated(frames, specs, list(result.step_seconds)) for frames, specs in zip(result.frames, prepared)]

    # -- Backend.write: the video to the runner's temporary ``path``; the sidecar beside the final name
    def write(self, job: Job, result: Generated, path: Path) -> None:
        from tora2.pipelines.video_io import write_video

        write_video(result.frames, path, job.fps)
        final = self.out_dir / job.output if self.out_dir is not None else Path(path)
        write_sidecar(job, result, final, self.model_id, outputs=[final], extra=self.sidecar_extra())

    def sidecar_extra(self) -> dict:
        """Settings of this backend that every sidecar records (the model's own guidance default included)."""
        return {"lora": self.lora, "offload": self.offload,
                "reference_guidance_scale": None if self.pipe is None else self.pipe.effective_reference_guidance()}

    def runner_backend(self):
        from tora2.batch import Backend

        return Backend(generate=self.generate, write=self.write, prepare=self.prepare, check=self.check,
                       batch_key=self.batch_key)


def load_lora(pipe, lora: Path) -> None:
    """LoRA weights (``tora2 finetune`` output, .safetensors) into the pipeline's transformer."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(lora))
    except (SafetensorError, OSError) as error:
        raise InputError(f"--lora {lora} is not a readable safetensors file ({error})") from None
    state = {k.removeprefix("transformer."): v for k, v in state.items()}
    try:
        pipe.transformer.load_lora_adapter(state, prefix=None, adapter_name="lora")
    except (ValueError, KeyError, RuntimeError) as error:
        raise InputError(f"--lora {lora} does not fit this model's transformer: {str(error).splitlines()[0]}") from None


# ---------------------------------------------------------------------------------------------- outputs


def write_outputs(job: Job, result: Generated, output: Path, model_id: str, *, overlay: bool = False,
                  extra: dict | None = None, timings: dict | None = None) -> list[Path]:
    """The video at ``output`` (.mp4, .gif or folder/), the overlay copy when asked, then the sidecar."""
    from tora2.pipelines.video_io import draw_paths, overlay_path, write_video
    from tora2.trajectory.preview import entity_color

    written = write_video(result.frames, output, job.fps)
    if overlay:
        drawn = [(r.trajectory, r.visible) for r in job.entities if r.trajectory is not None]
        colors = [entity_color(i) for i in range(len(drawn))]
        frames = draw_paths(result.frames, [p for p, _ in drawn], [v for _, v in drawn], colors)
        written += write_video(frames, overlay_path(output), job.fps)
    write_sidecar(job, result, output, model_id, outputs=written, extra=extra, timings=timings)
    return written


def write_sidecar(job: Job, result: Generated, output: Path, model_id: str, outputs: list[Path],
                  extra: dict | None = None, timings: dict | None = None) -> Path:
    """``out.mp4.json``: everything needed to make the video again (valid JSON: every number is finite)."""
    from tora2.pipelines.video_io import output_kind, sidecar_path, write_json_atomic

    entities = []
    for request, spec in zip(job.entities, result.specs):
        entities.append({
            "text": request.text, "image": request.image, "kind": getattr(spec, "kind", request.kind),
            "track": request.source,
            "points": None if request.trajectory is None else np.round(request.trajectory, 2).tolist(),
            "visible": None if request.visible is None else np.asarray(request.visible, bool).tolist(),
            **dict(getattr(spec, "meta", {}) or {}),
        })
    record = {
        "job": job.id, "prompt": job.prompt, "negative_prompt": job.negative_prompt, "seed": job.seed,
        "model": model_id, "num_frames": job.num_frames, "height": job.height, "width": job.width, "fps": job.fps,
        "num_inference_steps": len(result.step_seconds) or job.num_inference_steps,
        "guidance_scale": job.guidance_scale, **(extra or {}),
        "entities": entities,
        "outputs": [str(p) for p in (outputs if output_kind(output) != "dir" else [output])],
        "timings": {**{k: round(v, 4) for k, v in (timings or {}).items()},
                    "step_s": [round(s, 4) for s in result.step_seconds]},
        "fingerprint": job.fingerprint or None,
        "versions": versions(),
    }
    path = sidecar_path(output)
    write_json_atomic(record, path)
    return path


def versions() -> dict:
    import diffusers
    import torch
    import transformers

    import tora2

    return {"tora2": tora2.__version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__, "python": platform.python_version()}


__all__ = ["EntityResolver", "Generated", "GenerationBackend", "check_job", "check_references", "write_outputs",
           "write_sidecar"]
