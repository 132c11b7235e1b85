"""scripts/pool_evals.py: several ``tora2 eval`` results scored as one set, case ids kept apart."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("pool_evals", ROOT / "scripts" / "pool_evals.py")
pool_evals = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pool_evals)


def _row(case, n, error, bound):
    return {"case": case, "num_entities": n, "entity": 0, "text": "a duck", "traj_error_px": error * 0.64,
            "traj_error_pct_width": error, "closest_path_pct_width": None if n == 1 else 20.0,
            "binding_correct": bound, "appearance_similarity": 0.5, "appearance_similarity_shuffled": 0.2}


def test_pooling_two_seeds_counts_every_case_and_averages_entities(tmp_path, capsys):
    first, second = tmp_path / "seed0.json", tmp_path / "seed1.json"
    first.write_text(json.dumps({"rows": [_row("1e-000", 1, 2.0, None), _row("2e-000", 2, 4.0, True), _row("2e-000", 2, 30.0, False)]}))
    second.write_text(json.dumps({"rows": [_row("1e-000", 1, 4.0, None), _row("2e-000", 2, 6.0, True), _row("2e-000", 2, 8.0, True)]}))
    assert pool_evals.main([str(first), str(second), "-o", str(tmp_path / "pooled.json")]) == 0
    summary = json.loads((tmp_path / "pooled.json").read_text())["summary"]
    assert summary["1"]["cases"] == 2 and summary["1"]["traj_error_pct_width"] == pytest.approx(3.0)
    assert summary["2"]["cases"] == 2 and summary["2"]["entities"] == 4
    assert summary["2"]["binding_accuracy"] == pytest.approx(0.75) and summary["2"]["lost"] == 1
    assert "| 2 | 2 |" in capsys.readouterr().out


def test_an_unreadable_file_is_one_error_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert pool_evals.main([str(bad), "-o", str(tmp_path / "pooled.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.json is not a readable tora2 eval result" in err and err.count("\n") == 1
    assert not (tmp_path / "pooled.json").exists()
