import json
import warnings

import numpy as np
import pytest
import torch

from entities.segment import (
    EntityWarning, SamArchitecture, build_sam, check_box, check_point, load_sam, segment_entity, segment_with_grabcut,
)
from tora2.errors import InputError

from .conftest import TINY_SAM, disc_image


def test_alpha_is_used_when_not_opaque(rgba_square):
    seg = segment_entity(rgba_square[..., :3], rgba_square[..., 3])
    assert seg.segmenter == "alpha" and seg.warnings == []
    assert seg.mask.sum() == 200 and seg.mask[5:15, 30:50].all()


def test_alpha_restricted_to_box(rgba_square):
    seg = segment_entity(rgba_square[..., :3], rgba_square[..., 3], box=(30, 5, 40, 15))
    assert seg.mask.sum() == 100


def test_opaque_alpha_falls_through_to_grabcut_with_warning():
    rgb, mask = disc_image()
    with pytest.warns(EntityWarning, match="GrabCut"):
        seg = segment_entity(rgb, np.full(rgb.shape[:2], 255, np.uint8), box=(20, 10, 60, 50))
    assert seg.segmenter == "grabcut" and len(seg.warnings) == 1


@pytest.mark.parametrize("seed", [dict(box=(20, 10, 60, 50)), dict(point=(40, 30)), dict()])
def test_grabcut_recovers_disc(seed):
    rgb, mask = disc_image(h=64, w=96, centre=(48, 32), radius=14)
    found = segment_with_grabcut(rgb, **seed)
    iou = (found & mask).sum() / (found | mask).sum()
    assert iou > 0.9


def test_fully_transparent_alpha_is_empty_mask_error(rgba_square):
    alpha = np.zeros(rgba_square.shape[:2], np.uint8)
    with pytest.raises(InputError, match="alpha mask is empty"):
        segment_entity(rgba_square[..., :3], alpha)


@pytest.mark.parametrize("box", [(0, 0, 100, 10), (-1, 0, 5, 5), (5, 5, 5, 9), (10, 0, 2, 5)])
def test_box_outside_or_empty(box):
    with pytest.raises(InputError, match="outside the 60x40 image"):
        check_box(box, 60, 40)


def test_box_and_point_parse():
    assert check_box((1.4, 2, 30, 40), 60, 40) == (1, 2, 30, 40)
    assert check_point((59, 39), 60, 40) == (59, 39)
    with pytest.raises(InputError, match="outside"):
        check_point((60, 0), 60, 40)
    with pytest.raises(InputError, match="four numbers"):
        check_box("abc", 60, 40)


# ----- SAM -----------------------------------------------------------------------------------
def test_sam_checkpoint_with_sidecar_loads_exactly(tiny_sam_checkpoint):
    sam = load_sam(tiny_sam_checkpoint)
    saved = torch.load(tiny_sam_checkpoint, weights_only=True)
    assert sam.image_encoder.img_size == 64
    for name, tensor in sam.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


@pytest.mark.parametrize("prompt", [dict(box=(20, 10, 60, 50)), dict(point=(40, 30)), dict()])
def test_sam_segmentation_path(tiny_sam_checkpoint, prompt):
    rgb, _ = disc_image()
    with warnings.catch_warnings():
        warnings.simplefilter("error", EntityWarning)  # SAM configured: no fallback warning
        seg = segment_entity(rgb, None, sam_checkpoint=tiny_sam_checkpoint, **prompt)
    assert seg.segmenter == "sam" and seg.mask.shape == (64, 96) and seg.mask.dtype == bool and seg.mask.any()
    again = segment_entity(rgb, None, sam_checkpoint=tiny_sam_checkpoint, **prompt)
    np.testing.assert_array_equal(seg.mask, again.mask)  # deterministic


def test_sam_missing_checkpoint(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_sam(tmp_path / "sam_vit_b.pth")


@pytest.mark.slow
def test_sam_checkpoint_mismatching_model_type(tiny_sam_checkpoint):
    tiny_sam_checkpoint.with_suffix(".json").unlink()  # now it must load as the real vit_b
    with pytest.raises(InputError, match="does not match SAM vit_b"):
        load_sam(tiny_sam_checkpoint, "vit_b")


def test_sam_sidecar_mismatch_and_unknown_keys(tiny_sam_checkpoint):
    sidecar = tiny_sam_checkpoint.with_suffix(".json")
    sidecar.write_text(json.dumps(dict(TINY_SAM, encoder_embed_dim=32)))
    with pytest.raises(InputError, match="does not match the architecture in tiny_sam.json"):
        load_sam(tiny_sam_checkpoint)
    sidecar.write_text(json.dumps(dict(TINY_SAM, typo=1)))
    with pytest.raises(InputError, match=r"unknown SAM architecture keys \['typo'\]"):
        load_sam(tiny_sam_checkpoint)


def test_sam_unknown_model_type(tiny_sam_checkpoint):
    tiny_sam_checkpoint.with_suffix(".json").unlink()
    with pytest.raises(InputError, match="unknown SAM model type 'vit_x'"):
        load_sam(tiny_sam_checkpoint, "vit_x")


def test_sam_presets_match_segment_anything_registry():
    from segment_anything import sam_model_registry  # noqa: F401  (the official sizes)

    assert SamArchitecture(**TINY_SAM).image_size == 64
    sam = build_sam(SamArchitecture(**dict(TINY_SAM, encoder_depth=2, encoder_global_attn_indexes=[1])))
    assert len(sam.image_encoder.blocks) == 2
