"""Pipeline components built from a model config's sections (configs/model/*.yaml), in the real classes.

Sections (each a dict of keyword arguments):

* ``vae``: ``type`` (``cogvideox`` = ``AutoencoderKLCogVideoX``, the default; ``cogvideox-asymmetric``
  = ``AsymmetricCogVideoXVAE``, the same with its own ``decoder_block_out_channels`` /
  ``decoder_layers_per_block``; or ``pixel`` = ``PixelShuffleAutoencoder``, lossless space-to-depth
  for pixel-space diffusion) plus its kwargs.
  The tiny CogVideoX one keeps the real model's compression — 8× spatial (four levels, three
  downsamples) and 4× temporal — so every size rule the real model has also holds for it. Code
  reads both ratios from the VAE's config (``vae_compression``), never a literal.
* ``text_encoder``: ``T5Config`` kwargs for a ``T5EncoderModel``; ``vocab_size`` defaults to the
  tokenizer's length.
* ``tokenizer``: ``vocab`` (a word list file; ``default`` = ``tora2/data/vocab.txt``, emoji names
  and motion words) and ``model_max_length``. A T5 unigram tokenizer is built from the words plus
  single letters and digits, so any text still tokenizes.
* ``scheduler``: ``type`` (``dpm`` = ``CogVideoXDPMScheduler``, the default, or ``ddim`` =
  ``CogVideoXDDIMScheduler``) plus the scheduler's kwargs (CogVideoX: trailing spacing, v-prediction).
* ``image_encoder``: ``SemanticImageEncoder`` kwargs (the DPE's frozen semantic encoder).

``transformer`` and ``personalization`` are built by ``tora2.models.configs``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler
from tokenizers import normalizers
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel, T5TokenizerFast

from tora2.errors import InputError
from tora2.models.asymmetric_autoencoder import AsymmetricCogVideoXVAE
from tora2.models.configs import build_personalization, build_transformer, load_model_config
from tora2.models.encoders import SemanticImageEncoder
from tora2.models.pixel_autoencoder import PixelShuffleAutoencoder
from tora2.pipelines.model_info import vae_config_compression

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_VOCAB = DATA_DIR / "vocab.txt"
SCHEDULERS = {"dpm": CogVideoXDPMScheduler, "ddim": CogVideoXDDIMScheduler}
VAES = {"cogvideox": AutoencoderKLCogVideoX, "cogvideox-asymmetric": AsymmetricCogVideoXVAE, "pixel": PixelShuffleAutoencoder}
# CogVideoX's released scheduler settings (THUDM/CogVideoX-2b scheduler_config.json).
COGVIDEOX_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=True,
    steps_offset=0,
    prediction_type="v_prediction",
    timestep_spacing="trailing",
    rescale_betas_zero_snr=True,
    snr_shift_scale=3.0,
)
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5


def _check_keys(kwargs: dict[str, Any], allowed: list[str] | tuple[str, ...], where: str) -> None:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _init_args(cls) -> list[str]:
    return [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "kwargs")]


def vae_compression(vae) -> tuple[int, int]:
    """(temporal, spatial) compression of a pipeline's VAE (either class), from its config."""
    return vae_config_compression(dict(vae.config))


# ------------------------------------------------------------------------------------------ tokenizer
def read_vocab(path: str | Path) -> list[str]:
    """Words of a word list file: one a line, blank lines and ``#`` comments skipped, order kept."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"tokenizer vocab file {path} does not exist: give a word list (one word a line)")
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        word = line.strip()
        if word and not word.startswith("#") and word not in words:
            words.append(word)
    return words


def build_tokenizer(section: dict[str, Any] | None = None) -> PreTrainedTokenizerFast:
    """A T5 unigram tokenizer over whole words (``▁word``), with letters and digits as fallback pieces."""
    section = dict(section or {})
    _check_keys(section, ("vocab", "model_max_length"), "tokenizer section")
    vocab_path = section.get("vocab", "default")
    vocab_path = DEFAULT_VOCAB if vocab_path == "default" else Path(vocab_path)
    words = read_vocab(vocab_path)
    # Whole words are cheap (score −1); single characters expensive (−8) so a known word never splits.
    pieces = [(token, 0.0) for token in SPECIAL_TOKENS]
    pieces += [("▁" + word.lower(), -1.0) for word in words]
    pieces += [("▁", -4.0)]
    pieces += [(char, -8.0) for char in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    seen, unique = set(), []
    for piece in pieces:
        if piece[0] not in seen:
            seen.add(piece[0])
            unique.append(piece)
    tokenizer = T5TokenizerFast(vocab=unique, extra_ids=0)
    # The word list is lower case: lower-case the text first so "A Cat" finds the words "a" and "cat".
    normalizer = tokenizer.backend_tokenizer.normalizer
    steps = [normalizers.Lowercase()] + ([normalizer] if normalizer is not None else [])
    tokenizer.backend_tokenizer.normalizer = normalizers.Sequence(steps)
    # Saved as a generic fast tokenizer: T5Tokenizer rebuilds its normalizer on load and would drop
    # the lower-casing; PreTrainedTokenizerFast reloads tokenizer.json exactly as written.
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend_tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=int(section.get("model_max_length", 226)),
    )


# ------------------------------------------------------------------------------------------ models
def build_text_encoder(section: dict[str, Any], vocab_size: int) -> T5EncoderModel:
    kwargs = dict(section)
    kwargs.setdefault("vocab_size", vocab_size)
    kwargs.setdefault("dropout_rate", 0.0)
    _check_keys(kwargs, sorted(T5Config().to_dict()), "text_encoder section")  # T5Config takes any key: check first
    return T5EncoderModel(T5Config(**kwargs)).eval()


def build_vae(section: dict[str, Any]) -> AutoencoderKLCogVideoX | AsymmetricCogVideoXVAE | PixelShuffleAutoencoder:
    """``type`` (a key of ``VAES``; default cogvideox) + the class's kwargs."""
    kwargs = dict(section)
    kind = kwargs.pop("type", "cogvideox")
    if kind not in VAES:
        raise InputError(f"vae type {kind!r} is not supported; use one of {', '.join(VAES)}")
    cls = VAES[kind]
    _check_keys(kwargs, _init_args(cls), "vae section")
    return cls(**kwargs).eval()


