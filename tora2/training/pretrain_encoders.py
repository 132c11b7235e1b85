"""Stage ``encoders``: teach the tiny text and image encoders to tell sprites apart, before the transformer.

The embedded model's frozen encoders start random: the pooled image embedding of any two sprite
crops then has cosine ≈ 0.95, so the DPE is asked to bind appearances it cannot tell apart. This
stage trains them CLIP-style on the training sprites (the held-out ones are never seen):

1. a batch of ``batch_size`` distinct training sprites; each is drawn twice under jitter
   (``jitter_sprite``: scale, rotation, shift, and half of the time a synthetic background instead
   of white, as the tracker's crops of generated frames look), and its phrase ("a dog face") is
   tokenized;
2. image embedding = the image tower's pooled token (what ``SemanticImageEncoder.encode`` returns
   first); text embedding = a linear head over the mean of the phrase's T5 hidden states (the head
   is discarded: the transformer reads the hidden states themselves);
3. loss = open_clip's ``ClipLoss`` (symmetric InfoNCE, learnable temperature) between view 1 and the
   text plus ``image_weight`` × the same loss between view 1 and view 2 (the image–image term is
   what carries over to sprites never seen in training, whose names the text side never learned);
4. with ``loss.preserve`` λ > 0, + λ × the drift of the tokens a transformer reads from clean
   references (``reference_tokens``) away from the starting encoder's: backward-compatible
   training, so a transformer trained on the old encoder can read the new one.

``retrieval_accuracy`` is the check: jittered crops of the held-out sprites retrieve their own
clean sprite (top-1 among the held-out set). The output folder holds the whole pipeline with the two
trained encoders, so the transformer stage starts from it (``model.pretrained``).

Run: ``python -m tora2.training.pretrain_encoders configs/train/embedded-encoders.yaml [--set key=value ...]``.

Glossary: B sprites per batch, R recoloured and X extra identities per step, S encoder input side, L phrase tokens, C embedding width, D T5 width.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from tora2.compositing import paste_sprite
from tora2.configuration import check_positive_ints, load_config, parse_override, write_yaml
from tora2.errors import InputError
from tora2.training.config import ModelSettings
from tora2.training.optim import OptimConfig, build_optimizer, check_optim

SCALE_RANGE = (0.55, 1.0)  # sprite's longer side as a fraction of the crop
MAX_ROTATION = 15.0  # degrees, either way
MAX_SHIFT = 0.12  # centre shift as a fraction of the crop side


@dataclass
class EncoderLossConfig:
    image_weight: float = 1.0  # weight of the image–image (view 1 ↔ view 2) term; the image–text term has weight 1
    background_probability: float = 0.5  # share of views drawn over a synthetic background instead of white
    # Extra identities for the image–image term: this many hue-rotated copies (30–330°) of random
    # training sprites per step, each its own identity (both views rotated alike), so the image tower
    # must tell colour variants of one shape apart. 0 = off. The image–text term keeps the originals.
    recoloured: int = 0
    # More identities for the image–image term: this many random sprites of the "extra" split
    # (≈ 1100 emoji outside the train and held-out lists, tora2/synthetic/sprites.py) per step,
    # each its own identity. 0 = off. They have no place in the image–text term.
    extra_identities: int = 0
    # Backward-compatible training: weight of a term that keeps the tokens the DPE reads from a
    # reference (``semantic_tokens`` and the tiles of ``detail_tokens`` of its white-backed crop)
    # where the starting encoder put them: mean ‖new − old‖² over mean ‖old‖², on the clean crops
    # of ``preserve_sprites`` of the step's identities. The jittered views stay free to move towards
    # their references, so retrieval can improve while a transformer trained on the old tokens still
    # reads the new ones. 0 = off.
    preserve: float = 0.0
    preserve_sprites: int = 32


@dataclass
class EncoderTrainConfig:
    output_dir: str = "runs/embedded/encoders"
    max_steps: int = 2000
    max_minutes: float = 0.0  # stop early after this much wall time (0 = no limit)
    batch_size: int = 64  # distinct sprites per step (at most the training split's 124)
    seed: int = 0
    log_every: int = 50
    eval_every: int = 250  # held-out retrieval accuracy every N steps (0 = only at the end)
    eval_views: int = 8  # jittered views per held-out sprite in the retrieval check
    progress: bool = False
    train_text_encoder: bool = True  # false: only the image tower (and the discarded text head) learn
    model: ModelSettings = field(default_factory=ModelSettings)
    loss: EncoderLossConfig = field(default_factory=EncoderLossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(learning_rate=1e-3, warmup_steps=50, max_grad_norm=0.0))

    def __post_init__(self) -> None:
        check_encoder_config(self)


def check_encoder_config(cfg: EncoderTrainConfig) -> None:
    if not isinstance(cfg.loss, EncoderLossConfig):
        return  # from_dict builds the nested sections after; checked again by load_encoder_config
    check_positive_ints(cfg, ("max_steps", "batch_size", "eval_views"))
    if isinstance(cfg.optim, OptimConfig):
        check_optim(cfg.optim, cfg.max_steps)
    if cfg.batch_size < 2:
        raise InputError(f"batch_size is {cfg.batch_size}; a contrastive batch needs at least 2 sprites")
    if cfg.loss.image_weight < 0:
        raise InputError(f"loss.image_weight must be ≥ 0; got {cfg.loss.image_weight}")
    if not 0 <= cfg.loss.recoloured <= 124:
        raise InputError(f"loss.recoloured is {cfg.loss.recoloured}; use 0 (off) to 124 (the training split's sprites)")
    if cfg.loss.extra_identities < 0:
        raise InputError(f"loss.extra_identities is {cfg.loss.extra_identities}; use 0 (off) or a count of extra sprites per step")
    if cfg.loss.preserve < 0:
        raise InputError(f"loss.preserve must be ≥ 0 (0 = off); got {cfg.loss.preserve}")
    if cfg.loss.preserve > 0 and cfg.loss.preserve_sprites < 1:
        raise InputError(f"loss.preserve_sprites is {cfg.loss.preserve_sprites}; use at least 1 (or loss.preserve=0)")
    if not 0.0 <= cfg.loss.background_probability <= 1.0:
        raise InputError(f"loss.background_probability must be in [0, 1]; got {cfg.loss.background_probability}")


def load_encoder_config(path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> EncoderTrainConfig:
    """An EncoderTrainConfig from YAML plus ``key=value`` overrides (unknown keys rejected)."""
    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)
    cfg = load_config(EncoderTrainConfig, path, overrides)
    check_encoder_config(cfg)
    return cfg


# ------------------------------------------------------------------------------------------ data
def jitter_sprite(image: np.ndarray, rng: np.random.Generator, size: int, background: np.ndarray | None = None) -> np.ndarray:
    """An RGBA sprite (h, w, 4) → (size, size, 3) uint8: scaled, rotated and shifted inside the square,
    composited over ``background`` ((size, size, 3) uint8) or white."""
    frame = np.full((size, size, 3), 255.0, np.float32) if background is None else background.astype(np.float32)
    scale = rng.uniform(*SCALE_RANGE) * size
    centre = (size - 1) / 2.0 + rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2) * size
    paste_sprite(frame, image, centre, scale, rng.uniform(-MAX_ROTATION, MAX_ROTATION))  # in place
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def draw_view(image: np.ndarray, rng: np.random.Generator, size: int, background_probability: float) -> np.ndarray:
    """One jittered view, over a random synthetic background with ``background_probability``."""
    from tora2.synthetic.backgrounds import make_background

    background = None
    if rng.uniform() < background_probability:
        background = make_background(rng, size, size)[0]
        background = cv2.resize(background, (size, size)) if background.shape[:2] != (size, size) else background
    return jitter_sprite(image, rng, size, background)


# ------------------------------------------------------------------------------------------ embeddings
def image_embeddings(image_encoder, views: list[np.ndarray]) -> torch.Tensor:
    """(E, S, S, 3) uint8 views → (E, C) L2-normalised pooled tokens, with gradients."""
    pixels = image_encoder.preprocess(views)  # (E, 3, S, S)
    pooled, _ = image_encoder.visual(pixels)  # (E, C), (E, G*G, width)
    return F.normalize(pooled, dim=-1)


def phrase_states(tokenizer, text_encoder, phrases: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Phrases → T5 hidden states (E, L, D) and their token mask (E, L)."""
    batch = tokenizer(phrases, padding=True, return_tensors="pt")
    hidden = text_encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state  # (E, L, D)
    return hidden, batch.attention_mask.float()


