"""A project naming a malicious ``.pt2`` program, opened in the window, runs nothing from it: the slot asks
the trust question (answered No here) and stays empty, and the payload's marker file never appears."""
import json
import sys
from pathlib import Path

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
