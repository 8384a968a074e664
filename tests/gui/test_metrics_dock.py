"""The metrics dock: predictions with top-k bars and KL(T‖S); FSS/CKA and RS views of the engine's
DatasetMetrics; VAM attention and KDExplainer routing read from checkpoints; tables copy as TSV."""

import numpy as np
import pytest
import torch
from PySide6.QtGui import QGuiApplication

from gui_fixtures import image_tree, isolated_settings, model_files, window  # noqa: F401 - fixtures
from gui_helpers import CLASSES, load_models, save_resnet8, wait_idle
from kdx_engine.data import to_batch
from kdx_engine.hme import KDExplainerNet, routing_matrices
from kdx_engine.metrics import DatasetMetrics, Relevance, StageMatrix, StagePair, Value
from kdx_engine.models import Preprocessing, get_architecture, write_sidecar
from kdx_engine.vam import add_vam, layer_attention
from kdx_gui.docks.metrics.routing_view import tree_layout
from kdx_gui.docks.metrics.prediction_view import top_classes


def test_predictions_show_top_k_bars_and_kl(window, qtbot, model_files, image_tree):
    load_models(qtbot, window, model_files)
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    view, session = window.metrics.predictions, window.session
    view.set_temperature(1.0)  # τ = 1: the models' own softmax (tests/gui/test_dark_knowledge_view.py softens)
    item = session.current_image

    probs = {}
    for role in ("teacher", "student", "base"):
        model = session.models[role]
        logits = model.backend.logits(to_batch([item.image], model.info.preprocessing))
        probs[role] = torch.softmax(logits.double(), dim=1)[0].numpy()
    classes = top_classes(probs)
    assert classes[:4] == list(np.argsort(-probs["teacher"]))[:4]
    for role, bar in view.bars.items():
        np.testing.assert_allclose(bar.opts["height"], probs[role][classes], rtol=1e-6)
    kl = float(np.sum(probs["teacher"] * (np.log(probs["teacher"]) - np.log(probs["student"]))))
    assert view.kl_label.text().startswith(f"KL(T‖S) = {kl:.4f} nats")
    assert f"true class: {CLASSES[session.label_of(item)]}" in view.kl_label.text()

    rows = view.table.rows()
    assert len(rows) == 3 * 4
    assert rows[0][:3] == ["Teacher", "1", CLASSES[int(np.argmax(probs["teacher"]))]]
    tsv = view.table.copy_to_clipboard()
    assert QGuiApplication.clipboard().text() == tsv
    lines = tsv.splitlines()
    assert lines[0] == "model\trank\tclass\tprobability" and len(lines) == 13
    assert lines[1].split("\t")[3] == f"{probs['teacher'].max():.4g}"
    pearson = session.comparison.map_metrics["pearson"]
    assert view.map_table.rows()[0][:2] == ["Pearson r", f"{pearson:.4g}"]


def _value(v, width=0.1):
    return Value(v, v - width, v + width)


@pytest.fixture()
def dataset_metrics():
    stages_t, stages_s = ["layer1", "layer2", "layer3"], ["layer1", "layer3"]
    fss = StageMatrix("teacher", "student", stages_t, stages_s,
                      [[_value(0.9), _value(0.4)], [_value(0.5), _value(0.6)], [_value(0.2), _value(0.8)]])
    cka = StageMatrix("teacher", "student", stages_t, stages_s,
                      [[_value(0.7), _value(0.3)], [_value(0.45), _value(0.55)], [_value(0.1), _value(0.75)]])
    pairs = [StagePair("teacher", "layer1", "student", "layer1", fss.values[0][0]),
             StagePair("teacher", "layer3", "student", "layer3", fss.values[2][1])]
    rs = [Relevance("teacher", s, _value(0.1 * (i + 2))) for i, s in enumerate(stages_t)] + \
         [Relevance("student", s, _value(0.15 * (i + 1))) for i, s in enumerate(stages_s)]
    partial = [Relevance("student", "layer3", _value(0.3), "teacher", "layer3", "semi-partial"),
               Relevance("student", "layer3", _value(0.25), "teacher", "layer3", "partial"),
               Relevance("teacher", "layer3", _value(0.1), "student", "layer3", "semi-partial")]
    return DatasetMetrics(n=40, n_labelled=38, stages={"teacher": stages_t, "student": stages_s}, fss=pairs,
                          fss_matrix=[fss], cka_matrix=[cka], rs=rs, partial_rs=partial, models={}, skipped=[],
                          seed=0, notes=["2 image(s) without a true label left out of RS"])


