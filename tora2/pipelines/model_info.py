"""What a pipeline folder can produce, read from its config files alone (no torch, no weights).

Front ends check a request against this before anything heavy loads: the frame and size rules of
the VAE and patching (:func:`check_size`), the entity limit, and a peak-memory estimate against the
memory this machine has (:func:`check_memory`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tora2.errors import InputError

GIB = 1 << 30
# Peak-memory model (bytes), calibrated with scripts/measure_memory.py on the embedded model (CPU,
# float32) and rounded up; docs/architecture.md "Refusing what cannot run" has the measurements.
RUNTIME_BYTES = 0.85 * GIB  # the interpreter with torch, diffusers, transformers and the entity encoders loaded
TOKEN_BYTES_PER_CHANNEL = 4 * 12  # per token and hidden channel in a block (qkv, MLP, norms); SDPA's
# flash / memory-efficient kernels (and PyTorch's CPU flash kernel) never hold the N×N attention matrix
VAE_BYTES_PER_CHANNEL = 4 * 20  # per pixel and first-level channel of a frame chunk in the VAE
FRAME_BYTES = 4 * 3 * 4  # per output pixel: float frames, the uint8 copy, the overlay and the flow video


def vae_config_compression(vae: dict) -> tuple[int, int]:
    """(temporal, spatial) compression from a VAE's config fields: a ``spatial_compression_ratio``
    field (``PixelShuffleAutoencoder``) or, for CogVideoX's VAE, one halving per level after the first."""
    spatial = vae.get("spatial_compression_ratio") or 2 ** (len(vae["block_out_channels"]) - 1)
    return int(vae.get("temporal_compression_ratio", 4)), int(spatial)


