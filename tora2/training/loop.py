"""``train(cfg)``: the Tora2 training loop on accelerate.

Recipe of one optimisation step (``gradient_accumulation_steps`` micro-batches):

1. the batch's frozen encodings (``SampleEncoder``: VAE latents, prompt, flow, entity tokens; cached);
2. condition dropout per sample (caption 50 %, references 33 %, trajectories 33 % by default);
3. noise and timesteps; x_t = scheduler.add_noise(x_0, ε, t);
4. p_i = PersonalizationExtractor(tokens); the transformer predicts v and returns (z_p, z_m);
5. loss = diffusion loss (v- or x-prediction) + λ · motion–appearance contrastive loss
   (+ the optional per-entity appearance term on the decoded x̂0); backward, clip, AdamW, warm-up.

Every random draw of a step comes from a generator seeded by (seed, step, micro-batch, rank) and
the batch order from (seed, epoch), so a run resumed from a checkpoint takes exactly the steps an
uninterrupted run takes.

Stages: ``tora2`` trains the Tora2 additions and the PersonalizationExtractor (and, with
``train_trajectory``, Tora's extractor and fusers); ``finetune`` adds LoRA (peft) to the
transformer's attention and trains only the LoRA weights; ``full`` trains the whole transformer
(CogVideoX backbone, Tora's extractor and fusers, Tora2 additions) and the PersonalizationExtractor,
for a model whose backbone starts from random weights (the embedded default).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from tora2.configuration import write_yaml
from tora2.errors import InputError, Tora2Error
from tora2.io import write_json_atomic
from tora2.pipelines import conditioning
from tora2.training.config import ModelSettings, TrainConfig, check_config
from tora2.training.dataset import BucketBatchSampler, ClipDataset
from tora2.training.ema import ParameterEMA
from tora2.training.encode import SampleEncoder, collate
from tora2.training.losses import (
    diffusion_loss,
    entity_appearance_loss,
    entity_loss_weights,
    motion_appearance_contrastive_loss,
    predicted_clean,
)
from tora2.training.optim import build_optimizer, scaled_groups

logger = logging.getLogger("tora2.training")
CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")


@dataclass
class TrainResult:
    output_dir: Path
    losses: list[float] = field(default_factory=list)  # total loss per optimisation step
    diffusion_losses: list[float] = field(default_factory=list)
    contrastive_losses: list[float] = field(default_factory=list)
    appearance_losses: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    pipeline_dir: Path | None = None
    lora_path: Path | None = None
    components: dict | None = None


LOSS_KEYS = {"step": "steps", "loss": "losses", "diffusion": "diffusion_losses", "contrastive": "contrastive_losses",
             "appearance": "appearance_losses"}


def write_losses(output_dir: Path, result: TrainResult) -> None:
    """``losses.json``: every step's losses so far (rewritten at each checkpoint and at the end)."""
    write_json_atomic({key: getattr(result, attr) for key, attr in LOSS_KEYS.items()}, output_dir / "losses.json", indent=None)


def read_losses(output_dir: Path, up_to_step: int, result: TrainResult) -> None:
    """Load the losses of the steps before a resume (≤ ``up_to_step``) into ``result``."""
    path = output_dir / "losses.json"
    if not path.is_file():
        return
    data = json.loads(path.read_text())
    keep = [i for i, step in enumerate(data.get("step", [])) if step <= up_to_step]
    for key, attr in LOSS_KEYS.items():
        values = data.get(key) or [0.0] * len(data.get("step", []))  # a term added later: 0 before it existed
        getattr(result, attr).extend(values[i] for i in keep)


class TrainingState:
    """The step counter, saved and restored with accelerate's checkpoint."""

    def __init__(self):
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


