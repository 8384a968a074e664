"""KDExplainer routing (METHODS §8): per-level routing heatmaps, per-class routing paths, the hard
(argmax) tree with the classes as leaves, and the mean routing entropy per level."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from kdx_gui.docks.metrics.matrix_grid import AttentionTab, MatrixGrid, reasons
from kdx_gui.state.session import AttentionRecord, Session
from kdx_gui.state.settings import AppSettings
from kdx_gui.widgets.tables import CopyableTable


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


class RoutingView(AttentionTab):
    def __init__(self, session: Session, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(session, settings, parent)
        self.routing_grid = MatrixGrid(columns=4, bar_label="routing weight A (0…1)")
        self.path_grid = MatrixGrid(columns=4, bar_label="class-path probability (0…1)")
        self.tree_plot = pg.PlotWidget()
        tree_item = self.tree_plot.getPlotItem()
        tree_item.setTitle("hard routing tree (argmax), classes as leaves", size="9pt")
        tree_item.hideAxis("bottom")
        tree_item.setMouseEnabled(False, False)
        tree_item.hideButtons()
        self.tree_plot.setMinimumHeight(200)
        self.table = CopyableTable(["routing", "children × parents", "mean normalised entropy"])
        self.tree_positions: dict = {}
        self.lay_out([self.routing_grid.wrapped(), self.path_grid.wrapped(), self.tree_plot, self.table])

    def routing_records(self) -> dict[str, AttentionRecord]:
        return {name: r for name, r in self.session.attention.items() if r.routing}

    def refresh(self, *_args) -> None:
        records = self.routing_records()
        self.picker.set_names(list(records))
        if self.session.engine_ready and not self.session.engine.has("hme"):
            self.message.setText(self.session.engine.why_missing("hme"))
        elif not records:
            others = reasons(self.session.attention, "routing_reason")
            self.message.setText("No KDExplainer model. Use Add checkpoint… to open one"
                                 + (f" ({others})" if others else ""))
        else:
            self.message.setText("Routing A = softmax(θ/t) at the reference temperature (rows: children, columns: "
                                 "parents). Class paths: rows = classes, columns = that level's experts.")
        self.draw_picked()

    def draw_picked(self, *_args) -> None:
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
