"""Tora2Pipeline: prompt + entities (reference, path, phrase) → video, on diffusers' CogVideoX recipe.

Glossary: B batch (prompts), G guidance branches, E entities, F pixel frames, Fl latent frames,
C latent channels, H/W pixel size, h/w latent size, L text tokens, D text width.

Guidance branches run as one batched forward, in this order (each present only when used):
``uncond`` (negative prompt; trajectories and references kept, as Tora does), ``cond``,
``no_reference`` (every ``entity_personalization_valid`` False and the placement latents zeroed;
when ``reference_guidance_scale`` is set, by the call or as the model's default saved with it)
and ``no_trajectory`` (zero-flow latents, every entity frame invisible; when
``trajectory_guidance_scale`` is set). The prediction is
``uncond + s·(cond − uncond) + s_ref·(cond − no_reference) + s_traj·(cond − no_trajectory)``.
With no entities and no paths this is exactly diffusers' CogVideoXPipeline.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from diffusers import CogVideoXDPMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

# The component classes are imported here so that diffusers' from_pretrained, which resolves
# model_index.json entries such as ["tora2.models.personalization", "PersonalizationExtractor"] through
# sys.modules, finds them in any fresh process.
import tora2.models.asymmetric_autoencoder  # noqa: F401
import tora2.models.personalization  # noqa: F401
import tora2.models.pixel_autoencoder  # noqa: F401
import tora2.models.transformer_tora2  # noqa: F401
from tora2.errors import InputError
from tora2.models.encoders import white_square
from tora2.pipelines.components import vae_compression
from tora2.pipelines.conditioning import check_frame_size, decode_latents, encode_prompt, entity_conditions, null_flow_latents
from tora2.specs import KINDS, EntitySpec, EntityTokens

OUTPUT_TYPES = ("np", "pil", "pt", "latent")
# ``reference_guidance_scale`` left at this value means the model's own default, saved with the
# pipeline (``model_index.json``); None or 0 turns the extra branch off.
MODEL_DEFAULT = "model"


@dataclass
class Tora2PipelineOutput(BaseOutput):
    """frames: (B, F, H, W, 3) float in [0, 1] ("np"), B lists of PIL images ("pil"), (B, F, 3, H, W)
    ("pt") or latents (B, Fl, C, h, w) ("latent"); step_seconds: wall time of each denoising step."""

    frames: Any
    step_seconds: list[float]


class Tora2Pipeline(DiffusionPipeline):
    """Multi-entity, trajectory-controlled, appearance-personalised text-to-video (Tora2).

    Components: tokenizer, text_encoder (T5), vae (AutoencoderKLCogVideoX), transformer
    (Tora2Transformer3DModel), scheduler (CogVideoXDPMScheduler or CogVideoXDDIMScheduler), and the
    personalization parts: personalization (PersonalizationExtractor), image_encoder
    (SemanticImageEncoder, optional: encodes entity images that come without tokens), face_encoder
    (FaceIdentityEncoder, optional; not saved by ``save_pretrained``: ArcFace stays a separate file).
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->personalization->transformer->vae"
    _optional_components = ["personalization", "image_encoder", "face_encoder"]
    _exclude_from_cpu_offload = ["face_encoder"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        tokenizer,
        text_encoder,
        vae,
        transformer,
        scheduler,
        personalization=None,
        image_encoder=None,
        face_encoder=None,
        reference_guidance_scale: float | None = None,
    ):
        super().__init__()
        # The model's default extra guidance towards the entity references (a setting, not a module:
        # saved in model_index.json like diffusers' requires_safety_checker).
        self.register_to_config(reference_guidance_scale=reference_guidance_scale)
        self.register_modules(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
            personalization=personalization,
            image_encoder=image_encoder,
            face_encoder=face_encoder,
        )
        self.vae_scale_factor_temporal, self.vae_scale_factor_spatial = vae_compression(vae)
        self._cache_motion_modulation = False
        self._motion_cache_max_bytes: int | None = None
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    def enable_motion_modulation_cache(self, max_bytes: int | None = None) -> None:
        """Compute every fuser's γ/β once per call instead of once per step: faster steps, at the cost
        of holding 2·num_layers·N·D values per distinct trajectory batch (one when all guidance
        branches share the path; about 9 GB in bf16 for CogVideoX-5B at 49×480×720).
        ``max_bytes``: use the cache only for calls whose γ/β fit in this many bytes."""
        self._cache_motion_modulation = True
        self._motion_cache_max_bytes = max_bytes

    def disable_motion_modulation_cache(self) -> None:
        self._cache_motion_modulation = False
        self._motion_cache_max_bytes = None

    def motion_modulation_bytes(self, video_flow_batch: int, num_frames: int, height: int, width: int) -> int:
        """Bytes the fusers' γ/β take for one call (0 for a transformer without Tora parts)."""
        cfg = self.transformer.config
        if cfg.motion_channels is None:
            return 0
        _, frames, _, h, w = self._latent_shape(video_flow_batch, num_frames, height, width)
        tokens = frames * (h // cfg.patch_size) * (w // cfg.patch_size)
        dim = cfg.num_attention_heads * cfg.attention_head_dim
        return 2 * cfg.num_layers * video_flow_batch * tokens * dim * self.transformer.dtype.itemsize

    # ------------------------------------------------------------------ properties
    @property
    def max_entities(self) -> int:
        cfg = self.transformer.config
        return 0 if cfg.entity_dim is None else int(cfg.max_entities)

    @property
    def default_size(self) -> tuple[int, int, int]:
        """(num_frames, height, width) the transformer was configured for."""
        cfg = self.transformer.config
        s = self.vae_scale_factor_spatial
        return (cfg.sample_frames, cfg.sample_height * s, cfg.sample_width * s)

    # ------------------------------------------------------------------ 0. checks
    def check_inputs(
        self,
        prompt: list[str],
        negative_prompt: list[str] | None,
        entities: list[list[EntitySpec]],
        num_frames: int,
        height: int,
        width: int,
        num_inference_steps: int,
        guidance_scale: float,
        output_type: str,
        latents: torch.Tensor | None,
        callback_on_step_end_tensor_inputs: Sequence[str],
    ) -> None:
        if not prompt or not all(isinstance(p, str) for p in prompt):
            raise InputError("prompt must be a string or a non-empty list of strings")
        if negative_prompt is not None and len(negative_prompt) != len(prompt):
            raise InputError(f"negative_prompt has {len(negative_prompt)} entries for {len(prompt)} prompts; give one per prompt or a single string")
        check_frame_size(self.vae, self.transformer.config.patch_size, num_frames, height, width)
        if num_inference_steps < 1:
            raise InputError(f"num_inference_steps is {num_inference_steps}; use at least 1")
        train_steps = int(self.scheduler.config.num_train_timesteps)
        if num_inference_steps > train_steps:  # the scheduler cannot space more steps than it was trained on
            raise InputError(f"num_inference_steps (--steps) is {num_inference_steps}; this model's scheduler has "
                             f"{train_steps} training timesteps, so use 1 to {train_steps}")
        if guidance_scale < 0:
            raise InputError(f"guidance_scale is {guidance_scale}; use a value ≥ 0 (1 = no guidance)")
        if output_type not in OUTPUT_TYPES:
            raise InputError(f"output_type {output_type!r} is not supported; use one of {', '.join(OUTPUT_TYPES)}")
        bad = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
        if bad:
            raise InputError(f"callback tensor input(s) {', '.join(bad)} unknown; allowed: {', '.join(self._callback_tensor_inputs)}")
        for sample in entities:
            self._check_entities(sample, num_frames)
        if latents is not None:
            expected = self._latent_shape(len(prompt), num_frames, height, width)
            if tuple(latents.shape) != expected:
                raise InputError(f"latents must be {expected} for this request; got {tuple(latents.shape)}")

    @staticmethod
    def _entities_per_prompt(entities, batch: int) -> tuple[list[list[EntitySpec]], bool]:
        """``entities`` as one list per prompt, and whether all prompts share one list."""
        entities = list(entities)
        if not entities or not all(isinstance(e, (list, tuple)) for e in entities):
            return [entities] * batch, True
        if len(entities) != batch:
            raise InputError(f"entities has {len(entities)} lists for {batch} prompts; give one list per prompt or one shared list")
        return [list(sample) for sample in entities], False

    def _latent_shape(self, batch: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        s = self.vae_scale_factor_spatial
        frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1
        return (batch, frames, self.transformer.config.in_channels, height // s, width // s)

    def _check_entities(self, entities: list[EntitySpec], num_frames: int) -> None:
        """One prompt's entities: types, kinds, path shapes, and the components their references need."""
        if len(entities) > self.max_entities:
            raise InputError(
                f"{len(entities)} entities given but this model supports at most {self.max_entities}; drop some entities"
            )
        for i, entity in enumerate(entities):
            if not isinstance(entity, EntitySpec):
                raise InputError(f"entity {i} is a {type(entity).__name__}; pass tora2.specs.EntitySpec objects")
            if entity.kind not in KINDS:
                raise InputError(f"entity {i} kind {entity.kind!r} is not one of {', '.join(KINDS)}")
            if entity.trajectory is not None:
                points = np.asarray(entity.trajectory, dtype=np.float64)
                if points.shape != (num_frames, 2):
                    raise InputError(
                        f"entity {i} ({entity.text!r}) trajectory is {points.shape}; expected ({num_frames}, 2) "
                        f"pixel points, one per output frame"
                    )
                if not np.isfinite(points).all():
                    raise InputError(f"entity {i} ({entity.text!r}) trajectory has NaN or infinite points")
            if entity.tokens is None and entity.image is not None and self.image_encoder is None:
                raise InputError(
                    f"entity {i} ({entity.text!r}) has an image but this pipeline has no image_encoder; "
                    f"precompute tokens with entities.encode_entity or load a model with an image_encoder"
                )
        if entities and self.personalization is None and any(e.tokens is not None or e.image is not None for e in entities):
            raise InputError("entities have reference images but this pipeline has no personalization component")

    def effective_reference_guidance(self, value: float | None | str = MODEL_DEFAULT) -> float | None:
        """The reference guidance scale a call with ``value`` uses: the model's default for
        ``MODEL_DEFAULT``, None (no branch) for None or 0."""
        if isinstance(value, str):
            if value != MODEL_DEFAULT:
                raise InputError(f"reference_guidance_scale {value!r}: pass a number, None, or {MODEL_DEFAULT!r} for the model's default")
            value = self.config.get("reference_guidance_scale")
        return value or None

    # ------------------------------------------------------------------ entity tokens
    @torch.no_grad()
    def encode_entity_images(self, entities: list[EntitySpec]) -> list[EntitySpec]:
        """Entities with an image but no tokens get tokens from ``image_encoder``: the same semantic
        and object-detail tokens as ``entities.encode_entity`` (which adds the cache and face routing)."""
        out = []
        for entity in entities:
            if entity.tokens is None and entity.image is not None:
                square = white_square(entity.image)  # (S', S', 3)
                tokens = EntityTokens(
                    semantic=self.image_encoder.semantic_tokens(square),  # (1 + G², Cs)
                    identity=self.image_encoder.detail_tokens(square),  # (16, Cs)
                    kind="object",
                )
                entity = EntitySpec(**{**entity.__dict__, "tokens": tokens})
            out.append(entity)
        return out

    # ------------------------------------------------------------------ guidance branches
    @staticmethod
    def _branch_inputs(base: dict, branch: str, null_flow: torch.Tensor | None) -> dict:
        inputs = dict(base)
        if branch == "no_reference" and inputs.get("entity_personalization_valid") is not None:
            inputs["entity_personalization_valid"] = torch.zeros_like(inputs["entity_personalization_valid"])
        if branch in ("no_reference", "no_trajectory") and inputs.get("entity_placement") is not None:
            inputs["entity_placement"] = torch.zeros_like(inputs["entity_placement"])  # it needs both
        if branch == "no_trajectory":
            inputs["video_flow"] = null_flow
            if inputs.get("entity_visible") is not None:
                inputs["entity_visible"] = torch.zeros_like(inputs["entity_visible"])
        return inputs

    @staticmethod
    def _concat(branches: list[dict]) -> dict:
        out = {}
        for key in branches[0]:
            values = [b[key] for b in branches]
            out[key] = None if values[0] is None else torch.cat(values)
        return out

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return decode_latents(self.vae, latents)  # (B, 3, F, H, W)

    # ------------------------------------------------------------------ the recipe
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        entities: Sequence[EntitySpec] | Sequence[Sequence[EntitySpec]] = (),
        negative_prompt: str | list[str] | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        use_dynamic_cfg: bool = False,
        reference_guidance_scale: float | None | str = MODEL_DEFAULT,
        trajectory_guidance_scale: float | None = None,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        max_sequence_length: int | None = None,
        flow_sample_mode: str = "mode",
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ):
        """Generate videos for ``prompt``.

        entities: EntitySpec per entity (phrase, path (F, 2) px, visibility, reference image or tokens),
        shared by all B prompts; or B such lists, one per prompt (counts may differ: shorter lists are
        padded with masked entities).
        num_frames/height/width default to the transformer's sample size. ``guidance_scale`` is the
        text scale (1 = no text guidance); ``reference_guidance_scale`` / ``trajectory_guidance_scale``
        add a branch each when set (not None, not 0); ``reference_guidance_scale`` defaults to the
        model's own (``self.config.reference_guidance_scale``, None for most models).
        ``use_dynamic_cfg`` is CogVideoX's cosine schedule of the text scale.
        ``flow_sample_mode``: "mode" (deterministic) or "sample" (Tora samples the flow posterior).
        """
        # 0. Defaults and checks.
        reference_guidance_scale = self.effective_reference_guidance(reference_guidance_scale)
        trajectory_guidance_scale = trajectory_guidance_scale or None  # 0: no branch
        default_frames, default_height, default_width = self.default_size
        num_frames = num_frames or default_frames
        height, width = height or default_height, width or default_width
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if negative_prompt is not None:
            negative_prompt = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
        entity_lists, shared_entities = self._entities_per_prompt(entities, len(prompts))
        self.check_inputs(
            prompts, negative_prompt, entity_lists, num_frames, height, width, num_inference_steps, guidance_scale,
            output_type, latents, callback_on_step_end_tensor_inputs,
        )
        batch = len(prompts)
        device = self._execution_device
        max_sequence_length = max_sequence_length or self.tokenizer.model_max_length
        use_text_guidance = guidance_scale > 1.0
        branches = (["uncond"] if use_text_guidance else []) + ["cond"]
        all_entities = [e for sample in entity_lists for e in sample]
        if reference_guidance_scale is not None and all_entities:
            branches.append("no_reference")
        if trajectory_guidance_scale is not None and any(e.trajectory is not None for e in all_entities):
            branches.append("no_trajectory")

        # 1. Prompt embeddings (once).
        prompt_embeds, _ = encode_prompt(self.tokenizer, self.text_encoder, prompts, max_sequence_length, device)
        negative_prompt_embeds = None
        if use_text_guidance:
            negative = negative_prompt or [""] * batch
            negative_prompt_embeds, _ = encode_prompt(self.tokenizer, self.text_encoder, negative, max_sequence_length, device)
        dtype = prompt_embeds.dtype

        # 2. Entity tokens and every timestep-independent condition (once).
        entity_lists = [self.encode_entity_images(sample) for sample in entity_lists]
        base = entity_conditions(
            entity_lists, prompts, prompt_embeds, self.tokenizer, self.text_encoder, self.vae,
            self.personalization, num_frames=num_frames, height=height, width=width, sample_mode=flow_sample_mode,
            reference_latent_size=self.transformer.config.get("reference_latent_size"),
            placement=self.transformer.placement_canvases,
        )
        null_flow = None
        if "no_trajectory" in branches:
            null_flow = null_flow_latents(self.vae, num_frames, height, width, batch).to(device)
        text_branches = {"uncond": negative_prompt_embeds}
        encoder_hidden_states = torch.cat([text_branches.get(b, prompt_embeds) for b in branches])  # (G·B, L, D)
        conditions = None
        if base["video_flow"] is not None:
            branch_inputs = self._concat([self._branch_inputs(base, b, null_flow) for b in branches])
            branch_inputs = {k: (v.to(device) if v is not None else None) for k, v in branch_inputs.items()}
            branch_inputs["video_flow"] = branch_inputs["video_flow"].to(dtype)
            if shared_entities and "no_trajectory" not in branches and flow_sample_mode == "mode":
                # Every branch and prompt shares one deterministic flow: run the trajectory extractor
                # (and hold γ/β) once instead of G·B times; the transformer broadcasts it.
                branch_inputs["video_flow"] = branch_inputs["video_flow"][:1]
            flow = branch_inputs["video_flow"]
            precompute = self._cache_motion_modulation and (
                self._motion_cache_max_bytes is None
                or self.motion_modulation_bytes(flow.shape[0], num_frames, height, width) <= self._motion_cache_max_bytes
            )
            conditions = self.transformer.prepare_conditions(precompute_modulation=precompute, **branch_inputs)

        # 3. Timesteps and initial noise.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        shape = self._latent_shape(batch, num_frames, height, width)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype) if latents is None else latents.to(device, dtype)
        latents = latents * self.scheduler.init_noise_sigma
        step_kwargs = {}
        step_params = set(inspect.signature(self.scheduler.step).parameters)
        if "eta" in step_params:
            step_kwargs["eta"] = eta
        if "generator" in step_params:
            step_kwargs["generator"] = generator

        # 4. Denoising loop: one batched forward over all guidance branches per step.
        step_seconds: list[float] = []
        old_pred_original_sample = None
        num_branches = len(branches)
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                start = time.perf_counter()
                model_input = self.scheduler.scale_model_input(torch.cat([latents] * num_branches), t)  # (G·B, Fl, C, h, w)
                prediction = self.transformer(
                    hidden_states=model_input,
                    encoder_hidden_states=encoder_hidden_states,
                    timestep=t.expand(model_input.shape[0]),
                    conditions=conditions,
                    return_dict=False,
                )[0].float()
                parts = dict(zip(branches, prediction.chunk(num_branches)))
                scale = guidance_scale
                if use_dynamic_cfg:
                    scale = 1 + guidance_scale * (
                        (1 - math.cos(math.pi * ((num_inference_steps - t.item()) / num_inference_steps) ** 5.0)) / 2
                    )
                noise_pred = parts["cond"]
                if use_text_guidance:
                    noise_pred = parts["uncond"] + scale * (parts["cond"] - parts["uncond"])
                if "no_reference" in parts:
                    noise_pred = noise_pred + reference_guidance_scale * (parts["cond"] - parts["no_reference"])
                if "no_trajectory" in parts:
                    noise_pred = noise_pred + trajectory_guidance_scale * (parts["cond"] - parts["no_trajectory"])
                if isinstance(self.scheduler, CogVideoXDPMScheduler):
                    latents, old_pred_original_sample = self.scheduler.step(
                        noise_pred, old_pred_original_sample, t, timesteps[i - 1] if i > 0 else None, latents,
                        **step_kwargs, return_dict=False,
                    )
                else:
                    latents = self.scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
                latents = latents.to(dtype)
                if callback_on_step_end is not None:
                    local = {"latents": latents, "prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
                    outputs = callback_on_step_end(self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs})
                    latents = outputs.pop("latents", latents)
                step_seconds.append(time.perf_counter() - start)
                progress_bar.set_postfix_str(f"{step_seconds[-1]:.2f}s/step")
                progress_bar.update()

        # 5. Decode.
        if output_type == "latent":
            video = latents
        else:
            video = self.decode_latents(latents)
            video = self.video_processor.postprocess_video(video=video, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (video, step_seconds)
        return Tora2PipelineOutput(frames=video, step_seconds=step_seconds)
