"""Run settings of ``train(cfg)``: dataclasses loaded from configs/train/*.yaml (unknown keys rejected).

Architecture is not here: it comes from the model config (``model.config``, configs/model/*.yaml)
or from a pipeline folder (``model.pretrained``), whose ``config.json`` files hold it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tora2.configuration import check_positive_ints, load_config, parse_override
from tora2.errors import InputError
from tora2.training.optim import OptimConfig, check_optim

STAGES = ("tora2", "finetune", "full")
MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass
class ModelSettings:
    config: str = "tiny"  # a model config name or YAML path (built from scratch, seeded)
    pretrained: str | None = None  # a pipeline folder (diffusers layout) to start from instead
    seed: int = 0  # seed of the freshly built components
    # Transformer config fields to change (e.g. {binder: linear} for an ablation). The transformer is
    # then rebuilt at fresh init (seeded) from the pretrained/built config plus these: stage full only.
    transformer: dict = field(default_factory=dict)
    # Scheduler config fields to change (e.g. {snr_shift_scale: 1.0}); saved with the trained pipeline,
    # so generation samples with the schedule the model was trained on.
    scheduler: dict = field(default_factory=dict)
    # Image encoder (SemanticImageEncoder) fields to change: the encoder is rebuilt at fresh init (seeded).
    image_encoder: dict = field(default_factory=dict)
    # A VAE to build instead of the pipeline's: a model config's vae section (type + kwargs), e.g.
    # {type: pixel, spatial_compression_ratio: 4} for pixel-space diffusion (a new latent: the
    # transformer's in/out channels must follow, through model.transformer).
    vae: dict = field(default_factory=dict)
    # Components to take from other saved folders instead, e.g. {vae: runs/embedded/vae/pipeline/vae}
    # (stages trained side by side, then combined); each is loaded with its current class.
    components: dict = field(default_factory=dict)
    # Models to start from the weights saved in other folders, e.g. {transformer: tora2/data/embedded/transformer},
    # applied after the rebuilds above (so an ablation's changed config starts from trained weights):
    # every saved layer must exist with the same shape; layers only the new config has (a module a
    # config field adds) keep their init; config fields without weights may differ.
    init_weights: dict = field(default_factory=dict)
    # Per model of init_weights, key prefixes whose saved weights are NOT loaded (they keep their
    # init), e.g. {transformer: [patch_embed.proj, proj_out]} when a new latent width changes the
    # input and output layers; any other layer whose shape differs is still an error.
    init_weights_skip: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    manifest: str | None = None  # JSONL clip manifest (tora2.clips.manifest); None: pass a dataset to train()
    num_frames: int = 9  # pixel frames per sample: 4k + 1 for the CogVideoX VAE
    frame_stride: int = 1
    buckets: list = field(default_factory=lambda: [[128, 128]])  # (height, width) pairs, multiples of 16
    cache_dir: str | None = None  # on-disk cache of VAE latents and text embeddings; None: memory only
    caption_dropout: float = 0.5
    reference_dropout: float = 0.33
    trajectory_dropout: float = 0.33


@dataclass
class LoRAConfig:
    rank: int = 16
    alpha: int = 16
    dropout: float = 0.0
    # The CogVideoX 3D attention of every block (not the entity cross-attention).
    target_modules: list = field(default_factory=lambda: ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"])


@dataclass
class ValidationConfig:
    every: int = 0  # steps between validation videos; 0 = none
    prompt: str | None = None  # None: the first training clip's caption and entities
    num_inference_steps: int = 10
    guidance_scale: float = 6.0
    seed: int = 0


@dataclass
class TrainConfig:
    output_dir: str = "runs/tora2"
    stage: str = "tora2"  # tora2: Tora2 additions + DPE; finetune: + LoRA on the transformer;
    # full: the whole transformer (CogVideoX + Tora + Tora2) + DPE, for a model trained from scratch
    train_trajectory: bool = False  # also train Tora's extractor and fusers (stage tora2)
    contrastive_weight: float = 0.2  # λ
    contrastive_ramp_steps: int = 0  # λ rises linearly from 0 over this many steps (0 = full λ from the start)
    # Extra diffusion-loss weight near the entities' paths: 1 + w·Gaussian(distance to the nearest
    # visible entity, σ = entity_loss_sigma × frame width), so small entities are not drowned out by
    # the background. 0 = CogVideoX's plain loss.
    entity_loss_weight: float = 0.0
    entity_loss_sigma: float = 0.1
    # x-prediction only (scheduler prediction_type: sample): the loss weight 1/σ² is capped at
    # 1/x_prediction_min_sigma². 0.05 is JiT's cap; pixel latents train with 0.3 (≈ SNR 10), since
    # at 0.05 the 2 % of timesteps above SNR 100 carried 46 % of the loss (docs/results.md).
    x_prediction_min_sigma: float = 0.05
    # Per-entity appearance term (tora2/training/losses.py entity_appearance_loss): the denoised
    # estimate x̂0 decoded by the frozen VAE at `appearance_frames` evenly spaced frames, compared with
    # the decoded clean clip by normalised cross-correlation in a square of side `appearance_crop`
    # (frame widths) at each visible entity, for samples whose timestep has SNR in
    # [appearance_min_snr, appearance_max_snr): below it the sprite is not yet decided, above it
    # x_t already shows the sprite (NCC ≈ 0.92 over all SNR ≥ 1 on the shipped model). 0 = off.
    # Needs a per-frame VAE.
    appearance_loss_weight: float = 0.0
    appearance_min_snr: float = 1.0
    appearance_max_snr: float = float("inf")
    appearance_crop: float = 0.3
    appearance_frames: int = 3
    # Exponential moving average of the trained weights (tora2/training/ema.py), checkpointed for
    # exact resume. When on, output_dir/pipeline holds the average and output_dir/pipeline-online
    # the last step's weights. 0 = off.
    ema_decay: float = 0.0
    max_steps: int = 1000
    batch_size: int = 1  # per process
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500  # 0 = only at the end
    checkpoints_total_limit: int | None = 3
    tensorboard: bool = True
    save_pipeline: bool = True  # write a full pipeline folder to output_dir/pipeline at the end
    # The saved pipeline's default extra guidance towards the entity references (model_index.json;
    # tora2 generate / eval / batch use it unless told otherwise); None = no such branch.
    reference_guidance_scale: float | None = None
    progress: bool = False  # a tqdm bar (the CLI turns it on)
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        check_config(self)


def check_config(cfg: TrainConfig) -> None:
    """Meaning checks, one line each, naming the key and the fix."""
    if isinstance(cfg.model, dict) or isinstance(cfg.data, dict):
        return  # from_dict builds the nested sections after; they are checked again in train()
    if cfg.reference_guidance_scale is not None and not 0 <= cfg.reference_guidance_scale < float("inf"):
        raise InputError(f"reference_guidance_scale is {cfg.reference_guidance_scale}; use a number ≥ 0, or null for none")
    if cfg.stage not in STAGES:
        raise InputError(f"stage {cfg.stage!r} is not supported; use one of {', '.join(STAGES)}")
    if cfg.mixed_precision not in MIXED_PRECISION:
        raise InputError(f"mixed_precision {cfg.mixed_precision!r}: use one of {', '.join(MIXED_PRECISION)}")
    check_positive_ints(cfg, ("max_steps", "batch_size", "gradient_accumulation_steps"))
    if isinstance(cfg.optim, OptimConfig):
        check_optim(cfg.optim, cfg.max_steps)
    if cfg.contrastive_weight < 0:
        raise InputError(f"contrastive_weight must be ≥ 0; got {cfg.contrastive_weight}")
    if cfg.contrastive_ramp_steps < 0:
        raise InputError(f"contrastive_ramp_steps must be ≥ 0; got {cfg.contrastive_ramp_steps}")
    if (cfg.appearance_loss_weight < 0 or not 0 <= cfg.appearance_min_snr < cfg.appearance_max_snr
            or not 0 < cfg.appearance_crop <= 1 or cfg.appearance_frames < 1):
        raise InputError(f"appearance loss settings: weight {cfg.appearance_loss_weight} (≥ 0), SNR range "
                         f"[{cfg.appearance_min_snr}, {cfg.appearance_max_snr}) (0 ≤ min < max), crop {cfg.appearance_crop} "
                         f"(in (0, 1]), frames {cfg.appearance_frames} (≥ 1); e.g. 0.5, 1, 10, 0.3, 3")
    if not 0 <= cfg.ema_decay < 1:
        raise InputError(f"ema_decay must be in [0, 1); got {cfg.ema_decay} (e.g. 0.999, or 0 for no average)")
    if not 0 < cfg.x_prediction_min_sigma < 1:
        raise InputError(f"x_prediction_min_sigma must be in (0, 1); got {cfg.x_prediction_min_sigma} (e.g. 0.05)")
    if cfg.entity_loss_weight < 0 or cfg.entity_loss_sigma <= 0:
        raise InputError(
            f"entity_loss_weight must be ≥ 0 and entity_loss_sigma > 0; got {cfg.entity_loss_weight} and {cfg.entity_loss_sigma}"
        )
    if isinstance(cfg.model, ModelSettings) and cfg.model.transformer and cfg.stage != "full":
        raise InputError(
            f"model.transformer overrides rebuild the transformer at init; stage {cfg.stage!r} would leave it "
            "untrained: use stage full, or drop the overrides"
        )
    data = cfg.data
    if not isinstance(data, DataConfig):
        return
    for name in ("caption_dropout", "reference_dropout", "trajectory_dropout"):
        value = getattr(data, name)
        if not 0 <= value <= 1:
            raise InputError(f"data.{name} must be in [0, 1]; got {value}")
    if (data.num_frames - 1) % 4:
        raise InputError(f"data.num_frames is {data.num_frames}; the CogVideoX VAE needs 4k + 1 frames (e.g. 9, 13, 49)")
    if not data.buckets or any(len(b) != 2 or b[0] % 16 or b[1] % 16 for b in data.buckets):
        raise InputError(f"data.buckets {data.buckets!r} must be [height, width] pairs, multiples of 16")


def load_train_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """A TrainConfig from a YAML file plus ``key=value`` overrides (dotted keys reach sections)."""
    from tora2.configuration import from_dict, set_dotted

    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)
    if path is None:
        data: dict[str, Any] = {}
        for key, value in (overrides or {}).items():
            set_dotted(data, key, value)
        cfg = from_dict(TrainConfig, data, "train config")
    else:
        cfg = load_config(TrainConfig, path, overrides)
    check_config(cfg)
    return cfg
