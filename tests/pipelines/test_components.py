import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler
from transformers import AutoTokenizer, T5EncoderModel

from tora2.errors import InputError
from tora2.pipelines.components import (
    build_scheduler,
    build_tiny_components,
    build_tokenizer,
    check_compatible,
    read_vocab,
    vae_compression,
)


def test_tokenizer_whole_words_case_insensitive_and_reloads(tmp_path):
    tok = build_tokenizer({"model_max_length": 32})
    pieces = tok.convert_ids_to_tokens(tok("A Cat spirals clockwise").input_ids)
    assert pieces == ["▁a", "▁cat", "▁spirals", "▁clockwise", "</s>"]
    assert tok.model_max_length == 32
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "The dragon and a UNICORN zigzag over the rainbow!"
    assert again(text).input_ids == tok(text).input_ids
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1


def test_unknown_words_fall_back_to_letters():
    tok = build_tokenizer()
    pieces = tok.convert_ids_to_tokens(tok("qwx").input_ids)
    assert pieces == ["▁", "q", "w", "x", "</s>"]


def test_vocab_has_emoji_names_and_motion_words():
    words = set(read_vocab("tora2/data/vocab.txt"))
    assert {"cat", "rocket", "unicorn", "zigzag", "spirals", "left", "bounces"} <= words


def test_missing_vocab_file_is_one_line_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        build_tokenizer({"vocab": str(tmp_path / "nope.txt")})


def test_tiny_components_fit_and_compress_like_cogvideox(tiny_components):
    c = tiny_components
    assert isinstance(c["text_encoder"], T5EncoderModel)
    assert c["text_encoder"].config.d_model == c["transformer"].config.text_embed_dim == 32
    assert vae_compression(c["vae"]) == (4, 8)
    x = torch.zeros(1, 3, 5, 32, 32)
    with torch.no_grad():
        latents = c["vae"].encode(x).latent_dist.mode()
    assert latents.shape == (1, 4, 2, 4, 4)
    assert c["image_encoder"].out_dim == c["personalization"].config.semantic_dim == 32


def test_build_is_deterministic_per_seed():
    a = build_tiny_components("tiny", seed=3)["transformer"].state_dict()
    b = build_tiny_components("tiny", seed=3)["transformer"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_schedulers_are_cogvideox_settings():
    dpm = build_scheduler({"type": "dpm"})
    ddim = build_scheduler({"type": "ddim"})
    assert isinstance(dpm, CogVideoXDPMScheduler) and isinstance(ddim, CogVideoXDDIMScheduler)
    assert dpm.config.prediction_type == "v_prediction"
    assert dpm.config.timestep_spacing == "trailing"
    assert dpm.config.snr_shift_scale == 3.0
    dpm.set_timesteps(4)
    assert dpm.timesteps.tolist() == [999, 749, 499, 249]


def test_bad_sections_name_the_key():
    with pytest.raises(InputError, match="unknown key.*spacing"):
        build_scheduler({"spacing": "trailing"})
    with pytest.raises(InputError, match="scheduler type 'euler'"):
        build_scheduler({"type": "euler"})


def test_incompatible_widths_are_reported(tiny_components):
    c = tiny_components
    text_encoder = T5EncoderModel(c["text_encoder"].config.__class__(**{**c["text_encoder"].config.to_dict(), "d_model": 16}))
    with pytest.raises(InputError, match="d_model=16 but transformer text_embed_dim=32"):
        check_compatible(text_encoder, c["vae"], c["transformer"])