def test_layer_and_relevance_views_draw_the_engines_dataset_metrics(window, dataset_metrics):
    window.session.set_dataset_metrics(dataset_metrics, "/data/shapes")
    layers, relevance = window.metrics.layers, window.metrics.relevance

    fss = np.array([[v.value for v in row] for row in dataset_metrics.fss_matrix[0].values])
    np.testing.assert_allclose(layers.fss_heatmap.matrix, fss)
    cka = np.array([[v.value for v in row] for row in dataset_metrics.cka_matrix[0].values])
    np.testing.assert_allclose(layers.cka_heatmap.matrix, cka)
    assert layers.pair_box.currentText() == "T–S"
    x, y = layers.fss_plot.series["T–S"]
    np.testing.assert_allclose(y, [0.9, 0.8])
    assert layers.table.rowCount() == 6
    assert layers.table.rows()[1] == ["T–S", "layer1", "layer3", "0.4", "0.3", "0.5", "0.3", "0.2", "0.4"]
    assert "n = 40 images (38 labelled)" in window.metrics.dataset_runner.status.text()

    np.testing.assert_allclose(relevance.rs_plot.series["Teacher"][1], [0.2, 0.3, 0.4])
    np.testing.assert_allclose(relevance.rs_plot.series["Student"][1], [0.15, 0.3])
    np.testing.assert_allclose(relevance.partial_plot.series["RS(S|T)"][1], [0.3])
    assert relevance.partial_table.rowCount() == 3
    assert "2 image(s) without a true label" in relevance.notes.text()
    tsv = relevance.rs_table.copy_to_clipboard().splitlines()
    assert tsv[0] == "model\tstage\tRS\tlow\thigh\tnote" and tsv[1].startswith("Teacher\tlayer1\t0.2\t")


@pytest.fixture()
def vam_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = get_architecture("resnet8").build(4)
    add_vam(model, groups=4)
    state = model.state_dict()
    for key in state:
        if key.endswith(".vam_theta"):
            state[key] = torch.randn_like(state[key]) * 2
    path = tmp_path / "vam_student.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture()
def kdexplainer_checkpoint(tmp_path):
    torch.manual_seed(1)
    model = KDExplainerNet(4)
    with torch.no_grad():
        for theta in model.routing:
            theta.copy_(torch.randn_like(theta) * 3)
    path = tmp_path / "kdexplainer.pth"
    torch.save(model.state_dict(), path)
    write_sidecar(path, Preprocessing(input_size=32, class_names=CLASSES, source="sidecar"))
    return path, model


def test_vam_view_shows_attention_per_layer_and_entropy_over_depth(window, qtbot, vam_checkpoint, tmp_path):
    path, state = vam_checkpoint
    plain = save_resnet8(tmp_path / "plain.pth", 7)
    window.slots["teacher"].load(str(plain))
    window.session.add_checkpoint(str(path))
    wait_idle(qtbot, window)
    view = window.metrics.vam

    expected = layer_attention(state)
    assert view.picker.combo.currentText() == "vam_student.pth"
    assert view.grid.titles == [layer.layer for layer in expected]
    assert view.table.rowCount() == len(expected)
    first = view.table.rows()[0]
    assert first[:3] == ["vam_student.pth", expected[0].layer, "4×4"]
    assert float(first[3]) == pytest.approx(expected[0].mean_row_entropy, abs=1e-3)
    assert "Teacher (plain.pth): no VAM parameters" not in view.message.text()  # a VAM model was found
    assert "1 VAM model(s)" in view.message.text()
    assert window.session.attention["Teacher (plain.pth)"].vam_reason.startswith("no VAM parameters")


