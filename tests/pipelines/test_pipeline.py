import numpy as np
import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel

from tests.models.tiny import COGVIDEOX_KEYS, perturb
from tora2.errors import InputError
from tora2.pipelines.components import build_tiny_components
from tora2.pipelines.pipeline_tora2 import Tora2Pipeline
from tora2.specs import EntitySpec, EntityTokens

F, H, W = 9, 32, 32
STEPS = 2


def line(x0, y0, x1, y1):
    return np.stack([np.linspace(x0, x1, F), np.linspace(y0, y1, F)], 1)


def sprite(color):
    image = np.zeros((24, 24, 4), np.uint8)
    image[..., :3] = color
    image[4:20, 4:20, 3] = 255
    return image


def make_pipeline(trained=True, seed=0):
    """Tiny pipeline; ``trained`` perturbs the zero-initialised Tora/Tora2 parts so they act."""
    components = build_tiny_components("tiny", seed=seed)
    if trained:
        transformer = components["transformer"]
        perturb([p for n, p in transformer.named_parameters() if transformer.part_of(n) != "cogvideox"], scale=0.3)
    pipe = Tora2Pipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return make_pipeline()


def entities():
    return [
        EntitySpec("cat", image=sprite((220, 120, 20)), trajectory=line(4, 4, 28, 28)),
        EntitySpec("dog", image=sprite((20, 80, 220)), trajectory=line(28, 4, 4, 28)),
    ]


def run(pipe, prompt="a cat chases a dog", seed=0, **kwargs):
    kwargs = {"entities": entities(), "num_frames": F, "height": H, "width": W, "num_inference_steps": STEPS, **kwargs}
    return pipe(prompt, generator=torch.Generator().manual_seed(seed), **kwargs)


def test_output_shape_and_step_timings(pipe):
    out = run(pipe)
    assert out.frames.shape == (1, F, H, W, 3)
    assert out.frames.min() >= 0 and out.frames.max() <= 1
    assert len(out.step_seconds) == STEPS


def test_same_seed_same_video_other_seed_differs(pipe):
    a, b, c = run(pipe, seed=1).frames, run(pipe, seed=1).frames, run(pipe, seed=2).frames
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_batch_of_two_prompts_equals_two_runs():
    # float64: batching reorders float32 sums, and 50 sampler steps amplify that to ~1e-5 in pixels.
    pipe = make_pipeline().to(torch.float64)
    prompts = ["a cat chases a dog", "a dog runs left"]
    generators = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]
    kwargs = dict(entities=entities(), num_frames=F, height=H, width=W, num_inference_steps=STEPS)
    batched = pipe(prompts, generator=generators, **kwargs).frames
    one = run(pipe, prompts[0], seed=5).frames[0]
    two = run(pipe, prompts[1], seed=6).frames[0]
    np.testing.assert_allclose(batched[0], one, atol=1e-5)
    np.testing.assert_allclose(batched[1], two, atol=1e-5)


def test_conditions_change_the_video(pipe):
    base = run(pipe).frames
    moved = run(pipe, entities=[EntitySpec("cat", image=sprite((220, 120, 20)), trajectory=line(28, 28, 4, 4))]).frames
    assert not np.allclose(base, moved, atol=1e-4)
    guided = run(pipe, reference_guidance_scale=2.0, trajectory_guidance_scale=2.0).frames
    assert not np.allclose(base, guided, atol=1e-4)


def test_precomputed_tokens_equal_image_encoding(pipe):
    ents = entities()
    with_tokens = pipe.encode_entity_images(ents)
    assert all(isinstance(e.tokens, EntityTokens) for e in with_tokens)
    assert with_tokens[0].tokens.semantic.shape == (17, 32) and with_tokens[0].tokens.identity.shape == (16, 32)
    assert np.array_equal(run(pipe, entities=with_tokens).frames, run(pipe).frames)


