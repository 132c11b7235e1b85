import multiprocessing
import threading

import numpy as np
import torch

from entities.cache import EntityCache, default_cache_root, image_hash


def test_default_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TORA2_CACHE", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c"
    assert EntityCache().root == tmp_path / "c"
    monkeypatch.delenv("TORA2_CACHE")
    assert str(default_cache_root()).endswith(".cache/tora2/entities")


def test_key_depends_on_pixels_shape_encoder_and_settings(tmp_path):
    cache = EntityCache(tmp_path)
    image = np.zeros((4, 6, 3), np.uint8)
    key = cache.key(image, "enc:a", {"role": "semantic"})
    assert key == cache.key(image.copy(), "enc:a", {"role": "semantic"})
    changed = image.copy()
    changed[0, 0, 0] = 1
    assert cache.key(changed, "enc:a", {"role": "semantic"}) != key
    assert cache.key(image.reshape(6, 4, 3), "enc:a", {"role": "semantic"}) != key
    assert cache.key(image, "enc:b", {"role": "semantic"}) != key
    assert cache.key(image, "enc:a", {"role": "detail"}) != key
    assert len(image_hash(image)) == 64


def test_hit_miss_and_invalidation(tmp_path):
    cache = EntityCache(tmp_path)
    image = np.full((8, 8, 3), 7, np.uint8)
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(6.0).reshape(2, 3)

    first = cache.get_or_compute(image, "enc:v1", {}, compute)
    second = cache.get_or_compute(image, "enc:v1", {}, compute)
    assert torch.equal(first, second) and len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    cache.get_or_compute(image, "enc:v2", {}, compute)  # new weights → new key → recompute
    assert len(calls) == 2 and len(cache) == 2
    # A fresh cache object on the same root (a second run) hits.
    again = EntityCache(tmp_path)
    assert torch.equal(again.get_or_compute(image, "enc:v1", {}, compute), first) and len(calls) == 2


def test_damaged_entry_is_a_miss(tmp_path):
    cache = EntityCache(tmp_path)
    key = cache.key(np.zeros((2, 2, 3), np.uint8), "e", {})
    cache.put(key, torch.ones(3))
    cache.path(key).write_bytes(b"\x00\x01garbage")
    assert cache.get(key) is None
    cache.put(key, torch.ones(3))
    assert torch.equal(cache.get(key), torch.ones(3))


def _writer(root: str, worker: int, rounds: int) -> None:
    cache = EntityCache(root)
    key = cache.key(np.zeros((2, 2, 3), np.uint8), "shared", {})
    for i in range(rounds):
        cache.put(key, torch.full((64, 64), float(worker)))
        value = cache.get(key)
        assert value is not None and value.shape == (64, 64)
        assert float(value.min()) == float(value.max())  # never a mix of two writers


def test_concurrent_writers_processes_and_threads(tmp_path):
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_writer, args=(str(tmp_path), w, 25)) for w in range(3)]
    threads = [threading.Thread(target=_writer, args=(str(tmp_path), 10 + w, 25)) for w in range(2)]
    for job in processes + threads:
        job.start()
    for job in processes + threads:
        job.join()
    assert [p.exitcode for p in processes] == [0, 0, 0]
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 1 and files[0].endswith(".safetensors")  # no temporary files left behind
    cache = EntityCache(tmp_path)
    value = cache.get(cache.key(np.zeros((2, 2, 3), np.uint8), "shared", {}))
    assert float(value[0, 0]) in {0.0, 1.0, 2.0, 10.0, 11.0}
