"""Training: manifest validation, the loop's losses, trainable parts, exact resume, LoRA round trip."""

from __future__ import annotations

import json

import pytest
import torch

from tests.training.synthetic import make_clips
from tora2.errors import InputError
from tora2.specs import EntityTokens
from tora2.training.config import load_train_config
from tora2.training.dataset import ClipDataset
from tora2.training.loop import build_components, train
from tora2.training.lora import load_lora, save_lora
from tora2.clips.manifest import read_manifest, write_manifest


def fake_entity_encoder(components):
    """Reference crop → EntityTokens with the tiny semantic encoder (no ``entities`` import in tora2 tests)."""
    encoder = components["image_encoder"]

    def encode(entity):
        rgb = entity.reference[..., :3]
        tokens = encoder.encode(encoder.preprocess([rgb]))[0]  # (17, 32)
        return EntityTokens(semantic=tokens, identity=tokens[1:], kind="object")

    return encode


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_clips(tmp_path_factory.mktemp("clips") / "data", count=3, num_frames=9, size=64)


def config(tmp_path, manifest, **overrides):
    values = {
        "output_dir": str(tmp_path / "run"), "max_steps": 4, "data.manifest": str(manifest),
        "data.buckets": [[64, 64]], "tensorboard": False, "save_pipeline": False, "log_every": 100,
        "checkpoint_every": 0, "model.seed": 0,
    }
    values.update(overrides)
    return load_train_config(None, values)


def run(cfg, **kwargs):
    components = build_components(cfg)
    return train(cfg, entity_encoder=fake_entity_encoder(components), components=components, **kwargs)