# ---------------------------------------------------------------------------------------------- setup
def build_components(cfg: TrainConfig) -> dict:
    """The pipeline components: from ``model.pretrained`` (a pipeline folder) or built from ``model.config``;
    ``model.components`` replaces named components by saved ones from other folders; ``model.vae``
    builds another VAE; with ``model.transformer`` / ``model.image_encoder`` overrides that model is
    rebuilt at fresh init with them, and ``model.scheduler`` overrides replace the scheduler's fields;
    ``model.init_weights`` then loads saved weights (less ``model.init_weights_skip``)."""
    components = _load_components(cfg)
    for name, folder in cfg.model.components.items():
        components[name] = _saved_model(components, "components", name, folder).eval()
    if cfg.model.image_encoder:
        from tora2.models.encoders import SemanticImageEncoder

        config = _config_with(components["image_encoder"], "image_encoder", cfg.model.image_encoder)
        torch.manual_seed(cfg.model.seed)
        components["image_encoder"] = SemanticImageEncoder(**config)
    if cfg.model.vae:
        from tora2.pipelines.components import build_vae

        torch.manual_seed(cfg.model.seed)
        components["vae"] = build_vae(cfg.model.vae)
    if cfg.model.scheduler:
        scheduler = components["scheduler"]
        components["scheduler"] = type(scheduler).from_config(_config_with(scheduler, "scheduler", cfg.model.scheduler))
    if cfg.model.transformer:
        from tora2.models.transformer_tora2 import Tora2Transformer3DModel

        config = _config_with(components["transformer"], "transformer", cfg.model.transformer)
        torch.manual_seed(cfg.model.seed)
        try:
            components["transformer"] = Tora2Transformer3DModel.from_config(config)
        except ValueError as error:
            raise InputError(f"model.transformer {cfg.model.transformer}: {error}") from None
    if cfg.model.components or cfg.model.image_encoder or cfg.model.vae or cfg.model.transformer:
        from tora2.pipelines.components import check_compatible

        check_compatible(components["text_encoder"], components["vae"], components["transformer"],
                         components.get("personalization"), components.get("image_encoder"))
    unknown = sorted(set(cfg.model.init_weights_skip) - set(cfg.model.init_weights))
    if unknown:
        raise InputError(f"model.init_weights_skip names {', '.join(unknown)}, which model.init_weights does not load")
    # Last, so that a model rebuilt with changed fields above starts from the saved weights.
    for name, folder in cfg.model.init_weights.items():
        load_init_weights(components[name], _saved_model(components, "init_weights", name, folder), name, folder,
                           skip=tuple(cfg.model.init_weights_skip.get(name, ())))
    return components


def load_init_weights(model, source, name: str, folder: str, skip: tuple[str, ...] = (), setting: str | None = None) -> list[str]:
    """Copy ``source``'s weights into ``model``: every saved key must exist here with the same shape;
    layers only ``model`` has (a module added by a config field) and keys starting with one of
    ``skip`` keep their init, and saved keys starting with one of ``skip`` are dropped; a model's own
    ``adapt_saved_state`` first widens what its config fields widened. Returns the keys left at init.
    ``setting``: the config key that errors name (default ``model.init_weights.<name>``)."""
    setting = setting or f"model.init_weights.{name}"
    own, everything = model.state_dict(), source.state_dict()
    if hasattr(model, "adapt_saved_state"):  # a saved layer that a config field widened (its own rule)
        everything = model.adapt_saved_state(everything)
    saved = {k: v for k, v in everything.items() if not k.startswith(skip)}
    # A prefix may name layers only the saved model has (a module the new config drops or replaces).
    unused = [prefix for prefix in skip if not any(k.startswith(prefix) for k in (*own, *everything))]
    if unused:
        raise InputError(f"model.init_weights_skip.{name}: no layer of either model starts with {unused[0]!r}")
    extra = [k for k in saved if k not in own]
    mismatched = [f"{k} {tuple(v.shape)}≠{tuple(own[k].shape)}" for k, v in saved.items() if k in own and v.shape != own[k].shape]
    if extra or mismatched:
        detail = "; ".join((extra + mismatched)[:3])
        raise InputError(f"{setting}: {folder} has different layers ({detail[:200]})")
    model.load_state_dict(saved, strict=False)
    added = [k for k in own if k not in saved]
    if added:
        logger.info("%s: %d key(s) only in the new config keep their init, e.g. %s", setting, len(added), added[0])
    return added


def _config_with(model, part: str, overrides: dict) -> dict:
    """``model``'s config fields with ``overrides`` applied; unknown fields are a one-line error (``model.<part>``)."""
    # diffusers drops the fields listed in "_use_default_values" from a config; keep only real fields.
    base = {k: v for k, v in model.config.items() if not k.startswith("_")}
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise InputError(f"model.{part}: unknown {part} field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(base))}")
    return {**base, **overrides}


