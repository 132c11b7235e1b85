"""Flow rendering (Tora semantics, reflect-101 borders), flow → RGB, latent positions."""

import math

import numpy as np
import pytest

import tora2  # noqa: F401  (torchvision shim before the comparison import below)
from tora2.errors import InputError
from tora2.trajectory import blur_parameters, flow_to_image, flow_to_rgb, latent_positions, render_flow
from tora2.trajectory.paths import circle, random_smooth
from tora2.trajectory.render import COLORWHEEL, gaussian_kernel, render_flow_reference


def test_blur_parameters_scale_with_resolution():
    assert blur_parameters(480, 720) == (10.0, 99)
    assert blur_parameters(720, 1280) == (15.0, 149)  # 99 * 1.5 = 148.5 → nearest odd 149
    assert blur_parameters(240, 360) == (5.0, 49)  # 49.5 → 49
    assert blur_parameters(32, 48) == (pytest.approx(2 / 3), 7)  # 6.6 → 7
    assert blur_parameters(8, 8) == (pytest.approx(1 / 6), 3)  # 1.65 → at least 3


def test_kernel_equals_toras_normalised_bivariate_gaussian():
    size, sigma = 99, 10.0
    ax = np.arange(-size // 2 + 1.0, size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    official = np.exp(-0.5 * (xx**2 + yy**2) / sigma**2)
    official = official / official.sum()
    official = official / official[size // 2, size // 2]
    np.testing.assert_allclose(gaussian_kernel(sigma, size), official, rtol=1e-12, atol=1e-15)


def test_single_stamp_literal():
    flow = render_flow([np.array([[2.0, 2.0], [3.0, 2.0], [3.0, 2.0]])], 5, 6, sigma=1.0, kernel_size=3)
    assert flow.shape == (3, 5, 6, 2) and flow.dtype == np.float32
    assert not flow[0].any() and not flow[2].any()  # frame 0 is zero; a still step writes nothing
    assert flow[1, 2, 2, 0] == 1.0 and flow[1, 2, 2, 1] == 0.0
    assert flow[1, 1, 1, 0] == pytest.approx(math.exp(-1.0))  # diagonal neighbour: g(1)²
    assert flow[1, 2, 3, 0] == pytest.approx(math.exp(-0.5))
    assert flow[1, 0, 2, 0] == 0.0  # outside the 3×3 kernel


def test_border_reflect_101_literal():
    # Point at x = 1 with a 3-tap kernel: pixel 0 sees src(1) twice (its left neighbour -1 reflects to 1).
    flow = render_flow([np.array([[1.0, 2.0], [2.0, 2.0]])], 5, 6, sigma=1.0, kernel_size=3)
    assert flow[1, 2, 0, 0] == pytest.approx(2 * math.exp(-0.5))
    assert flow[1, 2, 1, 0] == 1.0


def test_float_points_write_at_the_truncated_pixel_with_the_exact_displacement():
    flow = render_flow([np.array([[2.7, 1.2], [3.2, 2.0]])], 5, 6, sigma=1.0, kernel_size=3)
    np.testing.assert_allclose(flow[1, 1, 2], [0.5, 0.8], rtol=1e-6)


def test_matches_full_frame_filter2d_at_480x720():
    num_frames, height, width = 6, 480, 720
    paths = [random_smooth(num_frames, height, width, seed=i, margin=0.0) for i in range(3)]
    paths.append(circle(num_frames, height, width, margin=0.0))  # touches all four borders
    paths.append(np.array([[0, 0], [40, 30], [719, 479], [700, 0], [0, 479], [5, 5]], dtype=float))
    flow = render_flow(paths, height, width)
    reference = render_flow_reference(paths, height, width)
    assert np.abs(reference).max() > 30
    assert np.abs(flow - reference).max() <= 1e-4


@pytest.mark.parametrize("height, width", [(32, 48), (7, 5), (60, 90)])
def test_matches_filter2d_at_small_sizes_including_kernels_wider_than_the_image(height, width):
    paths = [random_smooth(8, height, width, seed=3, margin=0.0),
             np.array([[0, 0], [1, 1], [width - 1, height - 1], [0, height - 1]] * 2, dtype=float)]
    for size, sigma in [(None, None), (21, 3.0)]:
        flow = render_flow(paths, height, width, sigma=sigma, kernel_size=size)
        reference = render_flow_reference(paths, height, width, sigma=sigma, kernel_size=size)
        np.testing.assert_allclose(flow, reference, atol=1e-4)


def test_later_path_wins_at_a_shared_pixel():
    a = np.array([[10.0, 10.0], [12.0, 10.0]])
    b = np.array([[10.0, 10.0], [10.0, 13.0]])
    np.testing.assert_array_equal(render_flow([a, b], 32, 32), render_flow([b], 32, 32))
    np.testing.assert_array_equal(render_flow([b, a], 32, 32), render_flow([a], 32, 32))


def test_invisible_frames_write_nothing():
    path = np.array([[5.0, 5.0], [6.0, 5.0], [7.0, 5.0], [8.0, 5.0]])
    flow = render_flow([path], 16, 16, visible=[np.array([True, True, False, True])])
    assert flow[1].any() and not flow[2].any() and not flow[3].any()


def test_render_errors():
    with pytest.raises(InputError, match=r"path 0 frame 1: point \(16, 3\) is outside the 16x16 video"):
        render_flow([np.array([[1.0, 1.0], [16.0, 3.0]])], 16, 16)
    with pytest.raises(InputError, match=r"path 1 must be \(2, 2\) like path 0; got \(3, 2\)"):
        render_flow([np.zeros((2, 2)), np.zeros((3, 2))], 16, 16)
    with pytest.raises(InputError, match="need an odd kernel_size"):
        render_flow([np.zeros((2, 2))], 16, 16, kernel_size=4)
    # an invisible point may lie outside the video
    render_flow([np.array([[1.0, 1.0], [-50.0, 3.0]])], 16, 16, visible=[np.array([True, False])])


def test_colorwheel_literal():
    assert COLORWHEEL.shape == (55, 3)
    np.testing.assert_array_equal(COLORWHEEL[[0, 1, 15, 21, 25, 36, 49]],
                                  [[255, 0, 0], [255, 17, 0], [255, 255, 0], [0, 255, 0], [0, 255, 255],
                                   [0, 0, 255], [255, 0, 255]])


def test_flow_to_image_literals_and_clip_normalisation():
    flow = np.zeros((2, 1, 3, 2), dtype=np.float32)
    flow[0, 0, 0] = (4.0, 0.0)  # max norm of the clip, pointing right: atan2(-0, -4) = -π → wheel[0] = red
    flow[1, 0, 0] = (2.0, 0.0)  # half the max norm in another frame
    image = flow_to_image(flow)
    assert image.dtype == np.uint8 and image.shape == (2, 1, 3, 3)
    np.testing.assert_array_equal(image[0, 0, 0], [255, 0, 0])
    np.testing.assert_array_equal(image[1, 0, 0], [255, 127, 127])  # 1 − 0.5·(1 − col) → floor(127.5)
    np.testing.assert_array_equal(image[:, 0, 1:], 255)  # zero flow is white
    rgb = flow_to_rgb(flow)
    assert rgb.dtype == np.float32
    np.testing.assert_allclose(rgb[0, 0, 0], [1.0, -1.0, -1.0])
    np.testing.assert_allclose(rgb[1, 0, 0], [1.0, 127 / 127.5 - 1, 127 / 127.5 - 1])


def test_flow_to_image_equals_torchvision_on_a_clip():
    torch = pytest.importorskip("torch")
    tv_flow_to_image = pytest.importorskip("torchvision.utils").flow_to_image
    paths = [random_smooth(9, 96, 144, seed=i) for i in range(3)]
    flow = render_flow(paths, 96, 144)
    noise = np.random.default_rng(0).normal(size=(2, 20, 30, 2)).astype(np.float32)
    for clip in (flow, noise):
        expected = tv_flow_to_image(torch.from_numpy(clip).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(flow_to_image(clip), expected)


def test_latent_positions():
    points = np.stack([np.arange(10.0) * 10, np.arange(10.0) * 5], axis=1)  # (10, 2)
    visible = np.arange(10) != 4
    positions, seen = latent_positions(points, visible, 4, 4, height=50, width=100)
    # latent frames 0..3 → pixel frames 0, 4, 8, min(12, 9) = 9
    np.testing.assert_allclose(positions, [[0, 0], [0.4, 0.4], [0.8, 0.8], [0.9, 0.9]], rtol=1e-6)
    assert positions.dtype == np.float32 and seen.tolist() == [True, False, True, True]
    with pytest.raises(InputError, match=r"visible must be \(10,\)"):
        latent_positions(points, visible[:3], 4, height=50, width=100)


def test_joint_and_per_entity_flows():
    from tora2.trajectory import Track, render_track_flows

    a = Track("a", None, None, "auto", np.array([[5.0, 5.0], [7.0, 5.0], [9.0, 6.0]]), np.ones(3, bool))
    b = Track("b", None, None, "auto", np.array([[40.0, 30.0], [40.0, 27.0], [41.0, 25.0]]), np.array([True, True, False]))
    joint, (flow_a, flow_b) = render_track_flows([a, b], 48, 64)
    np.testing.assert_array_equal(joint, render_flow([a.points, b.points], 48, 64, [a.visible, b.visible]))
    np.testing.assert_array_equal(flow_b, render_flow([b.points], 48, 64, [b.visible]))
    np.testing.assert_allclose(joint, flow_a + flow_b, atol=1e-6)  # no shared pixel: the blur is linear
    assert not flow_b[2].any() and flow_b[1].any()
