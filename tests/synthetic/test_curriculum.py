"""The synthetic training curriculum (tora2/synthetic/curriculum.py)."""

import pytest

from tora2.errors import InputError
from tora2.synthetic.backgrounds import KINDS
from tora2.synthetic.curriculum import CurriculumDataset, Phase, parse_curriculum


def test_parse_curriculum_phases():
    phases = parse_curriculum("1:gradient:1500, 2:gradient+texture:3000, 3:all")
    assert phases == [Phase(1, ("gradient",), 1500), Phase(2, ("gradient", "texture"), 3000), Phase(3, tuple(KINDS), None)]


@pytest.mark.parametrize("spec, message", [
    ("", "is empty"),
    ("1:gradient,3:all", "every phase but the last needs an until-step"),
    ("1:gradient:100,3:all:200", "every phase but the last needs an until-step, the last none"),
    ("x:gradient:100,3:all", "must be integers"),
    ("1:lava:100,3:all", "unknown background kind(s) lava"),
    ("0:all", "entities is 0"),
    ("1:gradient:100,2:all:50,3:all", "until-step 50 must be after 100"),
    ("3-2:gradient", "entity range 3-2 is empty"),
    ("0-2:gradient", "entity range 0-2 is empty or starts below 1"),
    ("a-2:gradient", "must be integers"),
])
def test_parse_curriculum_errors(spec, message):
    with pytest.raises(InputError, match=message.replace("(", "\\(").replace(")", "\\)")):
        parse_curriculum(spec)


def test_parse_curriculum_entity_range():
    assert parse_curriculum("2-3:gradient") == [Phase(3, ("gradient",), None, min_entities=2)]
    assert parse_curriculum("3:gradient")[0].min_entities == 1


def test_entity_range_phase_draws_only_crowded_clips():
    dataset = CurriculumDataset(parse_curriculum("2-3:gradient"), length=12, num_frames=3, height=64, width=64)
    counts = {len(dataset[i]["entities"]) for i in range(12)}
    assert counts == {2, 3}
    assert dataset[0]["key"].endswith("-gradient-min2")  # its own cache entries
    # a plain maximum draws exactly the clips it drew before ranges existed
    plain = CurriculumDataset(parse_curriculum("3:gradient"), length=3, num_frames=3, height=64, width=64)
    assert plain[0]["key"] == "synth-train-0-000000-gradient"


def test_curriculum_dataset_switches_phase_by_step():
    dataset = CurriculumDataset(parse_curriculum("1:gradient:10,3:all"), length=4, num_frames=3, height=64, width=64)
    assert len(dataset) == 4
    dataset.set_step(0)
    first = [dataset[i] for i in range(4)]
    assert all(len(s["entities"]) == 1 for s in first)
    assert all(s["key"].endswith("-gradient-max1") for s in first)
    dataset.set_step(9)
    assert dataset[0]["key"] == first[0]["key"]
    dataset.set_step(10)
    later = dataset[0]
    assert later["key"] == "synth-train-0-000000"  # the full mix keeps the plain key
    assert dataset.phase_at(10**6) == 1
