"""Ledger records, torn lines, merging; rank environment and deterministic shards."""

import json

import pytest

from tora2.batch.ledger import LEDGER_NAME, Ledger, check_output, file_sha256, merge_ledgers, read_all, shard_path
from tora2.batch.sharding import DistributedEnv, distributed_env, group_batches, shard
from tora2.errors import InputError


def test_append_then_reopen_gives_the_last_state(tmp_path):
    ledger = Ledger(tmp_path, rank=0)
    ledger.append("a:seed0", "f1", "running", output="a.mp4")
    ledger.append("a:seed0", "f1", "done", output="a.mp4", sha256="x", bytes=3, seconds=1.5)
    ledger.append("b:seed0", "f2", "failed", error="bad image")
    again = Ledger(tmp_path, rank=0)
    assert again.last("a:seed0", "f1")["status"] == "done"
    assert again.last("a:seed0", "f1")["seconds"] == 1.5
    assert again.last("b:seed0", "f2")["error"] == "bad image"
    assert again.last("a:seed0", "other fingerprint") is None
    lines = shard_path(tmp_path, 0).read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["rank"] == 0


def test_a_torn_last_line_is_skipped(tmp_path):
    ledger = Ledger(tmp_path, rank=0)
    ledger.append("a", "f", "done", output="a.mp4")
    with open(shard_path(tmp_path, 0), "a") as f:
        f.write('{"job": "b", "fingerprint": "f", "sta')  # killed mid-write
    records = read_all(tmp_path)
    assert [r["job"] for r in records] == ["a"]
    Ledger(tmp_path, rank=0).append("c", "f", "running")  # appending after a torn line still parses
    assert [r["job"] for r in read_all(tmp_path)] == ["a", "c"]


def test_unknown_status_is_refused(tmp_path):
    with pytest.raises(ValueError, match="status 'finished' is not one of running, done, failed"):
        Ledger(tmp_path).append("a", "f", "finished")


def test_merge_folds_shards_in_time_order_and_is_idempotent(tmp_path):
    r0, r1 = Ledger(tmp_path, rank=0), Ledger(tmp_path, rank=1)
    r0.append("a", "f", "running")
    r1.append("b", "f", "running")
    r1.append("b", "f", "done")
    r0.append("a", "f", "done")
    merged = merge_ledgers(tmp_path)
    assert merged == tmp_path / LEDGER_NAME
    assert sorted(p.name for p in tmp_path.iterdir()) == [LEDGER_NAME]
    rows = [(r["job"], r["status"], r["rank"]) for r in map(json.loads, merged.read_text().splitlines())]
    assert rows == [("a", "running", 0), ("b", "running", 1), ("b", "done", 1), ("a", "done", 0)]
    # a crash between the rename and the shard removal: merging again drops the duplicates
    (tmp_path / "ledger.rank1.jsonl").write_text(merged.read_text().splitlines()[2] + "\n")
    merge_ledgers(tmp_path)
    assert len(merged.read_text().splitlines()) == 4
    assert Ledger(tmp_path, rank=5).last("a", "f")["status"] == "done"


def test_check_output(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"video")
    record = {"output": "a.mp4", "bytes": 5, "sha256": file_sha256(tmp_path / "a.mp4")}
    assert check_output(tmp_path, record).intact
    (tmp_path / "a.mp4").write_bytes(b"vide0")
    assert check_output(tmp_path, record).reason == "output hash changed"
    (tmp_path / "a.mp4").write_bytes(b"vid")
    assert check_output(tmp_path, record).reason == "output size changed"
    (tmp_path / "a.mp4").unlink()
    assert check_output(tmp_path, record).reason == "output missing"


def test_distributed_env():
    assert distributed_env({}) == DistributedEnv(0, 1, 0)
    assert distributed_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == DistributedEnv(3, 4, 1)
    assert distributed_env({"RANK": "1", "WORLD_SIZE": "2"}) == DistributedEnv(1, 2, 1)
    with pytest.raises(InputError, match=r"RANK=2 is outside 0..1 for WORLD_SIZE=2"):
        distributed_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(InputError, match=r"WORLD_SIZE='two' is not an integer"):
        distributed_env({"WORLD_SIZE": "two"})


@pytest.mark.parametrize("world_size", [1, 2, 3, 7, 25])
def test_shards_cover_every_item_once(world_size):
    items = list(range(20))
    shards = [shard(items, r, world_size) for r in range(world_size)]
    assert sorted(i for s in shards for i in s) == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shard(items, 0, world_size) == items[0::world_size]


def test_group_batches_by_shape_in_first_seen_order():
    items = ["a1", "b1", "a2", "a3", "b2", "a4", "c1"]
    batches = group_batches(items, key=lambda s: s[0], batch_size=3)
    assert batches == [["a1", "a2", "a3"], ["a4"], ["b1", "b2"], ["c1"]]
    assert group_batches(items, key=lambda s: s[0], batch_size=1) == [[i] for i in ["a1", "a2", "a3", "a4", "b1", "b2", "c1"]]
    with pytest.raises(ValueError, match="batch_size 0 must be at least 1"):
        group_batches(items, key=len, batch_size=0)
