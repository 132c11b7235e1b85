"""Render the synthetic dataset's entity sprites from Noto Color Emoji into ``tora2/data/sprites/``.

Run once by a maintainer (the PNGs are committed, so users and CI never need the font):

    apt-get install -y fonts-noto-color-emoji
    python scripts/render_sprites.py [--font /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf]
    python scripts/render_sprites.py --extra   # the encoder stage's extra identities (below)

Each emoji is drawn at the font's only bitmap size (109 px) as RGBA, trimmed to its alpha box and
resized so that its longer side is 64 px. ``sprites.json`` lists codepoint, Unicode name (the
entity text), file and split. The held-out split is fixed here, once: every fifth sprite of the
list (20%) is "heldout" and never used for training.

``--extra`` renders every other single-codepoint emoji the font draws (≈ 1100: the EMOJI list left
out, skin-tone modifiers and flags skipped, identical or nearly empty drawings dropped) into
``tora2/data/sprites-extra/`` with split "extra": identities for the image–image term of the
encoder stage only (``loss.extra_identities``), never in clips, captions or evaluation. They are
not installed with the wheel (pyproject.toml), only used from a checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import unicodedata
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
OUT = Path(__file__).resolve().parent.parent / "tora2" / "data" / "sprites"
EXTRA_OUT = OUT.parent / "sprites-extra"
# Where --extra looks: the emoji blocks of Unicode (dingbats and symbols, pictographs, emoticons,
# transport, supplemental and extended-A pictographs), less skin-tone modifiers and regional
# indicators (flags are pairs of them).
EXTRA_RANGES = ((0x2600, 0x27C0), (0x1F300, 0x1F650), (0x1F680, 0x1F700), (0x1F900, 0x1FA00), (0x1FA70, 0x1FB00))
EXTRA_SKIP = set(range(0x1F3FB, 0x1F400))
MIN_COVERAGE = 0.05  # drawings whose alpha covers less of their box (lines, dots) are no identity
RENDER_SIZE = 109  # the CBDT bitmap strike of Noto Color Emoji; other sizes fail to load
SPRITE_SIDE = 64
HELDOUT_EVERY = 5  # every fifth sprite → 20% held out
PLURAL_NAMES = {"grapes", "cherries", "french fries", "books"}  # captions say "grapes move", not "a grapes moves"

# Single codepoints only (no ZWJ sequences, no variation selectors), grouped for readability.
EMOJI = (
    # animals
    "🐶🐱🐭🐹🐰🦊🐻🐼🐨🐯🦁🐮🐷🐸🐵🐔🐧🐦🐤🦆🦅🦉🦇🐺🐗🐴🦄🐝🐛🦋🐌🐞🐜🐢🐍🦎🐙🦑🦀🐡🐠🐟🐬🐳🦈🐊🐅🐆🦓🦍🐘🦛🦏🐪🦒🦘🐃🐑🐐🦌🐕🐈🐓🦃🦚🦜🦢🐇🦔"
    # food
    "🍎🍐🍊🍋🍌🍉🍇🍓🍒🍑🥭🍍🥥🥝🍅🍆🥑🥦🥕🌽🥐🍞🥨🧀🥚🍔🍟🍕🌭🌮🍩🍪🎂🍰🍭🍫🍿🍄🌰"
    # objects, vehicles, sports, nature
    "⚽🏀🏈⚾🎾🏐🎱🎈🎁🔑🔔🎸🎺🥁📷💡📚✏🔨⏰☂🚗🚕🚌🚓🚑🚒🚜🚲🛵🚀🚁⛵🚂✈🌵🌲🌻🌹🍀⭐🌙☀⛄🔥💧🌈"
)


def render(char: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    canvas = Image.new("RGBA", (RENDER_SIZE * 2, RENDER_SIZE * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((RENDER_SIZE // 2, RENDER_SIZE // 2), char, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None:
        raise SystemExit(f"U+{ord(char):04X} rendered empty: the font has no glyph for it; remove it from EMOJI")
    sprite = canvas.crop(box)
    scale = SPRITE_SIDE / max(sprite.size)
    size = (max(1, round(sprite.width * scale)), max(1, round(sprite.height * scale)))
    return sprite.resize(size, Image.LANCZOS)


def extra_chars(font: ImageFont.FreeTypeFont) -> list[tuple[str, Image.Image]]:
    """Every named single codepoint of EXTRA_RANGES that the font draws, not in EMOJI, one per drawing."""
    import hashlib

    import numpy as np

    listed = set(EMOJI)
    seen = set()
    for unassigned in ("\U000E0FFF", "\U0010FFFD"):  # the font's .notdef box is no identity
        try:
            seen.add(hashlib.md5(render(unassigned, font).tobytes()).hexdigest())
        except SystemExit:
            pass
    chars = []
    for low, high in EXTRA_RANGES:
        for code in range(low, high):
            char = chr(code)
            if code in EXTRA_SKIP or char in listed or not unicodedata.name(char, ""):
                continue
            try:
                sprite = render(char, font)
            except SystemExit:  # nothing drawn
                continue
            digest = hashlib.md5(sprite.tobytes()).hexdigest()
            if digest in seen or (np.asarray(sprite)[..., 3] > 0).mean() < MIN_COVERAGE:
                continue
            seen.add(digest)
            chars.append((char, sprite))
    return chars


def write_manifest(out: Path, entries: list[dict]) -> None:
    manifest = {
        "source": "Noto Color Emoji (Debian fonts-noto-color-emoji), SIL Open Font License 1.1: see OFL.txt",
        "sprite_side": SPRITE_SIDE,
        "sprites": entries,
    }
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".sprites.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, out / "sprites.json")


def entry(char: str, split: str) -> dict:
    name = unicodedata.name(char).lower()
    return {"codepoint": f"U+{ord(char):04X}", "name": name, "file": f"u{ord(char):04x}.png", "split": split,
            "plural": name in PLURAL_NAMES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--font", type=Path, default=FONT)
    parser.add_argument("--out", type=Path, default=None, help="default: tora2/data/sprites (sprites-extra with --extra)")
    parser.add_argument("--extra", action="store_true", help="render the encoder stage's extra identities instead")
    args = parser.parse_args()
    if not args.font.is_file():
        raise SystemExit(f"font {args.font} not found; apt-get install -y fonts-noto-color-emoji or pass --font")
    font = ImageFont.truetype(str(args.font), RENDER_SIZE)
    out = args.out or (EXTRA_OUT if args.extra else OUT)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    if args.extra:
        for char, sprite in extra_chars(font):
            entries.append(entry(char, "extra"))
            sprite.save(out / entries[-1]["file"], optimize=True)
        write_manifest(out, entries)
        print(f"wrote {len(entries)} extra identities to {out}")
        return
    chars = list(EMOJI)
    if len(set(chars)) != len(chars):
        raise SystemExit("EMOJI lists a character twice")
    for index, char in enumerate(chars):
        split = "heldout" if index % HELDOUT_EVERY == HELDOUT_EVERY - 1 else "train"
        entries.append(entry(char, split))
        render(char, font).save(out / entries[-1]["file"], optimize=True)
    write_manifest(out, entries)
    held = sum(e["split"] == "heldout" for e in entries)
    print(f"wrote {len(entries)} sprites ({len(entries) - held} train, {held} heldout) to {out}")


if __name__ == "__main__":
    main()