def _saved_model(components: dict, option: str, name: str, folder: str):
    """The model saved in ``folder``, loaded with the class of ``components[name]`` (``model.<option>.<name>``)."""
    if components.get(name) is None or name in ("tokenizer", "scheduler"):
        models = sorted(k for k, v in components.items() if v is not None and k not in ("tokenizer", "scheduler"))
        raise InputError(f"model.{option}: {name!r} is not a model of this pipeline; use one of {', '.join(models)}")
    if not (Path(folder) / "config.json").is_file():
        raise InputError(f"model.{option}.{name}: {folder} is not a saved model folder (no config.json)")
    return type(components[name]).from_pretrained(str(folder))


def _load_components(cfg: TrainConfig) -> dict:
    if cfg.model.pretrained is not None:
        # diffusers resolves a component class only from modules already imported.
        import tora2.models.encoders  # noqa: F401
        import tora2.models.personalization  # noqa: F401
        import tora2.models.transformer_tora2  # noqa: F401
        from tora2.pipelines.pipeline_tora2 import Tora2Pipeline

        path = Path(cfg.model.pretrained)
        if not (path / "model_index.json").is_file():
            raise InputError(f"model.pretrained {path} is not a pipeline folder (no model_index.json); give a saved Tora2 pipeline")
        pipe = Tora2Pipeline.from_pretrained(str(path))
        return dict(pipe.components)
    from tora2.pipelines.components import build_tiny_components

    return build_tiny_components(cfg.model.config, seed=cfg.model.seed)


