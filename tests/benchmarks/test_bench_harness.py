"""Smoke test of the transformer benchmark harness on the tiny config (CPU, one step, no timing asserts)."""

import pytest
import torch

from benchmarks import bench_transformer as bench
from benchmarks.common import count_flops, format_table
from tora2.models.configs import load_model_config

TINY_ARGS = [
    "--config", "tiny", "--device", "cpu", "--dtype", "float32", "--frames", "9", "--height", "64", "--width", "64",
    "--steps", "1", "--warmup", "0", "--matmul-size", "128", "--no-compile", "--threads", "1",
]


@pytest.fixture(scope="module")
def tiny_run():
    settings = bench.BenchSettings(
        config="tiny", device="cpu", dtype="float32", frames=9, height=64, width=64, steps=1, warmup=0,
        entities=(0, 1, 2), compile=False, attention_backends=("math",), quantizations=("int8",), offload=True,
        matmul_size=128,
    )
    with torch.inference_mode():
        return bench.run_benchmark(settings)


def test_rows_are_the_expected_ones(tiny_run):
    rows, facts = tiny_run
    plain, tora, tora2 = "plain CogVideoX (diffusers)", "Tora (trajectory only)", "Tora2 (entities + trajectory)"
    assert [(r.variant, r.option, r.entities) for r in rows] == [
        (plain, "default", None),
        (plain, "SDPA math", None),
        (plain, "torchao int8 weights", None),
        (tora + ", γ/β per step", "default", 0),
        (tora, "default", 0),
        (tora2, "default", 1),
        (tora2, "default", 2),
        (tora2, "SDPA math", 2),
        (tora2 + ", γ/β per step, model CPU offload", "default", 2),
        (tora2, "torchao int8 weights", 2),
    ]
    assert facts["shapes"] == bench.Shapes(batch=2, frames=3, height=8, width=8, text_length=32)
    measured = [r for r in rows if r.step_s is not None]
    assert len(measured) == 7
    assert all(r.ratio is not None and r.fraction is not None for r in measured)
    assert rows[0].ratio == 1.0
    assert rows[8].note == "skipped: needs a CUDA device"
    if not bench.torchao_available():
        assert rows[2].note == "not available: torchao not installed"


def test_counted_and_analytic_flops_agree(tiny_run):
    rows, _ = tiny_run
    for row in rows:
        if row.flops_counted is not None:
            assert abs(row.flops_counted / row.flops_analytic - 1) < 0.02, row.variant
    by_name = {(r.variant, r.option, r.entities): r for r in rows}
    per_step = by_name[("Tora (trajectory only), γ/β per step", "default", 0)]
    precomputed = by_name[("Tora (trajectory only)", "default", 0)]
    plain = by_name[("plain CogVideoX (diffusers)", "default", None)]
    assert precomputed.flops_analytic == plain.flops_analytic  # γ/β precomputed: the step is CogVideoX's
    assert per_step.flops_analytic > plain.flops_analytic
    assert precomputed.extra_bytes == 2 * 2 * (1 * 3 * 8 * 8 // 4) * 64 * 4  # layers·(γ,β)·N·D·fp32: one shared trajectory


def test_analytic_flops_of_the_5b_step():
    cfg = load_model_config("cogvideox-5b-tora2")["transformer"]
    shapes = bench.Shapes(batch=2, frames=13, height=60, width=90, text_length=226)
    parts = bench.analytic_step_flops(cfg, shapes)
    t, d = 13 * 30 * 45 + 226, 3072
    assert parts["attention QK^T and AV"] == 42 * 4 * 2 * t * t * d
    assert parts["feed-forward"] == 42 * 16 * 2 * t * d * d
    assert 660e12 < sum(parts.values()) < 680e12


def test_count_flops_sees_cpu_attention():
    q = torch.randn(1, 2, 16, 8)
    assert count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)) == 4 * 2 * 16 * 16 * 8


def test_table_has_one_line_per_row(tiny_run):
    rows, _ = tiny_run
    lines = bench.table(rows).splitlines()
    assert len(lines) == len(rows) + 2
    assert lines[0].startswith("| variant | option | E | step | × plain |")
    assert format_table([{"a": 1}], ["a", "b"]).splitlines()[-1] == "| 1 |  |"


def test_cli_writes_the_report(tmp_path, capsys):
    out = tmp_path / "bench.md"
    code = bench.main(TINY_ARGS + ["--entities", "1", "--attention-backends", "none", "--quantizations", "none",
                                   "--no-offload", "--output", str(out)])
    assert code == 0
    text = out.read_text()
    assert "| Tora2 (entities + trajectory) | default | 1 |" in text
    assert "latents B=2 × F=3 × 8×8" in text
    assert text in capsys.readouterr().out + "\n"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "num_layerz=4"], "unknown transformer key(s) num_layerz"),
        (["--frames", "10"], "--frames 10 must be 1 + a multiple of 4"),
        (["--entities", "9"], "--entities 9 exceeds max_entities=4"),
        (["--attention-backends", "fast"], "unknown attention backend 'fast'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "bench.md"
    assert bench.main(TINY_ARGS + extra + ["--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not out.exists()
