"""``tora2 train`` and ``tora2 finetune``: thin calls into ``tora2.training``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List, Optional

import typer

from cli.errors import handle_errors
from tora2.configuration import load_run_config
from tora2.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".mkv")
FINETUNE_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "train" / "finetune.yaml"


def train(
    config: Path = typer.Argument(..., help="Training config YAML (configs/train/*.yaml)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key: --set optim.learning_rate=1e-4 (repeatable)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="'latest' or a checkpoint folder to continue from."),
) -> None:
    """Train Tora2 per CONFIG; checkpoints, logs and the final pipeline go to output_dir."""
    from tora2.training.config import load_train_config
    from tora2.training.loop import build_components, train as run_training

    from entities.encode import sample_entity_encoder

    cfg = load_run_config(load_train_config, config, set_ or [])
    components = build_components(cfg)
    result = run_training(cfg, entity_encoder=sample_entity_encoder(components), components=components, resume=resume)
    last = f", final loss {result.losses[-1]:.4f}" if result.losses else ""
    typer.echo(f"{cfg.output_dir}: {len(result.losses)} step(s){last}; pipeline {result.pipeline_dir or '(not saved)'}")


def subject_manifest(subject: Path, text: str, kind: str, work: Path, num_frames: int, size: int) -> Path:
    """A subject folder (images and/or clips) → a manifest of training clips.

    Each image becomes a still clip (the subject centred, static track); its reference is a different
    image of the subject when there is one (against copy-paste). Clips keep their frames, with the
    subject as a static centred track.
    """
    import imageio.v3 as iio
    import numpy as np
    from PIL import Image

    from tora2.clips.manifest import ClipRecord, EntityRecord, write_manifest

    if not subject.is_dir():
        raise InputError(f"--subject {subject} is not a folder; give a folder of images or clips of one subject")
    files = sorted(p for p in subject.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    if not files:
        raise InputError(f"--subject {subject} has no images ({', '.join(IMAGE_SUFFIXES)}) or clips ({', '.join(VIDEO_SUFFIXES)})")
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    work.mkdir(parents=True, exist_ok=True)
    centre = np.full((num_frames, 2), size / 2 - 0.5)
    clips = []
    for index, path in enumerate(files):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            image = Image.open(path).convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            frame = np.asarray(image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC))
            video = work / f"{index:03d}_{path.stem}.mp4"  # GIF writers merge identical frames: use mp4
            iio.imwrite(video, np.repeat(frame[None], num_frames, axis=0), fps=8, codec="libx264", plugin="pyav")
            others = [p for p in images if p != path]
            reference = others[index % len(others)] if others else path
        else:
            video = path
            reference = images[index % len(images)] if images else None
            if reference is None:
                first = np.asarray(iio.imread(path, index=0))[..., :3]
                reference = work / f"{index:03d}_{path.stem}_ref.png"
                Image.fromarray(first).save(reference)
        entity = EntityRecord("subject", text, kind, [reference], centre.copy(), np.ones(num_frames, bool))
        clips.append(ClipRecord(video=video, caption=text, entities=[entity], id=f"{index:03d}_{path.stem}"))
    return write_manifest(clips, work / "manifest.jsonl")


def finetune(
    subject: Path = typer.Option(..., "--subject", help="Folder of images and/or clips of one subject."),
    text: str = typer.Option(..., "--text", help="The subject's phrase with its identifier: 'a sks dog'."),
    output: Path = typer.Option(..., "-o", "--output", help="LoRA file to write (.safetensors)."),
    kind: str = typer.Option("object", "--kind", help="object or human."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimisation steps (default: the config's max_steps)."),
    model: Optional[str] = typer.Option(None, "--model", help="Pipeline folder to fine-tune (default: the config's model)."),
    config: Path = typer.Option(FINETUNE_CONFIG, "--config", help="Fine-tuning config YAML."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key (repeatable)."),
) -> None:
    """A few images or clips of one subject → LoRA weights that `tora2 generate --lora` loads."""
    from tora2.training.config import load_train_config
    from tora2.training.loop import build_components, train as run_training
    from tora2.training.lora import save_lora

    if output.suffix != ".safetensors":
        raise InputError(f"-o {output} must end in .safetensors")
    if kind not in ("object", "human"):
        raise InputError(f"--kind {kind!r}: use object or human")
    if steps is not None and steps < 1:
        raise InputError(f"--steps {steps} must be ≥ 1")
    forced = ["stage=finetune", "save_pipeline=false"]
    if steps is not None:
        forced.append(f"max_steps={steps}")
    if model is not None:
        forced.append(f"model.pretrained={model}")
    with tempfile.TemporaryDirectory(prefix="tora2-finetune-") as work:
        work = Path(work)
        forced.append(f"output_dir={work / 'run'}")
        cfg = load_run_config(load_train_config, config, set_ or [], forced)
        size = int(cfg.data.buckets[0][0])
        manifest = subject_manifest(subject, text, kind, work / "data", cfg.data.num_frames, size)
        cfg.data.manifest = str(manifest)
        cfg.data.buckets = [[size, size]]
        from entities.encode import sample_entity_encoder

        components = build_components(cfg)
        result = run_training(cfg, entity_encoder=sample_entity_encoder(components), components=components)
        output.parent.mkdir(parents=True, exist_ok=True)
        save_lora(result.components["transformer"], output)
    typer.echo(f"{output}: LoRA rank {cfg.lora.rank} after {len(result.losses)} step(s), final loss {result.losses[-1]:.4f}")


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``finetune`` to a Typer app (cli/main.py and the tests)."""
    app.command("train")(handle_errors(train))
    app.command("finetune")(handle_errors(finetune))
