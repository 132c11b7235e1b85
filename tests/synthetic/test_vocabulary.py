"""Every sprite name and every synthetic caption is made of words the tiny tokenizer knows, so
entity phrases never fall back to letter-by-letter tokens (which also overflowed the 32-token prompts)."""

import numpy as np

from tora2.pipelines.components import DEFAULT_VOCAB, read_vocab
from tora2.synthetic import load_sprites, synthesize_clip


def test_sprite_names_and_captions_are_in_the_vocabulary():
    vocab = set(read_vocab(DEFAULT_VOCAB))
    sprites = load_sprites()
    missing = {w for s in sprites for w in s.name.lower().replace("-", " ").split()} - vocab
    assert missing == set()
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, caption, _ = synthesize_clip(rng, sprites, num_frames=9, height=64, width=64, num_entities=3)
        words = {w.strip(",.") for w in caption.lower().replace("-", " ").split()}
        assert words - vocab == set(), caption
