"""VAM attention and KDExplainer routing views, read from the weights of the slots' models and of any
extra checkpoint the user adds (a VAM student or a KDExplainer need not sit in a slot).

VAM: per-layer G_out×G_in attention heatmaps of one model, and the normalised row entropy over depth
with every VAM model overlaid. KDExplainer: per-level routing heatmaps, per-class routing paths and
the hard (argmax) tree with the classes as leaves, and the mean routing entropy per level.
"""
from __future__ import annotations


import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from .jobs import JobRunner
from .panel_rendering import colormap_lut
from .plots import SMALL_FONT, FittedLabel, plain_axes
from .session import AttentionRecord, Session
from .settings import AppSettings
from .tables import CopyableTable

SERIES_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
GRID_COLUMNS = 3
MAX_WRITTEN, MAX_WRITTEN_COLUMNS = 4, 3  # cell values are written on small matrices only, where they fit


class AttentionReader(QObject):
    """Re-reads attention and routing whenever the set of checkpoints changes."""

    def __init__(self, session: Session, jobs: JobRunner, parent: QObject | None = None):
        super().__init__(parent)
        self.session, self.jobs = session, jobs
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(30)
        self._timer.timeout.connect(self.read)
        for signal in (session.modelChanged, session.attentionSourcesChanged, session.engineReady):
            signal.connect(self._sources_changed)

    def _sources_changed(self, *_args) -> None:
        self._timer.start()

    def read(self) -> None:
        if not self.session.engine_ready:
            return
        sources, engine = self.session.attention_sources(), self.session.engine

        def work(progress):
            from . import analysis

            return analysis.read_attention(sources, engine, progress)

        self.jobs.submit("reading VAM attention and routing", work, key="attention",
                         on_success=self.session.set_attention)


class MatrixGrid(pg.GraphicsLayoutWidget):
    """Small titled heatmaps (values 0…1) in a grid, each cell's value written when the matrix is small."""

    def __init__(self, columns: int = GRID_COLUMNS, write_values: bool = True, parent=None):
        super().__init__(parent)
        self.setBackground("w")
        self.columns = columns
        self.write_values = write_values
        self.lut = colormap_lut("viridis")
        self.titles: list[str] = []
        self.setMinimumHeight(160)

    def set_matrices(self, items: list[tuple[str, np.ndarray, str]]) -> None:
        """``items``: (title, matrix, axis note) per heatmap."""
        self.clear()
        self.titles = [title for title, _, _ in items]
        columns = max(1, min(self.columns, len(items)))
        for column in range(columns):
            self.ci.layout.setColumnStretchFactor(column, 1)
        for index, (title, matrix, note) in enumerate(items):
            cell = self.addLayout(row=index // columns, col=index % columns)
            cell.addItem(FittedLabel(title, 30, size="8pt", color="#222222"), row=0, col=0)
            view = cell.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMenu=False)
            view.setMouseEnabled(False, False)
            image = pg.ImageItem(matrix, levels=(0.0, 1.0), lut=self.lut)
            image.setRect(QRectF(0, 0, matrix.shape[1], matrix.shape[0]))
            view.addItem(image)
            if self.write_values and matrix.shape[0] <= MAX_WRITTEN and matrix.shape[1] <= MAX_WRITTEN_COLUMNS:
                for (i, j), value in np.ndenumerate(matrix):
                    text = pg.TextItem(f"{value:.2f}", color="k" if value > 0.55 else "w", anchor=(0.5, 0.5))
                    text.setFont(SMALL_FONT)
                    text.setPos(j + 0.5, i + 0.5)
                    view.addItem(text)
            cell.addItem(FittedLabel(note, 16, size="8pt", color="#555555"), row=2, col=0)


class CheckpointPicker(QWidget):
    """Which checkpoint a view shows, and a button to add another checkpoint file."""

    def __init__(self, session: Session, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.settings = session, settings
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(24)
        self.add_button = QPushButton("Add checkpoint…")
        self.add_button.setToolTip("A VAM or KDExplainer checkpoint to show here (it does not take a model slot)")
        self.add_button.clicked.connect(self.add_dialog)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Model"))
        row.addWidget(self.combo, 1)
        row.addWidget(self.add_button)

    def add_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a VAM or KDExplainer checkpoint",
                                              self.settings.last_folder("models"),
                                              "Checkpoints (*.pt *.pth *.pth.tar *.ckpt);;All files (*)")
        if path:
            self.settings.remember_folder("models", path)
            self.session.add_checkpoint(path)

    def set_names(self, names: list[str]) -> None:
        current = self.combo.currentText()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(names)
        if current in names:
            self.combo.setCurrentText(current)
        self.combo.blockSignals(False)


def _reasons(records: dict[str, AttentionRecord], field: str) -> str:
    return "; ".join(f"{name}: {getattr(r, field)}" for name, r in records.items())