def select_trainable(cfg: TrainConfig, components: dict) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze everything, then unfreeze the stage's parameters; returns them with their names
    ("transformer.…", "personalization.…")."""
    for name in ("text_encoder", "vae", "transformer", "personalization", "image_encoder"):
        module = components.get(name)
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False)
    transformer = components["transformer"]
    personalization = components.get("personalization")
    if cfg.stage == "tora2":
        for name, parameter in transformer.named_parameters():
            part = transformer.part_of(name)
            if part == "tora2" or (part == "tora" and cfg.train_trajectory):
                parameter.requires_grad_(True)
        if personalization is not None:
            personalization.requires_grad_(True)
    elif cfg.stage == "full":
        # From scratch (the embedded default): a random backbone cannot be frozen. VAE, text and
        # image encoders stay frozen; the VAE is trained before (tora2.training.vae).
        transformer.requires_grad_(True)
        if personalization is not None:
            personalization.requires_grad_(True)
    else:
        from peft import LoraConfig

        lora = LoraConfig(
            r=cfg.lora.rank,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            init_lora_weights=True,
            target_modules=list(cfg.lora.target_modules),
        )
        transformer.add_adapter(lora)  # only the LoRA weights require grad
    params = [(f"{label}.{name}", p) for label, m in (("transformer", transformer), ("personalization", personalization))
              if m is not None for name, p in m.named_parameters() if p.requires_grad]
    if not params:
        raise InputError(f"stage {cfg.stage!r} found no trainable parameters in this model; check the model config")
    return params


def set_train_mode(model: torch.nn.Module) -> None:
    """Train mode, except frozen normalisation layers: a frozen BatchNorm (Tora's trajectory extractor)
    must keep its running statistics, or "frozen" weights would still drift."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in module.parameters()):
            module.eval()


def make_dataset(cfg: TrainConfig, dataset):
    if dataset is not None:
        return dataset
    if cfg.data.manifest is None:
        raise InputError("no training data: set data.manifest to a JSONL manifest or pass a dataset to train()")
    from tora2.clips.manifest import read_manifest

    clips = read_manifest(cfg.data.manifest)
    return ClipDataset(clips, cfg.data.num_frames, [tuple(b) for b in cfg.data.buckets], cfg.data.frame_stride)


def latest_checkpoint(output_dir: Path) -> Path | None:
    folder = output_dir / "checkpoints"
    found = [(int(m.group(1)), p) for p in folder.glob("step-*") if (m := CHECKPOINT_PATTERN.match(p.name))]
    return max(found)[1] if found else None


def resolve_resume(cfg: TrainConfig, resume: str | None) -> Path | None:
    if resume is None:
        return None
    if resume == "latest":
        return latest_checkpoint(Path(cfg.output_dir))  # none yet: a fresh start
    path = Path(resume)
    if not path.is_dir():
        raise InputError(f"--resume {resume}: no such checkpoint folder; use 'latest' or a folder under {cfg.output_dir}/checkpoints")
    return path


# ---------------------------------------------------------------------------------------------- step
def apply_dropout(batch: dict, cfg: TrainConfig, null_prompt: torch.Tensor, generator: torch.Generator) -> dict:
    """Condition dropout, one draw per sample and condition (same meaning as the pipeline's guidance)."""
    size = batch["latents"].shape[0]
    draw = torch.rand(3, size, generator=generator)
    drop_caption = draw[0] < cfg.data.caption_dropout
    drop_reference = draw[1] < cfg.data.reference_dropout
    drop_trajectory = draw[2] < cfg.data.trajectory_dropout
    out = dict(batch)
    out["prompt_embeds"] = torch.where(drop_caption[:, None, None], null_prompt.to(batch["prompt_embeds"]), batch["prompt_embeds"])
    out["flow"] = torch.where(drop_trajectory[:, None, None, None, None], batch["null_flow"], batch["flow"])
    out["visible"] = batch["visible"] & ~drop_trajectory[:, None, None]
    out["has_reference"] = batch["has_reference"] & ~drop_reference[:, None]
    if "placement" in batch:  # it needs both a reference and a path
        out["placement"] = batch["placement"] * ~(drop_reference | drop_trajectory)[:, None, None, None, None]
    return out


def personalization_tokens(personalization, batch: dict) -> torch.Tensor | None:
    """p_i (B, E, Q, De) from the cached frozen-encoder tokens, with gradient into the DPE: the
    pipeline's ``conditioning.personalization_tokens`` on the batch's cached stacks."""
    if personalization is None or batch["entity_mask"].shape[1] == 0:
        return None
    stacks = {"tokens_semantic": batch["semantic"], "tokens_object": batch["object"], "tokens_face": batch["face"],
              "tokens_is_human": batch["is_human"], "tokens_valid": batch["has_reference"]}
    return conditioning.personalization_tokens(personalization, stacks)[0]


def compute_loss(cfg: TrainConfig, transformer, personalization, scheduler, batch: dict, generator: torch.Generator,
                 step: int = 0, vae=None):
    """(total, diffusion, contrastive, appearance) losses of one micro-batch at optimisation step ``step``
    (``vae``: the frozen VAE, needed only for the appearance term)."""
    latents = batch["latents"]  # (B, Fl, C, h, w)
    size = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (size,), generator=generator).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    entity_inputs = {}
    if batch["entity_mask"].shape[1] > 0:
        p = personalization_tokens(personalization, batch)
        entity_inputs = dict(
            entity_positions=batch["positions"],
            entity_visible=batch["visible"],
            entity_personalization=p,
            entity_personalization_valid=batch["has_reference"],
            entity_text_embeds=batch["text"],
            entity_text_mask=batch["text_mask"],
            entity_mask=batch["entity_mask"],
            entity_reference_latents=batch.get("reference"),
            entity_placement=batch.get("placement"),
        )
    output = transformer(
        hidden_states=noisy,
        encoder_hidden_states=batch["prompt_embeds"],
        timestep=timesteps,
        video_flow=batch["flow"],
        return_contrastive=bool(entity_inputs),
        **entity_inputs,
    )
    weight = None
    shown = batch["visible"] & batch["entity_mask"][..., None]  # (B, E, F)
    if cfg.entity_loss_weight > 0:
        weight = entity_loss_weights(
            batch["positions"], shown, (latents.shape[1], *latents.shape[-2:]), cfg.entity_loss_weight, cfg.entity_loss_sigma
        )  # (B, F, 1, H, W)
    diffusion = diffusion_loss(output.sample, noisy, latents, timesteps, scheduler.alphas_cumprod, weight,
                               scheduler.config.prediction_type, cfg.x_prediction_min_sigma)
    contrastive = diffusion.new_zeros(())
    if entity_inputs and getattr(output, "z_p", None) is not None:
        # Only entities whose appearance and motion both survived dropout have a true positive.
        valid = batch["entity_mask"] & batch["has_reference"] & batch["visible"].any(-1)
        contrastive = motion_appearance_contrastive_loss(output.z_p, output.z_m, transformer.contrastive.logit_scale, valid)
    appearance = diffusion.new_zeros(())
    if cfg.appearance_loss_weight > 0 and entity_inputs:
        appearance = appearance_term(cfg, scheduler, vae, output.sample, noisy, latents, timesteps, batch["positions"], shown)
    total = diffusion + contrastive_weight(cfg, step) * contrastive + cfg.appearance_loss_weight * appearance
    return total, diffusion, contrastive, appearance


