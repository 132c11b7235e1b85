"""Paths → flow maps (F, H, W, 2) with Tora's semantics, and flow → RGB for the video VAE.

Tora writes the displacement ``p[t+1] − p[t]`` at the integer point ``p[t]`` of frame ``t+1``
(frame 0 stays zero; with several paths a later path overwrites an earlier one at a shared pixel),
then blurs every frame with a peak-normalised Gaussian through ``cv2.filter2D`` (default border
``BORDER_REFLECT_101``). The frames are almost empty, so :func:`render_flow` stamps one Gaussian
per written pixel instead: the blur is linear, and each stamp carries its own reflect-101 mirror
images, so the result equals the full-frame filter (to float32 rounding) at a fraction of the cost.

Glossary: F frames, H height, W width, P paths, R kernel radius.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from tora2.errors import InputError

# Tora's blur at 480×720 (σ = 10 px, 99×99 kernel); other sizes scale both by min(H, W) / 480.
REFERENCE_SIZE = 480
REFERENCE_SIGMA = 10.0
REFERENCE_KERNEL_SIZE = 99


def blur_parameters(height: int, width: int) -> tuple[float, int]:
    """(sigma, kernel_size) for a video of ``height`` × ``width``: Tora's values scaled by
    ``min(H, W) / 480``, the kernel size rounded to the nearest odd number ≥ 3."""
    factor = min(height, width) / REFERENCE_SIZE
    size = 2 * math.floor((REFERENCE_KERNEL_SIZE * factor - 1) / 2 + 0.5) + 1
    return REFERENCE_SIGMA * factor, max(3, size)


def resolve_blur(height: int, width: int, sigma: float | None, kernel_size: int | None) -> tuple[float, int]:
    """The given blur, or :func:`blur_parameters`' defaults for what is None; checked."""
    default_sigma, default_size = blur_parameters(height, width)
    sigma = default_sigma if sigma is None else float(sigma)
    kernel_size = default_size if kernel_size is None else int(kernel_size)
    if kernel_size < 1 or kernel_size % 2 == 0 or sigma <= 0:
        raise InputError(f"blur kernel_size {kernel_size} / sigma {sigma:g}: need an odd kernel_size ≥ 1 and sigma > 0")
    return sigma, kernel_size


def gaussian_profile(sigma: float, kernel_size: int) -> np.ndarray:
    """1-D Gaussian of ``kernel_size`` taps with peak 1; ``outer(g, g)`` is Tora's 2-D kernel."""
    offsets = np.arange(kernel_size, dtype=np.float64) - kernel_size // 2
    return np.exp(-0.5 * (offsets / sigma) ** 2)


def gaussian_kernel(sigma: float, kernel_size: int) -> np.ndarray:
    """The peak-normalised 2-D kernel (kernel_size, kernel_size) float64, centre value 1."""
    profile = gaussian_profile(sigma, kernel_size)
    return np.outer(profile, profile)


def _reflected_profile(center: int, length: int, profile: np.ndarray) -> tuple[int, np.ndarray]:
    """The kernel's 1-D weights on ``0..length-1`` for a unit impulse at ``center``, with the
    BORDER_REFLECT_101 mirror images of the impulse folded in. Returns (start, weights)."""
    radius = len(profile) // 2
    period = 2 * (length - 1)
    weights = np.zeros(length, dtype=np.float64)
    # Mirror images of the impulse under reflect-101: center + k·period and −center + k·period.
    k_max = (radius + 2 * length) // period + 1
    images = {sign * center + k * period for k in range(-k_max, k_max + 1) for sign in (1, -1)}
    for image in images:  # a set: at the borders the two families of images coincide
        lo, hi = max(0, image - radius), min(length - 1, image + radius)
        if lo <= hi:
            weights[lo : hi + 1] += profile[lo - image + radius : hi - image + radius + 1]
    nonzero = np.flatnonzero(weights)
    start, stop = nonzero[0], nonzero[-1] + 1
    return int(start), weights[start:stop]


