"""Frozen image encoders of the decoupled personalization extractor (DPE).

Glossary: E entities (images in a batch), S encoder input size (pixels, square), P patch size,
G = S // P patch grid side, N tokens per image, C channels.

``SemanticImageEncoder`` (a diffusers component, saved/loaded with ``save_pretrained`` /
``from_pretrained`` in a pipeline folder): an open_clip CLIP image tower or a transformers DINOv2.
Its output is ``(E, 1 + G*G, C)``: token 0 is the pooled image embedding, tokens 1.. the patch
tokens in row-major order. For open_clip the patch tokens go through the same final projection as
the pooled token, so every token lives in the joint CLIP space (``C = embed_dim``, 768 for
ViT-L-14: 257 tokens at 224 px); for DINOv2 ``C = hidden_size`` (1024 for dinov2-large, 257 tokens
at 224 px, plus register tokens when the model has them, which are dropped).

``FaceIdentityEncoder``: ArcFace from insightface, an ONNX model. It has no torch weights, so it is
a light class: ``from_pretrained(dir | file.onnx)`` / ``save_pretrained(dir)`` copy the ``.onnx``
file beside a ``config.json``. Output ``(E, 1, 512)``, L2-normalised (cosine geometry is what
ArcFace was trained for; the scale carries no identity).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from PIL import Image

from tora2.errors import InputError

# Normalisation constants are facts of the pretrained models, not tuning knobs.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKENDS = ("open_clip", "dinov2")


def _check_images(images: Sequence[np.ndarray]) -> None:
    if len(images) == 0:
        raise ValueError("preprocess needs at least one image; got an empty list")
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"image {i} must be an (H, W, 3) uint8 RGB array; got {image.dtype} {tuple(image.shape)}"
            )


def _to_normalised_tensor(images: Sequence[np.ndarray], size: int, mean, std) -> torch.Tensor:
    """Resize (bicubic, like both models' own transforms) and normalise → (E, 3, S, S)."""
    _check_images(images)
    arrays = []
    for image in images:
        pil = Image.fromarray(np.asarray(image))
        if pil.size != (size, size):
            pil = pil.resize((size, size), Image.BICUBIC)
        arrays.append(np.asarray(pil, dtype=np.float32) / 255.0)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (E, 3, S, S)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


WHITE = 255
DETAIL_GRID = 4  # object-detail tokens are pooled to DETAIL_GRID × DETAIL_GRID


def white_square(image) -> np.ndarray:
    """An entity image (PIL or array, RGB or RGBA) → (S, S, 3) uint8 on white, padded square.

    RGBA is composited onto white by its alpha; RGB is padded with white. Already-prepared crops
    pass through unchanged, so encoding a PreparedEntity and its EntitySpec gives the same input.
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGBA" if "A" in image.getbands() else "RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise InputError(f"entity image must be (H, W, 3|4) uint8; got {array.dtype} {array.shape}")
    if array.shape[2] == 4:
        a = array[..., 3:].astype(np.float32) / 255.0
        rgb = np.round(array[..., :3] * a + WHITE * (1.0 - a)).astype(np.uint8)
    else:
        rgb = array
    h, w = rgb.shape[:2]
    if h == w:
        return np.ascontiguousarray(rgb)
    side = max(h, w)
    out = np.full((side, side, 3), WHITE, np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = rgb
    return out


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """(S, S, 3) → (size, size, 3), bicubic."""
    if rgb.shape[:2] == (size, size):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))


class SemanticImageEncoder(ModelMixin, ConfigMixin):
    """Frozen semantic image encoder: pooled + patch tokens of a CLIP or DINOv2 image tower.

    Args:
        backend: "open_clip" or "dinov2".
        model_name: a label for the architecture ("ViT-L-14", "dinov2-large"); part of ``encoder_id``.
        image_size: input side S in pixels.
        open_clip_config: for "open_clip", ``{"embed_dim", "vision_cfg", "quick_gelu"}`` as in
            open_clip's model configs (the text tower is never built).
        dinov2_config: for "dinov2", the ``Dinov2Config`` as a dict.
        image_mean, image_std: input normalisation (defaults: CLIP's for open_clip, ImageNet's for DINOv2).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        backend: str = "open_clip",
        model_name: str = "custom",
        image_size: int = 224,
        open_clip_config: dict | None = None,
        dinov2_config: dict | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise InputError(f"unknown semantic encoder backend {backend!r}; use one of {', '.join(BACKENDS)}")
        self.visual = None
        self.dinov2 = None
        if backend == "open_clip":
            if open_clip_config is None:
                raise InputError("backend 'open_clip' needs open_clip_config={'embed_dim', 'vision_cfg'}")
            # _build_vision_tower is how open_clip's CLIP builds its image tower; calling it alone
            # avoids building (and holding) a text tower the DPE never uses.
            from open_clip.model import _build_vision_tower

            vision_cfg = dict(open_clip_config["vision_cfg"], image_size=image_size)
            self.visual = _build_vision_tower(
                open_clip_config["embed_dim"], vision_cfg, quick_gelu=open_clip_config.get("quick_gelu", False)
            )
            self.visual.output_tokens = True
            self.patch_size = int(vision_cfg["patch_size"])
            self._out_dim = int(open_clip_config["embed_dim"])
        else:
            if dinov2_config is None:
                raise InputError("backend 'dinov2' needs dinov2_config (a Dinov2Config as a dict)")
            from transformers import Dinov2Config, Dinov2Model

            config = Dinov2Config(**{k: v for k, v in dinov2_config.items() if k != "image_size"}, image_size=image_size)
            self.dinov2 = Dinov2Model(config)
            self.patch_size = int(config.patch_size)
            self._out_dim = int(config.hidden_size)
        if image_size % self.patch_size != 0:
            raise InputError(f"image_size {image_size} must be a multiple of the patch size {self.patch_size}")
        self.requires_grad_(False)
        self.eval()
        self._fingerprint: str | None = None

    # ----- properties the entity code relies on -------------------------------------------
    @property
    def out_dim(self) -> int:
        return self._out_dim

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return 1 + self.grid_size**2

    @property
    def encoder_id(self) -> str:
        """``backend:model_name:size:dtype:<hash of config and weights>``; changes whenever outputs could.

        The weight hash is computed once and kept: the encoder is frozen.
        """
        if self._fingerprint is None:
            config = {k: v for k, v in self.config.items() if not k.startswith("_")}  # drop _diffusers_version etc.
            digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
            for name, tensor in sorted(self.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        dtype = str(self.dtype).replace("torch.", "")  # fp16 outputs differ from fp32 ones
        return f"{self.config.backend}:{self.config.model_name}:{self.image_size}:{dtype}:{self._fingerprint}"

    def train(self, mode: bool = True):  # frozen: always eval
        return super().train(False)

    # ----- preprocessing and encoding --------------------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """List of (H, W, 3) uint8 RGB arrays → (E, 3, S, S) float tensor."""
        backend = self.config.backend
        mean = self.config.image_mean or (CLIP_MEAN if backend == "open_clip" else IMAGENET_MEAN)
        std = self.config.image_std or (CLIP_STD if backend == "open_clip" else IMAGENET_STD)
        return _to_normalised_tensor(images, self.image_size, mean, std).to(self.dtype)

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(E, 3, S, S) → (E, 1 + G*G, C): pooled token first, then patch tokens row-major."""
        return self.tokens(pixel_values)

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``encode`` with gradients (for training the tower): (E, 3, S, S) → (E, 1 + G*G, C)."""
        s = self.image_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, s, s):
            raise ValueError(f"pixel_values must be (E, 3, {s}, {s}); got {tuple(pixel_values.shape)}")
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        if self.visual is not None:
            pooled, tokens = self.visual(pixel_values)  # (E, C), (E, G*G, width)
            if self.visual.proj is not None:
                tokens = tokens @ self.visual.proj  # (E, G*G, C)
            return torch.cat([pooled[:, None], tokens], dim=1)  # (E, 1 + G*G, C)
        hidden = self.dinov2(pixel_values=pixel_values).last_hidden_state  # (E, 1 + R + G*G, C)
        registers = hidden.shape[1] - 1 - self.grid_size**2
        return torch.cat([hidden[:, :1], hidden[:, 1 + registers :]], dim=1)  # (E, 1 + G*G, C)

    # ----- construction from real weights -------------------------------------------------
    # -------------------------------------------------------------- entity crop → tokens
    def semantic_tokens(self, square: np.ndarray) -> torch.Tensor:
        """(S', S', 3) uint8 white-backed square crop → (1 + G², C): pooled token, then patch tokens."""
        return self.encode(self.preprocess([resize_square(square, self.image_size)]))[0]

    def detail_tiles(self, square: np.ndarray, detail_size: int | None = None) -> list[np.ndarray]:
        """(S', S', 3) uint8 → k·k tiles (S, S, 3) of the crop resized to ``detail_size`` (k·S), row-major:
        the images ``detail_tokens`` encodes."""
        size = self.image_size
        detail_size = 2 * size if detail_size is None else int(detail_size)
        if detail_size < size or detail_size % size != 0:
            raise InputError(
                f"detail_size {detail_size} must be a multiple of the semantic encoder's image size {size} (e.g. {2 * size})"
            )
        k = detail_size // size
        big = resize_square(square, detail_size)  # (k·S, k·S, 3)
        return [big[ty * size : (ty + 1) * size, tx * size : (tx + 1) * size] for ty in range(k) for tx in range(k)]

    def detail_tokens(self, square: np.ndarray, detail_size: int | None = None) -> torch.Tensor:
        """(S', S', 3) uint8 → (DETAIL_GRID², C) object-detail tokens.

        The crop is resized to ``detail_size`` (default 2·S, a multiple k·S), cut into k×k tiles of
        S px, each tile encoded at the native size (no position-embedding interpolation), the tiles'
        patch grids stitched into one (k·G)² grid and average-pooled to DETAIL_GRID².
        """
        tiles = self.detail_tiles(square, detail_size)  # k·k × (S, S, 3)
        k, g = math.isqrt(len(tiles)), self.grid_size
        tokens = self.encode(self.preprocess(tiles))[:, 1:]  # (k·k, G·G, C), pooled token dropped
        grid = rearrange(tokens, "(ty tx) (gy gx) c -> c (ty gy) (tx gx)", ty=k, tx=k, gy=g, gx=g)  # (C, k·G, k·G)
        pooled = F.adaptive_avg_pool2d(grid[None].float(), DETAIL_GRID)[0]  # (C, 4, 4)
        return rearrange(pooled, "c h w -> (h w) c").to(tokens.dtype)  # (16, C)

    @classmethod
    def from_open_clip(cls, model_name: str, checkpoint: str | os.PathLike | None = None) -> "SemanticImageEncoder":
        """The image tower of open_clip model ``model_name`` (e.g. "ViT-L-14"), weights from a local file.

        ``checkpoint=None`` gives random weights (benchmarks, tests). The file is read by open_clip's
        own loader (``open_clip.create_model(name, pretrained=file)``), so every format open_clip
        reads works here.
        """
        import open_clip

        model_cfg = open_clip.get_model_config(model_name)
        if model_cfg is None:
            raise InputError(
                f"unknown open_clip model {model_name!r}; use a name from open_clip.list_models() "
                "or register a config with open_clip.add_model_config"
            )
        open_clip_config = {
            "embed_dim": model_cfg["embed_dim"],
            "vision_cfg": {k: v for k, v in model_cfg["vision_cfg"].items() if k != "image_size"},
            "quick_gelu": bool(model_cfg.get("quick_gelu", False)),
        }
        vision_size = model_cfg["vision_cfg"].get("image_size", 224)
        encoder = cls(backend="open_clip", model_name=model_name, image_size=vision_size, open_clip_config=open_clip_config)
        if checkpoint is None:
            return encoder
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise InputError(f"open_clip checkpoint {checkpoint} not found; pass the path of a local .bin/.pt/.safetensors file")
        try:
            model = open_clip.create_model(model_name, pretrained=str(checkpoint), weights_only=True)
        except (RuntimeError, KeyError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise InputError(
                f"open_clip checkpoint {checkpoint} does not match model {model_name!r} ({first[:160]}); "
                "pass the model name the checkpoint was trained with"
            ) from error
        encoder.visual.load_state_dict(model.visual.state_dict())
        encoder._fingerprint = None  # weights changed
        return encoder

    @classmethod
    def from_dinov2(cls, path: str | os.PathLike, *, image_size: int = 224, local_files_only: bool = True) -> "SemanticImageEncoder":
        """DINOv2 from a local ``save_pretrained`` folder or an HF cache id (``facebook/dinov2-large``)."""
        from transformers import Dinov2Model

        try:
            model = Dinov2Model.from_pretrained(str(path), local_files_only=local_files_only)
        except (OSError, ValueError) as error:
            raise InputError(
                f"cannot load DINOv2 from {path}: not a local folder with config.json and weights, "
                "nor in the Hugging Face cache; download it on a machine with internet and pass its folder"
            ) from error
        config = model.config.to_dict()
        encoder = cls(backend="dinov2", model_name=Path(str(path)).name, image_size=image_size, dinov2_config=config)
        encoder.dinov2.load_state_dict(model.state_dict())
        encoder._fingerprint = None  # weights changed
        return encoder

    @classmethod
    def tiny(cls, backend: str = "open_clip", seed: int = 0) -> "SemanticImageEncoder":
        """A tiny randomly initialised encoder of the real classes (tests, benchmarks): 32 px, 17 tokens, C=16."""
        torch.manual_seed(seed)
        if backend == "open_clip":
            cfg = {"embed_dim": 16, "vision_cfg": {"layers": 2, "width": 32, "patch_size": 8, "head_width": 16}}
            return cls(backend="open_clip", model_name="tiny", image_size=32, open_clip_config=cfg)
        cfg = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32, "patch_size": 8}
        return cls(backend="dinov2", model_name="tiny", image_size=32, dinov2_config=cfg)


class FaceIdentityEncoder:
    """ArcFace (insightface ONNX) face embeddings: 112×112 aligned RGB faces → (E, 1, 512).

    Not a torch module (the weights live in the ONNX graph). ``save_pretrained(dir)`` writes
    ``dir/arcface.onnx`` and ``dir/config.json``; ``from_pretrained`` accepts that folder or a bare
    ``.onnx`` file (e.g. ``~/.insightface/models/buffalo_l/w600k_r50.onnx``).
    """

    model_filename = "arcface.onnx"
    config_name = "config.json"

    def __init__(self, model_file: str | os.PathLike):
        model_file = Path(model_file)
        if not model_file.is_file():
            raise InputError(f"ArcFace model {model_file} not found; pass an insightface recognition .onnx file")
        from insightface.model_zoo import get_model

        try:
            model = get_model(str(model_file), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for corrupt graphs
            raise InputError(f"cannot load ArcFace model {model_file}: {str(error).splitlines()[0][:160]}") from error
        if model is None or getattr(model, "taskname", None) != "recognition":
            raise InputError(
                f"{model_file} is not a face recognition model (insightface routed it to "
                f"{getattr(model, 'taskname', None)!r}); pass an ArcFace .onnx with a square ≥112 px input"
            )
        self.model = model
        self.model_file = model_file
        self.image_size = int(model.input_size[0])
        self._out_dim = int(model.output_shape[-1]) if isinstance(model.output_shape[-1], int) else 512
        self.sha256 = hashlib.sha256(model_file.read_bytes()).hexdigest()

    @property
    def out_dim(self) -> int:
        return self._out_dim

    @property
    def encoder_id(self) -> str:
        return f"arcface:{self.image_size}:{self.sha256[:16]}"

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "FaceIdentityEncoder":
        path = Path(path)
        if path.is_dir():
            onnx_files = sorted(path.glob("*.onnx"))
            if (path / cls.model_filename).is_file():
                return cls(path / cls.model_filename)
            if len(onnx_files) != 1:
                raise InputError(f"{path} must hold exactly one .onnx face model; found {len(onnx_files)}")
            return cls(onnx_files[0])
        return cls(path)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        target = save_directory / self.model_filename
        tmp = save_directory / f".{self.model_filename}.tmp{os.getpid()}"
        shutil.copyfile(self.model_file, tmp)
        os.replace(tmp, target)
        config = {"_class_name": type(self).__name__, "model_file": self.model_filename, "sha256": self.sha256,
                  "image_size": self.image_size, "out_dim": self.out_dim}
        (save_directory / self.config_name).write_text(json.dumps(config, indent=2) + "\n")

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """List of aligned (112, 112, 3) uint8 RGB faces → (E, 3, 112, 112), normalised as the model expects."""
        _check_images(images)
        s = self.image_size
        mean, std = self.model.input_mean, self.model.input_std
        arrays = []
        for image in images:
            if image.shape[:2] != (s, s):
                image = np.asarray(Image.fromarray(image).resize((s, s), Image.BILINEAR))
            arrays.append((image.astype(np.float32) - mean) / std)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (E, 3, S, S)

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(E, 3, 112, 112) → (E, 1, 512) L2-normalised embeddings."""
        s = self.image_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, s, s):
            raise ValueError(f"pixel_values must be (E, 3, {s}, {s}); got {tuple(pixel_values.shape)}")
        blob = np.ascontiguousarray(pixel_values.detach().cpu().numpy(), dtype=np.float32)
        # ArcFace ONNX exports have a fixed batch of 1 more often than not: run one at a time.
        rows = [self.model.session.run(self.model.output_names, {self.model.input_name: blob[i : i + 1]})[0] for i in range(len(blob))]
        embedding = torch.from_numpy(np.concatenate(rows)).float()  # (E, 512)
        return F.normalize(embedding, dim=-1)[:, None]  # (E, 1, 512)
