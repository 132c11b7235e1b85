"""Per-step time, peak memory and FLOP rate of the transformer: plain diffusers CogVideoX against the
Tora path (trajectory only) and Tora2 (entities + trajectory), all in one run, with random weights.

    python -m benchmarks.bench_transformer                       # the GPU target: 5B, bf16, 49×480×720
    python -m benchmarks.bench_transformer --device cpu --dtype bfloat16 \
        --set num_layers=4 --set num_attention_heads=16 --frames 13 --height 128 --width 192

A "step" is one transformer forward at guidance batch ``--batch`` (2: conditional + unconditional)
with the timestep-independent conditions (trajectory extractor, entity binding, and γ/β when
precomputed) prepared once beforehand, as a pipeline does; their cost is the "prepare" column.

Glossary: B batch, F latent frames, C latent channels, H/W latent size, h/w token grid, N video
tokens (F·h·w), L text tokens, T = L + N, D hidden, Dt time embedding, Cm motion channels,
E entities, Q personalization tokens, S entity tokens (E·(Q + F)), De entity width, Ie entity
attention width.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `benchmarks` and `tora2` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import yaml

import tora2  # noqa: F401  (the torchvision shim, before diffusers)
from benchmarks.common import (
    PeakMemory,
    count_flops,
    environment,
    format_bytes,
    format_seconds,
    format_table,
    measure_matmul_rate,
    parse_dtype,
    time_call,
)
from tora2.errors import InputError
from tora2.io import write_text_atomic
from tora2.models.configs import load_model_config

VAE_SPATIAL_COMPRESSION = 8  # CogVideoX's VAE: 8× in height and width (temporal: the config's ratio)
ATTENTION_BACKENDS = ("flash", "efficient", "cudnn", "math")
QUANTIZATIONS = ("int8", "fp8")


@dataclass
class BenchSettings:
    """Every setting of a run; the CLI flags are generated from these fields and their defaults."""

    config: str = "cogvideox-5b-tora2"
    overrides: dict = field(default_factory=dict)  # transformer kwargs, e.g. {"num_layers": 4}
    frames: int = 49  # pixel frames; latents: (frames − 1) / temporal_compression_ratio + 1
    height: int = 480
    width: int = 720
    batch: int = 2  # guidance batch
    entities: tuple[int, ...] = (0, 1, 2, 4)
    dtype: str = "bfloat16"
    device: str = "cuda"
    steps: int = 3  # timed repetitions per row
    warmup: int = 1
    generation_steps: int = 50  # prepare() is amortised over this many denoising steps
    compile: bool = True  # also measure regional torch.compile of the blocks
    attention_backends: tuple[str, ...] = ("flash", "efficient")  # also measure these SDPA backends
    quantizations: tuple[str, ...] = ("int8", "fp8")  # also measure torchao weights (if installed)
    offload: bool = True  # also measure model CPU offload (CUDA only)
    matmul_size: int = 8192
    seed: int = 0


@dataclass
class Row:
    variant: str
    option: str = "default"
    entities: int | None = None
    step_s: float | None = None
    prepare_s: float | None = None
    peak_bytes: int | None = None
    extra_bytes: int | None = None  # memory held between steps by this variant's precomputed conditions
    flops_counted: int | None = None
    flops_analytic: int | None = None
    ratio: float | None = None  # step / plain step with the same option
    ratio_off: float | None = None  # step / the same variant's step with the option off
    ratio_amortised: float | None = None  # (step + prepare / generation_steps) / plain step
    fraction: float | None = None  # achieved FLOP/s / measured matmul FLOP/s
    note: str = ""


# ---------------------------------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Shapes:
    batch: int
    frames: int  # latent F
    height: int  # latent H
    width: int  # latent W
    text_length: int


def latent_shapes(settings: BenchSettings, transformer_config: dict) -> Shapes:
    ratio = transformer_config.get("temporal_compression_ratio", 4)
    p = transformer_config.get("patch_size", 2)
    if (settings.frames - 1) % ratio:
        raise InputError(f"--frames {settings.frames} must be 1 + a multiple of {ratio} (e.g. 49)")
    for name, value in (("height", settings.height), ("width", settings.width)):
        if value % (VAE_SPATIAL_COMPRESSION * p):
            raise InputError(f"--{name} {value} must be a multiple of {VAE_SPATIAL_COMPRESSION * p} (VAE × patch size)")
    if settings.batch < 1:
        raise InputError(f"--batch {settings.batch} must be at least 1")
    return Shapes(
        batch=settings.batch,
        frames=(settings.frames - 1) // ratio + 1,
        height=settings.height // VAE_SPATIAL_COMPRESSION,
        width=settings.width // VAE_SPATIAL_COMPRESSION,
        text_length=transformer_config.get("max_text_seq_length", 226),
    )


# ---------------------------------------------------------------------------------------- FLOPs
def analytic_step_flops(
    cfg: dict, shapes: Shapes, tora: bool = False, modulation_per_step: bool = False, entities: int = 0
) -> dict[str, int]:
    """FLOPs (2 per multiply-add) of one forward, by part: every matmul and convolution."""
    b, f, p = shapes.batch, shapes.frames, cfg["patch_size"]
    h, w = shapes.height // p, shapes.width // p
    n, length = f * h * w, shapes.text_length
    t = n + length
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    dt, layers, c = cfg["time_embed_dim"], cfg["num_layers"], cfg["in_channels"]
    out_c = cfg.get("out_channels") or c
    parts = {
        "embeddings": 2 * b * (d * dt + dt * dt)  # timestep MLP
        + 2 * b * length * cfg["text_embed_dim"] * d  # text projection
        + 2 * b * n * c * p * p * d  # patch conv
        + layers * 2 * 2 * b * dt * 6 * d  # norm1, norm2 modulation linears
        + 2 * b * dt * 2 * d  # norm_out modulation
        + 2 * b * n * d * p * p * out_c,  # proj_out
        "attention projections": layers * 4 * 2 * b * t * d * d,  # q, k, v, out over text + video
        "attention QK^T and AV": layers * 2 * 2 * b * t * t * d,
        "feed-forward": layers * 2 * 2 * b * t * d * 4 * d,
        "motion guidance (MGF)": 0,
        "entity cross-attention": 0,
    }
    if tora and modulation_per_step:
        cm, hidden = cfg["motion_channels"], d // 4
        spatial = 2 * (f * h * w) * hidden * cm * 9  # 3×3 conv, once for the shared (batch-1) trajectory
        temporal = 2 * (h * w * f) * d * hidden * 3  # kernel-3 conv over frames
        parts["motion guidance (MGF)"] = layers * 2 * (spatial + temporal)  # γ and β
    if entities:
        de = cfg["entity_dim"]
        ie = cfg["entity_attention_heads"] * cfg["entity_attention_head_dim"]
        s = entities * (cfg["num_personalization_tokens"] + f)
        per_block = (
            2 * b * n * d * ie  # to_q
            + 2 * 2 * b * s * de * ie  # to_k, to_v
            + 2 * 2 * b * n * s * ie  # QK^T, AV
            + 2 * b * n * ie * d  # to_out
            + 2 * b * dt * d  # timestep gate
        )
        parts["entity cross-attention"] = layers * per_block
    return parts


# ---------------------------------------------------------------------------------------- models and inputs
def transformer_kwargs(settings: BenchSettings) -> dict:
    from tora2.models.transformer_tora2 import Tora2Transformer3DModel

    kwargs = dict(load_model_config(settings.config)["transformer"])
    allowed = [n for n in inspect.signature(Tora2Transformer3DModel.__init__).parameters if n != "self"]
    unknown = sorted(set(settings.overrides) - set(allowed))
    if unknown:
        raise InputError(f"--set: unknown transformer key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    kwargs.update(settings.overrides)
    return kwargs


def plain_kwargs(kwargs: dict) -> dict:
    from diffusers import CogVideoXTransformer3DModel

    allowed = inspect.signature(CogVideoXTransformer3DModel.__init__).parameters
    return {k: v for k, v in kwargs.items() if k in allowed}


def build_model(kind: str, kwargs: dict, device: torch.device, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    """Random weights, built directly on the device in the benchmark dtype."""
    from diffusers import CogVideoXTransformer3DModel

    from tora2.models.transformer_tora2 import Tora2Transformer3DModel

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            if kind == "plain":
                model = CogVideoXTransformer3DModel(**plain_kwargs(kwargs))
            else:
                model = Tora2Transformer3DModel(**kwargs)
    finally:
        torch.set_default_dtype(previous)
    return model.eval().requires_grad_(False)  # already in dtype on device (to() would warn about fp32 modules)


def rotary_embeddings(cfg: dict, shapes: Shapes, device: torch.device):
    """As diffusers' CogVideoX 1.0 pipeline builds them (None for sincos-position models)."""
    if not cfg.get("use_rotary_positional_embeddings"):
        return None
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import (
        get_resize_crop_region_for_grid,
    )

    p = cfg["patch_size"]
    grid = (shapes.height // p, shapes.width // p)
    crops = get_resize_crop_region_for_grid(grid, cfg["sample_width"] // p, cfg["sample_height"] // p)
    return get_3d_rotary_pos_embed(
        embed_dim=cfg["attention_head_dim"], crops_coords=crops, grid_size=grid, temporal_size=shapes.frames, device=device
    )


def make_inputs(cfg: dict, shapes: Shapes, device: torch.device, dtype: torch.dtype, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    b, f, c = shapes.batch, shapes.frames, cfg["in_channels"]
    randn = lambda *shape: torch.randn(*shape, generator=g).to(device=device, dtype=dtype)  # noqa: E731
    return dict(
        hidden_states=randn(b, f, c, shapes.height, shapes.width),
        encoder_hidden_states=randn(b, shapes.text_length, cfg["text_embed_dim"]),
        timestep=torch.linspace(999, 1, b).long().to(device),
        image_rotary_emb=rotary_embeddings(cfg, shapes, device),
    )


def make_flow(cfg: dict, shapes: Shapes, device: torch.device, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    c = cfg.get("motion_in_channels") or cfg["in_channels"]
    # Batch 1: the guidance halves share one trajectory, which the transformer broadcasts (as the pipeline does).
    return torch.randn(1, shapes.frames, c, shapes.height, shapes.width, generator=g).to(device, dtype)


def make_entity_inputs(cfg: dict, shapes: Shapes, entities: int, device: torch.device, dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed + 2)
    b, f, phrase = shapes.batch, shapes.frames, 4
    return dict(
        entity_positions=torch.rand(b, entities, f, 2, generator=g).to(device),
        entity_visible=torch.ones(b, entities, f, dtype=torch.bool, device=device),
        entity_personalization=torch.randn(
            b, entities, cfg["num_personalization_tokens"], cfg["entity_dim"], generator=g
        ).to(device, dtype),
        entity_text_embeds=torch.randn(b, entities, phrase, cfg["text_embed_dim"], generator=g).to(device, dtype),
        entity_text_mask=torch.ones(b, entities, phrase, dtype=torch.bool, device=device),
        entity_mask=torch.ones(b, entities, dtype=torch.bool, device=device),
    )


def tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(x) for x in obj)
    return 0


# ---------------------------------------------------------------------------------------- options
def attention_backend(name: str | None, device: torch.device):
    """A context that restricts SDPA to one backend. Masked SDPA (the entity cross-attention) cannot
    run on flash or cuDNN kernels on CUDA, so those two keep the efficient kernel for masked calls."""
    if name is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    chosen = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "math": SDPBackend.MATH,
    }[name]
    backends = [chosen]
    if device.type == "cuda" and name in ("flash", "cudnn"):
        backends.append(SDPBackend.EFFICIENT_ATTENTION)
    return sdpa_kernel(backends)


@contextlib.contextmanager
def regional_compile(model: torch.nn.Module) -> Iterator[None]:
    """torch.compile each transformer block (one compiled graph reused by all blocks), undone on exit."""
    import torch._dynamo

    blocks = list(model.transformer_blocks)
    limit = torch._dynamo.config.cache_size_limit
    torch._dynamo.config.cache_size_limit = max(limit, 2 * len(blocks))
    for block in blocks:
        block.compile()
    try:
        yield
    finally:
        for block in blocks:
            block._compiled_call_impl = None
        torch._dynamo.config.cache_size_limit = limit


def torchao_available() -> bool:
    return importlib.util.find_spec("torchao") is not None


def quantize_weights(model: torch.nn.Module, mode: str) -> None:
    """torchao weight-only quantization of the linear layers, in place (int8, or fp8 on SM ≥ 8.9)."""
    import torchao.quantization as q

    names = {"int8": ("Int8WeightOnlyConfig", "int8_weight_only"), "fp8": ("Float8WeightOnlyConfig", "float8_weight_only")}
    for name in names[mode]:
        if hasattr(q, name):
            factory = getattr(q, name)
            q.quantize_(model, factory())
            return
    raise RuntimeError(f"this torchao has neither {' nor '.join(names[mode])}")


# ---------------------------------------------------------------------------------------- measuring
@dataclass
class Case:
    """One measured configuration: a forward closure and its once-per-generation preparation."""

    variant: str
    entities: int | None
    prepare: Callable[[], object] | None  # returns the conditions
    forward: Callable[[object], object]  # takes the conditions
    analytic: dict[str, int]
    note: str = ""


def measure(case: Case, option: str, settings: BenchSettings, device: torch.device, context=contextlib.nullcontext) -> Row:
    row = Row(variant=case.variant, option=option, entities=case.entities, note=case.note)
    row.flops_analytic = sum(case.analytic.values())
    conditions = None
    if case.prepare is not None:
        with context():
            conditions = case.prepare()  # warm-up of the preparation
            row.prepare_s = time_call(case.prepare, device, warmup=0, repeats=1).best
        row.extra_bytes = tensor_bytes(getattr(conditions, "motion_modulation", None) or [])
    with context():
        row.step_s = time_call(lambda: case.forward(conditions), device, settings.warmup, settings.steps).best
        with PeakMemory(device) as peak:
            case.forward(conditions)
    row.peak_bytes = peak.bytes
    if option == "default":
        row.flops_counted = count_flops(lambda: case.forward(conditions))
    del conditions
    return row


def run_safely(rows: list[Row], make_row: Callable[[], Row], variant: str, option: str, entities: int | None) -> None:
    """Measure one row; a failure (unsupported backend, out of memory) becomes a row that says so."""
    try:
        rows.append(make_row())
    except (RuntimeError, NotImplementedError, ImportError, AssertionError) as error:
        message = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        rows.append(Row(variant=variant, option=option, entities=entities, note=f"failed: {message}"))
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def option_list(settings: BenchSettings, device: torch.device) -> list[tuple[str, Callable]]:
    """(option name, context factory given the model) for every option measured besides the default."""
    options: list[tuple[str, Callable]] = []
    if settings.compile:
        options.append(("regional compile", lambda model: regional_compile(model)))
    for name in settings.attention_backends:
        options.append((f"SDPA {name}", lambda model, name=name: attention_backend(name, device)))
    return options


def run_benchmark(settings: BenchSettings, progress: Callable[[str], None] = lambda message: None) -> tuple[list[Row], dict]:
    """Measure every row; returns the rows and the run's facts (shapes, matmul rate, environment)."""
    for name in settings.attention_backends:
        if name not in ATTENTION_BACKENDS:
            raise InputError(f"unknown attention backend {name!r}: use one of {', '.join(ATTENTION_BACKENDS)}")
    for name in settings.quantizations:
        if name not in QUANTIZATIONS:
            raise InputError(f"unknown quantization {name!r}: use one of {', '.join(QUANTIZATIONS)}")
    if any(e < 0 for e in settings.entities):
        raise InputError(f"--entities {settings.entities}: counts must be ≥ 0")
    if settings.steps < 1:
        raise InputError(f"--steps {settings.steps} must be at least 1")
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {settings.device}: no CUDA device here; use --device cpu")
    dtype = parse_dtype(settings.dtype)
    kwargs = transformer_kwargs(settings)
    shapes = latent_shapes(settings, kwargs)
    max_entities = kwargs.get("max_entities", 8)
    if kwargs.get("entity_dim") is None and any(settings.entities):
        raise InputError(f"config {settings.config!r} has no entity modules (entity_dim is null): use --entities 0")
    if max(settings.entities) > max_entities:
        raise InputError(f"--entities {max(settings.entities)} exceeds max_entities={max_entities} of the config")

    inputs = make_inputs(kwargs, shapes, device, dtype, settings.seed)
    facts = {"shapes": shapes, "environment": environment(device), "kwargs": kwargs}
    progress("matmul rate")
    facts["matmul_flops_per_s"] = measure_matmul_rate(device, dtype, settings.matmul_size)
    rows: list[Row] = []
    options = option_list(settings, device)
    headline = max(settings.entities)

    # 1. Plain diffusers CogVideoX.
    progress("plain CogVideoX")
    model = build_model("plain", kwargs, device, dtype, settings.seed)
    plain = Case(
        "plain CogVideoX (diffusers)", None, None,
        lambda _: model(**inputs, return_dict=False), analytic_step_flops(kwargs, shapes),
    )
    run_safely(rows, lambda: measure(plain, "default", settings, device), plain.variant, "default", None)
    for option, context in options:
        progress(f"plain CogVideoX, {option}")
        run_safely(rows, lambda: measure(plain, option, settings, device, lambda: context(model)), plain.variant, option, None)
    rows.extend(quantized_rows(settings, "plain", kwargs, device, dtype, lambda m: Case(
        plain.variant, None, None, lambda _: m(**inputs, return_dict=False), plain.analytic)))
    del model, plain
    free(device)

    # 2. Tora and Tora2 on one Tora2 model.
    progress("Tora2 model")
    model = build_model("tora2", kwargs, device, dtype, settings.seed)
    flow = make_flow(kwargs, shapes, device, dtype, settings.seed)
    cases = tora_cases(model, kwargs, shapes, inputs, flow, settings, device, dtype)
    for case in cases:
        progress(f"{case.variant}, E={case.entities}")
        run_safely(rows, lambda: measure(case, "default", settings, device), case.variant, "default", case.entities)
    headline_case = next(c for c in cases if c.entities == headline and "per step" not in c.variant)
    for option, context in options:
        progress(f"{headline_case.variant}, {option}")
        run_safely(
            rows, lambda: measure(headline_case, option, settings, device, lambda: context(model)),
            headline_case.variant, option, headline,
        )
    if settings.offload:
        progress("model CPU offload")
        per_step_case = tora_cases(model, kwargs, shapes, inputs, flow, settings, device, dtype, only=headline, per_step=True)[0]
        run_safely(rows, lambda: offload_row(model, per_step_case, settings, device),
                   f"{per_step_case.variant}, model CPU offload", "default", headline)
        del per_step_case
    del model, cases, headline_case
    free(device)
    rows.extend(quantized_rows(settings, "tora2", kwargs, device, dtype, lambda m: tora_cases(
        m, kwargs, shapes, inputs, flow, settings, device, dtype, only=headline)[0]))
    free(device)

    finish_rows(rows, facts["matmul_flops_per_s"], settings.generation_steps)
    return rows, facts


def tora_cases(
    model, cfg, shapes, inputs, flow, settings, device, dtype, only: int | None = None, per_step: bool = False
) -> list[Case]:
    """Tora (E = 0: γ/β per step, then precomputed) and Tora2 (E > 0, γ/β precomputed); with ``only``,
    the one case with ``only`` entities (γ/β per step when ``per_step``)."""
    forward = lambda conditions: model(**inputs, conditions=conditions, return_dict=False)  # noqa: E731
    cases = []
    for entities in settings.entities if only is None else (only,):
        entity_inputs = make_entity_inputs(cfg, shapes, entities, device, dtype, settings.seed) if entities else {}
        modes = (True, False) if entities == 0 and only is None else (per_step,)
        for each_step in modes:
            prepare = lambda each_step=each_step, entity_inputs=entity_inputs: model.prepare_conditions(  # noqa: E731
                flow, precompute_modulation=not each_step, **entity_inputs
            )
            name = "Tora (trajectory only)" if entities == 0 else "Tora2 (entities + trajectory)"
            cases.append(Case(
                name + (", γ/β per step" if each_step else ""), entities, prepare, forward,
                analytic_step_flops(cfg, shapes, tora=True, modulation_per_step=each_step, entities=entities),
            ))
    return cases


def offload_row(model, case: Case, settings: BenchSettings, device: torch.device) -> Row:
    """Model CPU offload (accelerate's hook, as a pipeline's ``enable_model_cpu_offload``): the weights
    live on the CPU and move to the GPU when the transformer is first called in a generation. ``case``
    should compute γ/β per step: precomputed they would hold 2·num_layers·B·N·D values on the GPU."""
    variant = f"{case.variant}, model CPU offload"
    if device.type != "cuda":
        return Row(variant=variant, option="default", entities=case.entities, note="skipped: needs a CUDA device")
    from accelerate import cpu_offload_with_hook

    model.to("cpu")
    free(device)
    _, hook = cpu_offload_with_hook(model, execution_device=device)
    row = Row(variant=variant, option="default", entities=case.entities, flops_analytic=sum(case.analytic.values()))
    try:
        with PeakMemory(device) as peak:
            # The hook moves the weights at the first forward; prepare_conditions() runs before any
            # forward, so move them as the hook would (a no-op for the hook afterwards).
            first = time_call(lambda: case.forward(model.to(device) and case.prepare()), device, warmup=0, repeats=1)
        conditions = case.prepare()
        row.prepare_s = first.best
        row.step_s = time_call(lambda: case.forward(conditions), device, settings.warmup, settings.steps).best
        row.peak_bytes = peak.bytes
        row.note = "prepare = first call: weights to the GPU + conditions + one step"
    finally:
        hook.offload()
        hook.remove()
    return row


def quantized_rows(settings, kind, kwargs, device, dtype, make_case) -> list[Row]:
    """torchao weight-only quantization, each on a freshly built model (quantization is in place)."""
    rows = []
    variant = "plain CogVideoX (diffusers)" if kind == "plain" else "Tora2 (entities + trajectory)"
    entities = None if kind == "plain" else max(settings.entities)
    for mode in settings.quantizations:
        option = f"torchao {mode} weights"
        if not torchao_available():
            rows.append(Row(variant=variant, option=option, entities=entities, note="not available: torchao not installed"))
            continue

        def make_row(mode=mode, option=option):
            model = build_model(kind, kwargs, device, dtype, settings.seed)
            quantize_weights(model, mode)
            return measure(make_case(model), option, settings, device)

        run_safely(rows, make_row, variant, option, entities)
        free(device)
    return rows


def finish_rows(rows: list[Row], matmul_rate: float, generation_steps: int) -> None:
    """Ratios against the plain row of the same option, FLOPs shared across options, achieved fraction."""
    plain = {r.option: r.step_s for r in rows if r.variant.startswith("plain") and r.step_s}
    off = {(r.variant, r.entities): r.step_s for r in rows if r.option == "default" and r.step_s}
    counted = {(r.variant, r.entities): r.flops_counted for r in rows if r.flops_counted}
    for r in rows:
        if r.step_s is None:
            continue
        base = plain.get(r.option)
        if base:
            r.ratio = r.step_s / base
            if r.prepare_s is not None:
                r.ratio_amortised = (r.step_s + r.prepare_s / generation_steps) / base
        if r.option != "default" and off.get((r.variant, r.entities)):
            r.ratio_off = r.step_s / off[(r.variant, r.entities)]
        r.flops_counted = r.flops_counted or counted.get((r.variant, r.entities))
        flops = r.flops_counted or r.flops_analytic
        if flops:
            r.fraction = flops / r.step_s / matmul_rate


# ---------------------------------------------------------------------------------------- report
COLUMNS = (
    "variant", "option", "E", "step", "× plain", "× plain incl. prepare", "× option off", "prepare (once)",
    "peak memory", "held γ/β", "GFLOP/step (counted)", "GFLOP/step (analytic)", "% of matmul rate", "note",
)


def table(rows: Sequence[Row], generation_steps: int = 50) -> str:
    def fmt(value, pattern):
        return "" if value is None else pattern.format(value)

    cells = []
    for r in rows:
        cells.append({
            "variant": r.variant,
            "option": r.option,
            "E": "" if r.entities is None else r.entities,
            "step": format_seconds(r.step_s),
            "× plain": fmt(r.ratio, "{:.3f}"),
            "× plain incl. prepare": fmt(r.ratio_amortised, "{:.3f}"),
            "× option off": fmt(r.ratio_off, "{:.3f}"),
            "prepare (once)": format_seconds(r.prepare_s),
            "peak memory": format_bytes(r.peak_bytes),
            "held γ/β": format_bytes(r.extra_bytes) if r.extra_bytes else "",
            "GFLOP/step (counted)": fmt(r.flops_counted and r.flops_counted / 1e9, "{:.4g}"),
            "GFLOP/step (analytic)": fmt(r.flops_analytic and r.flops_analytic / 1e9, "{:.4g}"),
            "% of matmul rate": fmt(r.fraction and 100 * r.fraction, "{:.1f}"),
            "note": r.note,
        })
    return format_table(cells, COLUMNS)


def report(rows: Sequence[Row], facts: dict, settings: BenchSettings, command: str) -> str:
    s = facts["shapes"]
    env = facts["environment"]
    peak_kind = "CUDA allocator peak (weights included)" if settings.device.startswith("cuda") else "RSS rise during one step (weights excluded)"
    lines = [
        f"command: `{command}`",
        "",
        f"- machine: {env['device']}; " + ", ".join(f"{k} {v}" for k, v in env.items() if k != "device"),
        f"- config {settings.config}{' ' + str(settings.overrides) if settings.overrides else ''}, {settings.dtype}, latents B={s.batch} × F={s.frames} × "
        f"{s.height}×{s.width}, text L={s.text_length}; step = best of {settings.steps} after {settings.warmup} warm-up",
        f"- measured {settings.dtype} matmul rate ({settings.matmul_size}² square): "
        f"{facts['matmul_flops_per_s'] / 1e12:.3f} TFLOP/s",
        f"- peak memory: {peak_kind}; prepare amortised over {settings.generation_steps} steps",
        "",
        table(rows, settings.generation_steps),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- CLI
def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise InputError(f"--set {text!r}: write KEY=VALUE, e.g. --set num_layers=4")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def parse_list(text: str, kind=str) -> tuple:
    if text.strip().lower() in ("", "none", "off"):
        return ()
    try:
        return tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"{text!r} is not a comma-separated list of {kind.__name__} values") from None


def build_parser() -> argparse.ArgumentParser:
    defaults = BenchSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=defaults.config, help="model config name or YAML path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a transformer kwarg (repeatable), e.g. --set num_layers=4")
    for name in ("frames", "height", "width", "batch", "steps", "warmup", "generation_steps", "matmul_size", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--entities", default=",".join(map(str, defaults.entities)), help="comma-separated entity counts")
    parser.add_argument("--dtype", default=defaults.dtype, help="float32, bfloat16 or float16")
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--attention-backends", default=",".join(defaults.attention_backends),
                        help=f"SDPA backends to measure besides the default ({', '.join(ATTENTION_BACKENDS)}, or none)")
    parser.add_argument("--quantizations", default=",".join(defaults.quantizations),
                        help="torchao weight quantizations to measure (int8, fp8, or none)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=defaults.compile,
                        help="also measure regional torch.compile of the blocks")
    parser.add_argument("--offload", action=argparse.BooleanOptionalAction, default=defaults.offload,
                        help="also measure model CPU offload (CUDA only)")
    parser.add_argument("--output", type=Path, help="also write the report (Markdown) to this file")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    return parser


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    values = {f.name: getattr(args, f.name) for f in fields(BenchSettings) if hasattr(args, f.name)}
    values["overrides"] = dict(parse_override(o) for o in args.overrides)
    values["entities"] = parse_list(args.entities, int) or (0,)
    values["attention_backends"] = parse_list(args.attention_backends)
    values["quantizations"] = parse_list(args.quantizations)
    return BenchSettings(**values)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        settings = settings_from_args(args)
        progress = lambda message: print(f"… {message}", file=sys.stderr, flush=True)  # noqa: E731
        with torch.inference_mode():
            rows, facts = run_benchmark(settings, progress)
    except (InputError, FileNotFoundError) as error:
        if os.environ.get("TORA2_DEBUG") == "1":
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = report(rows, facts, settings, "python -m benchmarks.bench_transformer " + " ".join(argv))
    print(text)
    if args.output is not None:
        write_text_atomic(args.output, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