def appearance_term(cfg: TrainConfig, scheduler, vae, model_output, noisy, latents, timesteps, positions, shown):
    """``entity_appearance_loss`` of x̂0 against x0, both decoded by the frozen per-frame ``vae`` at
    ``appearance_frames`` evenly spaced frames, over the samples with SNR in [``appearance_min_snr``, ``appearance_max_snr``)."""
    if vae is None or int(vae.config.temporal_compression_ratio) != 1:
        raise InputError("appearance_loss_weight > 0 needs the pipeline's VAE without time compression (a latent per frame)")
    alphas = scheduler.alphas_cumprod.to(latents.device, torch.float32)[timesteps]  # (B,)
    snr = alphas / (1 - alphas)
    keep = (snr >= cfg.appearance_min_snr) & (snr < cfg.appearance_max_snr)  # (B,)
    if not bool(keep.any()):
        return model_output.sum() * 0.0
    frames = torch.linspace(0, latents.shape[1] - 1, min(cfg.appearance_frames, latents.shape[1])).round().long()
    x0_pred = predicted_clean(model_output, noisy, timesteps, scheduler.alphas_cumprod, scheduler.config.prediction_type)
    def decode(z):  # (k, F', C, h, w) scaled latents → (k, F', 3, H, W)
        return rearrange(conditioning.decode_latents(vae, z), "b c f h w -> b f c h w")

    pred = decode(x0_pred[keep][:, frames])
    with torch.no_grad():
        true = decode(latents[keep][:, frames])
    return entity_appearance_loss(pred, true, positions[keep][:, :, frames], shown[keep][:, :, frames], cfg.appearance_crop)


def contrastive_weight(cfg: TrainConfig, step: int) -> float:
    """λ at optimisation step ``step`` (0-based): ramped linearly from 0 over ``contrastive_ramp_steps``,
    so that early on the contrastive loss does not starve the denoiser."""
    if cfg.contrastive_ramp_steps <= 0:
        return cfg.contrastive_weight
    return cfg.contrastive_weight * min(1.0, (step + 1) / cfg.contrastive_ramp_steps)


class TrainingModel(torch.nn.Module):
    """The trainable modules and the loss in one ``forward``, the unit accelerate wraps (DDP/FSDP).

    The loss must run inside the wrapped forward: the contrastive temperature is a transformer
    parameter used only in the loss, and DDP (``find_unused_parameters``) marks any parameter not
    touched by ``forward`` as ready, then fails when its gradient arrives in backward.
    """

    def __init__(self, cfg: TrainConfig, transformer, personalization, scheduler, vae=None):
        super().__init__()
        self.transformer = transformer
        self.personalization = personalization
        self.cfg = cfg
        self.scheduler = scheduler
        self._frozen_vae = (vae,)  # a tuple: frozen, and not a submodule, so checkpoints keep their keys

    def forward(self, batch: dict, generator: torch.Generator, step: int = 0):
        return compute_loss(self.cfg, self.transformer, self.personalization, self.scheduler, batch, generator, step,
                            self._frozen_vae[0])


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