@dataclass(frozen=True)
class ModelInfo:
    """Sizes and limits of a Tora2 pipeline folder."""

    path: Path
    patch_size: int
    frames: int  # default clip
    height: int
    width: int
    max_entities: int  # 0: no entity conditioning (a plain Tora or CogVideoX transformer)
    temporal: int  # VAE compression in time
    spatial: int  # VAE compression in space
    hidden: int  # transformer width
    heads: int
    num_layers: int
    text_tokens: int
    vae_channels: int  # the VAE's first-level channel count (its full-resolution activations; 0: none)
    weight_bytes: int  # every safetensors/bin file in the folder
    reference_guidance_scale: float | None = None  # the model's default extra branch (model_index.json)


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """:class:`ModelInfo` of the pipeline folder ``path``; one-line error when a config is missing."""
    path = Path(path)
    try:
        transformer = json.loads((path / "transformer" / "config.json").read_text())
        vae = json.loads((path / "vae" / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path} is not a complete Tora2 pipeline folder ({error}); pass another --model") from None
    temporal, spatial = vae_config_compression(vae)
    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, json.JSONDecodeError):
        index = {}
    weights = sum(p.stat().st_size for p in path.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
    return ModelInfo(
        path=path,
        patch_size=int(transformer["patch_size"]),
        frames=int(transformer["sample_frames"]),
        height=int(transformer["sample_height"]) * spatial,
        width=int(transformer["sample_width"]) * spatial,
        max_entities=0 if transformer.get("entity_dim") is None else int(transformer.get("max_entities", 0)),
        temporal=temporal,
        spatial=spatial,
        hidden=int(transformer["num_attention_heads"]) * int(transformer["attention_head_dim"]),
        heads=int(transformer["num_attention_heads"]),
        num_layers=int(transformer["num_layers"]),
        text_tokens=int(transformer.get("max_text_seq_length", 226)),
        # the wider of the encoder's and the decoder's first level (AsymmetricCogVideoXVAE decodes wider)
        vae_channels=int(max(vae.get("block_out_channels", [0])[0], (vae.get("decoder_block_out_channels") or [0])[0])),
        weight_bytes=weights,
        reference_guidance_scale=index.get("reference_guidance_scale") or None,
    )


def frame_rule(temporal: int) -> str:
    """The frame-count rule in words: ``2·temporal·k + 1`` (an odd latent frame count)."""
    step = 2 * temporal
    return "any odd number" if step == 2 else f"{step}k+1"


def check_size(temporal: int, spatial: int, patch_size: int, num_frames: int, height: int, width: int,
               names: tuple[str, str, str] = ("num_frames", "height", "width")) -> None:
    """Frames ``2·temporal·k + 1`` and sizes multiples of ``spatial·patch_size``; one line naming the fix.

    CogVideoX's VAE decodes latent frames in pairs after a leading odd one: only an odd latent count
    (num_frames = 2·temporal·k + 1, i.e. 8k+1 at 4×) decodes back to num_frames frames.
    """
    step = 2 * temporal
    if num_frames < 1 or (num_frames - 1) % step:
        below = max(1, (num_frames - 1) // step * step + 1)
        above = below + step if num_frames > below else below
        raise InputError(
            f"{names[0]} {num_frames} cannot be produced: it must be {frame_rule(temporal)} (temporal compression "
            f"{temporal}, odd latent frame count), e.g. {below if below != num_frames else above}"
            + (f" or {above}" if above != below and below != num_frames else "")
        )
    multiple = spatial * patch_size
    for name, value in zip(names[1:], (height, width)):
        if value < multiple or value % multiple:
            raise InputError(
                f"{name} {value} cannot be produced: it must be a positive multiple of {multiple} "
                f"({spatial}× VAE × patch size {patch_size}), e.g. {max(multiple, value // multiple * multiple)}"
            )


# ---------------------------------------------------------------------------------------------- memory


def estimate_peak_bytes(info: ModelInfo, num_frames: int, height: int, width: int, batch: int = 1,
                        guidance: bool = True) -> int:
    """Peak memory of generating ``batch`` videos of ``num_frames × height × width`` (bytes, a slight
    over-estimate): weights, one transformer block's activations over every token (twice the batch
    under classifier-free guidance, once more with the model's default reference branch) or the VAE's
    full-resolution activations, whichever is larger, and the frame buffers."""
    rows = batch * ((2 if guidance else 1) + (1 if info.reference_guidance_scale and info.max_entities else 0))
    latent_frames = (num_frames - 1) // info.temporal + 1
    tokens = latent_frames * (height // (info.spatial * info.patch_size)) * (width // (info.spatial * info.patch_size))
    sequence = tokens + info.text_tokens
    blocks = rows * sequence * info.hidden * TOKEN_BYTES_PER_CHANNEL
    chunk = min(num_frames, 9)  # the VAE encodes (the flow) and decodes at most about 8 + 1 frames at a time
    vae = batch * chunk * height * width * info.vae_channels * VAE_BYTES_PER_CHANNEL
    frames = batch * num_frames * height * width * FRAME_BYTES
    return int(RUNTIME_BYTES + info.weight_bytes + max(blocks, vae) + frames)


def available_bytes() -> tuple[int, str]:
    """(bytes, where) the generation can use: free GPU memory when an NVIDIA GPU is visible, else RAM."""
    if shutil.which("nvidia-smi") and os.environ.get("CUDA_VISIBLE_DEVICES", "0") not in ("", "-1"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5, check=True).stdout.split()
            if out:
                return int(float(out[0]) * (1 << 20)), "free GPU memory"
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available RAM"
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "RAM"


def largest_fitting_size(info: ModelInfo, num_frames: int, height: int, width: int, budget: int, batch: int = 1,
                         guidance: bool = True) -> tuple[int, int] | None:
    """The largest (height, width) with the request's aspect ratio, valid for the model, that fits ``budget``."""
    multiple = info.spatial * info.patch_size
    best = None
    low, high = 0.0, 1.0
    for _ in range(40):  # bisection on the scale; sizes are rounded down to the multiple
        mid = (low + high) / 2
        h = max(multiple, int(height * mid) // multiple * multiple)
        w = max(multiple, int(width * mid) // multiple * multiple)
        if estimate_peak_bytes(info, num_frames, h, w, batch, guidance) <= budget:
            best, low = (h, w), mid
        else:
            high = mid
    if best is None:
        h = w = multiple
        if estimate_peak_bytes(info, num_frames, h, w, batch, guidance) <= budget:
            best = (h, w)
    return best


def check_memory(info: ModelInfo, num_frames: int, height: int, width: int, batch: int = 1, guidance: bool = True,
                 budget: tuple[int, str] | None = None) -> int:
    """The estimate (bytes); a one-line error with the estimate and the largest size that fits when
    it exceeds the memory available (``budget``: (bytes, where), default :func:`available_bytes`)."""
    need = estimate_peak_bytes(info, num_frames, height, width, batch, guidance)
    have, where = budget if budget is not None else available_bytes()
    if need > have:
        fit = largest_fitting_size(info, num_frames, height, width, have, batch, guidance)
        hint = (f"the largest {width}×{height}-shaped size that fits is --width {fit[1]} --height {fit[0]}"
                if fit is not None else "no size fits at this frame count: use fewer frames")
        raise InputError(f"{num_frames}×{width}×{height} needs about {need / GIB:.1f} GiB, more than the "
                         f"{have / GIB:.1f} GiB of {where}; {hint}")
    return need


def format_bytes(count: int) -> str:
    return f"{count / GIB:.2f} GiB" if count >= GIB / 10 else f"{math.ceil(count / (1 << 20))} MiB"
