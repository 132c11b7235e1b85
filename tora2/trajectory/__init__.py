"""Trajectories: track files → per-frame entity paths → flow maps → RGB for the video VAE.

Imports stay cheap (numpy, PIL, cv2): no torch here.
"""

from tora2.trajectory.format import Track, parse_track_json, tracks_from_json, write_track_json
from tora2.trajectory.importers import load_tracks, read_tora_txt, tora_resample, tracks_from_npy, tracks_from_tora_txt
from tora2.trajectory.interpolate import interpolate_keyframes, resample_points
from tora2.trajectory.latent import latent_positions
from tora2.trajectory.paths import bounce, circle, figure_eight, line, random_smooth, spiral, zigzag
from tora2.trajectory.render import blur_parameters, flow_to_image, flow_to_rgb, render_flow, render_track_flows

__all__ = [
    "Track",
    "blur_parameters",
    "bounce",
    "circle",
    "figure_eight",
    "flow_to_image",
    "flow_to_rgb",
    "interpolate_keyframes",
    "latent_positions",
    "line",
    "load_tracks",
    "parse_track_json",
    "random_smooth",
    "read_tora_txt",
    "render_flow",
    "render_track_flows",
    "resample_points",
    "spiral",
    "tora_resample",
    "tracks_from_json",
    "tracks_from_npy",
    "tracks_from_tora_txt",
    "write_track_json",
    "zigzag",
]