class VamView(QWidget):
    def __init__(self, session: Session, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.picker = CheckpointPicker(session, settings)
        self.picker.combo.currentIndexChanged.connect(self._draw_layers)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.entropy_plot = pg.PlotWidget()
        item = self.entropy_plot.getPlotItem()
        item.setTitle("normalised row entropy over depth (1 = uniform attention)", size="9pt")
        item.setLabel("left", "H(A row) / log G_in")
        item.setLabel("bottom", "VAM layer (by depth)")
        item.setYRange(0, 1.05, padding=0)
        item.showGrid(y=True, alpha=0.3)
        item.setMouseEnabled(False, False)
        item.hideButtons()
        plain_axes(item)
        self.legend = item.addLegend(offset=(-10, -10))
        self.entropy_plot.setMinimumHeight(170)
        self.grid = MatrixGrid(columns=4, write_values=False)
        self.table = CopyableTable(["model", "layer", "groups (out×in)", "mean row entropy"])
        splitter = QSplitter(Qt.Orientation.Vertical)
        for widget in (self.entropy_plot, self.grid, self.table):
            splitter.addWidget(widget)
        splitter.setSizes([220, 420, 120])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.picker)
        layout.addWidget(self.message)
        layout.addWidget(splitter, 1)
        session.attentionChanged.connect(self.refresh)
        session.engineReady.connect(self.refresh)
        self.refresh()

    def vam_records(self) -> dict[str, AttentionRecord]:
        return {name: r for name, r in self.session.attention.items() if r.vam_layers}

    def refresh(self, *_args) -> None:
        records = self.vam_records()
        self.picker.set_names(list(records))
        item = self.entropy_plot.getPlotItem()
        item.clear()
        self.legend.clear()
        if self.session.engine_ready and not self.session.engine.has("vam"):
            self.message.setText(self.session.engine.why_missing("vam"))
        elif not records:
            others = _reasons(self.session.attention, "vam_reason")
            self.message.setText("No model with VAM parameters. Load a VAM student in a slot or use Add "
                                 "checkpoint…" + (f" ({others})" if others else ""))
        else:
            self.message.setText(f"{len(records)} VAM model(s). Heatmaps: attention A = softmax(θ/τ), rows = "
                                 "output groups, columns = input groups; H̄ = mean normalised row entropy.")
        rows = []
        for index, (name, record) in enumerate(records.items()):
            entropy = [layer.mean_row_entropy for layer in record.vam_layers]
            colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
            item.plot(list(range(1, len(entropy) + 1)), entropy, pen=pg.mkPen(colour, width=2), symbol="o",
                      symbolSize=6, symbolBrush=colour, symbolPen=colour, name=name)
            rows += [[name, layer.layer, "×".join(map(str, layer.attention.shape)), layer.mean_row_entropy]
                     for layer in record.vam_layers]
        self.table.set_rows(rows)
        self._draw_layers()

    def _draw_layers(self, *_args) -> None:
        record = self.vam_records().get(self.picker.combo.currentText())
        if record is None:
            self.grid.set_matrices([])
            return
        self.grid.set_matrices([(layer.layer, layer.attention, f"H̄ = {layer.mean_row_entropy:.2f}")
                                for layer in record.vam_layers])


def tree_layout(tree, level_sizes: list[int]) -> tuple[dict, list]:
    """Node positions and edges of the hard routing tree drawn as a dendrogram.

    Nodes are ``(level, index)`` with level 0…L−1 the expert levels and L the classes; classes sit at
    x = their dendrogram order, each expert above the mean x of the children that read it (experts no
    child reads go to the right). Returns ({node: (x, y)}, [(child, parent)]) with y = −level.
    """
    levels = len(level_sizes)
    positions: dict[tuple[int, int], tuple[float, float]] = {}
    for x, k in enumerate(tree.dendrogram_order()):
        positions[(levels, k)] = (float(x), -float(levels))
    live = set(positions)
    edges = []
    for level in range(levels - 1, -1, -1):
        children: dict[int, list[float]] = {}
        for child, parent in enumerate(tree.parents[level]):
            edges.append(((level + 1, child), (level, int(parent))))
            if (level + 1, child) in live:
                children.setdefault(int(parent), []).append(positions[(level + 1, child)][0])
        used = {expert: float(np.mean(xs)) for expert, xs in children.items()}
        right = max([positions[node][0] for node in live] + list(used.values())) + 1
        for expert in range(level_sizes[level]):
            if expert in used:
                positions[(level, expert)] = (used[expert], -float(level))
                live.add((level, expert))
            else:  # no class reads it: set aside to the right of the tree
                positions[(level, expert)] = (right, -float(level))
                right += 1
    return positions, edges