def test_kdexplainer_view_shows_routing_paths_and_the_hard_tree(window, qtbot, kdexplainer_checkpoint):
    path, model = kdexplainer_checkpoint
    window.session.add_checkpoint(str(path))
    wait_idle(qtbot, window)
    view = window.metrics.routing

    matrices = routing_matrices(model)
    assert view.picker.combo.currentText() == "kdexplainer.pth"
    assert view.routing_grid.titles == ["level 1 → 2", "level 2 → 3", "level 3 → class heads"]
    assert view.path_grid.titles == ["class paths, level 1", "class paths, level 2", "class paths, level 3"]
    assert view.table.rowCount() == 3 and view.table.rows()[2][1] == "4×8"
    record = window.session.attention["kdexplainer.pth"]
    for shown, expected in zip(record.routing, matrices):
        np.testing.assert_allclose(shown, expected)
    classes = [key for key in view.tree_positions if key[0] == 3]
    assert len(classes) == 4 and all(view.tree_positions[key][1] == -3 for key in classes)
    assert record.class_names == CLASSES


def test_tree_layout_puts_each_expert_above_the_children_that_read_it():
    class Tree:
        parents = (np.array([0, 0, 1]), np.array([2, 2, 0, 1]))  # level 1 → level 2, level 2 → 4 classes

        def dendrogram_order(self):
            return [2, 3, 0, 1]

    positions, edges = tree_layout(Tree(), [2, 3])
    assert positions[(2, 2)] == (0.0, -2.0) and positions[(2, 0)] == (2.0, -2.0)
    assert positions[(1, 2)] == (2.5, -1.0)  # read by classes 0 and 1, at x = 2 and 3
    assert positions[(1, 0)] == (0.0, -1.0) and positions[(1, 1)] == (1.0, -1.0)
    assert positions[(0, 0)] == (0.5, 0.0) and positions[(0, 1)] == (2.5, 0.0)
    assert ((2, 0), (1, 2)) in edges and ((1, 2), (0, 1)) in edges
    assert len(edges) == 3 + 4


def test_results_of_a_replaced_model_are_dropped_at_once(window, qtbot, model_files, image_tree, dataset_metrics):
    load_models(qtbot, window, model_files, roles=("teacher", "student"))
    window.gallery.add_paths([str(image_tree)])
    wait_idle(qtbot, window)
    session = window.session
    assert session.comparison is not None
    session.set_dataset_metrics(dataset_metrics, str(image_tree))  # the old pair's dataset metrics
    cleared = []
    session.datasetMetricsChanged.connect(lambda: cleared.append(session.dataset_metrics))
    student = session.models["student"]
    session.set_model("student", None)
    assert session.comparison is None and session.dataset_metrics is None and cleared == [None]
    assert window.canvas.panels["student"].values is None
    assert window.metrics.layers.table.rowCount() == 0
    session.set_model("student", student)
    wait_idle(qtbot, window)
    assert session.comparison is not None and session.comparison.panels["student"].values is not None


def test_interval_plots_show_the_measures_own_range(qtbot):
    """FSS and RS near 1 are drawn on 0…1, not on an axis that autoscales to 0.999…1.0002 (issue 27, item 7)."""
    from kdx_gui.widgets.plots import IntervalPlot

    plot = IntervalPlot("FSS", "R²*", bounds=(0.0, 1.0))
    qtbot.addWidget(plot)
    plot.add_series("T–S", [1, 2], [0.9995, 1.0001], [0.999, 0.9998], [1.0, 1.0002], "#1f77b4")
    low, high = plot.plot_item.viewRange()[1]
    assert low <= 0.0 and 1.0002 <= high < 1.5
    free = IntervalPlot("KL", "nats")
    qtbot.addWidget(free)
    free.add_series("T–S", [1], [5.0], [4.9], [5.1], "#1f77b4")
    assert free.plot_item.viewRange()[1][0] > 4.0  # a measure without bounds still zooms to its values