# ---------------------------------------------------------------------------------------------- train
def train(
    cfg: TrainConfig,
    dataset=None,
    *,
    entity_encoder=None,
    components: dict | None = None,
    resume: str | None = None,
) -> TrainResult:
    """Train per ``cfg``; returns the losses and where the outputs went.

    dataset: any map-style dataset of samples as ``tora2.training.dataset`` describes (default: the
    manifest's ``ClipDataset``); it may define ``bucket_of(i)`` to group sizes into batches, and
    ``set_step(step)``, called before each step's samples are read (a curriculum, e.g.
    ``tora2.synthetic.curriculum.CurriculumDataset``).
    entity_encoder: reference crop → ``EntityTokens`` (needed when samples carry reference images).
    components: prebuilt pipeline components (default: ``model.pretrained`` or ``model.config``).
    resume: "latest" or a checkpoint folder.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    check_config(cfg)
    output_dir = Path(cfg.output_dir)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    accelerator = Accelerator(
        # Without cpu=True, accelerate ignores torchrun's WORLD_SIZE on a machine without an accelerator:
        # every rank would silently train its own copy on the same batches.
        cpu=launched > 1 and not torch.cuda.is_available(),
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=1,  # accumulation is explicit below (exact resume, no hidden state)
        log_with="tensorboard" if cfg.tensorboard else None,
        project_dir=str(output_dir),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    if accelerator.num_processes != launched:
        raise Tora2Error(f"launched {launched} processes but accelerate formed a group of {accelerator.num_processes}; "
                         "launch with `accelerate launch` or `torchrun` and check its distributed settings")
    set_seed(cfg.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(cfg, output_dir / "config.yaml")
    dataset = make_dataset(cfg, dataset)
    components = components if components is not None else build_components(cfg)
    transformer, personalization = components["transformer"], components.get("personalization")
    scheduler = components["scheduler"]
    named = select_trainable(cfg, components)
    trainable = [p for _, p in named]
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    encoder = SampleEncoder(components, entity_encoder, cfg.data.cache_dir)

    optimizer, lr_scheduler = build_optimizer(scaled_groups(named, cfg.optim), cfg.optim, cfg.max_steps)
    vae = components["vae"] if cfg.appearance_loss_weight > 0 else None
    if vae is not None:
        vae.requires_grad_(False).eval()
    model = TrainingModel(cfg, transformer, personalization, scheduler, vae)
    set_train_mode(model)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    state = TrainingState()
    accelerator.register_for_checkpointing(state)
    ema = ParameterEMA(named, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if ema is not None:
        accelerator.register_for_checkpointing(ema)

    checkpoint = resolve_resume(cfg, resume)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        logger.info("resumed from %s at step %d", checkpoint, state.step)
    if cfg.tensorboard:
        accelerator.init_trackers("tensorboard")

    buckets = [dataset.bucket_of(i) if hasattr(dataset, "bucket_of") else 0 for i in range(len(dataset))]
    sampler = BucketBatchSampler(buckets, cfg.batch_size, seed=cfg.seed)
    rank, world = accelerator.process_index, accelerator.num_processes
    per_epoch = len(sampler.batches()) // world
    if per_epoch == 0:
        raise InputError(f"{len(dataset)} clip(s) make fewer batches than processes ({world}); add clips or lower batch_size")
    epoch_cache: dict[int, list[list[int]]] = {}

    def batch_indices(index: int) -> list[int]:
        epoch, position = divmod(index, per_epoch)
        if epoch not in epoch_cache:
            sampler.set_epoch(epoch)
            epoch_cache.clear()
            epoch_cache[epoch] = sampler.batches()
        return epoch_cache[epoch][position * world + rank]

    result = TrainResult(output_dir=output_dir)
    if checkpoint is not None:
        read_losses(output_dir, state.step, result)
    progress = None
    if cfg.progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=cfg.max_steps, initial=state.step, desc="train", unit="step")
    accumulation = cfg.gradient_accumulation_steps
    while state.step < cfg.max_steps:
        step = state.step
        totals = torch.zeros(4)
        if hasattr(dataset, "set_step"):
            dataset.set_step(step)
        for micro in range(accumulation):
            generator = torch.Generator().manual_seed(step_seed(cfg.seed, step, micro, rank))
            samples = [encoder.lookup(dataset, i) for i in batch_indices(step * accumulation + micro)]
            batch = apply_dropout(collate(samples), cfg, encoder.null_prompt(), generator)
            batch = to_device(batch, accelerator.device)
            sync = micro == accumulation - 1
            context = accelerator.no_sync(model) if not sync and world > 1 else _null()
            with context, accelerator.autocast():
                losses = model(batch, generator, step)  # total, diffusion, contrastive, appearance
            accelerator.backward(losses[0] / accumulation)
            totals += torch.stack([loss.detach() for loss in losses]).float().cpu() / accumulation
        if cfg.optim.max_grad_norm > 0:
            accelerator.clip_grad_norm_(trainable, cfg.optim.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update()
        state.step += 1

        totals = accelerator.reduce(totals.to(accelerator.device), reduction="mean").cpu()
        result.steps.append(state.step)
        result.losses.append(float(totals[0]))
        result.diffusion_losses.append(float(totals[1]))
        result.contrastive_losses.append(float(totals[2]))
        result.appearance_losses.append(float(totals[3]))
        logs = {"loss": result.losses[-1], "loss_diffusion": result.diffusion_losses[-1],
                "loss_contrastive": result.contrastive_losses[-1], "lr": lr_scheduler.get_last_lr()[0]}
        if cfg.appearance_loss_weight > 0:
            logs["loss_appearance"] = result.appearance_losses[-1]
        if cfg.tensorboard:
            accelerator.log(logs, step=state.step)
        if accelerator.is_main_process and (state.step % max(1, cfg.log_every) == 0 or state.step == cfg.max_steps):
            message = " ".join(f"{k}={v:.4g}" for k, v in logs.items())
            print(f"step {state.step}/{cfg.max_steps} {message}", flush=True)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{result.losses[-1]:.4f}")
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < cfg.max_steps:
            save_checkpoint(accelerator, cfg, output_dir, state.step)
            if accelerator.is_main_process:
                write_losses(output_dir, result)
        if cfg.validation.every and state.step % cfg.validation.every == 0 and accelerator.is_main_process:
            run_validation(cfg, components, accelerator, dataset, state.step, encoder.entity_encoder)
    if progress is not None:
        progress.close()

    save_checkpoint(accelerator, cfg, output_dir, state.step)
    accelerator.wait_for_everyone()
    components = dict(components)
    unwrapped = accelerator.unwrap_model(model)
    components["transformer"] = unwrapped.transformer
    if personalization is not None:
        components["personalization"] = unwrapped.personalization
    if accelerator.is_main_process:
        if ema is not None and cfg.save_pipeline:  # the last step's weights, beside the average
            save_pipeline(components, output_dir / "pipeline-online", cfg.reference_guidance_scale)
        with ema.swapped_in() if ema is not None else _null():
            if cfg.stage == "finetune":
                from tora2.training.lora import save_lora

                result.lora_path = save_lora(components["transformer"], output_dir / "lora.safetensors")
            if cfg.save_pipeline:
                result.pipeline_dir = save_pipeline(components, output_dir / "pipeline", cfg.reference_guidance_scale)
        write_losses(output_dir, result)
    if cfg.tensorboard:
        accelerator.end_training()
    accelerator.wait_for_everyone()
    result.components = components
    return result


def step_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def save_checkpoint(accelerator, cfg: TrainConfig, output_dir: Path, step: int) -> Path:
    """``output_dir/checkpoints/step-NNNNNNN`` via ``accelerator.save_state``; old ones pruned to the limit."""
    folder = output_dir / "checkpoints" / f"step-{step:07d}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process and cfg.checkpoints_total_limit:
        found = sorted(
            (int(m.group(1)), p) for p in folder.parent.glob("step-*") if (m := CHECKPOINT_PATTERN.match(p.name))
        )
        for _, old in found[: max(0, len(found) - cfg.checkpoints_total_limit)]:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def pretrained_reference_guidance(model: ModelSettings) -> float | None:
    """The default reference guidance saved with ``model.pretrained`` (None without one), for stages
    that retrain one component (VAE, encoders) and save the pipeline: the rest of it is sampled as before."""
    from tora2.pipelines.model_info import read_model_info

    if not model.pretrained or not (Path(model.pretrained) / "model_index.json").is_file():
        return None
    return read_model_info(model.pretrained).reference_guidance_scale


def save_pipeline(components: dict, path: Path, reference_guidance_scale: float | None = None) -> Path:
    """A full pipeline folder (diffusers layout) that ``tora2 generate --model`` loads, with the
    model's default ``reference_guidance_scale``."""
    from tora2.pipelines.pipeline_tora2 import Tora2Pipeline

    transformer = components["transformer"]
    if getattr(transformer, "peft_config", None):
        # LoRA weights go to lora.safetensors; the pipeline folder keeps the base transformer.
        transformer = _without_lora(transformer)
    pipe = Tora2Pipeline(**{**components, "transformer": transformer}, reference_guidance_scale=reference_guidance_scale)
    pipe.save_pretrained(str(path))
    return path


