"""Clips → training samples: decoded, resized into a size bucket, tracks mapped to the bucket's pixels.

A sample (``ClipDataset[i]``) is a dict:

* ``key``: the clip id (the latent cache's file name);
* ``video``: (F, 3, H, W) float32 in [−1, 1] (the VAE's input range), F = ``num_frames``;
* ``caption``: str;
* ``entities``: a list (any length) of ``EntitySample``: text, kind, reference crop (RGB or RGBA
  uint8, from outside the training window), points (F, 2) in the bucket's pixels, visible (F,).

Frozen encoders run later (``tora2.training.encode``), so a dataset object built in Python — for
example synthetic emoji clips — only has to return this dict; it need not read any files.

Glossary: F frames, H/W bucket size, E entities.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tora2.errors import InputError
from tora2.clips.manifest import ClipRecord
from tora2.specs import EntitySample


def read_video(path: Path, start: int, count: int, stride: int = 1) -> np.ndarray:
    """Frames ``start, start + stride, …`` (``count`` of them) of a video → (count, H, W, 3) uint8."""
    import imageio.v3 as iio

    try:
        frames = iio.imread(path, index=None)  # (N, H, W, 3|4)
    except Exception as error:  # imageio raises many types for unreadable files
        raise InputError(f"cannot decode video {path} ({type(error).__name__}); use an mp4/webm/gif that ffmpeg reads") from None
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[..., None].repeat(3, axis=-1)
    frames = frames[..., :3]
    needed = start + (count - 1) * stride + 1
    if len(frames) < needed:
        raise InputError(
            f"video {path} has {len(frames)} frames; the training window needs {needed} "
            f"(start_frame {start}, {count} frames, stride {stride}): lower data.num_frames or use a longer clip"
        )
    return frames[start:needed:stride]


@functools.lru_cache(maxsize=4096)
def video_size(path: str) -> tuple[int, int]:
    """(height, width) of a video's frames, read from its metadata when possible."""
    import imageio.v3 as iio

    try:
        props = iio.improps(path)
        shape = props.shape
        return int(shape[-3]), int(shape[-2])
    except Exception:
        frame = read_video(Path(path), 0, 1)
        return frame.shape[1], frame.shape[2]


def nearest_bucket(height: int, width: int, buckets: list[tuple[int, int]]) -> int:
    """Index of the bucket whose aspect ratio is closest (in log space) to height/width."""
    ratio = math.log(height / width)
    return min(range(len(buckets)), key=lambda i: abs(math.log(buckets[i][0] / buckets[i][1]) - ratio))


def resize_cover(frames: np.ndarray, height: int, width: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Scale (F, h, w, 3) so it covers height×width, centre-crop. Returns frames, scale, (x0, y0) crop offset."""
    src_h, src_w = frames.shape[1:3]
    scale = max(height / src_h, width / src_w)
    new_h, new_w = max(height, round(src_h * scale)), max(width, round(src_w * scale))
    x0, y0 = (new_w - width) // 2, (new_h - height) // 2
    out = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        image = Image.fromarray(frame)
        if (new_w, new_h) != (src_w, src_h):
            image = image.resize((new_w, new_h), Image.BICUBIC)
        out[i] = np.asarray(image)[y0 : y0 + height, x0 : x0 + width]
    return out, scale, (float(x0), float(y0))


def load_reference(path: Path) -> np.ndarray:
    try:
        image = Image.open(path)
        image.load()
    except Exception as error:
        raise InputError(f"cannot read reference image {path} ({type(error).__name__}); use a PNG or JPEG") from None
    return np.asarray(image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"))


class ClipDataset(torch.utils.data.Dataset):
    """Manifest clips → samples (see module docstring). ``buckets`` are (height, width) pairs."""

    def __init__(self, clips: list[ClipRecord], num_frames: int, buckets: list[tuple[int, int]], frame_stride: int = 1):
        if not clips:
            raise InputError("the dataset has no clips; check the manifest")
        if num_frames < 1 or frame_stride < 1:
            raise InputError(f"num_frames {num_frames} and frame_stride {frame_stride} must be ≥ 1")
        self.clips = clips
        self.num_frames = num_frames
        self.frame_stride = frame_stride
        self.buckets = [tuple(int(v) for v in b) for b in buckets]

    def __len__(self) -> int:
        return len(self.clips)

    def key_of(self, index: int) -> str:
        return self.clips[index].id

    def bucket_of(self, index: int) -> int:
        return nearest_bucket(*video_size(str(self.clips[index].video)), self.buckets)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        height, width = self.buckets[self.bucket_of(index)]
        frames = read_video(clip.video, clip.start_frame, self.num_frames, self.frame_stride)  # (F, h, w, 3)
        frames, scale, (x0, y0) = resize_cover(frames, height, width)  # (F, H, W, 3)
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (F, 3, H, W)
        window = clip.start_frame + np.arange(self.num_frames) * self.frame_stride
        entities = []
        for number, entity in enumerate(clip.entities):
            if len(entity.points) <= window[-1]:
                raise InputError(
                    f"clip {clip.id!r} entity {number}: track has {len(entity.points)} points but the window "
                    f"reaches frame {window[-1]}; give one point per source frame"
                )
            points = entity.points[window] * scale - (x0, y0)  # (F, 2) bucket pixels
            inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
            visible = entity.visible[window] & inside
            points = np.clip(points, 0, (width - 1, height - 1)).astype(np.float32)
            reference = load_reference(entity.references[0]) if entity.references else None
            entities.append(EntitySample(entity.text, entity.kind, reference, points, visible))
        return {"key": clip.id, "video": video, "caption": clip.caption, "entities": entities}


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of indices that share a size bucket; shuffled per epoch from ``seed``; deterministic.

    ``set_epoch(e)`` picks the order, so a resumed run sees the same batches as an uninterrupted one.
    """

    def __init__(self, buckets: list[int], batch_size: int, seed: int = 0, drop_last: bool = False):
        self.buckets = list(buckets)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        out = []
        for bucket in sorted(set(self.buckets)):
            members = [i for i, b in enumerate(self.buckets) if b == bucket]
            members = [members[i] for i in rng.permutation(len(members))]
            for start in range(0, len(members), self.batch_size):
                batch = members[start : start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    out.append(batch)
        return [out[i] for i in rng.permutation(len(out))]

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())