def _check_paths(points: list[np.ndarray], visible: list[np.ndarray] | None, height: int, width: int):
    if not isinstance(points, (list, tuple)):
        raise InputError(f"points must be a list of (F, 2) arrays, one per path; got {type(points).__name__}")
    if len(points) == 0:
        raise InputError("points is empty; pass at least one (F, 2) path")
    paths = [np.asarray(p, dtype=np.float64) for p in points]
    num_frames = len(paths[0])
    for i, p in enumerate(paths):
        if p.ndim != 2 or p.shape[1] != 2 or len(p) != num_frames:
            raise InputError(f"path {i} must be ({num_frames}, 2) like path 0; got {p.shape}")
        if not np.isfinite(p).all():
            raise InputError(f"path {i} has a NaN or infinite coordinate; use finite pixel coordinates")
    if visible is None:
        masks = [np.ones(num_frames, dtype=bool) for _ in paths]
    else:
        if len(visible) != len(paths):
            raise InputError(f"visible has {len(visible)} masks for {len(paths)} paths; give one per path")
        masks = [np.asarray(v, dtype=bool) for v in visible]
        for i, v in enumerate(masks):
            if v.shape != (num_frames,):
                raise InputError(f"visible[{i}] must be ({num_frames},); got {v.shape}")
    for i, (p, v) in enumerate(zip(paths, masks)):
        pixel = np.floor(p)
        outside = v & ((pixel[:, 0] < 0) | (pixel[:, 0] >= width) | (pixel[:, 1] < 0) | (pixel[:, 1] >= height))
        if outside.any():
            t = int(np.argmax(outside))
            raise InputError(
                f"path {i} frame {t}: point ({p[t, 0]:g}, {p[t, 1]:g}) is outside the {width}x{height} video; "
                "clamp the path (load_tracks(..., clip=True)) or mark the frame invisible"
            )
    return paths, masks, num_frames


def sparse_flow(points: list[np.ndarray], visible: list[np.ndarray] | None, height: int, width: int) -> list[dict]:
    """Per frame, ``{(y, x): (dx, dy)}`` of the unblurred flow in Tora's write order (later wins)."""
    paths, masks, num_frames = _check_paths(points, visible, height, width)
    frames: list[dict] = [{} for _ in range(num_frames)]
    for p, v in zip(paths, masks):
        for t in range(num_frames - 1):
            if not (v[t] and v[t + 1]):
                continue  # absent at either end: no displacement to show
            x, y = int(np.floor(p[t, 0])), int(np.floor(p[t, 1]))
            frames[t + 1][(y, x)] = (p[t + 1, 0] - p[t, 0], p[t + 1, 1] - p[t, 1])
    return frames


def render_flow(
    points: list[np.ndarray],
    height: int,
    width: int,
    visible: list[np.ndarray] | None = None,
    sigma: float | None = None,
    kernel_size: int | None = None,
) -> np.ndarray:
    """Joint flow of ``points`` (a list of (F, 2) pixel paths) → (F, H, W, 2) float32.

    ``visible`` (one (F,) bool mask per path): a displacement is written only where the path is
    visible at both ends. ``sigma`` / ``kernel_size`` default to :func:`blur_parameters`.
    """
    sigma, kernel_size = resolve_blur(height, width, sigma, kernel_size)
    frames = sparse_flow(points, visible, height, width)
    profile = gaussian_profile(sigma, kernel_size)  # (K,)
    flow = np.zeros((len(frames), height, width, 2), dtype=np.float32)  # (F, H, W, 2)
    for t, writes in enumerate(frames):
        for (y, x), (dx, dy) in writes.items():
            if dx == 0 and dy == 0:
                continue
            y0, wy = _reflected_profile(y, height, profile)  # (h,)
            x0, wx = _reflected_profile(x, width, profile)  # (w,)
            # The (h, w, 2) window of the frame as an (h, 2w) view: x and channel are adjacent in memory,
            # so one outer product of wy with the channel-interleaved (wx·dx, wx·dy) is the whole stamp.
            region = flow[t, y0 : y0 + len(wy), x0 : x0 + len(wx)].reshape(len(wy), 2 * len(wx))  # (h, 2w) view
            assert np.may_share_memory(region, flow)  # a view, so += writes into the frame
            wx_vector = (wx[:, None] * np.array([dx, dy])).reshape(-1).astype(np.float32)  # (2w,)
            region += np.outer(wy.astype(np.float32), wx_vector)
    return flow


