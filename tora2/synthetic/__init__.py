"""Synthetic open-set multi-entity clips: emoji sprites on random smooth paths over varied backgrounds.

Used for the embedded default model's training (in memory, :class:`SyntheticClipDataset`), for
``tora2 data synth`` (mp4 + clip manifest on disk) and for evaluation on held-out sprites and paths.
docs/synthetic-data.md describes the data and the splits.
"""

from tora2.synthetic.backgrounds import KINDS as BACKGROUND_KINDS, make_background
from tora2.synthetic.clips import SyntheticEntity, make_caption, synthesize_clip
from tora2.synthetic.dataset import SyntheticClipDataset, clip_rng, write_dataset
from tora2.synthetic.sprites import SPLITS, Sprite, load_sprites, sprite_on_white

__all__ = [
    "BACKGROUND_KINDS",
    "SPLITS",
    "Sprite",
    "SyntheticClipDataset",
    "SyntheticEntity",
    "clip_rng",
    "load_sprites",
    "make_background",
    "make_caption",
    "sprite_on_white",
    "synthesize_clip",
    "write_dataset",
]
