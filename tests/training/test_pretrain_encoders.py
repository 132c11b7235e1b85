"""Stage ``encoders`` (tora2/training/pretrain_encoders.py) on the tiny model."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tora2.errors import InputError
from tora2.pipelines.components import build_tiny_components
from tora2.synthetic.sprites import load_sprites
from tora2.training.pretrain_encoders import (
    EncoderLossConfig,
    EncoderTrainConfig,
    jitter_sprite,
    load_encoder_config,
    retrieval_accuracy,
    train_encoders,
)


ROOT = Path(__file__).resolve().parents[2]


def test_jitter_sprite_is_a_square_view_on_white_or_background():
    sprite = load_sprites("train")[0]
    rng = np.random.default_rng(0)
    view = jitter_sprite(sprite.image, rng, 32)
    assert view.shape == (32, 32, 3) and view.dtype == np.uint8
    assert (view == 255).all(-1).mean() > 0.2  # white around the sprite
    background = np.zeros((32, 32, 3), np.uint8)
    dark = jitter_sprite(sprite.image, rng, 32, background)
    assert (dark == 0).all(-1).mean() > 0.2
    assert not np.array_equal(jitter_sprite(sprite.image, rng, 32), view)


def test_train_encoders_changes_only_the_encoders_and_writes_a_pipeline(tmp_path):
    components = build_tiny_components("tiny", seed=0)
    before = {name: {k: v.clone() for k, v in components[name].state_dict().items()}
              for name in ("image_encoder", "text_encoder", "transformer", "vae")}
    old_id = components["image_encoder"].encoder_id
    cfg = EncoderTrainConfig(output_dir=str(tmp_path / "enc"), max_steps=3, batch_size=4, eval_every=0, eval_views=1)
    result = train_encoders(cfg, components=components)
    assert result.steps == [1, 2, 3] and all(np.isfinite(result.losses))
    for name in ("image_encoder", "text_encoder"):
        changed = [k for k, v in components[name].state_dict().items() if not torch.equal(v, before[name][k])]
        assert changed, name
        assert not any(p.requires_grad for p in components[name].parameters()), name
    for name in ("transformer", "vae"):
        assert all(torch.equal(v, before[name][k]) for k, v in components[name].state_dict().items()), name
    assert components["image_encoder"].encoder_id != old_id  # caches keyed by the encoder never mix
    assert (tmp_path / "enc" / "pipeline" / "model_index.json").is_file()
    losses = json.loads((tmp_path / "enc" / "losses.json").read_text())
    assert losses["step"] == [1, 2, 3] and len(losses["heldout_retrieval_top1"]) == 1
    assert 0.0 <= losses["retrieval_before"] <= 1.0


def test_retrieval_accuracy_is_a_share():
    components = build_tiny_components("tiny", seed=0)
    accuracy = retrieval_accuracy(components["image_encoder"], load_sprites("heldout")[:5], views_per_sprite=2)
    assert accuracy in {i / 10 for i in range(11)}


def test_encoder_config_errors(tmp_path):
    with pytest.raises(InputError, match="batch_size is 1; a contrastive batch needs at least 2 sprites"):
        EncoderTrainConfig(batch_size=1)
    with pytest.raises(InputError, match="background_probability must be in"):
        load_encoder_config(ROOT / "configs/train/embedded-encoders.yaml", ["loss.background_probability=2.0"])
    with pytest.raises(InputError, match="the training split has 124 sprites"):
        train_encoders(EncoderTrainConfig(output_dir=str(tmp_path), batch_size=500), components=build_tiny_components("tiny"))


def test_recoloured_copies_join_the_image_term_as_their_own_identities(tmp_path, monkeypatch):
    """loss.recoloured = R: each step embeds B originals + R hue-rotated training sprites (two views
    each), while the image–text term keeps the B originals."""
    import tora2.training.pretrain_encoders as stage

    seen, hues = [], []
    embed, view = stage.image_embeddings, stage.draw_view

    def counting(encoder, views):
        seen.append(len(views))
        return embed(encoder, views)

    def recording(image, rng, size, background_probability):
        hues.append(image[..., :3][image[..., 3] > 0].mean(0))  # mean colour of the sprite's opaque pixels
        return view(image, rng, size, background_probability)

    monkeypatch.setattr(stage, "image_embeddings", counting)
    monkeypatch.setattr(stage, "draw_view", recording)
    cfg = EncoderTrainConfig(output_dir=str(tmp_path / "enc"), max_steps=2, batch_size=4, eval_every=0, eval_views=1,
                             loss=EncoderLossConfig(recoloured=2))
    result = train_encoders(cfg, components=build_tiny_components("tiny", seed=0))
    assert result.steps == [1, 2] and all(np.isfinite(result.losses))
    assert seen.count(6) == 4  # 4 originals + 2 recoloured, two views a step, two steps

    def key(image):
        return tuple(np.round(image[..., :3][image[..., 3] > 0].mean(0), 3))

    train = {key(s.image) for s in load_sprites("train")}
    heldout = {key(s.image) for s in load_sprites("heldout")}
    drawn = [tuple(np.round(h, 3)) for h in hues]
    assert sum(h in train for h in drawn) == 16  # 4 originals × 2 views × 2 steps
    assert sum(h not in train and h not in heldout for h in drawn) == 8  # 2 recoloured × 2 views × 2 steps
    with pytest.raises(InputError, match="loss.recoloured is 500"):
        load_encoder_config(ROOT / "configs/train/embedded-encoders.yaml", ["loss.recoloured=500"])


def test_extra_identities_join_the_image_term_only(tmp_path, monkeypatch):
    """loss.extra_identities = X: each step embeds B training sprites + X sprites of the "extra"
    split (two views each); the image–text term keeps the B training sprites' names."""
    import tora2.training.pretrain_encoders as stage

    seen, drawn, phrases = [], [], []
    embed, view, texts = stage.image_embeddings, stage.draw_view, stage.text_embeddings
    monkeypatch.setattr(stage, "image_embeddings", lambda encoder, views: seen.append(len(views)) or embed(encoder, views))
    monkeypatch.setattr(stage, "draw_view", lambda image, *a: drawn.append(image.tobytes()) or view(image, *a))
    monkeypatch.setattr(stage, "text_embeddings", lambda t, e, h, p: phrases.append(len(p)) or texts(t, e, h, p))
    cfg = EncoderTrainConfig(output_dir=str(tmp_path / "enc"), max_steps=2, batch_size=4, eval_every=0, eval_views=1,
                             loss=EncoderLossConfig(extra_identities=3))
    result = train_encoders(cfg, components=build_tiny_components("tiny", seed=0))
    assert result.steps == [1, 2] and all(np.isfinite(result.losses))
    assert seen.count(7) == 4 and phrases == [4, 4]
    extra = {s.image.tobytes() for s in load_sprites("extra")}
    train = {s.image.tobytes() for s in load_sprites("train")}
    assert sum(d in extra for d in drawn) == 12 and sum(d in train for d in drawn) == 16  # 3 / 4 sprites × 2 views × 2 steps
    with pytest.raises(InputError, match="loss.extra_identities is 5000; the extra split has"):
        train_encoders(EncoderTrainConfig(output_dir=str(tmp_path / "x"), batch_size=4, loss=EncoderLossConfig(extra_identities=5000)),
                       components=build_tiny_components("tiny"))
    with pytest.raises(InputError, match="loss.extra_identities is -1"):
        load_encoder_config(ROOT / "configs/train/embedded-encoders.yaml", ["loss.extra_identities=-1"])


