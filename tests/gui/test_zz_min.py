from kdx_gui.main_window import MainWindow
from gui_helpers import load_models, wait_idle

def test_a(qtbot, tmp_path):
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    qtbot.waitExposed(first)

def test_b(qtbot, image_tree):
    w = MainWindow()
    qtbot.addWidget(w)
    w.start_engine()
    w.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, w)