def test_no_entities_equals_diffusers_cogvideox_pipeline():
    pipe = make_pipeline(trained=False).to(torch.float64)  # float64: the forwards differ only in summation order
    cfg = pipe.transformer.config
    base = CogVideoXTransformer3DModel(**{k: cfg[k] for k in COGVIDEOX_KEYS}).eval().to(torch.float64)
    own = pipe.transformer.state_dict()
    base.load_state_dict({k: own[k] for k in base.state_dict()})
    reference = CogVideoXPipeline(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, vae=pipe.vae,
                                  transformer=base, scheduler=pipe.scheduler)
    reference.set_progress_bar_config(disable=True)
    kwargs = dict(num_frames=F, height=H, width=W, num_inference_steps=3, guidance_scale=6.0, output_type="np")
    ours = pipe("a red fox", max_sequence_length=32, generator=torch.Generator().manual_seed(3), **kwargs).frames
    theirs = reference("a red fox", max_sequence_length=32, generator=torch.Generator().manual_seed(3), **kwargs).frames
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    # DDIM too, and the dynamic CFG schedule.
    pipe.scheduler = reference.scheduler = CogVideoXDDIMScheduler.from_config(pipe.scheduler.config)
    kwargs["use_dynamic_cfg"] = True
    ours = pipe("a red fox", max_sequence_length=32, generator=torch.Generator().manual_seed(3), **kwargs).frames
    theirs = reference("a red fox", max_sequence_length=32, generator=torch.Generator().manual_seed(3), **kwargs).frames
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_save_load_round_trip(tmp_path, pipe):
    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "model_index.json").is_file() and (tmp_path / "transformer" / "config.json").is_file()
    loaded = Tora2Pipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.transformer).__name__ == "Tora2Transformer3DModel"
    assert np.array_equal(run(loaded).frames, run(pipe).frames)


def test_memory_modes_on_cpu(pipe):
    reference = run(pipe, ["a cat chases a dog"] * 2).frames
    pipe.vae.enable_slicing()
    try:
        # The two samples' flows are VAE-encoded in one call, or one at a time when sliced: float
        # summation order differs (≈1e-4 after 2 steps and the decoder), nothing else.
        np.testing.assert_allclose(run(pipe, ["a cat chases a dog"] * 2).frames, reference, atol=5e-4)
    finally:
        pipe.vae.disable_slicing()
    pipe.vae.enable_tiling(tile_sample_min_height=16, tile_sample_min_width=16,
                           tile_overlap_factor_height=0.5, tile_overlap_factor_width=0.5)
    try:
        tiled = run(pipe).frames
    finally:
        pipe.vae.disable_tiling()
    assert tiled.shape == (1, F, H, W, 3) and np.isfinite(tiled).all()


def test_bf16_weights_run():
    pipe = make_pipeline().to(torch.bfloat16)
    out = run(pipe, output_type="latent")
    assert out.frames.dtype == torch.bfloat16 and out.frames.shape == (1, 3, 4, 4, 4)
    assert torch.isfinite(out.frames.float()).all()


def test_model_cpu_offload_on_cpu_matches():
    pipe = make_pipeline()
    reference = run(pipe).frames
    pipe.enable_model_cpu_offload(device="cpu")  # hooks move each model to the execution device in turn
    np.testing.assert_allclose(run(pipe).frames, reference, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="sequential offload needs an accelerator (on CPU accelerate leaves meta tensors)")
def test_sequential_offload_on_gpu():
    pipe = make_pipeline()
    reference = run(pipe).frames
    pipe.enable_sequential_cpu_offload()
    np.testing.assert_allclose(run(pipe).frames, reference, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_frames": 10}, "num_frames 10 cannot be produced"),
        ({"height": 40}, "height 40 cannot be produced"),
        ({"entities": [EntitySpec("x", trajectory=np.zeros((F, 2)))] * 5}, "5 entities given but this model supports at most 4"),
        ({"entities": [EntitySpec("x", trajectory=np.zeros((3, 2)))]}, r"trajectory is \(3, 2\); expected \(9, 2\)"),
        ({"output_type": "gif"}, "output_type 'gif' is not supported"),
        ({"num_inference_steps": 0}, "num_inference_steps is 0"),
        ({"num_inference_steps": 1001}, r"num_inference_steps \(--steps\) is 1001; this model's scheduler has 1000 training timesteps, so use 1 to 1000"),
    ],
)
def test_bad_inputs_are_one_line_errors(pipe, kwargs, message):
    with pytest.raises(InputError, match=message):
        run(pipe, **kwargs)


