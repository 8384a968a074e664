"""Analysis ▸ Scan dataset…: which folder to scan, where the table goes, and what to measure."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from kdx_gui.scan.scan_jobs import ScanRequest


def default_out(dataset: str) -> str:
    """``<dataset>_kdx_scan`` beside the dataset folder."""
    path = Path(dataset)
    return str(path.with_name(f"{path.name}_kdx_scan")) if dataset else ""


class ScanDialog(QDialog):
    """Dataset and output folders, faithfulness steps and UniCAM; the CAM method is the canvas's."""

    def __init__(self, dataset: str = "", method: str = "gradcam", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Scan dataset")
        self.method = method
        self.dataset = QLineEdit(dataset)
        self.out = QLineEdit(default_out(dataset))
        self.dataset.textEdited.connect(lambda text: self.out.setText(default_out(text)))
        self.steps = QSpinBox()
        self.steps.setRange(0, 100)
        self.steps.setValue(20)
        self.steps.setToolTip("Deletion/insertion AUC steps per map (0: leave them out; each step is a forward)")
        self.unicam = QCheckBox("UniCAM distilled and residual maps (reference set drawn from the dataset)")
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020;")
        self.error.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("Dataset folder", self._with_browse(self.dataset, "Dataset folder"))
        form.addRow("Scan folder", self._with_browse(self.out, "Scan folder"))
        form.addRow("Method", QLabel(f"{method} (the canvas's method), each model at its target layer"))
        form.addRow("Faithfulness steps", self.steps)
        form.addRow(self.unicam)
        form.addRow(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Scan")
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _with_browse(self, edit: QLineEdit, title: str) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        button = QPushButton("Browse…")
        button.clicked.connect(lambda: self._browse(edit, title))
        row.addWidget(button)
        return box

    def _browse(self, edit: QLineEdit, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title, edit.text())
        if folder:
            edit.setText(folder)
            if edit is self.dataset:
                self.out.setText(default_out(folder))

    def request(self) -> ScanRequest:
        return ScanRequest(self.dataset.text().strip(), self.out.text().strip(), self.method, self.steps.value(),
                           self.unicam.isChecked())

    def problem(self) -> str | None:
        """Why the choice cannot be scanned (None: it can)."""
        request = self.request()
        if not request.dataset or not Path(request.dataset).is_dir():
            return f"{request.dataset or 'dataset folder'}: not a folder"
        if not request.out:
            return "choose a scan folder"
        if Path(request.out).exists() and not Path(request.out).is_dir():
            return f"{request.out}: is a file; choose a folder"
        return None

    def _accept(self) -> None:
        problem = self.problem()
        if problem:
            self.error.setText(problem)
            return
        self.accept()
