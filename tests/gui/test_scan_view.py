"""The Scan view: Analysis ▸ Scan dataset… runs a scan as a job and opens its table; sorting, filters and
the histogram follow the table's values; a row opens its image in the canvas; the gallery filters by the
rows shown; a 20,000-row table opens reading only the thumbnails drawn."""
import numpy as np
import pyarrow.parquet as pq
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from gui_fixtures import isolated_settings, window  # noqa: F401 - fixtures
from gui_helpers import wait_idle
from kdx_engine.bundled import DEMO_MODELS
from kdx_engine.zoo import write_demo_dataset
from kdx_gui.scan.scan_jobs import ScanRequest
from kdx_gui.scan.scan_table_model import FILTERS
from kdx_gui.scan.scan_view import ScanView


@pytest.fixture()
def no_dialogs(monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args, **kwargs: shown.append(args[2]))
    return shown


def test_scan_job_opens_a_table_that_sorts_filters_and_opens_rows(window, qtbot, tmp_path, no_dialogs):
    dataset = write_demo_dataset(tmp_path / "data", n=12, split="test")
    for role in ("teacher", "student", "base"):
        window.slots[role].load(str(DEMO_MODELS / f"{role}.pth"))
    wait_idle(qtbot, window)
    job = window.scan.run(ScanRequest(str(dataset), str(tmp_path / "scan"), faithfulness_steps=0))
    assert job.cancellable
    wait_idle(qtbot, window, timeout=120000)
    assert not no_dialogs
    view = window.scan.view
    assert not window.scan.dock.isHidden() and view.model.rowCount() == 12
    table = pq.read_table(tmp_path / "scan" / "scan.parquet").to_pydict()

    column = view.model.names.index("gradcam_student_energy")
    view.table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    shown = [view.model.data(view.model.index(r, column), Qt.ItemDataRole.UserRole + 1) for r in range(12)]
    assert shown == sorted(table["gradcam_student_energy"], reverse=True)

    view.set_filter("s-energy-below-t")
    expected = sum(s < t for s, t in zip(table["gradcam_student_energy"], table["gradcam_teacher_energy"]))
    assert view.model.rowCount() == expected
    assert view.count.text().startswith(f"{expected} of 12") or expected == 12
    view.set_filter("all")

    view.histogram_column.setCurrentText("kl_teacher_student")
    counts, edges, undefined = view.histogram_counts()
    assert counts.sum() == 12 and undefined == 0
    assert edges[0] == pytest.approx(min(table["kl_teacher_student"]))

    index = view.model.index(3, 0)
    view.table.clicked.emit(index)
    wait_idle(qtbot, window)
    record = view.model.row_record(3)
    assert window.session.current_image is not None and window.session.current_image.source == record["file"]

    view.set_filter("t-right-s-wrong")
    wanted = {f for f, t, s in zip(table["file"], table["teacher_correct"], table["student_correct"]) if t and s is False}
    view.gallery_button.click()
    wait_idle(qtbot, window)
    sources = {item.id: item.source for item in window.session.images}
    assert {sources[i] for i in window.gallery.visible_ids()} == wanted
    assert window.gallery.filter_box.currentData() == "scan"


def test_a_large_table_reads_only_the_thumbnails_it_draws(qtbot, tmp_path):
    image = write_demo_dataset(tmp_path / "one", n=1, split="test")
    file = str(next(image.rglob("00000.png")))
    n = 20000
    rng = np.random.default_rng(0)
    columns = {"path": [f"img_{i}.png" for i in range(n)], "file": [file] * n, "error": [None] * n,
               "teacher_correct": list(rng.random(n) < 0.9), "student_correct": list(rng.random(n) < 0.8),
               "gradcam_teacher_energy": list(rng.random(n)), "gradcam_student_energy": list(rng.random(n))}
    view = ScanView()
    qtbot.addWidget(view)
    view.resize(900, 500)
    view.show()
    view.show_scan(str(tmp_path), columns)
    qtbot.wait(50)
    assert view.model.rowCount() == n
    assert 0 < view.model.thumbnail_reads <= 40  # one file, read once for the rows drawn
    view.set_filter("t-right-s-wrong")
    t, s = np.array(columns["teacher_correct"]), np.array(columns["student_correct"])
    assert view.model.rowCount() == int((t & ~s).sum())
    assert set(view.model.available_filters()) >= {"all", "t-right-s-wrong", "s-energy-below-t"}
    assert set(FILTERS) >= set(view.model.available_filters())


def test_scan_dialog_names_what_is_wrong_and_proposes_an_output_folder(qtbot, tmp_path):
    from kdx_gui.scan.scan_dialog import ScanDialog

    dataset = tmp_path / "shapes"
    dataset.mkdir()
    dialog = ScanDialog(str(dataset), "gradcam++")
    qtbot.addWidget(dialog)
    assert dialog.out.text() == str(tmp_path / "shapes_kdx_scan") and dialog.problem() is None
    request = dialog.request()
    assert request.method == "gradcam++" and request.faithfulness_steps == 20 and not request.unicam
    (tmp_path / "file.txt").write_text("x")
    dialog.out.setText(str(tmp_path / "file.txt"))
    dialog._accept()
    assert "is a file" in dialog.error.text() and dialog.result() == 0
    dialog.dataset.setText(str(tmp_path / "missing"))
    assert "not a folder" in dialog.problem()


def test_the_energy_filters_follow_the_scans_method():
    """After `kdx scan --methods layercam` the energy filters read layercam's columns (they read gradcam's
    and silently kept no row, issue 25); without energy columns they are not offered."""
    from kdx_gui.scan.scan_table_model import FILTERS

    columns = {"path": ["a", "b", "c"], "student_correct": [True, True, False], "mask_share": [0.3, 0.3, 0.3],
               "layercam_teacher_energy": [0.5, 0.2, 0.9], "layercam_student_energy": [0.4, 0.6, 0.1],
               "unicam_distilled_energy": [0.0, 0.0, 0.0]}
    below = FILTERS["s-energy-below-t"][1](columns, 3)
    off = FILTERS["s-right-off-object"][1](columns, 3)
    assert below.tolist() == [True, False, True] and off.tolist() == [False, False, False]
    columns["layercam_student_energy"] = [0.1, 0.6, 0.1]
    assert FILTERS["s-right-off-object"][1](columns, 3).tolist() == [True, False, False]
    bare = {"path": ["a"], "student_correct": [True]}
    assert FILTERS["s-energy-below-t"][1](bare, 1) is None and FILTERS["s-right-off-object"][1](bare, 1) is None
