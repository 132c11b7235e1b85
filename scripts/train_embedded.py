"""Stage 2 of the embedded default model: ``train(cfg)`` on in-memory synthetic sprite clips.

    python scripts/train_embedded.py configs/train/embedded.yaml --clips 400 [--curriculum SPEC] [--resume latest] [--set key=value ...]

The clips are ``SyntheticClipDataset(clips, seed, "train", …)`` at the config's frame count and
bucket size; with ``--curriculum`` (tora2/synthetic/curriculum.py) a ``CurriculumDataset`` of that
many clips per phase, easy scenes first. Entity references are encoded by two encoders, alternating by clip: the pipeline's own
fallback (``Tora2Pipeline.encode_entity_images``, what Python callers and ``tora2 eval`` get) and
``entities.encode_entity`` (what ``tora2 generate`` uses; same semantic tokens, object-detail tokens
from 2× tiles), so the model serves both. A run stopped early is finished from its last checkpoint
with ``--resume latest --set max_steps=<that step>`` (no further steps; the pipeline is written).
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import tora2  # noqa: F401  (the torchvision shim, before diffusers)
from entities.encode import sample_entity_encoder
from tora2.configuration import load_run_config
from tora2.errors import InputError
from tora2.synthetic import SyntheticClipDataset
from tora2.synthetic.curriculum import CurriculumDataset, parse_curriculum
from tora2.training.config import load_train_config
from tora2.training.encode import pipeline_entity_encoder
from tora2.training.loop import build_components, train


def mixed_entity_encoder(components: dict):
    """Clip-keyed choice between the two entity encoders (deterministic: a CRC of the entity's text and path)."""
    encoders = (pipeline_entity_encoder(components), sample_entity_encoder(components))

    def encode(entity):
        key = zlib.crc32(f"{entity.text}:{entity.points.tobytes().hex()[:64]}".encode())
        return encoders[key % 2](entity)

    return encode


def precompute_cache(cfg, components: dict, dataset, entity_encoder, batch_size: int = 16) -> None:
    """Fill ``data.cache_dir`` before training, ``batch_size`` clips per VAE call.

    On CPU the CogVideoX VAE's cost is mostly per call (8 clips cost ~1.3× one), so the clips are
    encoded in batches by ``SampleEncoder.encode_and_store``: exactly what ``train()`` reads back
    (same encoder id, same keys, the pipeline's conditioning recipe).
    """
    from tqdm import tqdm

    from tora2.training.encode import SampleEncoder

    encoder = SampleEncoder(components, entity_encoder, cfg.data.cache_dir, keep_in_memory=False)
    todo = [i for i in range(len(dataset)) if not encoder.cache_path(dataset[i]["key"]).is_file()]
    bar = tqdm(total=len(todo), desc="encoding clips", unit="clip", disable=not cfg.progress)
    for start in range(0, len(todo), batch_size):
        samples = [dataset[i] for i in todo[start : start + batch_size]]
        encoder.encode_and_store(samples)
        bar.update(len(samples))
        if not cfg.progress:
            print(f"encoding clips: {min(start + batch_size, len(todo))}/{len(todo)}", flush=True)
    bar.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/train_embedded.py", description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--clips", type=int, required=True, help="number of synthetic training clips")
    parser.add_argument("--clip-seed", type=int, default=0, help="SyntheticClipDataset seed")
    parser.add_argument("--recolour", action="store_true",
                        help="rotate the hue of half the sprites, frames and reference alike (tora2/synthetic/clips.py)")
    parser.add_argument("--curriculum", default=None,
                        help="phases ENTITIES:KINDS[:UNTIL_STEP], comma-separated, ENTITIES a maximum or MIN-MAX, e.g. 1:gradient:1500,2-3:all "
                             "(default: 1-3 entities over every background from the start)")
    parser.add_argument("--resume", default=None, help="'latest' or a checkpoint folder")
    parser.add_argument("--encode-only", action="store_true", help="fill data.cache_dir with the clips' encodings, train nothing")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value override (repeatable)")
    args = parser.parse_args(argv)
    try:
        cfg = load_run_config(load_train_config, args.config, args.overrides)
        (height, width), = [tuple(b) for b in cfg.data.buckets]
        if args.curriculum is None:
            dataset = SyntheticClipDataset(args.clips, args.clip_seed, "train", cfg.data.num_frames, height, width,
                                           recolour=args.recolour)
        else:
            dataset = CurriculumDataset(parse_curriculum(args.curriculum), args.clips, args.clip_seed, "train",
                                        cfg.data.num_frames, height, width, recolour=args.recolour)
        if args.encode_only and cfg.data.cache_dir is None:
            raise InputError("--encode-only fills data.cache_dir, which is not set; give --set data.cache_dir=DIR")
        components = build_components(cfg)
        encoder = mixed_entity_encoder(components)
        if cfg.data.cache_dir is not None:
            for phase in getattr(dataset, "datasets", [dataset]):  # every curriculum phase's clips
                precompute_cache(cfg, components, phase, encoder)
        if args.encode_only:
            print(f"{cfg.data.cache_dir}: {len(dataset)} clip(s) encoded")
            return 0
        # The data is not part of TrainConfig: record it beside config.yaml so the run can be repeated.
        from tora2.io import write_json_atomic

        write_json_atomic({"clips": args.clips, "clip_seed": args.clip_seed, "curriculum": args.curriculum,
                           "recolour": args.recolour},
                          Path(cfg.output_dir) / "data.json")
        result = train(cfg, dataset, entity_encoder=encoder, components=components, resume=args.resume)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    final = f", final loss {result.losses[-1]:.4f}" if result.losses else ""
    print(f"{cfg.output_dir}: {len(result.losses)} step(s){final}; pipeline {result.pipeline_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
