"""GUI fixtures: isolated settings, tiny models and images written to tmp folders, a ready window.

Not a conftest.py: the engine tests import helpers with ``from conftest import ...``, and a second
conftest module would shadow theirs. Test modules import these fixtures by name instead."""
from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import QSettings

from kdx_engine.models import Preprocessing, get_architecture, write_sidecar

from gui_helpers import CLASSES, save_resnet8, write_image_tree


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, qapp):
    """Every test starts with empty QSettings in its own folder, under the work-arounds that
    ``app.main`` installs (once per process)."""
    from kdx_gui import _runtime

    _runtime.install()
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    qapp.setOrganizationName("KDX-test")
    qapp.setApplicationName("KDX-test")
    yield


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """Teacher, Student, Base (resnet8, 4 classes, different seeds), a 3-class model, a corrupt file
    and a full pickled module."""
    root = tmp_path_factory.mktemp("models")
    files = {
        "teacher": save_resnet8(root / "teacher.pth", 1),
        "student": save_resnet8(root / "student.pth", 2),
        "base": save_resnet8(root / "base.pth", 3),
        "three_classes": save_resnet8(root / "three.pth", 4, classes=CLASSES[:3]),
    }
    corrupt = root / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint" * 10)
    files["corrupt"] = corrupt
    torch.manual_seed(5)
    pickled = root / "pickled.pt"
    torch.save(get_architecture("resnet8").build(4).eval(), pickled)
    write_sidecar(pickled, Preprocessing(input_size=32, resize=None, class_names=CLASSES, source="sidecar"))
    files["pickled"] = pickled
    return {k: str(v) for k, v in files.items()}


@pytest.fixture()
def image_tree(tmp_path):
    return write_image_tree(tmp_path / "images", per_class=2)


@pytest.fixture()
def window(qtbot):
    from kdx_gui._runtime.gc_policy import freeze_long_lived
    from kdx_gui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.engineLoaded.connect(freeze_long_lived)  # as app.main does
    win.resize(1400, 900)
    with qtbot.waitSignal(win.engineLoaded, timeout=60000):
        win.start_engine()
    yield win
    win.shutdown()