class RoutingView(QWidget):
    def __init__(self, session: Session, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.picker = CheckpointPicker(session, settings)
        self.picker.combo.currentIndexChanged.connect(self._draw)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.routing_grid = MatrixGrid(columns=4)
        self.path_grid = MatrixGrid(columns=4)
        self.tree_plot = pg.PlotWidget()
        tree_item = self.tree_plot.getPlotItem()
        tree_item.setTitle("hard routing tree (argmax), classes as leaves", size="9pt")
        tree_item.hideAxis("bottom")
        tree_item.setMouseEnabled(False, False)
        tree_item.hideButtons()
        self.tree_plot.setMinimumHeight(200)
        self.table = CopyableTable(["routing", "children × parents", "mean normalised entropy"])
        splitter = QSplitter(Qt.Orientation.Vertical)
        for widget in (self.routing_grid, self.path_grid, self.tree_plot, self.table):
            splitter.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.picker)
        layout.addWidget(self.message)
        layout.addWidget(splitter, 1)
        self.tree_positions: dict = {}
        session.attentionChanged.connect(self.refresh)
        session.engineReady.connect(self.refresh)
        self.refresh()

    def routing_records(self) -> dict[str, AttentionRecord]:
        return {name: r for name, r in self.session.attention.items() if r.routing}

    def refresh(self, *_args) -> None:
        records = self.routing_records()
        self.picker.set_names(list(records))
        if self.session.engine_ready and not self.session.engine.has("hme"):
            self.message.setText(self.session.engine.why_missing("hme"))
        elif not records:
            others = _reasons(self.session.attention, "routing_reason")
            self.message.setText("No KDExplainer model. Use Add checkpoint… to open one"
                                 + (f" ({others})" if others else ""))
        else:
            self.message.setText("Routing A = softmax(θ/t) at the reference temperature (rows: children, columns: "
                                 "parents). Class paths: rows = classes, columns = that level's experts.")
        self._draw()

    def _draw(self, *_args) -> None:
        record = self.routing_records().get(self.picker.combo.currentText())
        tree_item = self.tree_plot.getPlotItem()
        tree_item.clear()
        self.tree_positions = {}
        if record is None:
            self.routing_grid.set_matrices([])
            self.path_grid.set_matrices([])
            self.table.set_rows([])
            return
        levels = len(record.routing)
        names = [f"level {i + 1} → {i + 2}" if i < levels - 1 else f"level {i + 1} → class heads"
                 for i in range(levels)]
        self.routing_grid.set_matrices([(name, matrix, "×".join(map(str, matrix.shape)))
                                        for name, matrix in zip(names, record.routing)])
        self.path_grid.set_matrices([(f"class paths, level {i + 1}", paths, "×".join(map(str, paths.shape)))
                                     for i, paths in enumerate(record.class_paths)])
        self.table.set_rows([[name, "×".join(map(str, m.shape)), e]
                             for name, m, e in zip(names, record.routing, record.routing_entropy)])
        self._draw_tree(record)

    def _draw_tree(self, record: AttentionRecord) -> None:
        item = self.tree_plot.getPlotItem()
        level_sizes = [m.shape[1] for m in record.routing]
        positions, edges = tree_layout(record.tree, level_sizes)
        self.tree_positions = positions
        class_level = len(level_sizes)
        used = {parent for _, parent in edges if _reaches_class(parent, edges, class_level)}
        for child, parent in edges:
            if child[0] != class_level and child not in used:
                continue  # an expert no class reads: shown aside, without its edge
            (x0, y0), (x1, y1) = positions[child], positions[parent]
            middle = (y0 + y1) / 2
            item.plot([x0, x0, x1, x1], [y0, middle, middle, y1], pen=pg.mkPen("#444444", width=2))
        classes = len(record.tree.parents[-1])
        class_names = record.class_names if len(record.class_names) == classes else \
            tuple(f"class {k}" for k in range(classes))
        for (level, index), (x, y) in positions.items():
            is_class = level == len(level_sizes)
            colour = "#d62728" if is_class else ("#1f77b4" if (level, index) in used else "#bbbbbb")
            item.plot([x], [y], pen=None, symbol="o" if is_class else "s", symbolSize=10, symbolBrush=colour,
                      symbolPen=colour)
            label = class_names[index] if is_class else f"E{level + 1}.{index + 1}"
            text = pg.TextItem(label, color="k", anchor=(0.5, -0.3) if is_class else (0.5, 1.2))
            text.setPos(x, y)
            item.addItem(text)
        item.getAxis("left").setTicks([[(-float(level), f"level {level + 1}") for level in range(len(level_sizes))]
                                       + [(-float(len(level_sizes)), "classes")]])
        item.setYRange(-len(level_sizes) - 0.8, 0.6, padding=0)


def _reaches_class(node, edges, class_level: int) -> bool:
    """Whether some class reads (through the tree) the expert ``node``."""
    frontier = {node}
    while frontier:
        children = {child for child, parent in edges if parent in frontier}
        if any(child[0] == class_level for child in children):
            return True
        frontier = children
    return False
