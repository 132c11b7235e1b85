"""benchmarks/bench_vae.py runs end to end on the shipped model (one round, one step) and prints its table."""

from benchmarks import bench_vae


def test_bench_vae_prints_the_three_rows(capsys):
    assert bench_vae.main(["--rounds", "1", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "(s)" in line]
    assert [r.split("|")[1].strip() for r in rows] == ["encode (s)", "decode (s)", "generate (s)"]
    assert all(r.rstrip().endswith("× |") for r in rows)
