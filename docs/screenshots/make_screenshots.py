"""Screenshots of the window at 1600×1000, driven through the real widgets:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/make_screenshots.py

Opens the bundled demo as `python main.py` does when it is built (kdx_engine/resources/models), plus a synthetic
test split from the zoo's settings for dataset metrics; otherwise a stand-in made here: synthetic
shape images from the engine's generator and untrained resnet8 models (their maps show the layout,
not a distillation story), a VAM checkpoint and a KDExplainer with random attention and routing.
Writes main.png, layers.png, relevance.png, vam.png and kdexplainer.png beside this file.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QPointF  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from kdx_gui import _runtime  # noqa: E402

from kdx_engine.bundled import DEMO_MODELS  # noqa: E402
from kdx_gui.demo import Demo, find_demo  # noqa: E402
from kdx_gui.main_window import MainWindow  # noqa: E402


def stand_in(folder: Path) -> Demo:
    """Synthetic images with masks and untrained models, for when the demo zoo is not built."""
    import torch

    from kdx_engine.data.synthetic import SyntheticConfig, generate_split, write_image_folder
    from kdx_engine.hme import KDExplainerNet
    from kdx_engine.models import Preprocessing, get_architecture, write_sidecar
    from kdx_engine.vam import add_vam

    config = SyntheticConfig(size=32)
    write_image_folder(generate_split(config, "samples", 24, cue_agreement=None), None, folder / "samples")
    write_image_folder(generate_split(config, "dataset", 64, cue_agreement=None), None, folder / "dataset")
    preprocessing = Preprocessing(input_size=32, class_names=config.classes, architecture="resnet8",
                                  source="sidecar")
    models = {}
    for seed, role in enumerate(("teacher", "student", "base")):
        torch.manual_seed(seed)
        path = folder / f"{role}_resnet8.pth"
        torch.save(get_architecture("resnet8").build(config.num_classes).state_dict(), path)
        write_sidecar(path, preprocessing)
        models[role] = str(path)
    torch.manual_seed(10)
    vam = get_architecture("resnet8").build(config.num_classes)
    add_vam(vam, groups=4)
    state = {k: torch.randn_like(v) * 2 if k.endswith(".vam_theta") else v for k, v in vam.state_dict().items()}
    torch.save(state, folder / "vam_student.pth")
    torch.manual_seed(11)
    hme = KDExplainerNet(config.num_classes)
    with torch.no_grad():
        for theta in hme.routing:
            theta.copy_(torch.randn_like(theta) * 3)
    torch.save(hme.state_dict(), folder / "kdexplainer.pth")
    write_sidecar(folder / "kdexplainer.pth", preprocessing)
    return Demo(models, [str(folder / "samples")],
                {"vam_student.pth": str(folder / "vam_student.pth"),
                 "kdexplainer.pth": str(folder / "kdexplainer.pth")}, str(folder / "dataset"))


def demo_test_split(folder: Path, n: int = 96) -> str:
    """The zoo's synthetic test split (its generator settings from zoo.json), written as class folders."""
    import json

    from kdx_engine.data.synthetic import SyntheticConfig, generate_split, write_image_folder

    zoo = json.loads((DEMO_MODELS / "zoo.json").read_text())
    config = SyntheticConfig.from_json(zoo["data"])
    return str(write_image_folder(generate_split(config, "test", n, cue_agreement=None), None, folder))


def settle(app: QApplication, window: MainWindow, timeout: float = 300.0) -> None:
    """Process events until every job has finished and nothing is scheduled."""
    deadline = time.time() + timeout
    quiet_since = None
    while time.time() < deadline:
        app.processEvents()
        busy = not window.jobs.is_idle() or window.scheduler._timer.isActive() \
            or window.attention_reader._timer.isActive()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 0.5:
            return
        time.sleep(0.02)
    raise TimeoutError("the window did not settle")


def shoot(app: QApplication, window: MainWindow, name: str) -> None:
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    window.grab().save(str(OUT / name))
    print(f"wrote {OUT / name}")


def main() -> None:
    settings_home = tempfile.TemporaryDirectory()  # default settings, and the user's left alone
    os.environ["XDG_CONFIG_HOME"] = settings_home.name
    app = QApplication([sys.argv[0]])
    _runtime.install()  # as app.main does
    app.setOrganizationName("KDX-screenshots")
    app.setApplicationName("KDX-screenshots")
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    window.start_engine()
    settle(app, window)
    demo = find_demo()
    temporary = tempfile.TemporaryDirectory()
    if isinstance(demo, Demo):
        window.open_demo()  # what `python main.py` does
        if demo.dataset is None:  # the zoo ships a handful of samples: draw a test split for dataset metrics
            demo.dataset = demo_test_split(Path(temporary.name) / "test")
    else:
        print(f"{demo}; using a stand-in")
        demo = stand_in(Path(temporary.name))
        for role, path in demo.models.items():
            window.slots[role].load(path)
        window.gallery.add_paths(demo.samples)
        for name, path in demo.checkpoints.items():
            window.session.add_checkpoint(path, name)
        window.session.update_settings(reference_n=8)
    settle(app, window)
    window.session.set_current(2)
    settle(app, window)
    canvas = window.canvas
    canvas.scene().sigMouseMoved.emit(canvas.views["teacher"].mapViewToScene(QPointF(15.5, 12.5)))
    shoot(app, window, "main.png")

    if demo.dataset:
        window.metrics.show_tab("layers")
        window.metrics.dataset_runner.run(demo.dataset)
        settle(app, window, timeout=900)
        shoot(app, window, "layers.png")
        window.metrics.show_tab("relevance")
        shoot(app, window, "relevance.png")
    window.metrics.show_tab("vam")
    shoot(app, window, "vam.png")
    window.metrics.show_tab("routing")
    shoot(app, window, "kdexplainer.png")
    window.close()
    temporary.cleanup()
    settings_home.cleanup()


if __name__ == "__main__":
    main()
