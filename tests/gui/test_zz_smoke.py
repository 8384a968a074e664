from gui_helpers import wait_idle, load_models
def test_smoke(window, qtbot, model_files, image_tree):
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    c = window.session.comparison
    print({k: (p.title, p.message, None if p.values is None else p.values.shape) for k, p in c.panels.items()})
    print(window.session.predictions)
    print(window.job_status.error_label.text())
    print(window.canvas.readouts())
