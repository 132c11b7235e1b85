import os

import pytest

from tora2.io import atomic_output, write_json_atomic, write_text_atomic


def test_success_replaces_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_json_atomic({"a": 1}, target)
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert oct(os.stat(target).st_mode & 0o777) == "0o644"
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "video.mp4"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as tmp:
            assert tmp.suffix == ".mp4" and tmp.parent == tmp_path
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]
