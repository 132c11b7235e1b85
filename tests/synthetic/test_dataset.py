import json

import numpy as np
import pytest
import torch

from tora2.errors import InputError
from tora2.synthetic import SyntheticClipDataset, write_dataset
from tora2.training.dataset import ClipDataset, EntitySample
from tora2.clips.manifest import read_manifest


def test_in_memory_items_have_the_training_layout_and_repeat():
    dataset = SyntheticClipDataset(5, seed=2, num_frames=5, height=64, width=64)
    item = dataset[1]
    assert len(dataset) == 5
    assert item["key"] == "synth-train-2-000001"
    assert item["video"].shape == (5, 3, 64, 64) and item["video"].dtype == torch.float32
    assert -1.0 <= float(item["video"].min()) and float(item["video"].max()) <= 1.0
    assert 1 <= len(item["entities"]) <= 3 and isinstance(item["entities"][0], EntitySample)
    entity = item["entities"][0]
    assert entity.points.shape == (5, 2) and entity.reference.shape[2] == 4 and entity.kind == "object"
    assert torch.equal(item["video"], dataset[1]["video"])
    assert not torch.equal(item["video"], dataset[2]["video"])


def test_disk_dataset_matches_memory_and_reads_as_a_training_manifest(tmp_path):
    manifest = write_dataset(tmp_path / "synth", 2, seed=4, num_frames=5, height=64, width=96)
    assert manifest == tmp_path / "synth" / "manifest.jsonl"
    clips = read_manifest(manifest)
    memory = SyntheticClipDataset(2, seed=4, num_frames=5, height=64, width=96)
    assert [c.id for c in clips] == ["000000", "000001"]
    for index, clip in enumerate(clips):
        frames, caption, entities = memory.clip(index)
        assert clip.caption == caption
        assert [e.text for e in clip.entities] == [e.text for e in entities]
        np.testing.assert_allclose(clip.entities[0].points, entities[0].points, atol=1e-3)
        assert clip.entities[0].references[0].name == entities[0].sprite.path.name
    sample = ClipDataset(clips, 5, [(64, 96)])[0]
    assert sample["video"].shape == (5, 3, 64, 96)
    decoded = (sample["video"].permute(0, 2, 3, 1).numpy() + 1) * 127.5
    assert np.abs(decoded - memory.clip(0)[0]).mean() < 6.0  # CRF-12 H.264, 4:2:0 chroma: measured 4.9
    line = json.loads(manifest.read_text().splitlines()[0])
    assert line["meta"]["split"] == "train" and line["meta"]["seed"] == 4


def test_writer_refuses_existing_folders_and_odd_sizes(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="already exists and is not an empty folder"):
        write_dataset(tmp_path / "full", 1, num_frames=3, height=64, width=64)
    with pytest.raises(InputError, match="must be even on both sides"):
        write_dataset(tmp_path / "odd", 1, num_frames=3, height=65, width=64)
    assert not (tmp_path / "odd").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no staging folder left behind


def test_recolouring_rotates_some_hues_in_frames_and_references_and_changes_nothing_else():
    from tora2.synthetic.clips import rotate_hue

    plain = SyntheticClipDataset(12, 1, "train", 9, 64, 64, 3, ("gradient",))
    recoloured = SyntheticClipDataset(12, 1, "train", 9, 64, 64, 3, ("gradient",), recolour=True)
    changed = total = 0
    for i in range(12):
        frames_a, caption_a, entities_a = plain.clip(i)
        frames_b, caption_b, entities_b = recoloured.clip(i)
        assert caption_a == caption_b
        for a, b in zip(entities_a, entities_b):
            assert np.array_equal(a.points, b.points) and np.array_equal(a.sizes, b.sizes) and a.sprite.name == b.sprite.name
            assert np.array_equal(a.sprite.image[..., 3], b.sprite.image[..., 3])  # same shape
            total += 1
            changed += not np.array_equal(a.sprite.image, b.sprite.image)
        item = recoloured[i]
        assert all(np.array_equal(s.reference, e.sprite.image) for s, e in zip(item["entities"], entities_b))  # reference = drawn sprite
        assert item["key"].endswith("-recolour") and not plain[i]["key"].endswith("-recolour")
        if all(np.array_equal(a.sprite.image, b.sprite.image) for a, b in zip(entities_a, entities_b)):
            assert np.array_equal(frames_a, frames_b)
    assert 0.25 * total <= changed <= 0.75 * total
    red = np.zeros((2, 2, 4), np.uint8)
    red[..., 0], red[..., 3] = 255, 255
    assert tuple(rotate_hue(red, 120)[0, 0]) == (0, 255, 0, 255)  # red + 120° = green
