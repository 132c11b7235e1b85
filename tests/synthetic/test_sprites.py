import json

import numpy as np
import pytest

from tora2.errors import InputError
from tora2.synthetic.sprites import EXTRA_SPRITES_DIR, SPRITES_DIR, load_sprites, sprite_on_white


def test_sprite_set_and_fixed_heldout_split():
    sprites = load_sprites()
    train, heldout = load_sprites("train"), load_sprites("heldout")
    assert len(sprites) == 155
    assert (len(train), len(heldout)) == (124, 31)  # 20% held out
    assert not {s.codepoint for s in train} & {s.codepoint for s in heldout}
    assert sprites[0].name == "dog face" and sprites[0].text == "a dog face"
    assert heldout[0].name == "rabbit face"  # every fifth sprite of the list
    names = {s.name: s for s in sprites}
    assert names["octopus"].text == "an octopus"
    assert names["grapes"].text == "grapes" and names["grapes"].plural


def test_sprites_are_rgba_64_max_and_the_folder_is_small():
    for sprite in load_sprites():
        assert sprite.image.dtype == np.uint8 and sprite.image.shape[2] == 4
        assert max(sprite.image.shape[:2]) == 64
        assert sprite.image[..., 3].max() == 255
    total = sum(p.stat().st_size for p in SPRITES_DIR.iterdir())
    assert total < 2_000_000
    assert (SPRITES_DIR / "OFL.txt").read_text().count("SIL OPEN FONT LICENSE Version 1.1") == 1
    entries = json.loads((SPRITES_DIR / "sprites.json").read_text())["sprites"]
    assert entries[0] == {"codepoint": "U+1F436", "name": "dog face", "file": "u1f436.png", "split": "train", "plural": False}


def test_extra_identities_are_other_emoji_outside_clips_and_evaluation():
    """The "extra" split (encoder stage only) shares no codepoint or drawing with train / held-out."""
    extra, listed = load_sprites("extra"), load_sprites()
    assert len(extra) > 1000 and all(s.split == "extra" for s in extra)
    assert not {s.codepoint for s in extra} & {s.codepoint for s in listed}
    assert not {s.image.tobytes() for s in extra} & {s.image.tobytes() for s in listed}
    assert all(max(s.image.shape[:2]) == 64 and s.image.shape[2] == 4 for s in extra)
    assert len({s.image.tobytes() for s in extra}) == len(extra)  # one identity per drawing
    assert (EXTRA_SPRITES_DIR / "OFL.txt").is_file()


def test_missing_extra_folder_names_the_render_command(tmp_path, monkeypatch):
    import tora2.synthetic.sprites as sprites

    monkeypatch.setattr(sprites, "EXTRA_SPRITES_DIR", tmp_path / "sprites-extra")  # as in an installed wheel
    with pytest.raises(InputError, match="not found; run scripts/render_sprites.py --extra in a checkout"):
        load_sprites("extra")


def test_unknown_split_is_one_line_error():
    with pytest.raises(InputError, match="split 'test' is unknown; use one of train, heldout"):
        load_sprites("test")


def test_sprite_on_white_is_padded_square():
    image = np.zeros((2, 4, 4), np.uint8)
    image[..., 0] = 200
    image[:, :2, 3] = 255  # left half opaque red, right half transparent
    out = sprite_on_white(image)
    assert out.shape == (4, 4, 3)
    assert out[0].tolist() == [[255, 255, 255]] * 4  # padding row
    assert out[1].tolist() == [[200, 0, 0], [200, 0, 0], [255, 255, 255], [255, 255, 255]]