def render_flow_reference(
    points: list[np.ndarray],
    height: int,
    width: int,
    visible: list[np.ndarray] | None = None,
    sigma: float | None = None,
    kernel_size: int | None = None,
) -> np.ndarray:
    """Tora's way, for tests and benchmarks: write the sparse flow, then ``cv2.filter2D`` every frame."""
    sigma, kernel_size = resolve_blur(height, width, sigma, kernel_size)
    frames = sparse_flow(points, visible, height, width)
    flow = np.zeros((len(frames), height, width, 2), dtype=np.float32)  # (F, H, W, 2)
    for t, writes in enumerate(frames):
        for (y, x), (dx, dy) in writes.items():
            flow[t, y, x] = (dx, dy)
    kernel = gaussian_kernel(sigma, kernel_size)
    for t in range(1, len(frames)):
        flow[t] = cv2.filter2D(flow[t], -1, kernel)
    return flow


# ---------------------------------------------------------------------------------------------- flow → RGB


def _make_colorwheel() -> np.ndarray:
    """The Middlebury colour wheel (Baker et al., ICCV 2007): 55 hues, (55, 3) float32 in 0..255."""
    segments = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))
    wheel = []
    for name, n in segments:
        ramp = np.floor(255 * np.arange(n) / n)
        full, zero = np.full(n, 255.0), np.zeros(n)
        wheel.append(
            {
                "RY": (full, ramp, zero),
                "YG": (255 - ramp, full, zero),
                "GC": (zero, full, ramp),
                "CB": (zero, 255 - ramp, full),
                "BM": (ramp, zero, full),
                "MR": (full, zero, 255 - ramp),
            }[name]
        )
    return np.concatenate([np.stack(rgb, axis=1) for rgb in wheel]).astype(np.float32)


COLORWHEEL = _make_colorwheel()  # (55, 3)


def flow_to_image(flow: np.ndarray) -> np.ndarray:
    """(F, H, W, 2) flow → (F, H, W, 3) uint8 Middlebury colours, normalised by one maximum
    norm over the whole clip (as torchvision's ``flow_to_image`` does for a batch)."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise InputError(f"flow must be (F, H, W, 2); got {flow.shape}")
    max_norm = np.float32(0.0)
    for frame in flow:  # frame by frame: no clip-sized temporaries
        max_norm = max(max_norm, np.sqrt((frame * frame).sum(-1)).max())
    scale = np.float32(max_norm + np.finfo(np.float32).eps)
    num_colors = len(COLORWHEEL)
    # Zero flow is white (norm 0 → every channel 255); only the moving pixels need the wheel.
    image = np.full(flow.shape[:3] + (3,), 255, dtype=np.uint8)  # (F, H, W, 3)
    for t, frame in enumerate(flow):
        moving = (frame != 0).any(-1)  # (H, W)
        u, v = frame[moving, 0] / scale, frame[moving, 1] / scale  # (M,) each; float32 throughout
        norm = np.sqrt(u * u + v * v)
        fk = (np.arctan2(-v, -u) / np.float32(np.pi) + 1) / 2 * np.float32(num_colors - 1)
        k0 = np.floor(fk).astype(np.int64)
        k1 = np.where(k0 + 1 == num_colors, 0, k0 + 1)
        f = (fk - k0.astype(np.float32))[:, None]  # (M, 1)
        col = (1 - f) * (COLORWHEEL[k0] / np.float32(255)) + f * (COLORWHEEL[k1] / np.float32(255))  # (M, 3)
        image[t][moving] = np.floor(255 * (1 - norm[:, None] * (1 - col)))
    return image


def flow_to_rgb(flow: np.ndarray) -> np.ndarray:
    """(F, H, W, 2) flow → (F, H, W, 3) float32 in [−1, 1] (``image / 127.5 − 1``), ready for the VAE."""
    return flow_to_image(flow).astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def render_track_flows(
    tracks: list, height: int, width: int, sigma: float | None = None, kernel_size: int | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The joint flow of all :class:`~tora2.trajectory.format.Track` s (for the motion-guidance fuser)
    and each entity's own flow (for its motion tokens): ((F, H, W, 2), [(F, H, W, 2)] * E)."""
    options = dict(sigma=sigma, kernel_size=kernel_size)
    joint = render_flow([t.points for t in tracks], height, width, [t.visible for t in tracks], **options)
    each = [render_flow([t.points], height, width, [t.visible], **options) for t in tracks]
    return joint, each
