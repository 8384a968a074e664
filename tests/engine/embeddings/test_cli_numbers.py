"""``kdx metrics`` gains the dark-knowledge and embedding sections; ``kdx export --plots`` draws them."""
import json

import numpy as np
import pytest

from kdx_engine import bundled
from kdx_engine.cli import EXIT_BAD_INPUT, main
from kdx_engine.data import ImageFolderDataset
from kdx_engine.embeddings import dataset_outputs, embedding_metrics
from kdx_engine.figures.distillation_plots import DistillationPlots
from kdx_engine.figures.figure_panel import FigureOptions, figure_size
from kdx_engine.models import load_model

MODELS = bundled.DEMO_MODELS


def _pair(tmp_path, count=12):
    """A small ImageFolder: the first ``count`` images of each demo class."""
    root = tmp_path / "data"
    for folder in sorted(p for p in bundled.DEMO_DATASET.iterdir() if p.is_dir()):
        (root / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.png"))[: 2 * count]:
            if not image.name.endswith(".mask.png"):
                (root / folder.name / image.name).write_bytes(image.read_bytes())
    return root


def test_metrics_json_gains_dark_knowledge_and_embeddings(tmp_path, capsys):
    data = _pair(tmp_path, 8)
    out = tmp_path / "m.json"
    code = main(["metrics", "--teacher", str(MODELS / "teacher.pth"), "--student", str(MODELS / "student.pth"),
                 "--dataset", str(data), "--out", str(out), "--neighbours", "5", "--tau", "2"])
    assert code == 0
    result = json.loads(out.read_text())
    dark, embeddings = result["dark_knowledge"], result["embeddings"]
    assert dark["tau"] == 2.0 and dark["tau_from"] == "--tau" and dark["n"] == 32
    assert set(dark["curves"]) == {"student"} and embeddings["k"] == 5
    backends = {r: load_model(MODELS / f"{r}.pth") for r in ("teacher", "student")}
    expected = embedding_metrics(dataset_outputs(backends, ImageFolderDataset(
        data, class_names=backends["teacher"].info.preprocessing.class_names)), k=5)
    assert embeddings["overlap"]["teacher-student"]["overall"]["value"] == pytest.approx(
        expected.overlap["teacher-student"].overall.value)
    assert "KL(T‖S) at τ = 2" in capsys.readouterr().out


def test_bad_distillation_options_are_refused_before_any_work(tmp_path, capsys):
    base = ["--teacher", str(MODELS / "teacher.pth"), "--student", str(MODELS / "student.pth")]
    assert main(["metrics", *base, "--dataset", str(tmp_path), "--out", str(tmp_path / "m.json"),
                 "--tau", "0"]) == EXIT_BAD_INPUT
    assert "--tau" in capsys.readouterr().err
    assert main(["export", *base, str(bundled.DEMO_SAMPLES), "--out", str(tmp_path / "f.png"),
                 "--plots", "kl"]) == EXIT_BAD_INPUT
    assert "--plots-dataset" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "f.png").exists()


def test_figure_grows_by_the_plot_strip():
    plots = DistillationPlots(("kl",), {"student": tuple(np.ones(3) for _ in range(4))})
    plain, with_plots = FigureOptions(), FigureOptions(plots=plots)
    assert figure_size(2, with_plots)[1] > figure_size(2, plain)[1]
    with pytest.raises(ValueError, match="unknown plot"):
        DistillationPlots(("violin",))


@pytest.mark.slow  # two exports with their comparisons: about 18 s
def test_export_adds_the_plot_strip_and_records_it(tmp_path):
    from PIL import Image

    data = _pair(tmp_path, 6)
    sample = next(p for p in sorted(bundled.DEMO_DATASET.rglob("*.png")) if not p.name.endswith(".mask.png"))
    base = ["export", "--teacher", str(MODELS / "teacher.pth"), "--student", str(MODELS / "student.pth"),
            "--base", str(MODELS / "base.pth"), str(sample), "--columns", "input,teacher", "--dpi", "40"]
    assert main([*base, "--out", str(tmp_path / "plain.png")]) == 0
    assert main([*base, "--out", str(tmp_path / "fig.png"), "--plots", "kl,embeddings",
                 "--plots-dataset", str(data)]) == 0
    plain, with_plots = Image.open(tmp_path / "plain.png"), Image.open(tmp_path / "fig.png")
    assert with_plots.size[0] == plain.size[0] and with_plots.size[1] > plain.size[1]
    record = json.loads((tmp_path / "fig_data" / "manifest.json").read_text())["distillation_plots"]
    assert record["n"] == 24 and record["projection"] == "pca" and record["tau"] == 4.0
    assert set(record["dark_knowledge"]["curves"]) == {"student", "base"}
