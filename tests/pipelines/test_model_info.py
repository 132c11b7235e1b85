"""tora2.pipelines.model_info: what a model folder can produce, read without torch; the memory refusal."""

import subprocess
import sys
from pathlib import Path

import pytest

from tora2.errors import InputError
from tora2.pipelines.embedded import EMBEDDED_DIR
from tora2.pipelines.model_info import GIB, check_memory, check_size, estimate_peak_bytes, read_model_info

REPO = Path(__file__).resolve().parents[2]


def test_embedded_model_facts():
    info = read_model_info(EMBEDDED_DIR)
    assert (info.frames, info.height, info.width) == (9, 64, 64)
    assert (info.temporal, info.spatial, info.patch_size, info.max_entities) == (1, 4, 2, 4)
    assert 5e6 < info.weight_bytes < 60e6


def test_the_models_default_reference_guidance_is_read_and_costs_a_branch():
    from dataclasses import replace

    info = read_model_info(EMBEDDED_DIR)
    assert info.reference_guidance_scale == 2.0  # model_index.json
    wide = replace(info, hidden=3072)  # so that the blocks, not the VAE, set the peak
    without = replace(wide, reference_guidance_scale=None)
    assert estimate_peak_bytes(wide, 9, 512, 512) > estimate_peak_bytes(without, 9, 512, 512)


def test_reading_a_model_does_not_import_torch():
    code = ("import sys; from tora2.pipelines.model_info import read_model_info; from tora2.pipelines.embedded import EMBEDDED_DIR; "
            "read_model_info(EMBEDDED_DIR); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("args, message", [
    ((4, 8, 2, 10, 480, 720), "num_frames 10 cannot be produced: it must be 8k+1 (temporal compression 4, odd latent frame count), e.g. 9 or 17"),
    ((1, 4, 2, 10, 64, 64), "num_frames 10 cannot be produced: it must be any odd number"),
    ((4, 8, 2, 0, 480, 720), "num_frames 0 cannot be produced"),
    ((1, 4, 2, 9, 40, 36), "width 36 cannot be produced: it must be a positive multiple of 8"),
])
def test_size_rules(args, message):
    with pytest.raises(InputError) as caught:
        check_size(*args)
    assert str(caught.value).startswith(message)


def test_estimate_grows_with_the_request_and_the_refusal_names_a_size_that_fits():
    info = read_model_info(EMBEDDED_DIR)
    small, large = estimate_peak_bytes(info, 9, 64, 64), estimate_peak_bytes(info, 9, 512, 512)
    assert small < large and estimate_peak_bytes(info, 9, 64, 64, batch=4) > small
    budget = (2 * GIB, "test memory")
    with pytest.raises(InputError) as caught:
        check_memory(info, 9, 1024, 2048, budget=budget)
    message = str(caught.value)
    assert message.startswith("9×2048×1024 needs about") and "more than the 2.0 GiB of test memory" in message
    width = int(message.split("--width ")[1].split()[0])
    height = int(message.split("--height ")[1].split()[0])
    assert width % 8 == 0 and height % 8 == 0 and abs(width / height - 2) < 0.1
    assert estimate_peak_bytes(info, 9, height, width) <= 2 * GIB < estimate_peak_bytes(info, 9, height + 64, width + 128)
    assert check_memory(info, 9, 64, 64, budget=budget) == small
