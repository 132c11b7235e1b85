"""Flow rendering: full-frame ``cv2.filter2D`` (Tora's way) vs stamped Gaussians (tora2's way).

Prints one table for 49 frames at 480×720 with 1, 4 and 16 random smooth paths: the median time
of each method, the speed-up, and the largest absolute difference between the two results.

    python benchmarks/bench_flow.py [--frames 49 --height 480 --width 720 --repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from tora2.trajectory import render_flow
from tora2.trajectory.paths import random_smooth
from tora2.trajectory.render import render_flow_reference


def median_time(fn, repeats: int) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paths", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()

    print(f"flow rendering, {args.frames}x{args.height}x{args.width}, median of {args.repeats} "
          f"(cv2 {cv2.__version__}, {cv2.getNumThreads()} threads)")
    print(f"{'paths':>5}  {'filter2D (s)':>12}  {'stamped (s)':>11}  {'speed-up':>8}  {'max |diff|':>10}")
    for num_paths in args.paths:
        paths = [random_smooth(args.frames, args.height, args.width, seed=i) for i in range(num_paths)]
        reference_s, reference = median_time(lambda: render_flow_reference(paths, args.height, args.width), args.repeats)
        stamped_s, stamped = median_time(lambda: render_flow(paths, args.height, args.width), args.repeats)
        diff = float(np.abs(stamped - reference).max())
        del reference, stamped
        print(f"{num_paths:>5}  {reference_s:>12.3f}  {stamped_s:>11.4f}  {reference_s / stamped_s:>7.1f}x  {diff:>10.2e}")


if __name__ == "__main__":
    main()
