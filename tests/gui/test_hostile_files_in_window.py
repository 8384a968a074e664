"""Hostile files in the window (issue 32): a project naming a malicious ``.pt2`` program runs nothing
from it (each slot asks the trust question, answered No here, and stays empty; the payload's marker
file never appears); a project file that is a JSON bomb, a FIFO or a link to /dev/zero is refused with a
message; special files dropped on the gallery are named and skipped."""
import json
import os
import sys
from pathlib import Path

import pytest

import kdx_gui.docks.models.model_slot as model_slot
from gui_fixtures import isolated_settings, window  # noqa: F401 - fixtures
from gui_helpers import wait_idle

sys.path.insert(0, str(Path(__file__).parents[1] / "engine" / "models"))
from pt2_files import malicious_programs  # noqa: E402


def test_a_project_with_a_malicious_program_asks_and_runs_nothing(window, qtbot, tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    twins = malicious_programs(tmp_path / "twins", marker)
    asked = []
    monkeypatch.setattr(model_slot, "ask_to_trust", lambda parent, role, message: asked.append(message) or False)
    project = tmp_path / "hostile.kdx"
    project.write_text(json.dumps({"format": "kdx-project", "version": 1, "models": {
        "teacher": {"path": str(twins["sample inputs, valid"])}, "student": {"path": str(twins["opaque constant"])},
        "base": {"path": str(twins["use_pickle weight"])}}}))
    window.open_project(str(project))
    wait_idle(qtbot, window)
    assert len(asked) == 3 and all("torch.export program whose pickled parts name code" in m for m in asked)
    assert all(window.session.models[role] is None for role in ("teacher", "student", "base"))
    assert not marker.exists()


def _project_bomb(path):
    path.write_text('{"format": "kdx-project", "version": 1, "images": ' + "[" * 100_000 + "]" * 100_000 + "}")


def _fifo(path):
    os.mkfifo(path)


def _zero(path):
    path.symlink_to("/dev/zero")


@pytest.mark.parametrize("make, message", [
    (_project_bomb, "JSON nested more deeply than Python can read"),
    (_fifo, "is a FIFO (named pipe), not a regular file"),
    (_zero, "is a character device, not a regular file"),
])
def test_a_hostile_project_file_is_refused_with_a_message(window, tmp_path, monkeypatch, make, message):
    path = tmp_path / "hostile.kdx"
    make(path)
    shown = []
    monkeypatch.setattr("kdx_gui.main_window.QMessageBox.warning",
                        lambda parent, title, text: shown.append((title, text)))
    assert not window.open_project(str(path))
    assert shown[0][0] == "Cannot open project" and "hostile.kdx" in shown[0][1] and message in shown[0][1]


def test_special_files_dropped_on_the_gallery_are_named_and_skipped(window, qtbot, tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    window.gallery.add_paths([str(tmp_path / "pipe.png"), str(tmp_path / "zero.png")])
    wait_idle(qtbot, window)
    assert window.session.images == []
    text = window.gallery.message.text()
    assert "2 file(s) skipped" in text and "pipe.png" in text and "zero.png" in text, text
