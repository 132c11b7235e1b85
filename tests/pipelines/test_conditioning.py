import numpy as np
import pytest
import torch

from tora2.errors import InputError
from tora2.pipelines.conditioning import (
    check_frame_size,
    encode_prompt,
    entity_conditions,
    flow_latents,
    null_flow_latents,
    phrase_token_embeds,
)
from tora2.specs import EntitySpec, EntityTokens

F, H, W = 9, 64, 64


def line(x0, y0, x1, y1, n=F):
    return np.stack([np.linspace(x0, x1, n), np.linspace(y0, y1, n)], 1)


def test_encode_prompt_shapes_and_mask(tiny_components):
    c = tiny_components
    embeds, mask = encode_prompt(c["tokenizer"], c["text_encoder"], ["a cat moves left", "a dog"], 32)
    assert embeds.shape == (2, 32, 32)
    assert mask.sum(1).tolist() == [5, 3]  # words + EOS


def test_phrase_found_in_prompt_is_a_slice(tiny_components):
    c = tiny_components
    prompt = "a red fox runs past a cat"
    embeds, _ = encode_prompt(c["tokenizer"], c["text_encoder"], [prompt], 32)
    out, mask = phrase_token_embeds(c["tokenizer"], embeds[0], prompt, "red fox", 4)
    assert mask.tolist() == [True, True, False, False]
    assert torch.equal(out[:2], embeds[0, 1:3])
    assert torch.count_nonzero(out[2:]) == 0


def test_phrase_absent_is_encoded_separately(tiny_components):
    c = tiny_components
    prompt = "a cat"
    embeds, _ = encode_prompt(c["tokenizer"], c["text_encoder"], [prompt], 32)
    out, mask = phrase_token_embeds(c["tokenizer"], embeds[0], prompt, "blue rocket", 4, c["text_encoder"])
    alone, _ = encode_prompt(c["tokenizer"], c["text_encoder"], ["blue rocket"], 32)
    assert mask.tolist() == [True, True, False, False]
    assert torch.equal(out[:2], alone[0, :2])
    with pytest.raises(InputError, match="'blue rocket' is not in the prompt"):
        phrase_token_embeds(c["tokenizer"], embeds[0], prompt, "blue rocket", 4)


def test_flow_latents_shape_and_zero_flow(tiny_components):
    vae = tiny_components["vae"]
    lat = flow_latents(vae, [[line(10, 10, 50, 50)]], None, H, W)
    assert lat.shape == (1, 3, 4, 8, 8)
    null = null_flow_latents(vae, F, H, W, batch_size=2)
    assert null.shape == (2, 3, 4, 8, 8)
    assert not torch.equal(lat[0], null[0])
    still = flow_latents(vae, [[line(20, 20, 20, 20)]], None, H, W)  # no motion renders as the zero flow
    assert torch.equal(still[0], null[0])


def test_entity_conditions_pads_entities_and_feeds_the_transformer(tiny_components):
    c = tiny_components
    prompts = ["a cat chases a dog", "a cat"]
    embeds, _ = encode_prompt(c["tokenizer"], c["text_encoder"], prompts, 32)
    tokens = EntityTokens(torch.randn(17, 32), torch.randn(16, 32), "object")
    cat = EntitySpec("cat", trajectory=line(8, 8, 56, 56), tokens=tokens)
    dog = EntitySpec("dog", trajectory=line(56, 8, 8, 56), visible=np.arange(F) < 5)
    out = entity_conditions([[cat, dog], [cat]], prompts, embeds, c["tokenizer"], c["text_encoder"], c["vae"],
                            c["personalization"], num_frames=F, height=H, width=W)
    assert out["video_flow"].shape == (2, 3, 4, 8, 8)
    assert out["entity_positions"].shape == (2, 2, 3, 2)
    np.testing.assert_allclose(out["entity_positions"][0, 0].numpy(), [[0.125, 0.125], [0.5, 0.5], [0.875, 0.875]])
    assert out["entity_visible"][0, 1].tolist() == [True, True, False]
    assert out["entity_mask"].tolist() == [[True, True], [True, False]]
    assert out["entity_personalization"].shape == (2, 2, 4, 32)
    assert out["entity_personalization_valid"].tolist() == [[True, False], [True, False]]
    assert out["entity_text_embeds"].shape == (2, 2, 1, 32)
    assert torch.equal(out["entity_text_embeds"][0, 1, 0], embeds[0, 4])  # "dog" is token 4
    conditions = c["transformer"].prepare_conditions(**out)
    assert conditions.entity_tokens.shape == (2, 2 * (4 + 3), 32)


def test_entity_conditions_rejects_wrong_path_length(tiny_components):
    c = tiny_components
    embeds, _ = encode_prompt(c["tokenizer"], c["text_encoder"], ["a cat"], 32)
    with pytest.raises(InputError, match=r"trajectory is \(5, 2\), expected \(9, 2\)"):
        entity_conditions([[EntitySpec("cat", trajectory=line(0, 0, 9, 9, 5))]], ["a cat"], embeds, c["tokenizer"],
                          c["text_encoder"], c["vae"], num_frames=F, height=H, width=W)


def test_frame_and_size_rules_name_allowed_values(tiny_components):
    vae = tiny_components["vae"]
    check_frame_size(vae, 2, 9, 64, 48)
    check_frame_size(vae, 2, 17, 64, 64)
    with pytest.raises(InputError, match=r"num_frames 10 .* 8k\+1 .* e.g. 9 or 17"):
        check_frame_size(vae, 2, 10, 64, 64)
    with pytest.raises(InputError, match=r"num_frames 13 .* 8k\+1"):
        check_frame_size(vae, 2, 13, 64, 64)
    with pytest.raises(InputError, match="width 40 .* multiple of 16"):
        check_frame_size(vae, 2, 9, 64, 40)
