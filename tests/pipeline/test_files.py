"""Files written for people appear whole or not at all, and a bad path is a clear error."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidInput
from pipeline.files import written


def test_a_file_replaces_the_old_one_only_once_it_is_whole(tmp_path):
    target = tmp_path / "readers.csv"
    target.write_text("the export of last week\n")
    with pytest.raises(RuntimeError), written(target) as fh:
        fh.write("half of this week's")
        raise RuntimeError("the database went away")
    assert target.read_text() == "the export of last week\n"
    assert [p.name for p in tmp_path.iterdir()] == ["readers.csv"]  # no temporary file left behind

    with written(target) as fh:
        fh.write("this week\n")
    assert target.read_text() == "this week\n"
    assert [p.name for p in tmp_path.iterdir()] == ["readers.csv"]


def test_a_path_that_cannot_be_written_names_itself_and_the_fix(tmp_path):
    cannot = "missing/readers.csv: cannot write the file .*choose a folder that exists"
    with pytest.raises(InvalidInput, match=cannot), written(tmp_path / "missing" / "readers.csv"):
        pass
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(InvalidInput, match="folder.csv: cannot write the file"), written(tmp_path / "folder.csv") as fh:
        fh.write("x")
    assert [p.name for p in tmp_path.iterdir()] == ["folder.csv"]
