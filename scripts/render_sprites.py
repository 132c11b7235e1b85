"""Render the synthetic dataset's entity sprites from Noto Color Emoji into ``tora2/data/sprites/``.

Run once by a maintainer (the PNGs are committed, so users and CI never need the font):

    apt-get install -y fonts-noto-color-emoji
    python scripts/render_sprites.py [--font /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf]

Each emoji is drawn at the font's only bitmap size (109 px) as RGBA, trimmed to its alpha box and
resized so that its longer side is 64 px. ``sprites.json`` lists codepoint, Unicode name (the
entity text), file and split. The held-out split is fixed here, once: every fifth sprite of the
list (20%) is "heldout" and never used for training.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--font", type=Path, default=FONT)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if not args.font.is_file():
        raise SystemExit(f"font {args.font} not found; apt-get install -y fonts-noto-color-emoji or pass --font")
    chars = list(EMOJI)
    if len(set(chars)) != len(chars):
        raise SystemExit("EMOJI lists a character twice")
    font = ImageFont.truetype(str(args.font), RENDER_SIZE)
    args.out.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, char in enumerate(chars):
        name = unicodedata.name(char).lower()
        stem = f"u{ord(char):04x}"
        render(char, font).save(args.out / f"{stem}.png", optimize=True)
        split = "heldout" if index % HELDOUT_EVERY == HELDOUT_EVERY - 1 else "train"
        entries.append({"codepoint": f"U+{ord(char):04X}", "name": name, "file": f"{stem}.png", "split": split,
                        "plural": name in PLURAL_NAMES})
    manifest = {
        "source": "Noto Color Emoji (Debian fonts-noto-color-emoji), SIL Open Font License 1.1: see OFL.txt",
        "sprite_side": SPRITE_SIDE,
        "sprites": entries,
    }
    fd, tmp = tempfile.mkstemp(dir=args.out, prefix=".sprites.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out / "sprites.json")
    held = sum(e["split"] == "heldout" for e in entries)
    print(f"wrote {len(entries)} sprites ({len(entries) - held} train, {held} heldout) to {args.out}")


if __name__ == "__main__":
    main()