def text_embeddings(tokenizer, text_encoder, head: torch.nn.Linear, phrases: list[str]) -> torch.Tensor:
    """Phrases → (E, C) L2-normalised: the head over the masked mean of the phrase's hidden states."""
    hidden, mask = phrase_states(tokenizer, text_encoder, phrases)  # (E, L, D), (E, L)
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (E, D)
    return F.normalize(head(pooled), dim=-1)  # (E, C)


def reference_tokens(image_encoder, images: list[np.ndarray], grad: bool = True) -> torch.Tensor:
    """Entity images (RGBA sprites) → the tokens the DPE reads from their white-backed crops:
    (N·(1 + k·k), 1 + G², C) — each crop's semantic input, then its ``detail_tokens`` tiles."""
    from tora2.models.encoders import resize_square, white_square

    inputs = []
    for image in images:
        square = white_square(image)  # (S', S', 3)
        inputs += [resize_square(square, image_encoder.image_size), *image_encoder.detail_tiles(square)]
    pixels = image_encoder.preprocess(inputs)  # (N·(1 + k·k), 3, S, S)
    return image_encoder.tokens(pixels) if grad else image_encoder.encode(pixels)


def token_drift(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Mean squared token change relative to the old tokens' mean squared norm (0 = unchanged)."""
    return (new - old).pow(2).sum(-1).mean() / old.pow(2).sum(-1).mean()


@torch.no_grad()
def retrieval_accuracy(image_encoder, sprites, views_per_sprite: int = 8, seed: int = 0,
                       background_probability: float = 0.5) -> float:
    """Top-1 share of jittered views that retrieve their own sprite's clean reference among ``sprites``."""
    from tora2.synthetic.sprites import sprite_on_white

    rng = np.random.default_rng(seed)
    size = image_encoder.image_size
    gallery = image_embeddings(image_encoder, [cv2.resize(sprite_on_white(s), (size, size), interpolation=cv2.INTER_AREA)
                                               for s in sprites])  # (N, C)
    correct = total = 0
    for index, sprite in enumerate(sprites):
        views = [draw_view(sprite.image, rng, size, background_probability) for _ in range(views_per_sprite)]
        scores = image_embeddings(image_encoder, views) @ gallery.T  # (V, N)
        correct += int((scores.argmax(1) == index).sum())
        total += len(views)
    return correct / total


# ------------------------------------------------------------------------------------------ training
@dataclass
class EncoderTrainResult:
    output_dir: Path
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    retrieval_steps: list[int] = field(default_factory=list)
    retrieval: list[float] = field(default_factory=list)  # held-out top-1 accuracy
    retrieval_before: float | None = None
    drift: list[float] = field(default_factory=list)  # per step, with loss.preserve: the preserved tokens' drift
    heldout_drift: list[float] = field(default_factory=list)  # at each retrieval check: held-out references' drift
    pipeline_dir: Path | None = None
    seconds: float = 0.0


def train_encoders(cfg: EncoderTrainConfig, *, components: dict | None = None) -> EncoderTrainResult:
    """Train ``components["image_encoder"]`` and ``components["text_encoder"]`` per ``cfg``; writes
    config.yaml, losses.json and pipeline/ (every component) to ``output_dir``."""
    from open_clip.loss import ClipLoss

    from tora2.synthetic.clips import rotate_hue
    from tora2.synthetic.sprites import load_sprites
    from tora2.training.config import TrainConfig
    from tora2.training.loop import build_components, pretrained_reference_guidance, save_pipeline

    check_encoder_config(cfg)
    if components is None:
        components = build_components(TrainConfig(model=cfg.model))
    image_encoder, text_encoder, tokenizer = components["image_encoder"], components["text_encoder"], components["tokenizer"]
    if image_encoder is None or image_encoder.visual is None:
        raise InputError("stage encoders trains an open_clip image tower; the model has none (image_encoder section)")
    train_sprites, heldout = load_sprites("train"), load_sprites("heldout")
    if cfg.batch_size > len(train_sprites):
        raise InputError(f"batch_size is {cfg.batch_size}; the training split has {len(train_sprites)} sprites, use at most that")
    extra = load_sprites("extra") if cfg.loss.extra_identities else []
    if cfg.loss.extra_identities > len(extra):
        raise InputError(f"loss.extra_identities is {cfg.loss.extra_identities}; the extra split has {len(extra)} sprites, use at most that")
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(cfg, output_dir / "config.yaml")

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    size = image_encoder.image_size
    head = torch.nn.Linear(text_encoder.config.d_model, image_encoder.out_dim)
    logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
    reference = copy.deepcopy(image_encoder) if cfg.loss.preserve > 0 else None  # frozen: the tokens to keep
    unseen = [s.image for s in heldout]  # the DPE's inputs for sprites never trained on
    unseen_start = reference_tokens(reference, unseen, grad=False) if reference is not None else None  # fixed: the frozen encoder's
    image_encoder.visual.requires_grad_(True)
    text_encoder.requires_grad_(cfg.train_text_encoder)
    text_encoder.train(cfg.train_text_encoder)
    params = list(image_encoder.visual.parameters()) + list(head.parameters())
    params += list(text_encoder.parameters()) if cfg.train_text_encoder else []
    optimizer, schedule = build_optimizer([{"params": params}, {"params": [logit_scale], "weight_decay": 0.0}], cfg.optim, cfg.max_steps)
    clip_loss = ClipLoss()
    result = EncoderTrainResult(output_dir=output_dir)
    result.retrieval_before = retrieval_accuracy(image_encoder, heldout, cfg.eval_views, cfg.seed)
    print(f"encoders: held-out retrieval before training {result.retrieval_before:.3f}", flush=True)
    progress = None
    if cfg.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=cfg.max_steps, desc="train encoders", unit="step")
    start = time.monotonic()
    for step in range(1, cfg.max_steps + 1):
        picks = rng.choice(len(train_sprites), cfg.batch_size, replace=False)
        batch = [train_sprites[i] for i in picks]
        images = [s.image for s in batch]
        for i in rng.choice(len(train_sprites), cfg.loss.recoloured, replace=False):
            images.append(rotate_hue(train_sprites[i].image, float(rng.uniform(30.0, 330.0))))
        if extra:
            images += [extra[i].image for i in rng.choice(len(extra), cfg.loss.extra_identities, replace=False)]
        first = image_embeddings(image_encoder, [draw_view(image, rng, size, cfg.loss.background_probability) for image in images])  # (B + R + X, C)
        second = image_embeddings(image_encoder, [draw_view(image, rng, size, cfg.loss.background_probability) for image in images])  # (B + R + X, C)
        texts = text_embeddings(tokenizer, text_encoder, head, [s.text for s in batch])  # (B, C)
        scale = logit_scale.clamp(max=float(np.log(100.0))).exp()
        loss = clip_loss(first[: len(batch)], texts, scale) + cfg.loss.image_weight * clip_loss(first, second, scale)
        if reference is not None:
            kept = [images[i] for i in rng.choice(len(images), min(cfg.loss.preserve_sprites, len(images)), replace=False)]
            drift = token_drift(reference_tokens(image_encoder, kept), reference_tokens(reference, kept, grad=False))
            result.drift.append(float(drift.detach()))
            loss = loss + cfg.loss.preserve * drift
        loss.backward()
        if cfg.optim.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        result.steps.append(step)
        result.losses.append(float(loss.detach()))
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{result.losses[-1]:.3f}")
        out_of_time = cfg.max_minutes > 0 and time.monotonic() - start > 60 * cfg.max_minutes
        last = step == cfg.max_steps or out_of_time
        if step % max(1, cfg.log_every) == 0 or last:
            print(f"encoders step {step}/{cfg.max_steps} loss={result.losses[-1]:.4f} "
                  f"temperature={1 / float(scale.detach()):.4f} elapsed={time.monotonic() - start:.0f}s", flush=True)
        if last or (cfg.eval_every and step % cfg.eval_every == 0):
            accuracy = retrieval_accuracy(image_encoder, heldout, cfg.eval_views, cfg.seed)
            result.retrieval_steps.append(step)
            result.retrieval.append(accuracy)
            note = ""
            if reference is not None:
                result.heldout_drift.append(float(token_drift(reference_tokens(image_encoder, unseen, grad=False), unseen_start)))
                note = f", held-out reference token drift {result.heldout_drift[-1]:.4f}"
            print(f"encoders step {step}: held-out retrieval top-1 {accuracy:.3f}{note}", flush=True)
            write_encoder_losses(result, output_dir / "losses.json")
        if out_of_time:
            print(f"encoders: stopped after {step} steps (max_minutes={cfg.max_minutes})", flush=True)
            break
    if progress is not None:
        progress.close()
    image_encoder.requires_grad_(False)
    text_encoder.requires_grad_(False)
    text_encoder.eval()
    image_encoder._fingerprint = None  # weights changed: the encoder id (and every cache key) must change
    result.seconds = time.monotonic() - start
    # Only the encoders changed: the pipeline keeps model.pretrained's default reference guidance.
    result.pipeline_dir = save_pipeline(components, output_dir / "pipeline", pretrained_reference_guidance(cfg.model))
    write_encoder_losses(result, output_dir / "losses.json")
    return result


def write_encoder_losses(result: EncoderTrainResult, path: Path) -> None:
    path.write_text(json.dumps({"step": result.steps, "loss": result.losses, "retrieval_step": result.retrieval_steps,
                                "heldout_retrieval_top1": result.retrieval, "retrieval_before": result.retrieval_before,
                                "token_drift": result.drift, "heldout_token_drift": result.heldout_drift,
                                "seconds": round(result.seconds, 1)}))


def main(argv: list[str] | None = None) -> int:
    """``python -m tora2.training.pretrain_encoders CONFIG [--set key=value ...]``."""
    from tora2.configuration import run_stage

    return run_stage(argv, "tora2.training.pretrain_encoders", "configs/train/embedded-encoders.yaml",
                     load_encoder_config, train_encoders,
                     lambda cfg, r: f"{cfg.output_dir}: {len(r.steps)} step(s), held-out retrieval top-1 "
                                    f"{r.retrieval_before:.3f} → {r.retrieval[-1]:.3f}; pipeline {r.pipeline_dir}")


if __name__ == "__main__":
    sys.exit(main())
