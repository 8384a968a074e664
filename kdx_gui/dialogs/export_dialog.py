"""File ▸ Export figure…: which images (current, selected, all shown), which columns, format and DPI,
and optionally a strip of dataset plots under the rows (dark knowledge, embeddings) over the dataset
folder; the export runs as a job through the engine's renderer, so it equals ``kdx export`` pixel for pixel."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QMessageBox,
    QSpinBox,
    QWidget,
)

from kdx_engine.roles import PANEL_KEYS, panel_title

IMAGE_CHOICES = {"current": "Current image", "selected": "Selected images", "shown": "All shown images"}
FORMATS = ("png", "svg", "pdf")
PLOT_CHOICES = {"kl": "Dark knowledge: KL(T‖S) and KL(T‖B) against τ", "embeddings": "Embeddings (PCA of each model)"}


@dataclass(frozen=True)
class ExportRequest:
    """What the user chose in the dialog."""

    images: str = "current"
    columns: tuple[str, ...] = PANEL_KEYS
    format: str = "png"
    dpi: int = 300
    plots: tuple[str, ...] = ()  # of PLOT_CHOICES, over the dataset folder


class ExportDialog(QDialog):
    """Choices for a figure panel; ``request()`` reads them."""

    def __init__(self, roles, dataset_folder: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export figure")
        form = QFormLayout(self)
        self.images = QComboBox()
        for key, text in IMAGE_CHOICES.items():
            self.images.addItem(text, key)
        form.addRow("Images (rows)", self.images)
        grid = QGridLayout()
        self.columns: dict[str, QCheckBox] = {}
        for index, key in enumerate(PANEL_KEYS):
            box = QCheckBox(panel_title(key, roles))
            box.setChecked(True)
            self.columns[key] = box
            grid.addWidget(box, index // 4, index % 4)
        columns = QWidget()
        columns.setLayout(grid)
        form.addRow("Columns", columns)
        self.format = QComboBox()
        self.format.addItems(list(FORMATS))
        form.addRow("Format", self.format)
        self.dpi = QSpinBox()
        self.dpi.setRange(72, 1200)
        self.dpi.setValue(300)
        self.dpi.setSuffix(" dpi")
        form.addRow("Resolution (PNG)", self.dpi)
        self.plots: dict[str, QCheckBox] = {}
        for key, text in PLOT_CHOICES.items():
            box = QCheckBox(text)
            box.setEnabled(dataset_folder is not None)
            box.setToolTip(f"over the images of {dataset_folder}" if dataset_folder else
                           "needs a dataset folder: Analysis ▸ Dataset metrics… sets it")
            self.plots[key] = box
            form.addRow("Plots under the rows" if key == "kl" else "", box)
        self.format.currentTextChanged.connect(lambda fmt: self.dpi.setEnabled(fmt == "png"))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def request(self) -> ExportRequest:
        columns = tuple(key for key, box in self.columns.items() if box.isChecked())
        plots = tuple(key for key, box in self.plots.items() if box.isChecked() and box.isEnabled())
        return ExportRequest(self.images.currentData(), columns, self.format.currentText(), self.dpi.value(), plots)


def ask_export(window) -> tuple[ExportRequest, str] | None:
    """Run the dialog and the file chooser; None when the user cancels (or declines to overwrite)."""
    dialog = ExportDialog(tuple(window.session.loaded_models()), window.session.dataset_folder, window)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    request = dialog.request()
    if not request.columns:
        window.show_error("Export figure", "Choose at least one column.")
        return None
    start = str(Path(window.settings.last_folder("export")) / f"kdx_figure.{request.format}")
    path, _ = QFileDialog.getSaveFileName(window, "Export figure", start, f"{request.format.upper()} (*.{request.format})",
                                          options=QFileDialog.Option.DontConfirmOverwrite)
    if not path:
        return None
    if not path.lower().endswith(f".{request.format}"):
        path += f".{request.format}"
    if not confirm_overwrite(window, path):
        return None
    window.settings.remember_folder("export", str(Path(path).parent))
    return request, path


def confirm_overwrite(window, path: str) -> bool:
    """Ask before replacing an existing figure or its data folder."""
    from kdx_engine.comparison.export import data_folder

    existing = [p for p in (Path(path), data_folder(Path(path))) if p.exists()]
    if not existing:
        return True
    answer = QMessageBox.question(window, "Export figure", "Replace " + " and ".join(p.name for p in existing) + "?")
    return answer == QMessageBox.StandardButton.Yes
