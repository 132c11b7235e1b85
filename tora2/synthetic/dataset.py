"""Synthetic clips on disk (mp4 + clip manifest) and in memory (a training dataset, no file I/O).

Clip ``i`` of a set made with seed ``S`` and split ``split`` is drawn from
``numpy.random.default_rng([S, SPLIT_CODES[split], i])``: the same seed gives the same clips on
disk and in memory, and each clip is reproducible on its own.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from tora2.errors import InputError
from tora2.specs import EntitySample
from tora2.synthetic.clips import SyntheticEntity, check_size, synthesize_clip
from tora2.synthetic.sprites import CLIP_SPLITS, check_split, load_sprites

SPLIT_CODES = {"train": 0, "heldout": 1}
MAX_ENTITIES = 3
FPS = 8


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    check_split(split, CLIP_SPLITS)
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def num_entities_for(rng: np.random.Generator, max_entities: int, min_entities: int = 1) -> int:
    """The entity count of one clip, uniform over [min_entities, max_entities] (one draw either way)."""
    return int(rng.integers(min_entities, max_entities + 1))


class SyntheticClipDataset(torch.utils.data.Dataset):
    """Clips generated on the fly; items have the training sample layout of ``tora2.training.dataset``:
    ``{"key", "video" (F, 3, H, W) float32 in [−1, 1], "caption", "entities": [EntitySample]}``.

    The reference of each entity is its clean RGBA sprite (a different scale and angle from every
    frame of the clip, so it cannot be copied pixel for pixel).
    """

    def __init__(self, length: int, seed: int = 0, split: str = "train", num_frames: int = 9, height: int = 64,
                 width: int = 64, max_entities: int = MAX_ENTITIES, background_kinds: tuple[str, ...] | None = None,
                 recolour: bool = False, min_entities: int = 1):
        from tora2.synthetic.backgrounds import KINDS

        check_split(split, CLIP_SPLITS)
        check_size(num_frames, height, width)
        if length < 1:
            raise InputError(f"length is {length}; a dataset needs at least 1 clip")
        self.sprites = load_sprites(split)
        if not 1 <= max_entities <= len(self.sprites):
            raise InputError(f"max_entities is {max_entities}; use 1 to {len(self.sprites)}")
        if not 1 <= min_entities <= max_entities:
            raise InputError(f"min_entities is {min_entities}; use 1 to max_entities ({max_entities})")
        kinds = tuple(KINDS if background_kinds is None else background_kinds)
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise InputError(f"background kinds {', '.join(unknown) or '(none)'} unknown; use some of {', '.join(KINDS)}")
        self.length, self.seed, self.split = length, seed, split
        self.num_frames, self.height, self.width, self.max_entities = num_frames, height, width, max_entities
        self.min_entities = min_entities
        self.background_kinds = kinds
        self.recolour = recolour
        # Clips drawn from a narrower mix are different clips: their keys (and cache entries) say so.
        self.key_suffix = ("" if kinds == tuple(KINDS) else "-" + "+".join(kinds)) + (
            "" if max_entities == MAX_ENTITIES else f"-max{max_entities}") + (
            "" if min_entities == 1 else f"-min{min_entities}") + ("-recolour" if recolour else "")

    def __len__(self) -> int:
        return self.length

    def clip(self, index: int) -> tuple[np.ndarray, str, list[SyntheticEntity]]:
        """The raw clip: frames (F, H, W, 3) uint8, caption, entities with ground truth."""
        if not 0 <= index < self.length:
            raise IndexError(f"clip index {index} out of range [0, {self.length})")
        rng = clip_rng(self.seed, self.split, index)
        count = num_entities_for(rng, self.max_entities, self.min_entities)
        return synthesize_clip(rng, self.sprites, self.num_frames, self.height, self.width, count, self.split,
                               self.background_kinds, self.recolour)

    def __getitem__(self, index: int) -> dict:
        frames, caption, entities = self.clip(index)
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (F, 3, H, W)
        samples = [EntitySample(e.text, "object", np.array(e.sprite.image), e.points.astype(np.float32), e.visible.copy())
                   for e in entities]
        return {"key": f"synth-{self.split}-{self.seed}-{index:06d}{self.key_suffix}", "video": video, "caption": caption, "entities": samples}


def write_video(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """H.264 mp4 at high quality (CRF 12, so trackers and the VAE see near-lossless frames)."""
    import imageio.v3 as iio

    iio.imwrite(path, frames, extension=".mp4", fps=fps, codec="libx264", macro_block_size=1,
                output_params=["-crf", "12"])


def write_dataset(output: str | os.PathLike, num_clips: int, seed: int = 0, split: str = "train", num_frames: int = 49,
                  height: int = 480, width: int = 720, max_entities: int = MAX_ENTITIES, progress: bool = False) -> Path:
    """Write ``num_clips`` clips as ``clips/NNNNNN.mp4`` + ``references/<sprite>.png`` + ``manifest.jsonl``.

    The manifest is the clip manifest of ``tora2.training`` (paths relative to ``output``). The
    folder is built in a temporary sibling and moved into place at the end, so an interrupted run
    leaves no partial dataset. ``output`` must not exist yet, or be an empty folder.
    """
    output = Path(output)
    if num_clips < 1:
        raise InputError(f"--clips is {num_clips}; write at least 1 clip")
    if height % 2 or width % 2:
        raise InputError(f"frame size {height}x{width} (HxW) must be even on both sides for H.264; use e.g. {height + height % 2}x{width + width % 2}")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"output {output} already exists and is not an empty folder; choose a new folder")
    dataset = SyntheticClipDataset(num_clips, seed, split, num_frames, height, width, max_entities)
    parent = output.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{output.name}."))
    try:
        (staging / "clips").mkdir()
        (staging / "references").mkdir()
        indices = range(num_clips)
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc="synthesizing", unit="clip")
        lines = []
        for index in indices:
            frames, caption, entities = dataset.clip(index)
            video = f"clips/{index:06d}.mp4"
            write_video(staging / video, frames)
            records = []
            for e in entities:
                reference = f"references/{e.sprite.path.name}"
                if not (staging / reference).exists():
                    shutil.copyfile(e.sprite.path, staging / reference)
                records.append({
                    "id": e.id, "text": e.text, "kind": "object", "references": [reference],
                    "track": {"points": np.round(e.points, 3).tolist(), "visible": e.visible.tolist()},
                })
            meta = {"split": split, "seed": seed, "index": index, "fps": FPS,
                    "path_seeds": [e.path_seed for e in entities], "sprites": [e.sprite.codepoint for e in entities]}
            lines.append(json.dumps({"id": f"{index:06d}", "video": video, "caption": caption, "entities": records, "meta": meta}))
        (staging / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.chmod(staging, 0o755)
        if output.exists():
            output.rmdir()
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output / "manifest.jsonl"