def _without_lora(transformer):
    import copy

    base = copy.deepcopy(transformer)
    base.delete_adapters(list(base.peft_config))
    return base


def validation_request(cfg: TrainConfig, dataset, entity_encoder=None) -> dict:
    """The ``Tora2Pipeline.__call__`` arguments of a validation video: the first training clip's
    caption (or ``validation.prompt``), entities, size and frame count; entity references become
    tokens through the same ``entity_encoder`` as in training, so validation conditions as training does."""
    from tora2.specs import EntitySpec

    sample = dataset[0]
    video = sample["video"]  # (F, 3, H, W)
    entities = []
    for entity in sample["entities"]:
        tokens = getattr(entity, "tokens", None)
        if tokens is None and entity.reference is not None and entity_encoder is not None:
            tokens = entity_encoder(entity)
        kind = tokens.kind if tokens is not None else (entity.kind if entity.kind != "auto" else "object")
        entities.append(EntitySpec(text=entity.text, image=entity.reference, trajectory=np.asarray(entity.points),
                                   visible=np.asarray(entity.visible), kind=kind, tokens=tokens))
    return dict(
        prompt=cfg.validation.prompt or sample["caption"],
        entities=entities,
        num_frames=int(video.shape[0]),
        height=int(video.shape[2]),
        width=int(video.shape[3]),
        num_inference_steps=cfg.validation.num_inference_steps,
        guidance_scale=cfg.validation.guidance_scale,
        generator=torch.Generator().manual_seed(cfg.validation.seed),
        output_type="np",
    )


