import numpy as np
import pytest
from PIL import Image

from entities.crop import crop_entity, mask_box, white_square
from entities.images import load_image
from tora2.errors import InputError

from .conftest import disc_image


def test_load_rgba_png_keeps_alpha(tmp_path, rgba_square):
    path = tmp_path / "e.png"
    Image.fromarray(rgba_square, "RGBA").save(path)
    loaded = load_image(path)
    assert loaded.rgb.shape == (40, 60, 3)
    assert loaded.alpha is not None and loaded.alpha.sum() == 10 * 20 * 255
    assert loaded.source == str(path)


def test_load_grey_and_float_arrays():
    assert load_image(np.zeros((5, 7), np.uint8)).rgb.shape == (5, 7, 3)
    loaded = load_image(np.ones((4, 4, 3), np.float32))
    assert loaded.rgb.dtype == np.uint8 and int(loaded.rgb.max()) == 255 and loaded.alpha is None


@pytest.mark.parametrize(
    "content, message",
    [(b"not an image", "cannot read image"), (b"\x89PNG\r\n\x1a\n\x00\x00garbage", "cannot read image")],
)
def test_corrupt_file_is_one_line_input_error(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        load_image(path)
    assert "\n" not in str(info.value)


def test_missing_zero_size_and_wrong_type():
    with pytest.raises(InputError, match="not found"):
        load_image("/nonexistent/photo.jpg")
    with pytest.raises(InputError, match="zero size"):
        load_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(InputError, match="must be a path"):
        load_image(42)


def test_crop_entity_exact():
    rgb, mask = disc_image(centre=(40, 30), radius=12)
    crop, box = crop_entity(rgb, mask)
    assert box == (28, 18, 53, 43)
    assert crop.mode == "RGBA" and crop.size == (25, 25)
    out = np.asarray(crop)
    np.testing.assert_array_equal(out[..., 3] > 0, mask[18:43, 28:53])
    assert tuple(out[12, 12]) == (220, 40, 30, 255)  # entity pixel kept
    assert tuple(out[0, 0]) == (255, 255, 255, 0)  # background → white, alpha 0


def test_crop_pads_wide_mask_square_and_centred():
    rgb = np.zeros((20, 30, 3), np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[4:8, 2:12] = True  # 10 wide, 4 tall
    crop, box = crop_entity(rgb, mask)
    assert box == (2, 4, 12, 8) and crop.size == (10, 10)
    alpha = np.asarray(crop)[..., 3]
    assert alpha[:3].sum() == 0 and alpha[7:].sum() == 0 and (alpha[3:7] == 255).all()


def test_white_square_composites_alpha(rgba_square):
    square = white_square(rgba_square)
    assert square.shape == (60, 60, 3)
    assert tuple(square[10 + 10, 35]) == (0, 200, 0)  # (5..15 shifted by the 10 px top pad)
    assert tuple(square[0, 0]) == (255, 255, 255)  # padding
    assert tuple(square[12, 0]) == (255, 255, 255)  # alpha 0 pixel: its colour (10, 20, 30) is dropped


def test_mask_box_empty_is_input_error():
    with pytest.raises(InputError, match="empty"):
        mask_box(np.zeros((3, 3), bool))
