"""The runner with a fake backend: batching, failures, resume, interrupts, several processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.batch.fakes import FakeBackend
from tora2.batch import DistributedEnv, finish, format_summary, read_all, read_manifest, run_batch, summarize
from tora2.batch.ledger import LEDGER_NAME

REPO = Path(__file__).resolve().parents[2]

JOBS = {
    "defaults": {"height": 16, "width": 16, "num_frames": 5},
    "jobs": [
        {"name": "a", "prompt": "a dot", "seeds": [0, 1, 2]},
        {"name": "wide", "prompt": "a wide dot", "width": 32},
        {"name": "missing", "prompt": "p", "entities": [{"text": "x", "image": "nope.png"}]},
        {"name": "odd", "prompt": "p", "height": 24},
        {"name": "boom", "prompt": "explode", "seeds": [5]},
    ],
}


def write_manifest(tmp_path, data=JOBS) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def statuses(report):
    return {r.id: r.status for r in report.results}


def test_first_run_batches_records_failures_and_writes_outputs(tmp_path):
    manifest = read_manifest(write_manifest(tmp_path))
    out = tmp_path / "out"
    fake = FakeBackend()
    report = run_batch(manifest, out, fake.backend(), batch_size=4)
    assert statuses(report) == {
        "a:seed0": "done", "a:seed1": "done", "a:seed2": "done", "wide:seed0": "done",
        "missing": "failed", "odd:seed0": "failed", "boom:seed5": "failed",
    }
    # same shape → one forward; the batch with the exploding job is retried one by one
    assert fake.batches == [["a:seed0", "a:seed1", "a:seed2", "boom:seed5"], ["a:seed0"], ["a:seed1"], ["a:seed2"],
                            ["boom:seed5"], ["wide:seed0"]]
    assert (out / "a_seed1.mp4").read_bytes() == b"A DOT|1|16x16"
    assert (out / "wide.mp4").read_bytes() == b"A WIDE DOT|0|16x32"
    errors = {r.id: r.error for r in report.results if r.status == "failed"}
    assert errors["odd:seed0"] == "height 24 is not a multiple of 16; use 16, 32, 48, ..."
    assert errors["boom:seed5"] == "RuntimeError: the model exploded"
    assert "nope.png does not exist" in errors["missing"]
    assert not list(out.glob(".*"))  # no temporary files left
    assert report.failed == 3


def test_rerun_skips_done_and_failed_unless_retry(tmp_path):
    path = write_manifest(tmp_path)
    out = tmp_path / "out"
    run_batch(read_manifest(path), out, FakeBackend().backend(), batch_size=2)
    fake = FakeBackend()
    again = run_batch(read_manifest(path), out, fake.backend(), batch_size=2)
    assert fake.batches == [] and fake.prepared == []
    assert again.count("skipped") == 4 and again.failed == 3
    fake = FakeBackend()
    retried = run_batch(read_manifest(path), out, fake.backend(), batch_size=2, retry_failed=True)
    assert fake.batches == [["boom:seed5"]]
    assert retried.failed == 3 and retried.count("skipped") == 4


def test_damaged_or_missing_output_is_redone(tmp_path):
    path = write_manifest(tmp_path)
    out = tmp_path / "out"
    run_batch(read_manifest(path), out, FakeBackend().backend())
    (out / "a_seed0.mp4").write_bytes(b"truncated")
    (out / "wide.mp4").unlink()
    fake = FakeBackend()
    run_batch(read_manifest(path), out, fake.backend(), batch_size=4)
    assert fake.batches == [["a:seed0"], ["wide:seed0"]]
    assert (out / "a_seed0.mp4").read_bytes() == b"A DOT|0|16x16"


def test_an_edited_job_runs_again(tmp_path):
    out = tmp_path / "out"
    run_batch(read_manifest(write_manifest(tmp_path)), out, FakeBackend().backend())
    edited = json.loads(json.dumps(JOBS))
    edited["jobs"][1]["prompt"] = "a very wide dot"
    fake = FakeBackend()
    run_batch(read_manifest(write_manifest(tmp_path, edited)), out, fake.backend())
    assert fake.batches == [["wide:seed0"]]
    assert (out / "wide.mp4").read_bytes() == b"A VERY WIDE DOT|0|16x32"


def test_an_interrupt_loses_only_the_batch_in_flight(tmp_path):
    path = write_manifest(tmp_path)
    out = tmp_path / "out"
    fake = FakeBackend()
    calls = []

    def write(job, result, target):
        calls.append(job.id)
        Path(target).write_bytes(result[:3])  # half a video, then the user presses Ctrl-C
        if len(calls) == 3:
            raise KeyboardInterrupt

    backend = fake.backend()
    backend.write = write
    with pytest.raises(KeyboardInterrupt):
        run_batch(read_manifest(path), out, backend, batch_size=2)
    assert sorted(p.name for p in out.iterdir()) == ["a_seed0.mp4", "a_seed1.mp4", "ledger.rank0.jsonl"]
    state = {r["job"]: r["status"] for r in read_all(out)}
    assert state["a:seed2"] == "running" and state["boom:seed5"] == "running"
    fake = FakeBackend()
    report = run_batch(read_manifest(path), out, fake.backend(), batch_size=2)
    assert fake.batches == [["a:seed2", "boom:seed5"], ["a:seed2"], ["boom:seed5"], ["wide:seed0"]]
    assert report.count("skipped") == 2


def test_summary_table(tmp_path):
    manifest = read_manifest(write_manifest(tmp_path))
    out = tmp_path / "out"
    report = run_batch(manifest, out, FakeBackend().backend(), batch_size=4)
    assert finish(DistributedEnv(), out, grouped=False)
    assert sorted(p.name for p in out.glob("ledger*")) == [LEDGER_NAME]
    rows = summarize(manifest, out)
    assert [(r.id, r.status) for r in rows] == [
        ("a:seed0", "done"), ("a:seed1", "done"), ("a:seed2", "done"), ("wide:seed0", "done"),
        ("missing", "failed"), ("odd:seed0", "failed"), ("boom:seed5", "failed"),
    ]
    table = format_summary(rows, report).splitlines()
    assert table[0].split() == ["job", "status", "seconds", "output", "/", "error"]
    assert table[1].split()[:2] == ["a:seed0", "done"] and table[1].endswith("a_seed0.mp4")
    assert table[6].split()[:3] == ["odd:seed0", "failed", "-"]
    assert table[6].endswith("height 24 is not a multiple of 16; use 16, 32, 48, ...")
    assert table[-1].startswith("7 jobs: 4 done, 3 failed (4 run now, 0 already done, ")


def _run_ranks(tmp_path, manifest, out, world_size):
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
               "PYTHONPATH": str(REPO)}
        env.pop("MASTER_ADDR", None)
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.batch.fakes", str(manifest), str(out), "2"],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    reports = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        reports.append(json.loads(stdout.splitlines()[-1]))
    return reports


def test_two_processes_split_the_jobs_and_the_shards_merge(tmp_path):
    data = {"defaults": {"height": 16, "width": 16, "num_frames": 5},
            "jobs": [{"name": f"j{i}", "prompt": f"dot {i}", "seeds": [0, 1]} for i in range(5)]}
    manifest = write_manifest(tmp_path, data)
    out = tmp_path / "out"
    r0, r1 = _run_ranks(tmp_path, manifest, out, 2)
    ids = [j.id for j in read_manifest(manifest).jobs]
    assert sorted(r0["results"]) == sorted(ids[0::2]) and sorted(r1["results"]) == sorted(ids[1::2])
    assert set(r0["results"].values()) == {"done"} == set(r1["results"].values())
    # no process group (no MASTER_ADDR): each rank leaves its shard for --merge
    assert sorted(p.name for p in out.glob("ledger*")) == ["ledger.rank0.jsonl", "ledger.rank1.jsonl"]
    done = [r["job"] for r in read_all(out) if r["status"] == "done"]
    assert sorted(done) == sorted(ids)  # every job once, none twice
    # a second run with the same world size skips everything
    r0, r1 = _run_ranks(tmp_path, manifest, out, 2)
    assert set(r0["results"].values()) == {"skipped"} == set(r1["results"].values())
    assert r0["batches"] == [] == r1["batches"]


@pytest.mark.slow
def test_torchrun_ranks_meet_at_a_barrier_and_rank0_merges(tmp_path):
    data = {"defaults": {"height": 16, "width": 16, "num_frames": 5},
            "jobs": [{"name": f"j{i}", "prompt": f"dot {i}"} for i in range(5)]}
    manifest = write_manifest(tmp_path, data)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "tests.batch.fakes", str(manifest), str(out), "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.glob("ledger*")) == [LEDGER_NAME]
    records = [json.loads(line) for line in (out / LEDGER_NAME).read_text().splitlines()]
    done = sorted(r["job"] for r in records if r["status"] == "done")
    assert done == [f"j{i}:seed0" for i in range(5)]
    assert sorted({r["rank"] for r in records}) == [0, 1]


def test_abort_batch_stops_the_run_without_blaming_the_jobs(tmp_path):
    from tora2.batch.runner import AbortBatch

    fake = FakeBackend()
    backend = fake.backend()

    def check(job):
        raise AbortBatch("cannot load the pipeline in models/x: no model_index.json")

    backend.check = check
    with pytest.raises(AbortBatch, match="cannot load the pipeline"):
        run_batch(read_manifest(write_manifest(tmp_path)), tmp_path / "out", backend)
    assert read_all(tmp_path / "out") == []  # no job is blamed for it