def validation_pipeline(components: dict):
    """A Tora2Pipeline on the (unwrapped) training modules with its own scheduler copy, so
    ``set_timesteps`` during validation cannot touch the training scheduler."""
    from tora2.pipelines.pipeline_tora2 import Tora2Pipeline

    modules = {k: _unwrap(v) for k, v in components.items()}
    scheduler = modules["scheduler"]
    modules["scheduler"] = type(scheduler).from_config(scheduler.config)
    pipe = Tora2Pipeline(**modules)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _unwrap(module):
    return module.module if isinstance(module, torch.nn.Module) and hasattr(module, "module") else module


def write_validation_video(frames: np.ndarray, path: Path) -> Path:
    """(F, H, W, 3) float in [0, 1] → an animated GIF (8 fps), written atomically."""
    from tora2.pipelines.video_io import write_video

    write_video(frames, path, fps=8.0)
    return path


@torch.no_grad()
def run_validation(cfg: TrainConfig, components: dict, accelerator, dataset, step: int, entity_encoder=None) -> Path:
    """``output_dir/validation/step-NNNNNNN.gif``: exactly ``Tora2Pipeline(**components)(**validation_request(...))``."""
    pipe = validation_pipeline(components)
    modules = [m for m in (pipe.transformer, pipe.personalization) if m is not None]
    modes = [m.training for m in modules]
    for module in modules:
        module.eval()
    try:
        frames = pipe(**validation_request(cfg, dataset, entity_encoder)).frames[0]  # (F, H, W, 3)
    finally:
        for module, mode in zip(modules, modes):
            set_train_mode(module) if mode else module.eval()
    path = write_validation_video(frames, Path(cfg.output_dir) / "validation" / f"step-{step:07d}.gif")
    if cfg.tensorboard:
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                video = torch.from_numpy(np.asarray(frames)).permute(0, 3, 1, 2)[None]  # (1, F, 3, H, W)
                tracker.writer.add_video("validation", video, step, fps=8)
    return path
