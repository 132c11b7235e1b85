"""The shipped embedded default model (tora2/data/embedded/): package data, loads by default, and on
fixed held-out cases (sprites and paths never seen in training) its videos follow the paths.

Measured on the shipped weights (stage L5: the transformer and DPE on the 36-component linear
latents of stage L1, with stage 2c's image encoder and the moving average of the weights; 25 steps,
seed 0, the model's default reference guidance 2) on the first 3 held-out cases with 1, 2 and 3
entities (18 entities): mean TrajError 6.95 % of the width (1 / 2 / 3 entities: 0.4 / 2.1 /
12.4 %), 16 of 18 entities within 15 % of the width, 14 of 15 multi-entity entities bound to their
own paths, placement agreement 0.763 (lowest 0.589). On the five held-out sets (50 cases per count,
50 steps) it scores 2.49 / 3.75 / 6.53 % and binding 0.950 / 0.913 (docs/results.md). The bounds are
the measured values with a small margin: they guard the shipped model and its generation path
against breaking. For scale, independent uniform positions would give about 67 % (the expected L1
between two uniform points on a 64 px square is 2 × 64/3 px). The autoencoder round trip of the
first 2- and 3-entity cases is near the raw renders (0.47 %, 5 of 5 bound) and is held to that.
(The model shipped before, stage 8 on the trained 16-channel VAE, measured 6.24 %, 16 of 18, 13 of
15, placement 0.840 / 0.706 and a round trip of 0.59 % here.)
"""

import json

import numpy as np
import pytest

from tora2.evaluation import make_cases, pipeline_generator, score_video
from tora2.pipelines.embedded import EMBEDDED_DIR, EMBEDDED_ID, has_trained_embedded, resolve_model

# Held-out cases: seed 0, the first 3 cases with 1, 2 and 3 entities (9 frames, 64×64).
NUM_INFERENCE_STEPS = 25
CASES_PER_COUNT = 3
MAX_MEAN_TRAJ_ERROR_PCT = 7.5  # measured 6.95 over 18 entities
MIN_TRACKED_NEAR = 15  # entities within NEAR_PCT of the width: measured 16 of 18
NEAR_PCT = 15.0
MIN_BINDING_ACCURACY = 0.86  # measured 0.933 (14 of 15); one entity of margin for other CPUs' float rounding
MAX_RECONSTRUCT_TRAJ_ERROR_PCT = 1.0  # measured 0.47 (the autoencoder round trip of the same cases)
# The tracker-free placement check (tora2.evaluation.placement) of the same 18 entities: measured
# mean 0.763, lowest 0.589 (no entity misplaced, including those the tracker loses).
MIN_MEAN_PLACEMENT = 0.72
MIN_PLACEMENT = 0.55
MIN_RECONSTRUCT_BINDING = 1.0  # measured 1.0 (5 of 5)


def test_shipped_folder_is_a_small_safetensors_pipeline():
    assert has_trained_embedded()
    path, model_id = resolve_model(None)
    assert path == EMBEDDED_DIR and model_id == EMBEDDED_ID
    files = [p for p in EMBEDDED_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 60 * 2**20
    weights = [p.name for p in files if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt")]
    assert weights and all(name.endswith(".safetensors") for name in weights)
    index = json.loads((EMBEDDED_DIR / "model_index.json").read_text())
    assert index["_class_name"] == "Tora2Pipeline"
    transformer = json.loads((EMBEDDED_DIR / "transformer" / "config.json").read_text())
    assert (transformer["sample_frames"], transformer["sample_height"], transformer["sample_width"]) == (9, 16, 16)
    assert (transformer["in_channels"], transformer["entity_placement_channels"]) == (36, 37)  # latents + coverage
    assert index["reference_guidance_scale"] == 2.0  # the model's default, used by generate and eval
    assert index["vae"] == ["tora2.models.pixel_autoencoder", "PixelShuffleAutoencoder"]
    vae = json.loads((EMBEDDED_DIR / "vae" / "config.json").read_text())
    assert (vae["latent_channels"], vae["spatial_compression_ratio"], vae["decoder_channels"]) == (36, 4, 0)  # linear
    scheduler = json.loads((EMBEDDED_DIR / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "sample"  # x-prediction, as trained
    from tora2.pipelines.model_info import read_model_info

    assert read_model_info(EMBEDDED_DIR).vae_channels == 0  # a linear decode holds no activations


@pytest.fixture(scope="module")
def pipe():
    from tora2.pipelines.embedded import load_pipeline

    pipeline, _ = load_pipeline(None)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def rows(pipe):
    cases = make_cases(CASES_PER_COUNT, 9, 64, 64, split="heldout", seed=0)
    generate = pipeline_generator(pipe, num_inference_steps=NUM_INFERENCE_STEPS, seed=0)
    out = []
    for case in cases:
        out += score_video(generate(case), case)
    return out


def test_held_out_cases_follow_their_paths(rows):
    errors = [r["traj_error_pct_width"] for r in rows]
    assert len(rows) == 6 * CASES_PER_COUNT
    assert float(np.mean(errors)) < MAX_MEAN_TRAJ_ERROR_PCT
    assert sum(e < NEAR_PCT for e in errors) >= MIN_TRACKED_NEAR


def test_held_out_entities_are_drawn_where_they_were_asked_to_be(rows):
    agreement = [r["placement_agreement"] for r in rows]
    assert float(np.mean(agreement)) >= MIN_MEAN_PLACEMENT
    assert min(agreement) >= MIN_PLACEMENT


def test_held_out_cases_bind_entities_to_their_paths(rows):
    bound = [r["binding_correct"] for r in rows if r["binding_correct"] is not None]  # 2 and 3 entities
    assert len(bound) == 5 * CASES_PER_COUNT
    assert float(np.mean(bound)) >= MIN_BINDING_ACCURACY


def test_autoencoder_round_trip_keeps_the_paths(pipe):
    """The shipped VAE's ceiling (tora2 eval --reconstruct) on the same two held-out cases."""
    from tora2.evaluation import reconstruction_generator

    cases = make_cases(1, 9, 64, 64, split="heldout", seed=0, entity_counts=(2, 3))
    rows = [row for case in cases for row in score_video(reconstruction_generator(pipe)(case), case)]
    assert float(np.mean([r["traj_error_pct_width"] for r in rows])) < MAX_RECONSTRUCT_TRAJ_ERROR_PCT
    assert float(np.mean([r["binding_correct"] for r in rows])) >= MIN_RECONSTRUCT_BINDING


def test_generation_is_deterministic(pipe):
    case = make_cases(1, 9, 64, 64, split="heldout", seed=0, entity_counts=(1,))[0]
    generate = pipeline_generator(pipe, num_inference_steps=4, seed=3)
    first, second = generate(case), generate(case)
    assert first.shape == (9, 64, 64, 3) and first.dtype == np.uint8
    assert np.array_equal(first, second)


def test_shipped_image_encoder_retrieves_held_out_sprites(pipe):
    """The issue's encoder bar on the shipped weights: jittered views of the 31 held-out sprites retrieve
    their own clean reference ≥ 95 % top-1 (stage 2c's check: 16 views each, seed 0; measured 0.958)."""
    from tora2.synthetic.sprites import load_sprites
    from tora2.training.pretrain_encoders import retrieval_accuracy

    assert retrieval_accuracy(pipe.image_encoder, load_sprites("heldout"), views_per_sprite=16, seed=0) >= 0.95