def test_motion_modulation_cache_gives_the_same_video():
    pipe = make_pipeline()
    reference = run(pipe, output_type="latent").frames
    pipe.enable_motion_modulation_cache()
    torch.testing.assert_close(run(pipe, output_type="latent").frames, reference, rtol=0, atol=1e-5)


def test_motion_cache_budget_and_its_estimate(monkeypatch):
    pipe = make_pipeline()
    cfg = pipe.transformer.config
    tokens = ((F - 1) // 4 + 1) * (H // pipe.vae_scale_factor_spatial // 2) * (W // pipe.vae_scale_factor_spatial // 2)
    expected = 2 * cfg.num_layers * tokens * cfg.num_attention_heads * cfg.attention_head_dim * 4  # float32
    assert pipe.motion_modulation_bytes(1, F, H, W) == expected
    seen = []
    original = pipe.transformer.prepare_conditions

    def spy(*args, **kwargs):
        seen.append((kwargs["precompute_modulation"], kwargs["video_flow"].shape[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(pipe.transformer, "prepare_conditions", spy)
    pipe.enable_motion_modulation_cache(max_bytes=expected - 1)
    run(pipe, output_type="latent")
    pipe.enable_motion_modulation_cache(max_bytes=expected)
    run(pipe, output_type="latent")
    # Both guidance branches share one flow (batch 1), so the budget is that of a single trajectory.
    assert seen == [(False, 1), (True, 1)]


def test_one_entity_list_per_prompt_equals_separate_runs():
    pipe = make_pipeline().to(torch.float64)  # float64: batching only reorders sums
    cat, dog = entities()
    kwargs = dict(num_frames=F, height=H, width=W, num_inference_steps=STEPS)
    prompts = ["a cat chases a dog", "a dog runs left"]
    generators = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]
    batched = pipe(prompts, entities=[[cat, dog], [dog]], generator=generators, **kwargs).frames
    one = run(pipe, prompts[0], seed=5, entities=[cat, dog]).frames[0]
    two = run(pipe, prompts[1], seed=6, entities=[dog]).frames[0]  # padded to 2 entities in the batch
    np.testing.assert_allclose(batched[0], one, atol=1e-5)
    np.testing.assert_allclose(batched[1], two, atol=1e-5)
    with pytest.raises(InputError, match="entities has 3 lists for 2 prompts"):
        pipe(prompts, entities=[[cat], [dog], [cat]], **kwargs)


def pipeline_with(**fields):
    """The tiny pipeline with a transformer rebuilt with ``fields`` (perturbed so the additions act)."""
    from tora2.models.transformer_tora2 import Tora2Transformer3DModel

    components = build_tiny_components("tiny", seed=0)
    config = {k: v for k, v in components["transformer"].config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    transformer = Tora2Transformer3DModel(**{**config, **fields}).eval()
    perturb([p for n, p in transformer.named_parameters() if transformer.part_of(n) != "cogvideox"], scale=0.3)
    pipe = Tora2Pipeline(**{**components, "transformer": transformer})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_pipeline():
    """A transformer that reads reference latents."""
    return pipeline_with(entity_locality_sigma=0.15, reference_latent_size=2)


def placement_pipeline():
    """A transformer that reads placement latents (the tiny VAE's 4 latent channels + coverage)."""
    return pipeline_with(entity_placement_channels=5)


def test_reference_latents_are_each_entity_image_through_the_vae():
    from tora2.pipelines.conditioning import encode_video, reference_latents
    from tora2.models.encoders import white_square
    from PIL import Image

    pipe = reference_pipeline()
    specs = [entities(), [EntitySpec("cloud", trajectory=line(0, 0, 8, 8))]]  # the second sample: no image
    latents = reference_latents(pipe.vae, specs, 2, 2)  # (B, E, C, r, r); the tiny VAE is 8× spatial → 16 px
    assert latents.shape == (2, 2, pipe.vae.config.latent_channels, 2, 2)
    assert latents[1].abs().sum() == 0  # no image, and a padding entity: zeros
    square = np.array(Image.fromarray(white_square(sprite((220, 120, 20)))).resize((16, 16), Image.Resampling.LANCZOS))
    own = encode_video(pipe.vae, torch.from_numpy(square).permute(2, 0, 1).float()[None, None] / 127.5 - 1)[0, 0]
    torch.testing.assert_close(latents[0, 0], own.float())


@pytest.mark.parametrize("make", [reference_pipeline, placement_pipeline], ids=["reference-latents", "placement"])
def test_a_model_reading_the_images_generates_and_its_images_matter(make):
    pipe = make()
    base = run(pipe).frames
    assert base.shape == (1, F, H, W, 3)
    recoloured = [EntitySpec(e.text, image=sprite((20, 200, 60)), trajectory=e.trajectory, tokens=t.tokens)
                  for e, t in zip(entities(), pipe.encode_entity_images(entities()))]  # same tokens, other image
    assert not np.allclose(run(pipe, entities=recoloured).frames, base, atol=1e-4)


def test_the_model_default_reference_guidance_is_saved_and_used_unless_overridden(tmp_path):
    """``reference_guidance_scale`` saved with the pipeline (model_index.json) is what a call without
    the argument uses; None or 0 turn the branch off, a number overrides it."""
    from tora2.pipelines.pipeline_tora2 import MODEL_DEFAULT

    pipe = make_pipeline()
    default = Tora2Pipeline(**pipe.components, reference_guidance_scale=2.0)
    default.set_progress_bar_config(disable=True)
    default.save_pretrained(tmp_path / "model")
    loaded = Tora2Pipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.reference_guidance_scale == 2.0 and loaded.effective_reference_guidance() == 2.0
    np.testing.assert_array_equal(run(default).frames, run(pipe, reference_guidance_scale=2.0).frames)
    np.testing.assert_array_equal(run(loaded).frames, run(pipe, reference_guidance_scale=2.0).frames)
    off = run(pipe).frames  # a pipeline without a default: no branch
    assert pipe.effective_reference_guidance(MODEL_DEFAULT) is None
    np.testing.assert_array_equal(run(default, reference_guidance_scale=None).frames, off)
    np.testing.assert_array_equal(run(default, reference_guidance_scale=0).frames, off)
    assert not np.array_equal(run(default).frames, off)
    with pytest.raises(InputError, match="reference_guidance_scale 'big'"):
        run(default, reference_guidance_scale="big")


def test_placement_video_pastes_each_reference_on_its_point_in_its_visible_frames():
    from tora2.pipelines.conditioning import PLACEMENT_SIZE, placement_video

    cat, dog = entities()
    dog.visible = np.arange(F) < 4  # gone from frame 4
    video = placement_video([cat, dog, EntitySpec("cloud", trajectory=line(16, 16, 16, 16))], F, H, W)  # (F, 4, H, W)
    assert video.shape == (F, 4, H, W)
    ys, xs = np.mgrid[0:H, 0:W]
    alone = placement_video([cat], F, H, W)[:, 3].numpy()  # (F, H, W)
    for f in range(F):
        centroid = np.array([(alone[f] * xs).sum(), (alone[f] * ys).sum()]) / alone[f].sum()
        np.testing.assert_allclose(centroid, cat.trajectory[f], atol=0.1)
    # The dog is placed only while visible; the cloud has no image and is never placed.
    assert np.array_equal(video[4:, 3].numpy(), alone[4:]) and not np.array_equal(video[:4, 3].numpy(), alone[:4])
    # The cat's 16-pixel opaque square in a 24-pixel sprite, scaled to PLACEMENT_SIZE of the side:
    # (bilinear resampling spreads its edges: ≈ 20 pixels of area come out as 25 of coverage)
    assert alone[0].sum() == pytest.approx((16 / 24 * PLACEMENT_SIZE * H) ** 2, rel=0.3)
    assert video[:, :3].abs().max() <= 1 and torch.equal(video[:, :3][video[:, 3:].expand(-1, 3, -1, -1) == 0],
                                                        torch.zeros(int((video[:, 3:] == 0).sum()) * 3))


def test_placement_latents_are_the_video_through_the_vae_less_the_empty_canvas():
    from tora2.pipelines.conditioning import encode_video, placement_latents, placement_video

    pipe = placement_pipeline()
    specs = [entities(), [EntitySpec("cloud", trajectory=line(0, 0, 8, 8))]]  # the second: nothing to place
    latents = placement_latents(pipe.vae, specs, F, H, W)  # (B, Fl, C + 1, h, w); tiny VAE: 4× time, 8× space
    channels = pipe.vae.config.latent_channels
    assert latents.shape == (2, 3, channels + 1, H // 8, W // 8)
    # An empty canvas reads as zeros (to float error between batched and single VAE calls), like a dropped placement.
    assert latents[1].abs().max() < 1e-2 * latents[0].abs().max()
    video = placement_video(specs[0], F, H, W)
    own = encode_video(pipe.vae, video[None, :, :3]) - encode_video(pipe.vae, torch.zeros(1, F, 3, H, W))
    torch.testing.assert_close(latents[0, :, :channels], own[0].float(), atol=1e-3, rtol=1e-3)  # batched vs single VAE calls
    coverage = torch.nn.functional.avg_pool2d(video[[0, 4, 8], 3], 8)  # each latent frame's last pixel frame
    torch.testing.assert_close(latents[0, :, channels], coverage)


def test_per_entity_placement_gives_each_entity_its_own_canvas_in_its_slot():
    """canvases S > 1: slot i holds entity i alone (as a one-entity composite); empty slots, and an
    entity with nothing to place, are exactly zero; more entities than slots are refused."""
    from tora2.pipelines.conditioning import placement_latents

    pipe = placement_pipeline()
    cat, dog = entities()
    cloud = EntitySpec("cloud", trajectory=line(0, 0, 8, 8))  # no image: nothing to place
    channels = pipe.vae.config.latent_channels + 1
    latents = placement_latents(pipe.vae, [[cat, cloud, dog]], F, H, W, canvases=4)  # (1, Fl, 4·(C + 1), h, w)
    assert latents.shape == (1, 3, 4 * channels, H // 8, W // 8)
    slots = latents[0].unflatten(1, (4, channels))  # (Fl, S, C + 1, h, w)
    for slot, entity in ((0, cat), (2, dog)):
        torch.testing.assert_close(slots[:, slot], placement_latents(pipe.vae, [[entity]], F, H, W)[0], atol=1e-3, rtol=1e-3)
    assert slots[:, 1].abs().sum() == 0 and slots[:, 3].abs().sum() == 0
    with pytest.raises(InputError, match="places at most 2"):
        placement_latents(pipe.vae, [[cat, dog, cloud]], F, H, W, canvases=2)


def test_a_per_entity_placement_model_generates_and_its_images_matter():
    pipe = pipeline_with(entity_placement_channels=5, entity_placement_per_entity=True)
    assert pipe.transformer.entity_placement.in_channels == 5 * pipe.transformer.config.max_entities
    base = run(pipe).frames
    recoloured = [EntitySpec(e.text, image=sprite((20, 200, 60)), trajectory=e.trajectory, tokens=t.tokens)
                  for e, t in zip(entities(), pipe.encode_entity_images(entities()))]
    assert not np.allclose(run(pipe, entities=recoloured).frames, base, atol=1e-4)


def test_dropping_the_reference_or_the_path_drops_the_placement():
    base = {"entity_placement": torch.ones(1, 3, 5, 4, 4), "entity_personalization_valid": torch.ones(1, 2, dtype=torch.bool),
            "entity_visible": torch.ones(1, 2, 3, dtype=torch.bool), "video_flow": torch.ones(1, 3, 4, 4, 4)}
    for branch in ("no_reference", "no_trajectory"):
        assert Tora2Pipeline._branch_inputs(base, branch, torch.zeros(1, 3, 4, 4, 4))["entity_placement"].abs().sum() == 0
    for branch in ("cond", "uncond"):
        assert torch.equal(Tora2Pipeline._branch_inputs(base, branch, None)["entity_placement"], base["entity_placement"])