# ---------------------------------------------------------------------------------------------- manifest
def test_manifest_round_trip(manifest, tmp_path):
    clips = read_manifest(manifest)
    assert [c.id for c in clips] == ["clip0", "clip1", "clip2"]
    assert clips[0].entities[0].points.shape == (9, 2)
    copy = write_manifest(clips, manifest.parent / "copy.jsonl")
    again = read_manifest(copy)
    assert [c.caption for c in again] == [c.caption for c in clips]
    assert again[1].entities[1].references == clips[1].entities[1].references


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.pop("caption"), "line 2 field 'caption': missing"),
        (lambda d: d.update(video="nope.mp4"), "line 2 field 'video': file"),
        (lambda d: d["entities"][1].update(kind="robot"), "line 2 field 'entities[1]'.kind: is 'robot'"),
        (lambda d: d["entities"][0]["track"].update(visible=[True]), "line 2 field 'entities[0]'.track.visible: has 1 values for 9 points"),
        (lambda d: d["entities"][0]["track"].update(points=[[1, 2]]), "line 2 field 'entities[0]'.track.points"),
        (lambda d: d.update(colour="red"), "line 2 field 'colour': unknown"),
    ],
)
def test_bad_manifest_names_line_and_field(manifest, tmp_path, mutate, expected):
    lines = manifest.read_text().splitlines()
    data = json.loads(lines[1])
    mutate(data)
    bad = manifest.parent / "bad.jsonl"
    bad.write_text("\n".join([lines[0], json.dumps(data)]) + "\n")
    with pytest.raises(InputError) as error:
        read_manifest(bad)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_json_line(manifest):
    bad = manifest.parent / "broken.jsonl"
    bad.write_text(manifest.read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(InputError, match=r"line 2: not valid JSON"):
        read_manifest(bad)


def test_dataset_sample_shapes(manifest):
    dataset = ClipDataset(read_manifest(manifest), num_frames=9, buckets=[(64, 64), (32, 64)])
    sample = dataset[0]
    assert sample["video"].shape == (9, 3, 64, 64)
    assert -1.0 <= float(sample["video"].min()) and float(sample["video"].max()) <= 1.0
    assert len(sample["entities"]) == 2
    assert sample["entities"][0].points.shape == (9, 2)
    assert sample["entities"][0].reference.shape[-1] == 4


def test_bad_config_key_rejected(tmp_path, manifest):
    with pytest.raises(InputError, match="unknown key"):
        config(tmp_path, manifest, **{"optim.lr": 1.0})
    with pytest.raises(InputError, match="stage 'everything'"):
        config(tmp_path, manifest, stage="everything")


# ---------------------------------------------------------------------------------------------- loop
def test_only_intended_parameters_change(tmp_path, manifest):
    cfg = config(tmp_path, manifest, max_steps=2)
    components = build_components(cfg)
    before = {f"t.{k}": v.clone() for k, v in components["transformer"].state_dict().items()}
    before.update({f"p.{k}": v.clone() for k, v in components["personalization"].state_dict().items()})
    before.update({f"v.{k}": v.clone() for k, v in components["vae"].state_dict().items()})
    train(cfg, entity_encoder=fake_entity_encoder(components), components=components)
    after = {f"t.{k}": v for k, v in components["transformer"].state_dict().items()}
    after.update({f"p.{k}": v for k, v in components["personalization"].state_dict().items()})
    after.update({f"v.{k}": v for k, v in components["vae"].state_dict().items()})
    transformer = components["transformer"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    parts = {transformer.part_of(k[2:]) if k.startswith("t.") else k[0] for k in changed}
    assert parts == {"tora2", "p"}
    assert not any(k.startswith("v.") for k in changed)
    assert "t.contrastive.logit_scale" in changed


@pytest.mark.slow
def test_losses_decrease_over_50_steps(tmp_path, manifest):
    # No dropout: every step has text, references and trajectories, so the contrastive term is defined.
    cfg = config(tmp_path, manifest, max_steps=50, **{
        "optim.learning_rate": 1e-3, "data.caption_dropout": 0.0, "data.reference_dropout": 0.0,
        "data.trajectory_dropout": 0.0, "batch_size": 3, "stage": "tora2"})
    result = run(cfg)
    first, last = result.losses[:10], result.losses[-10:]
    assert sum(last) / 10 < sum(first) / 10
    c_first, c_last = result.contrastive_losses[:10], result.contrastive_losses[-10:]
    assert sum(c_last) / 10 < 0.5 * sum(c_first) / 10


def test_resume_is_exact(tmp_path, manifest):
    overrides = {"checkpoint_every": 2, "max_steps": 4, "optim.warmup_steps": 2}
    full = run(config(tmp_path / "a", manifest, **overrides))
    part = run(config(tmp_path / "b", manifest, **{**overrides, "max_steps": 2}))
    resumed = run(config(tmp_path / "b", manifest, **overrides), resume="latest")
    assert part.losses == full.losses[:2]
    assert resumed.steps == [1, 2, 3, 4]  # the steps before the resume come from losses.json
    assert resumed.losses == full.losses
    saved = json.loads((tmp_path / "b" / "run" / "losses.json").read_text())
    assert saved["step"] == [1, 2, 3, 4] and saved["loss"] == full.losses
    a = resumed.components["transformer"].state_dict()
    b = full.components["transformer"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_missing_folder(tmp_path, manifest):
    with pytest.raises(InputError, match="no such checkpoint folder"):
        run(config(tmp_path, manifest), resume=str(tmp_path / "nowhere"))


def test_finetune_lora_round_trip(tmp_path, manifest):
    cfg = config(tmp_path, manifest, stage="finetune", max_steps=2, **{"lora.rank": 4, "optim.learning_rate": 1e-2})
    components = build_components(cfg)
    base = {k: v.clone() for k, v in components["transformer"].state_dict().items()}
    result = train(cfg, entity_encoder=fake_entity_encoder(components), components=components)
    assert result.lora_path == tmp_path / "run" / "lora.safetensors"
    tuned = result.components["transformer"]
    lora_keys = [k for k in tuned.state_dict() if "lora_" in k]
    assert lora_keys and all("attn1.to_" in k for k in lora_keys)
    assert all(torch.equal(base[k], v) for k, v in tuned.state_dict().items() if k in base)  # base frozen

    fresh = build_components(cfg)["transformer"]
    load_lora(fresh, result.lora_path)
    x = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([500])
    with torch.no_grad():
        expected = tuned.eval()(x, text, t).sample
        got = fresh.eval()(x, text, t).sample
    assert torch.allclose(got, expected, atol=1e-6)

    save_lora(fresh, tmp_path / "again.safetensors")
    from safetensors.torch import load_file

    a, b = load_file(str(result.lora_path)), load_file(str(tmp_path / "again.safetensors"))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert all(k.startswith("transformer.") for k in a)


def test_load_lora_rejects_other_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "x.safetensors"))
    transformer = build_components(load_train_config(None, {}))["transformer"]
    with pytest.raises(InputError, match="holds no transformer LoRA weights"):
        load_lora(transformer, tmp_path / "x.safetensors")


def test_latent_cache_on_disk(tmp_path, manifest):
    cfg = config(tmp_path, manifest, max_steps=1, **{"data.cache_dir": str(tmp_path / "cache")})
    first = run(cfg)
    files = sorted(p.name for p in (tmp_path / "cache").rglob("*.safetensors"))
    assert len(files) >= 1
    second = run(config(tmp_path / "again", manifest, max_steps=1, **{"data.cache_dir": str(tmp_path / "cache")}))
    assert second.losses == first.losses


def test_resume_from_explicit_folder(tmp_path, manifest):
    overrides = {"checkpoint_every": 1, "max_steps": 3, "checkpoints_total_limit": None}
    full = run(config(tmp_path / "a", manifest, **overrides))
    run(config(tmp_path / "b", manifest, **overrides))
    # Resume from step 1 (not the latest, step 3 is the final one): steps 2 and 3 are redone exactly.
    folder = tmp_path / "b" / "run" / "checkpoints" / "step-0000001"
    resumed = run(config(tmp_path / "c", manifest, **overrides), resume=str(folder))
    assert resumed.steps == [2, 3]
    assert resumed.losses == full.losses[1:]
    a, b = resumed.components["transformer"].state_dict(), full.components["transformer"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_validation_every_2_steps_matches_the_pipeline(tmp_path, manifest):
    import imageio.v3 as iio
    import numpy as np

    from tora2.training.loop import (
        validation_pipeline,
        validation_request,
        write_validation_video,
    )

    cfg = config(tmp_path, manifest, max_steps=4, **{"validation.every": 2, "validation.num_inference_steps": 2})
    components = build_components(cfg)
    encoder = fake_entity_encoder(components)
    result = train(cfg, entity_encoder=encoder, components=components)
    folder = tmp_path / "run" / "validation"
    assert sorted(p.name for p in folder.iterdir()) == ["step-0000002.gif", "step-0000004.gif"]
    written = iio.imread(folder / "step-0000004.gif", index=None)
    assert written.shape[:3] == (9, 64, 64)

    # The step-4 video is the trained pipeline's own output for the first clip.
    from tora2.pipelines.pipeline_tora2 import Tora2Pipeline
    from tora2.training.dataset import ClipDataset

    dataset = ClipDataset(read_manifest(manifest), 9, [(64, 64)])
    request = validation_request(cfg, dataset, encoder)
    assert request["prompt"] == "a red square and a blue square move"
    assert [e.text for e in request["entities"]] == ["red square", "blue square"]
    assert all(e.tokens is not None for e in request["entities"])
    pipe = Tora2Pipeline(**result.components)
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(**request).frames[0]
    again = iio.imread(write_validation_video(frames, tmp_path / "direct.gif"), index=None)
    assert np.array_equal(again, written)
    assert validation_pipeline(result.components).scheduler is not result.components["scheduler"]
    # Validation leaves training untouched: same losses as a run without it.
    plain = run(config(tmp_path / "plain", manifest, max_steps=4))
    assert plain.losses == result.losses


TRAJECTORY_SCRIPT = """
import sys, json, torch
import tora2
from tests.training.test_training import config, fake_entity_encoder
from tora2.training.loop import build_components, train
from pathlib import Path
cfg = config(Path(sys.argv[1]), Path(sys.argv[2]), max_steps=2, train_trajectory=True)
components = build_components(cfg)
before = {k: v.clone() for k, v in components["transformer"].state_dict().items()}
train(cfg, entity_encoder=fake_entity_encoder(components), components=components)
after = components["transformer"].state_dict()
parts = sorted({components["transformer"].part_of(k) for k in before if not torch.equal(before[k], after[k])})
print(json.dumps(parts))
"""


@pytest.mark.slow
def test_train_trajectory_runs_and_trains_tora_parts(tmp_path, manifest):
    # In a subprocess: the bug this guards against (GroupNorm backward on a channels-last view) is a segfault.
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", TRAJECTORY_SCRIPT, str(tmp_path), str(manifest)], cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["tora", "tora2"]


# ------------------------------------------------------------------------- architecture overrides
def test_transformer_overrides_rebuild_the_transformer_for_an_ablation(tmp_path, manifest):
    cfg = config(tmp_path, manifest, stage="full", **{"model.transformer": {"binder": "linear", "entity_locality_sigma": 0.1}})
    components = build_components(cfg)
    transformer = components["transformer"]
    assert transformer.config.binder == "linear" and transformer.config.entity_locality_sigma == 0.1
    assert type(transformer.entity_binder).__name__ == "LinearBinding"
    result = train(cfg, entity_encoder=fake_entity_encoder(components), components=components)
    assert len(result.losses) == 4 and all(torch.isfinite(torch.tensor(result.losses)))


def test_transformer_overrides_need_stage_full_and_known_fields(tmp_path, manifest):
    with pytest.raises(InputError, match="use stage full"):
        config(tmp_path, manifest, stage="tora2", **{"model.transformer": {"binder": "none"}})
    cfg = config(tmp_path, manifest, stage="full", **{"model.transformer": {"bindr": "none"}})
    with pytest.raises(InputError, match="unknown transformer field.*bindr"):
        build_components(cfg)
    cfg = config(tmp_path, manifest, stage="full", **{"model.transformer": {"binder": "mlp"}})
    with pytest.raises(InputError, match="binder must be one of"):
        build_components(cfg)


def test_contrastive_weight_ramps_up_from_zero():
    from tora2.training.loop import contrastive_weight

    cfg = load_train_config(None, {"contrastive_weight": 0.2, "contrastive_ramp_steps": 4})
    assert [round(contrastive_weight(cfg, s), 3) for s in range(6)] == [0.05, 0.1, 0.15, 0.2, 0.2, 0.2]
    assert contrastive_weight(load_train_config(None, {"contrastive_weight": 0.2}), 0) == 0.2
    with pytest.raises(InputError, match="contrastive_ramp_steps must be ≥ 0; got -1"):
        load_train_config(None, {"contrastive_ramp_steps": -1})


def test_model_scheduler_overrides_replace_fields():
    cfg = load_train_config(None, {"model.config": "tiny", "model.scheduler": {"snr_shift_scale": 1.0}})
    components = build_components(cfg)
    assert components["scheduler"].config.snr_shift_scale == 1.0
    assert components["scheduler"].config.prediction_type == "v_prediction"  # the rest kept
    with pytest.raises(InputError, match="model.scheduler: unknown scheduler field\\(s\\) shift;"):
        build_components(load_train_config(None, {"model.scheduler": {"shift": 1.0}}))


def test_model_components_and_image_encoder_overrides(tmp_path):
    components = build_components(load_train_config(None, {"model.config": "tiny", "model.seed": 1}))
    components["vae"].save_pretrained(tmp_path / "vae")
    cfg = load_train_config(None, {"model.config": "tiny", "model.components": {"vae": str(tmp_path / "vae")},
                                   "model.image_encoder": {"image_size": 64}})
    built = build_components(cfg)
    assert all(torch.equal(v, components["vae"].state_dict()[k]) for k, v in built["vae"].state_dict().items())
    assert built["image_encoder"].image_size == 64 and built["image_encoder"].num_tokens == 1 + 8 * 8
    with pytest.raises(InputError, match="model.components: 'unet' is not a model of this pipeline; use one of"):
        build_components(load_train_config(None, {"model.components": {"unet": str(tmp_path)}}))
    with pytest.raises(InputError, match="not a saved model folder"):
        build_components(load_train_config(None, {"model.components": {"vae": str(tmp_path / "missing")}}))
    with pytest.raises(InputError, match="model.image_encoder: unknown image_encoder field\\(s\\) width"):
        build_components(load_train_config(None, {"model.image_encoder": {"width": 3}}))


def test_model_init_weights_loads_matching_layers_strictly(tmp_path):
    source = build_components(load_train_config(None, {"model.config": "tiny", "model.seed": 3}))["transformer"]
    source.save_pretrained(tmp_path / "transformer")
    built = build_components(load_train_config(None, {"model.config": "tiny",
                                                      "model.init_weights": {"transformer": str(tmp_path / "transformer")}}))
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in built["transformer"].state_dict().items())
    other = build_components(load_train_config(None, {"model.config": "tiny"}))["vae"]
    other.save_pretrained(tmp_path / "vae")
    with pytest.raises(InputError, match="model.init_weights.transformer: .* has different layers"):
        build_components(load_train_config(None, {"model.init_weights": {"transformer": str(tmp_path / "vae")}}))


def test_model_init_weights_apply_after_a_config_change(tmp_path):
    """An ablation that changes a field (model.transformer) starts from the saved weights, not a fresh
    init; layers only the changed config has keep their init, layers only the source has are refused."""
    source = build_components(load_train_config(None, {"stage": "full", "model.config": "tiny", "model.seed": 3,
                                                       "model.transformer": {"entity_locality_sigma": None}}))["transformer"]
    source.save_pretrained(tmp_path / "plain")
    changed = build_components(load_train_config(None, {
        "stage": "full", "model.config": "tiny", "model.transformer": {"entity_locality_sigma": 0.1, "block_order": "personalization_first"},
        "model.init_weights": {"transformer": str(tmp_path / "plain")}}))["transformer"]
    saved = source.state_dict()
    own = changed.state_dict()
    assert changed.config.block_order == "personalization_first"
    assert all(torch.equal(own[k], v) for k, v in saved.items())
    added = sorted(set(own) - set(saved))
    assert added and all("null_token" in k or "locality_scale" in k for k in added)
    changed.save_pretrained(tmp_path / "local")
    with pytest.raises(InputError, match="has different layers \\(.*null_token"):
        build_components(load_train_config(None, {"stage": "full", "model.config": "tiny", "model.transformer": {"entity_locality_sigma": None},
                                                  "model.init_weights": {"transformer": str(tmp_path / "local")}}))


def test_a_binder_ablation_starts_from_every_other_saved_layer(tmp_path):
    """binder none / linear drop or replace the gated binder: model.init_weights_skip names its
    prefix (layers only the saved model has), and every other saved layer still loads."""
    source = build_components(load_train_config(None, {"stage": "full", "model.config": "tiny", "model.seed": 3}))["transformer"]
    source.save_pretrained(tmp_path / "gated")
    saved = source.state_dict()
    for binder in ("none", "linear"):
        overrides = {"stage": "full", "model.config": "tiny", "model.transformer": {"binder": binder},
                     "model.init_weights": {"transformer": str(tmp_path / "gated")}}
        with pytest.raises(InputError, match="has different layers \\(entity_binder"):
            build_components(load_train_config(None, overrides))
        changed = build_components(load_train_config(None, {**overrides, "model.init_weights_skip": {"transformer": ["entity_binder."]}}))
        own = changed["transformer"].state_dict()
        assert all(torch.equal(own[k], v) for k, v in saved.items() if not k.startswith("entity_binder."))
        assert changed["transformer"].config.binder == binder


def test_reference_latents_are_cached_padded_and_trained(tmp_path, manifest):
    cfg = config(tmp_path, manifest, stage="full", **{"data.cache_dir": str(tmp_path / "cache"),
                 "model.transformer": {"entity_locality_sigma": 0.1, "reference_latent_size": 2}})
    components = build_components(cfg)
    transformer = components["transformer"]
    before = {n: p.detach().clone() for n, p in transformer.named_parameters() if "reference" in n}
    result = train(cfg, entity_encoder=fake_entity_encoder(components), components=components)
    assert len(result.losses) == 4 and all(torch.isfinite(torch.tensor(result.losses)))
    from safetensors.torch import load_file

    cached = [load_file(str(p)) for p in (tmp_path / "cache").rglob("*.safetensors")]
    assert cached and all(c["reference"].shape == (c["positions"].shape[0], 4, 2, 2) for c in cached)
    assert any(c["reference"].abs().sum() > 0 for c in cached)
    after = dict(transformer.named_parameters())
    assert all(not torch.equal(before[n], after[n]) for n in ("entity_reference.proj.weight", "transformer_blocks.0.reference_attn.attn.to_out.0.weight"))


@pytest.mark.parametrize("per_entity", [False, True], ids=["one-canvas", "per-entity"])
def test_placement_latents_are_cached_dropped_with_their_conditions_and_trained(tmp_path, manifest, per_entity):
    cfg = config(tmp_path, manifest, stage="full", **{"data.cache_dir": str(tmp_path / "cache"),
                 "model.transformer": {"entity_placement_channels": 5, "entity_placement_per_entity": per_entity}})
    components = build_components(cfg)
    transformer = components["transformer"]
    canvases = transformer.config.max_entities if per_entity else 1
    before = transformer.entity_placement.weight.detach().clone()
    result = train(cfg, entity_encoder=fake_entity_encoder(components), components=components)
    assert len(result.losses) == 4 and all(torch.isfinite(torch.tensor(result.losses)))
    from safetensors.torch import load_file

    cached = [load_file(str(p)) for p in (tmp_path / "cache").rglob("*.safetensors")]
    assert cached and all(c["placement"].shape == (c["latents"].shape[0], 5 * canvases, *c["latents"].shape[-2:]) for c in cached)
    for c in cached:  # coverage where placed: in the first canvas, and with one canvas per entity, in each entity's own
        count = c["positions"].shape[0]
        for slot in range(min(count, canvases) if count else 0):
            assert c["placement"][:, 5 * slot + 4].max() > 0.5
        for slot in range(count if per_entity else canvases, canvases):
            assert c["placement"][:, 5 * slot:5 * slot + 5].abs().sum() == 0
    assert not torch.equal(before, transformer.entity_placement.weight)

    from tora2.training.encode import collate
    from tora2.training.loop import apply_dropout

    batch = collate(cached[:1] * 4)
    kept = apply_dropout(batch, load_train_config(None, {"data.reference_dropout": 0.0, "data.trajectory_dropout": 0.0}),
                         cached[0]["prompt_embeds"], torch.Generator().manual_seed(0))
    assert torch.equal(kept["placement"], batch["placement"])
    for key in ("data.reference_dropout", "data.trajectory_dropout"):
        dropped = apply_dropout(batch, load_train_config(None, {key: 1.0}), cached[0]["prompt_embeds"], torch.Generator().manual_seed(0))
        assert dropped["placement"].abs().sum() == 0


def test_appearance_term_trains_through_the_frozen_vae_and_is_logged(tmp_path, manifest):
    """appearance_loss_weight > 0: x̂0 is decoded by the frozen per-frame VAE and compared with the
    decoded clip at each entity (NCC); the term is logged, the VAE stays frozen and out of checkpoints."""
    pixel = {"stage": "full", "model.vae": {"type": "pixel", "spatial_compression_ratio": 8},
             "model.transformer": {"in_channels": 192, "out_channels": 192, "temporal_compression_ratio": 1},
             "data.cache_dir": str(tmp_path / "cache"), "checkpoint_every": 2, "model.seed": 0,
             "appearance_loss_weight": 0.5, "appearance_min_snr": 0.0, "data.trajectory_dropout": 0.0}
    cfg = config(tmp_path, manifest, **pixel)
    components = build_components(cfg)
    result = train(cfg, entity_encoder=fake_entity_encoder(components), components=components)
    assert len(result.appearance_losses) == 4
    assert all(0.0 < a < 2.0 for a in result.appearance_losses)
    for total, diffusion, contrastive, appearance in zip(result.losses, result.diffusion_losses,
                                                          result.contrastive_losses, result.appearance_losses):
        assert abs(total - (diffusion + cfg.contrastive_weight * contrastive + 0.5 * appearance)) < 1e-4 * max(1.0, total)
    assert json.loads((tmp_path / "run" / "losses.json").read_text())["appearance"] == result.appearance_losses
    from safetensors.torch import load_file

    keys = load_file(str(next((tmp_path / "run" / "checkpoints").glob("step-*")) / "model.safetensors"))
    assert not any(k.startswith("vae") or "_frozen" in k for k in keys)
    off = config(tmp_path, manifest, **{**pixel, "appearance_loss_weight": 0.0, "output_dir": str(tmp_path / "off")})
    plain = train(off, entity_encoder=fake_entity_encoder(components := build_components(off)), components=components)
    assert plain.appearance_losses == [0.0] * 4
    with pytest.raises(InputError, match="appearance loss settings"):
        config(tmp_path, manifest, appearance_crop=0.0)
    with pytest.raises(InputError, match="needs the pipeline's VAE without time compression"):
        tiny = config(tmp_path, manifest, stage="full", appearance_loss_weight=0.5, appearance_min_snr=0.0,
                      output_dir=str(tmp_path / "tiny"))
        train(tiny, entity_encoder=fake_entity_encoder(components := build_components(tiny)), components=components)


def test_latent_cache_is_keyed_by_the_image_encoder_too():
    """Entity tokens are cached with the latents: another image encoder must not read the old tokens."""
    from tora2.models.encoders import SemanticImageEncoder
    from tora2.pipelines.components import build_tiny_components
    from tora2.training.encode import SampleEncoder

    components = build_tiny_components("tiny", seed=0)
    same = SampleEncoder(components, cache_dir="cache").cache_path("clip-0")
    assert SampleEncoder(dict(components), cache_dir="cache").cache_path("clip-0") == same
    other = {**components, "image_encoder": SemanticImageEncoder.tiny("open_clip", seed=4)}
    assert components["image_encoder"].encoder_id != other["image_encoder"].encoder_id
    assert SampleEncoder(other, cache_dir="cache").cache_path("clip-0") != same
