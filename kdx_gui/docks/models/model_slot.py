"""A model slot (Teacher, Student or Base): drop or open a model file, see what it is, pick its layer.

Loading runs as a job; a file that fails leaves the previous model in place and says why in the slot.
A full pickled module is loaded only after the user explicitly trusts the file. A model whose class
count differs from the other slots' replaces them only after one confirmation; a file holding an
mdistiller student and teacher is offered as two models. "Preprocessing…" edits and saves the
sidecar (and the architecture of a state_dict), then reloads the model.
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
FIELDS = ("file", "format", "architecture", "classes", "input", "output", "parameters")
FIELD_LABELS = {"file": "File", "format": "Format", "architecture": "Architecture", "classes": "Classes",
                "input": "Input", "output": "Output", "parameters": "Parameters"}



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


@dataclass(frozen=True)
class TwoModels:
    """A file holding both a student and a teacher (mdistiller): the model loaded by default and the
    roles the file holds, for the one question whether to fill both slots."""

    model: LoadedModel
    roles: tuple[str, ...]


STATE_DICT_FORMATS_NOT = ("torchscript", "torch_export", "onnx")


def ask_to_replace(parent: QWidget, role_title: str, classes: int, others: list[str], other_classes: int) -> bool:
    """Ask before a model with another class count clears the other slots; the default answer is No."""
    removed = " and ".join(others) if len(others) < 3 else ", ".join(others[:-1]) + " and " + others[-1]
    answer = QMessageBox.question(
        parent,
        "Replace the loaded models?",
        f"Replace the loaded models with this {classes}-class {role_title}? The {removed} "
        f"({other_classes} classes) will be removed.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


def ask_two_models(parent: QWidget, file_name: str, roles: tuple[str, ...]) -> bool:
    """Ask whether a file with a student and a teacher fills the Student and Teacher slots."""
    answer = QMessageBox.question(
        parent,
        "Load both models?",
        f"{file_name} holds two models ({' and '.join(roles)}, as mdistiller saves them).\n\n"
        "Load its student into the Student slot and its teacher into the Teacher slot?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.Yes,
    )
    return answer == QMessageBox.StandardButton.Yes


def run_preprocessing_dialog(dialog) -> bool:
    """Show the dialog modally; True when OK saved the sidecar (tests replace this)."""
    return dialog.exec() == dialog.DialogCode.Accepted


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
        self.preprocessing_button = QPushButton("Preprocessing…")
        self.preprocessing_button.setToolTip(f"Show and edit the {self.title}'s preprocessing and architecture; "
                                             "saved to the model's .kdx.json sidecar")
        self.preprocessing_button.clicked.connect(self.edit_preprocessing)
        self.clear_button = QToolButton()
        self.clear_button.setText("×")
        self.clear_button.setToolTip(f"Remove the {self.title} model")
        self.clear_button.clicked.connect(self.clear)
        heading = QLabel(f"<b style='color:{ROLE_COLOURS[role]}'>{self.title}</b>")
        header = QHBoxLayout()
        header.addWidget(heading)
        header.addStretch(1)
        header.addWidget(self.open_button)
        header.addWidget(self.preprocessing_button)
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
        self.warning = QLabel()
        self.warning.setObjectName("preprocessing_warning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #a05a00;")
        self.warning.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warning.hide()
        self.load_options: dict[str, str] = {}  # the loader's which/arch of the model in the slot

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(self.warning)
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

    def load(self, path: str, trust_pickle: bool = False, which: str | None = None, arch: str | None = None,
             on_failure=None) -> None:
        """Load ``path`` in a job; on success it replaces the slot's model. ``which`` picks the student
        or teacher of a file holding both (without it such a file is offered as two models); ``arch``
        names the architecture of a state_dict; ``on_failure`` runs when the model is not loaded."""
        path = str(path)
        self.settings.remember_folder("models", path)
        name = Path(path).name
        self.set_status(f"loading {name}" + (f" ({which})" if which else "") + "…")

        def work(progress):
            from kdx_engine.models import UntrustedPickleError
            from kdx_gui.state import analysis

            try:
                model = analysis.load_slot_model(path, trust_pickle, progress, which=which, arch=arch)
            except UntrustedPickleError as exc:
                return NeedsTrust(str(exc))
            if which is None:
                from kdx_engine.models import models_in_file

                roles = tuple(models_in_file(path))  # ("student", "teacher") for an mdistiller checkpoint
                if roles:
                    return TwoModels(model, roles)
            return model

        def failed(message: str) -> None:
            self._failed(message)
            if on_failure is not None:
                on_failure()

        options = {k: v for k, v in (("which", which), ("arch", arch)) if v}
        self.jobs.submit(f"loading {self.title} model", work, key=f"load-{self.role}",
                         on_success=lambda result: self._loaded(path, result, options, failed),
                         on_failure=lambda message: failed(message if name in message else f"{name}: {message}"),
                         on_cancel=lambda: failed(f"{name}: loading cancelled"))

    def _loaded(self, path: str, result, options: dict | None = None, failed=None) -> None:
        failed = failed or self._failed
        options = dict(options or {})
        if isinstance(result, NeedsTrust):
            if ask_to_trust(self, self.title, result.message):
                self.load(path, trust_pickle=True)
            else:
                failed(f"{result.message.split(';')[0]}; not loaded (not trusted)")
            return
        if isinstance(result, TwoModels):
            if ask_two_models(self, Path(path).name, result.roles) and self._fill_two_slots(path, result.model):
                return
            mine = "teacher" if self.role == "teacher" and "teacher" in result.roles else "student"
            if mine != "student":  # the default load is the student: this slot's own model is the teacher
                self.load(path, which=mine, arch=options.get("arch"))
                return
            options["which"] = mine
            result = result.model
        mismatch = self._class_mismatch(result)
        if mismatch:
            others = {r: m for r, m in self.session.loaded_models().items() if r != self.role}
            other_classes = next(iter(others.values())).info.num_classes
            if not ask_to_replace(self, self.title, result.info.num_classes,
                                  [ROLE_TITLES[r] for r in others], other_classes):
                failed(f"{mismatch}; not loaded (the other models were kept)")
                return
            for role in others:
                self.session.set_model(role, None)
        self.load_options = options
        self.session.set_model(self.role, result)

    def _sibling(self, role: str) -> "ModelSlot | None":
        if role == self.role:
            return self
        return self.window().findChild(ModelSlot, f"slot_{role}")

    def _fill_two_slots(self, path: str, model: LoadedModel) -> bool:
        """Load the file's teacher into the Teacher slot and its student into the Student slot (after
        one question when the Base, or the models replaced, have another class count)."""
        teacher, student = self._sibling("teacher"), self._sibling("student")
        if teacher is None or student is None:
            return False
        loaded = self.session.loaded_models()
        others = [m for m in loaded.values() if m.info.num_classes != model.info.num_classes]
        if others:
            if not ask_to_replace(self, "Teacher and Student", model.info.num_classes,
                                  [ROLE_TITLES[r] for r in loaded], others[0].info.num_classes):
                self._failed(f"{Path(path).name} has {model.info.num_classes} classes but the loaded models have "
                             f"{others[0].info.num_classes}: not loaded (the other models were kept)")
                return True
            for role in loaded:
                self.session.set_model(role, None)
        if self.role not in ("teacher", "student"):
            self.set_status(f"{Path(path).name}: its models go to the Teacher and Student slots")
        teacher.load(path, which="teacher")
        student.load(path, which="student")
        return True

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
        elif role == "teacher":
            self._show_warning()

    # --- preprocessing -------------------------------------------------------------------------
    def architecture_editable(self, model: LoadedModel) -> bool:
        """Only a state_dict is built into an architecture (not a module, program or graph)."""
        return model.info.format not in STATE_DICT_FORMATS_NOT and not model.trusted \
            and model.info.architecture is not None

    def preprocessing_dialog(self):
        """The dialog for the slot's model (None when the slot is empty)."""
        from kdx_engine.models import registered_architectures
        from kdx_gui.dialogs.preprocessing_dialog import PreprocessingDialog

        model = self.session.models[self.role]
        if model is None:
            return None
        two_models = "which" in self.load_options
        return PreprocessingDialog(model, list(registered_architectures()), self.architecture_editable(model),
                                   save_architecture=not two_models, parent=self)

    def edit_preprocessing(self) -> None:
        """Show the dialog; after OK (sidecar saved) reload the model so the values take effect."""
        from kdx_gui.dialogs.preprocessing_dialog import restore_sidecar

        dialog = self.preprocessing_dialog()
        if dialog is None or not run_preprocessing_dialog(dialog):
            return
        model = self.session.models[self.role]
        path, previous = model.info.path, dialog.previous_sidecar
        arch = dialog.chosen_architecture() if dialog.architecture_changed() else self.load_options.get("arch")
        layer = model.target_layer

        def undo() -> None:
            restore_sidecar(path, previous)
            self.set_status(self.status.text() + " — the preprocessing sidecar was put back", error=True)

        watching = [True]

        def stop_watching() -> None:
            if watching:
                watching.clear()
                self.session.modelChanged.disconnect(keep_layer)

        def keep_layer(role: str) -> None:
            if role != self.role:
                return
            stop_watching()
            loaded = self.session.models[self.role]
            if loaded is not None and layer and layer != loaded.target_layer and layer in loaded.backend.layer_names():
                self.session.set_target_layer(self.role, layer)

        self.session.modelChanged.connect(keep_layer)
        self.load(path, trust_pickle=model.trusted, which=self.load_options.get("which"), arch=arch,
                  on_failure=lambda: (stop_watching(), undo()))

    def _preprocessing_warning(self, model: LoadedModel | None) -> str | None:
        teacher = self.session.models["teacher"]
        if model is None or teacher is None or self.role == "teacher":
            return None
        from kdx_engine.models import preprocessing_difference

        return preprocessing_difference(model.info.preprocessing, teacher.info.preprocessing)

    def _show_warning(self) -> None:
        text = self._preprocessing_warning(self.session.models[self.role])
        self.warning.setText(f"⚠ {text}" if text else "")
        self.warning.setVisible(bool(text))

    def refresh(self) -> None:
        model: LoadedModel | None = self.session.models[self.role]
        self._show_warning()
        self.preprocessing_button.setEnabled(model is not None)
        self.clear_button.setEnabled(model is not None)
        self.layer_picker.setEnabled(model is not None)
        if model is None:
            for label in self.values.values():
                label.setText("—")
            self.values["file"].setText("<i>drop a model file here or use Open…</i>")
            self.layer_picker.clear()
            self.set_status("")
            self.load_options = {}
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
        self.values["input"].setToolTip(info.preprocessing_origin)
        self.values["output"].setText(info.output.describe())  # probabilities: explained on the softmax's input
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