def test_reference_tokens_are_what_the_pipeline_reads():
    """``reference_tokens`` feeds the preserve term: a crop's semantic tokens and its detail tiles,
    the same inputs ``semantic_tokens`` and ``detail_tokens`` encode, with gradients."""
    from tora2.models.encoders import white_square
    from tora2.training.pretrain_encoders import reference_tokens

    encoder = build_tiny_components("tiny", seed=0)["image_encoder"]
    sprite = load_sprites("heldout")[0]
    encoder.visual.requires_grad_(True)
    tokens = reference_tokens(encoder, [sprite.image])  # (1 + 4, 1 + G², C)
    assert tokens.shape == (5, encoder.num_tokens, encoder.out_dim) and tokens.requires_grad
    square = white_square(sprite.image)
    assert torch.allclose(tokens[0].detach(), encoder.semantic_tokens(square), atol=1e-5)
    tiles = encoder.encode(encoder.preprocess(encoder.detail_tiles(square)))
    assert torch.allclose(tokens[1:].detach(), tiles, atol=1e-5)


def test_preserve_keeps_reference_tokens_and_can_leave_the_text_encoder(tmp_path):
    """loss.preserve holds the references' tokens near the starting encoder's (held-out drift far
    below the same run without it); train_text_encoder=false leaves the text encoder as it was."""
    drift = {}
    for weight in (0.0, 100.0):
        components = build_tiny_components("tiny", seed=0)
        text_before = {k: v.clone() for k, v in components["text_encoder"].state_dict().items()}
        cfg = EncoderTrainConfig(output_dir=str(tmp_path / f"enc{weight}"), max_steps=8, batch_size=8, eval_every=0,
                                 eval_views=1, train_text_encoder=False,
                                 loss=EncoderLossConfig(preserve=weight, preserve_sprites=4))
        cfg.optim.learning_rate, cfg.optim.warmup_steps = 3e-3, 0
        result = train_encoders(cfg, components=components)
        assert all(torch.equal(v, text_before[k]) for k, v in components["text_encoder"].state_dict().items())
        if weight:
            assert len(result.drift) == 8 and len(result.heldout_drift) == 1
            drift["with"] = result.heldout_drift[-1]
            losses = json.loads((tmp_path / f"enc{weight}" / "losses.json").read_text())
            assert losses["heldout_token_drift"] == result.heldout_drift
        else:
            assert result.drift == [] and result.heldout_drift == []
            from tora2.training.pretrain_encoders import reference_tokens, token_drift

            start = build_tiny_components("tiny", seed=0)["image_encoder"]
            images = [s.image for s in load_sprites("heldout")]
            drift["without"] = float(token_drift(reference_tokens(components["image_encoder"], images, grad=False),
                                                 reference_tokens(start, images, grad=False)))
    assert drift["with"] < 0.25 * drift["without"], drift
    with pytest.raises(InputError, match="loss.preserve must be ≥ 0"):
        load_encoder_config(ROOT / "configs/train/embedded-encoders.yaml", ["loss.preserve=-1"])
    with pytest.raises(InputError, match="loss.preserve_sprites is 0"):
        load_encoder_config(ROOT / "configs/train/embedded-encoders.yaml", ["loss.preserve=1", "loss.preserve_sprites=0"])


def test_the_saved_pipeline_keeps_the_pretrained_models_reference_guidance(tmp_path):
    """Only the encoders change, so the pipeline keeps model.pretrained's default reference guidance
    (the embedded model's 2.0; a pipeline saved without it samples without the reference branch)."""
    from tora2.pipelines.embedded import EMBEDDED_DIR
    from tora2.pipelines.model_info import read_model_info
    from tora2.training.config import ModelSettings

    cfg = EncoderTrainConfig(output_dir=str(tmp_path / "enc"), max_steps=1, batch_size=4, eval_every=0, eval_views=1,
                             train_text_encoder=False, model=ModelSettings(pretrained=str(EMBEDDED_DIR)))
    result = train_encoders(cfg)
    assert read_model_info(result.pipeline_dir).reference_guidance_scale == 2.0
