"""A PathList gives back exactly the paths it was given, in order, whatever their names."""
import os
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from kdx_engine.data.path_list import PathList

NAMES = st.text(st.characters(blacklist_characters="\x00/", blacklist_categories=("Cs",)), min_size=1, max_size=30)


@given(st.lists(st.lists(NAMES, min_size=1, max_size=4), max_size=40))
def test_paths_come_back_as_given(parts):
    paths = [Path("/data", *p) for p in parts]
    listed = PathList(paths)
    assert len(listed) == len(paths)
    assert list(listed) == paths
    assert listed[1:5] == paths[1:5] and listed[::-2] == paths[::-2]
    if paths:
        assert listed[-1] == paths[-1]


def test_names_that_are_not_utf8_and_empty_lists():
    odd = os.fsdecode(b"/data/caf\xe9.png")  # a Latin-1 name on a UTF-8 file system
    listed = PathList([odd, "/data/b c.jpg", "relative/x.png"])
    assert listed[0] == Path(odd) and os.fsencode(listed[0]) == b"/data/caf\xe9.png"
    assert listed[1] == Path("/data/b c.jpg") and listed[2] == Path("relative/x.png")
    assert len(PathList([])) == 0 and list(PathList([])) == []
    with pytest.raises(IndexError, match="out of range"):
        listed[3]
    with pytest.raises(IndexError):
        listed[-4]
