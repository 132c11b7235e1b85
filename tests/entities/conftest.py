"""Shared fixtures for the entities tests: synthetic photos, a tiny SAM, a tiny ArcFace ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tora2  # noqa: F401  (torchvision shim first)


def disc_image(h: int = 64, w: int = 96, centre=(40, 30), radius: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A red disc on a blue-grey background → (rgb (h, w, 3) uint8, mask (h, w) bool)."""
    yy, xx = np.mgrid[:h, :w]
    mask = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[...] = (70, 90, 120)
    rgb[mask] = (220, 40, 30)
    return rgb, mask


@pytest.fixture
def rgba_square() -> np.ndarray:
    """(40, 60, 4): an opaque 10×20 green rectangle at x 30..50, y 5..15, transparent elsewhere."""
    image = np.zeros((40, 60, 4), np.uint8)
    image[..., :3] = (10, 20, 30)  # colour under alpha 0 must not leak into the crop
    image[5:15, 30:50] = (0, 200, 0, 255)
    return image


TINY_SAM = {
    "encoder_embed_dim": 16, "encoder_depth": 1, "encoder_num_heads": 2, "encoder_global_attn_indexes": [0],
    "image_size": 64, "vit_patch_size": 16, "window_size": 2, "prompt_embed_dim": 16, "mask_in_chans": 4,
    "decoder_depth": 1, "decoder_mlp_dim": 32, "decoder_num_heads": 2, "iou_head_hidden_dim": 16,
}


@pytest.fixture
def tiny_sam_checkpoint(tmp_path):
    """A randomly initialised tiny SAM saved like a real checkpoint, with its architecture sidecar."""
    from entities.segment import SamArchitecture, build_sam

    torch.manual_seed(0)
    sam = build_sam(SamArchitecture(**TINY_SAM))
    path = tmp_path / "tiny_sam.pth"
    torch.save(sam.state_dict(), path)
    (tmp_path / "tiny_sam.json").write_text(json.dumps(TINY_SAM))
    return path


def make_tiny_arcface(path, out_dim: int = 512, seed: int = 0) -> None:
    """An ArcFace-shaped ONNX graph (1×3×112×112 → 1×512): 16×16 stride-16 conv, flatten, linear."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    conv_w = numpy_helper.from_array(rng.normal(0, 0.05, (4, 3, 16, 16)).astype(np.float32), "conv_w")
    fc_w = numpy_helper.from_array(rng.normal(0, 0.05, (4 * 7 * 7, out_dim)).astype(np.float32), "fc_w")
    fc_b = numpy_helper.from_array(np.zeros(out_dim, np.float32), "fc_b")
    nodes = [
        helper.make_node("Conv", ["data", "conv_w"], ["c"], name="conv0", kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Flatten", ["c"], ["f"], name="flatten0", axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["fc1"], name="fc0"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_arcface",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, out_dim])],
        initializer=[conv_w, fc_w, fc_b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture
def tiny_arcface(tmp_path):
    path = tmp_path / "tiny_arcface.onnx"
    make_tiny_arcface(path)
    return path
