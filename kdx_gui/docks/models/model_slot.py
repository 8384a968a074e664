"""A model slot (Teacher, Student or Base): drop or open a model file, see what it is, pick its layer.

Loading runs as a job; a file that fails leaves the previous model in place and says why in the slot.
A full pickled module is loaded only after the user explicitly trusts the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from kdx_gui.state.jobs import JobRunner
from kdx_gui.state.session import ROLE_COLOURS, ROLE_TITLES, LoadedModel, Session
from kdx_gui.state.settings import AppSettings
from kdx_gui.widgets.drag_drop import local_files

MODEL_FILTER = "Models (*.pt *.pth *.pth.tar *.ckpt *.ts *.pt2 *.safetensors *.onnx *.bin);;All files (*)"
FIELDS = ("file", "format", "architecture", "classes", "input", "parameters")
FIELD_LABELS = {"file": "File", "format": "Format", "architecture": "Architecture", "classes": "Classes",
                "input": "Input", "parameters": "Parameters"}



@dataclass(frozen=True)
class NeedsTrust:
    """A load refused because the file is a full pickle: the engine's message, for the consent dialog."""

    message: str


def ask_to_trust(parent: QWidget, role_title: str, message: str) -> bool:
    """Ask before running code from a model file; the default answer is No."""
    answer = QMessageBox.question(
        parent,
        f"Trust this {role_title} model file?",
        f"{message}\n\nLoading it runs Python code stored in the file, which can do anything your "
        "account can do. Load it only if you trust where it came from.\n\nI trust this file: load it?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class ModelSlot(QFrame):
    """One role's model: a drop target with the model's facts, its target layer and a status line."""

    def __init__(self, role: str, session: Session, jobs: JobRunner, settings: AppSettings,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.role, self.session, self.jobs, self.settings = role, session, jobs, settings
        self.title = ROLE_TITLES[role]
        self.setObjectName(f"slot_{role}")
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._set_highlight(False)

        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip(f"Open a model file as the {self.title}")
        self.open_button.clicked.connect(self.open_dialog)
        self.clear_button = QToolButton()
        self.clear_button.setText("×")
        self.clear_button.setToolTip(f"Remove the {self.title} model")
        self.clear_button.clicked.connect(self.clear)
        heading = QLabel(f"<b style='color:{ROLE_COLOURS[role]}'>{self.title}</b>")
        header = QHBoxLayout()
        header.addWidget(heading)
        header.addStretch(1)
        header.addWidget(self.open_button)
        header.addWidget(self.clear_button)

        self.values: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setHorizontalSpacing(8)
        form.setVerticalSpacing(2)
        for name in FIELDS:
            label = QLabel()
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(True)
            self.values[name] = label
            form.addRow(FIELD_LABELS[name], label)
        self.layer_picker = QComboBox()
        self.layer_picker.setEditable(True)
        self.layer_picker.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.layer_picker.setToolTip("Target layer for the CAM maps: pick one or type a layer name")
        self.layer_picker.setMinimumContentsLength(12)
        self.layer_picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.layer_picker.activated.connect(self._layer_chosen)
        self.layer_picker.lineEdit().editingFinished.connect(self._layer_chosen)
        form.addRow("Target layer", self.layer_picker)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addLayout(form)
        layout.addWidget(self.status)
        session.modelChanged.connect(self._model_changed)
        self.refresh()

    def clear(self) -> None:
        self.session.set_model(self.role, None)

    # --- loading -------------------------------------------------------------------------------
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Open {self.title} model", self.settings.last_folder("models"),
                                              MODEL_FILTER)
        if path:
            self.load(path)

    def load(self, path: str, trust_pickle: bool = False) -> None:
        """Load ``path`` in a job; on success it replaces the slot's model."""
        path = str(path)
        self.settings.remember_folder("models", path)
        self.set_status(f"loading {Path(path).name}…")

        def work(progress):
            from kdx_gui.state import analysis
            from kdx_engine.models import UntrustedPickleError

            try:
                return analysis.load_slot_model(path, trust_pickle, progress)
            except UntrustedPickleError as exc:
                return NeedsTrust(str(exc))

        name = Path(path).name
        self.jobs.submit(f"loading {self.title} model", work, key=f"load-{self.role}",
                         on_success=lambda result: self._loaded(path, result),
                         on_failure=lambda message: self._failed(message if name in message else f"{name}: {message}"),
                         on_cancel=lambda: self._failed(f"{name}: loading cancelled"))

    def _loaded(self, path: str, result) -> None:
        if isinstance(result, NeedsTrust):
            if ask_to_trust(self, self.title, result.message):
                self.load(path, trust_pickle=True)
            else:
                self._failed(f"{result.message.split(';')[0]}; not loaded (not trusted)")
            return
        mismatch = self._class_mismatch(result)
        if mismatch:
            self._failed(mismatch)
            return
        self.session.set_model(self.role, result)

    def _class_mismatch(self, model: LoadedModel) -> str | None:
        """The engine's message when the model disagrees with the other slots on the classes."""
        from kdx_engine.models import ModelLoadError, check_same_classes  # loaded by the job that just ran

        others = [m.backend for r, m in self.session.loaded_models().items() if r != self.role]
        try:
            check_same_classes(*others, model.backend)
        except ModelLoadError as exc:
            return str(exc)
        return None

    def _failed(self, message: str) -> None:
        previous = self.session.models[self.role]
        kept = f" — kept {Path(previous.info.path).name}" if previous is not None else ""
        self.set_status(f"⚠ {message}{kept}", error=True)

    # --- drag and drop -------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        files = local_files(event)
        if len(files) == 1 and not Path(files[0]).is_dir():
            event.acceptProposedAction()
            self._set_highlight(True)
        else:
            event.ignore()

    def dragLeaveEvent(self, event) -> None:
        self._set_highlight(False)

    def dropEvent(self, event: QDropEvent) -> None:
        self._set_highlight(False)
        files = local_files(event)
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.load(files[0])

    def _set_highlight(self, on: bool) -> None:
        colour = ROLE_COLOURS[self.role] if on else "palette(mid)"
        self.setStyleSheet(f"ModelSlot {{ border: {2 if on else 1}px {'solid' if on else 'dashed'} {colour}; "
                           "border-radius: 4px; }")

    # --- view ----------------------------------------------------------------------------------
    def set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #b00020;" if error else "color: palette(text);")

    def _model_changed(self, role: str) -> None:
        if role == self.role:
            self.refresh()

    def refresh(self) -> None:
        model: LoadedModel | None = self.session.models[self.role]
        self.clear_button.setEnabled(model is not None)
        self.layer_picker.setEnabled(model is not None)
        if model is None:
            for label in self.values.values():
                label.setText("—")
            self.values["file"].setText(f"<i>drop a model file here or use Open…</i>")
            self.layer_picker.clear()
            self.set_status("")
            return
        info = model.info
        pre = info.preprocessing
        self.values["file"].setText(Path(info.path).name)
        self.values["file"].setToolTip(f"{info.path}\nSHA-256 {info.sha256}")
        self.values["format"].setText(f"{info.format} ({info.backend})")
        self.values["architecture"].setText(info.architecture or "unknown (module loaded as saved)")
        names = pre.class_names
        shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
        self.values["classes"].setText(f"{info.num_classes}: {shown}")
        self.values["classes"].setToolTip("\n".join(names))
        resize = f", resize {pre.resize}" if pre.resize else ""
        self.values["input"].setText(f"{pre.input_size}×{pre.input_size}{resize} ({pre.source})")
        self.values["parameters"].setText(f"{info.num_parameters:,}" if info.num_parameters is not None else "—")
        self._fill_layers(model)
        notes = list(info.notes) + ([model.note] if model.note else [])
        self.set_status("loaded" + (" · " + "; ".join(notes) if notes else ""))

    def _fill_layers(self, model: LoadedModel) -> None:
        self.layer_picker.blockSignals(True)
        self.layer_picker.clear()
        for layer in model.layers:
            if not layer.is_spatial:
                continue
            shape = "×".join(str(d) for d in layer.shape)
            self.layer_picker.addItem(f"{layer.name}  ({shape})", layer.name)
            self.layer_picker.setItemData(self.layer_picker.count() - 1,
                                          f"{layer.name}: output {shape}, stride {layer.stride}",
                                          Qt.ItemDataRole.ToolTipRole)
        index = self.layer_picker.findData(model.target_layer)
        if index >= 0:
            self.layer_picker.setCurrentIndex(index)
        else:
            self.layer_picker.setEditText(model.target_layer or "")
        self.layer_picker.lineEdit().setCursorPosition(0)  # the start of the name, not its tail
        self.layer_picker.blockSignals(False)

    def current_layer_text(self) -> str:
        """The layer name in the picker (items read "name  (C×H×W)"; a typed name stands alone)."""
        text = self.layer_picker.currentText().strip()
        return text.split()[0] if text else ""

    def _layer_chosen(self, *_args) -> None:
        model = self.session.models[self.role]
        name = self.current_layer_text()
        if model is None or not name or name == model.target_layer:
            return
        if name not in model.backend.layer_names():
            self.set_status(f"⚠ no layer named {name!r} in this model; kept {model.target_layer}", error=True)
            self._fill_layers(model)
            return
        self.session.set_target_layer(self.role, name)