def build_scheduler(section: dict[str, Any] | None = None):
    """``type`` dpm|ddim + kwargs over CogVideoX's released settings."""
    kwargs = dict(section or {})
    kind = kwargs.pop("type", "dpm")
    if kind not in SCHEDULERS:
        raise InputError(f"scheduler type {kind!r} is not supported; use one of {', '.join(SCHEDULERS)}")
    cls = SCHEDULERS[kind]
    _check_keys(kwargs, _init_args(cls), "scheduler section")
    return cls(**{**COGVIDEOX_SCHEDULER, **kwargs})


def build_image_encoder(section: dict[str, Any] | None) -> SemanticImageEncoder | None:
    if not section:
        return None
    _check_keys(section, _init_args(SemanticImageEncoder), "image_encoder section")
    return SemanticImageEncoder(**section)


def build_tiny_components(config: str | Path | dict = "tiny", seed: int = 0) -> dict[str, Any]:
    """Every pipeline component from a model config (a name, a YAML path or a loaded dict).

    Each model is built right after ``torch.manual_seed(seed)``, so a component's weights depend
    only on its own section and the seed. Returns the keyword arguments of ``Tora2Pipeline``:
    tokenizer, text_encoder, vae, transformer, scheduler, personalization, image_encoder, face_encoder.
    """
    if not isinstance(config, dict):
        config = load_model_config(config)
    for name in ("vae", "text_encoder"):
        if name not in config:
            raise InputError(f"model config has no {name!r} section; add one (see configs/model/tiny.yaml)")
    tokenizer = build_tokenizer(config.get("tokenizer"))
    torch.manual_seed(seed)
    text_encoder = build_text_encoder(config["text_encoder"], len(tokenizer))
    torch.manual_seed(seed)
    vae = build_vae(config["vae"])
    torch.manual_seed(seed)
    transformer = build_transformer(config).eval()
    torch.manual_seed(seed)
    personalization = build_personalization(config)
    personalization = personalization.eval() if personalization is not None else None
    torch.manual_seed(seed)
    image_encoder = build_image_encoder(config.get("image_encoder"))
    check_compatible(text_encoder, vae, transformer, personalization, image_encoder)
    return dict(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=build_scheduler(config.get("scheduler")),
        personalization=personalization,
        image_encoder=image_encoder,
        face_encoder=None,
    )


def check_compatible(text_encoder, vae, transformer, personalization=None, image_encoder=None) -> None:
    """The widths that must agree between components; one line naming both sides when they do not."""
    tcfg = transformer.config
    pairs = [
        ("text_encoder d_model", text_encoder.config.d_model, "transformer text_embed_dim", tcfg.text_embed_dim),
        ("vae latent_channels", vae.config.latent_channels, "transformer in_channels", tcfg.in_channels),
        ("vae temporal_compression_ratio", int(vae.config.temporal_compression_ratio),
         "transformer temporal_compression_ratio", tcfg.temporal_compression_ratio),
    ]
    if personalization is not None and tcfg.entity_dim is not None:
        pairs.append(("personalization entity_dim", personalization.config.entity_dim, "transformer entity_dim", tcfg.entity_dim))
        pairs.append(("personalization num_queries", personalization.config.num_queries,
                      "transformer num_personalization_tokens", tcfg.num_personalization_tokens))
    if personalization is not None and image_encoder is not None:
        pairs.append(("image_encoder out_dim", image_encoder.out_dim, "personalization semantic_dim", personalization.config.semantic_dim))
    for left, a, right, b in pairs:
        if a != b:
            raise InputError(f"model components do not fit: {left}={a} but {right}={b}; make them equal in the model config")
