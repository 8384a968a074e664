"""The preprocessing of one model: input size, resize, mean, std, class names and (for a state_dict)
the architecture; OK validates the values and saves them to the model's ``<model>.kdx.json`` sidecar.

A bad value keeps the dialog open with the engine's message; the slot reloads the model after OK, and
puts the previous sidecar back when the reload fails (``previous_sidecar``).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

MAX_INPUT_SIZE = 4096  # as kdx_engine.models.preprocessing (not imported here: it brings torch)
MAX_RESIZE = 2 * MAX_INPUT_SIZE
NO_RESIZE = "none (resize straight to the input size)"
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # as kdx_engine.models.preprocessing
TIMM_PREFIX = "timm:"
ALSO_FITS = "parameters also fit: "


def describe_source(source: str, model_path: str) -> str:
    """Where a model's preprocessing came from, in words."""
    if source == "sidecar":
        return f"the sidecar {Path(model_path).name}.kdx.json"
    if source == "family-preset" or source.endswith("-preset"):
        return "the architecture family's preset (no sidecar)"
    if source == "imagenet-fallback":
        return "the ImageNet fallback (no sidecar and no family preset): check it"
    if source == "imagenet-default":
        return "ImageNet defaults"
    return source


def format_numbers(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


def parse_numbers(name: str, text: str) -> tuple[float, ...]:
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"'{name}' must be 3 numbers separated by commas, got {text.strip()!r}") from None


def parse_class_names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


class PreprocessingDialog(QDialog):
    """Show and edit a loaded model's preprocessing; OK writes the sidecar.

    ``architectures``: registry names to offer (first the current one and those the parameters also
    fit); ``architecture_editable``: only a state_dict can be rebuilt in another architecture (then any
    ``timm:NAME`` can be typed too, completed from ``timm_names``, default: every model timm knows);
    ``save_architecture``: whether the sidecar names the architecture (not for a file holding two
    models, whose one sidecar serves both)."""

    def __init__(self, model, architectures: list[str], architecture_editable: bool,
                 save_architecture: bool = True, parent: QWidget | None = None, timm_names: list[str] | None = None):
        super().__init__(parent)
        self.model = model
        info = model.info
        pre = info.preprocessing
        self.model_path = info.path
        self.num_classes = info.num_classes
        self.save_architecture = save_architecture
        self.config = None
        self.previous_sidecar: str | None = None
        self.sidecar_written = False
        self.setWindowTitle(f"Preprocessing of {Path(info.path).name}")
        self.setObjectName("preprocessing_dialog")

        self.source_label = QLabel(f"Current values from {describe_source(pre.source, info.path)}")
        self.source_label.setWordWrap(True)
        self.architecture_box = QComboBox()
        self.architecture_box.setObjectName("architecture")
        current = info.architecture
        offered = self._offered(current, info.notes, architectures)
        if current is None:
            self.architecture_box.addItem("unknown (module loaded as saved)", None)
        for name in offered:
            self.architecture_box.addItem(name, name)
        index = self.architecture_box.findData(current)
        self.architecture_box.setCurrentIndex(max(index, 0))
        self.architecture_box.setEnabled(architecture_editable and bool(offered))
        self.architecture_box.setToolTip(
            "The architecture the state_dict is built into; changing it reloads the weights. Any timm model "
            "can be typed as timm:NAME (built without weights, nothing is downloaded)"
            if architecture_editable else "Only a state_dict can be rebuilt in another architecture")
        if architecture_editable:
            if timm_names is None:
                from kdx_engine.models import timm_model_names

                timm_names = timm_model_names()
            self.architecture_box.setEditable(True)
            self.architecture_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
            completer = QCompleter(list(dict.fromkeys([*offered, *timm_names])), self.architecture_box)
            completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
            completer.setFilterMode(Qt.MatchFlag.MatchContains)
            self.architecture_box.setCompleter(completer)
        self.original_architecture = current

        self.input_size = QSpinBox()
        self.input_size.setRange(1, MAX_INPUT_SIZE)
        self.input_size.setValue(pre.input_size)
        self.input_size.setSuffix(" px")
        self.input_size.setToolTip("The model's input: a centre crop of this size (square)")
        self.resize_box = QSpinBox()
        self.resize_box.setRange(0, MAX_RESIZE)
        self.resize_box.setSpecialValueText(NO_RESIZE)
        self.resize_box.setValue(pre.resize or 0)
        self.resize_box.setToolTip("Resize the shorter side to this, then centre-crop the input size; "
                                   "none resizes the image straight to the input size")
        self.interpolation_box = QComboBox()
        self.interpolation_box.setObjectName("interpolation")
        for name in INTERPOLATIONS:
            self.interpolation_box.addItem(name, name)
        self.interpolation_box.setCurrentIndex(max(self.interpolation_box.findData(pre.interpolation), 0))
        self.interpolation_box.setToolTip("How the image is resized (timm models: usually bicubic)")
        self.mean_edit = QLineEdit(format_numbers(pre.mean))
        self.mean_edit.setToolTip("Per-channel mean (R, G, B) of pixels scaled to 0–1")
        self.std_edit = QLineEdit(format_numbers(pre.std))
        self.std_edit.setToolTip("Per-channel standard deviation (R, G, B), above zero")
        self.classes_edit = QLineEdit(", ".join(pre.class_names))
        self.classes_edit.setToolTip(f"{info.num_classes} class names separated by commas "
                                     "(empty: class_0, class_1, …)")
        self.error_label = QLabel()
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b00020;")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()

        form = QFormLayout()
        form.addRow("Architecture", self.architecture_box)
        form.addRow("Input size", self.input_size)
        form.addRow("Resize (shorter side)", self.resize_box)
        form.addRow("Interpolation", self.interpolation_box)
        form.addRow("Mean", self.mean_edit)
        form.addRow("Std", self.std_edit)
        form.addRow(f"Classes ({info.num_classes})", self.classes_edit)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setToolTip(
            f"Save to {Path(info.path).name}.kdx.json and reload the model")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.source_label)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)

    @staticmethod
    def _offered(current: str | None, notes, architectures: list[str]) -> list[str]:
        """The current architecture and those the parameters also fit first, then the rest by name."""
        first = [current] if current else []
        for note in notes:
            if note.startswith(ALSO_FITS):
                first += [n.strip() for n in note[len(ALSO_FITS):].split(",") if n.strip()]
        first = list(dict.fromkeys(first))
        return first + sorted(n for n in architectures if n not in first)

    # --- values --------------------------------------------------------------------------------
    def chosen_architecture(self) -> str | None:
        """The architecture picked from the list, or a name typed into it (``timm:NAME``)."""
        text = self.architecture_box.currentText().strip()
        index = self.architecture_box.findText(text)
        if index >= 0 or not self.architecture_box.isEditable():
            return self.architecture_box.itemData(max(index, 0)) if index >= 0 else self.architecture_box.currentData()
        return text or None

    def architecture_changed(self) -> bool:
        return self.architecture_box.isEnabled() and self.chosen_architecture() != self.original_architecture

    def values(self):
        """The edited values as a Preprocessing; a bad value raises ValueError with the message."""
        from kdx_engine.models import Preprocessing

        names = parse_class_names(self.classes_edit.text())
        if names and len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names given but the model has {self.num_classes} classes")
        if len(set(names)) != len(names):
            raise ValueError("class names must differ from each other")
        arch = self.chosen_architecture() if self.save_architecture else None
        if arch is not None and self.architecture_changed():
            from kdx_engine.models import get_architecture

            try:
                get_architecture(arch)
            except KeyError as exc:
                raise ValueError(str(exc.args[0])) from None
        return Preprocessing(
            input_size=self.input_size.value(), resize=self.resize_box.value() or None,
            mean=parse_numbers("mean", self.mean_edit.text()), std=parse_numbers("std", self.std_edit.text()),
            class_names=names, architecture=arch, source="sidecar",
            distillation_temperature=self.model.info.preprocessing.distillation_temperature,
            interpolation=self.interpolation_box.currentData())

    def show_error(self, message: str) -> None:
        self.error_label.setText(f"⚠ {message}")
        self.error_label.show()

    def accept(self) -> None:
        """Validate and write the sidecar; on a bad value or a failed write, say why and stay open."""
        from kdx_engine.models import write_sidecar
        from kdx_engine.models.preprocessing import sidecar_path

        try:
            config = self.values()
        except ValueError as exc:
            self.show_error(str(exc))
            return
        path = sidecar_path(self.model_path)
        try:
            previous = path.read_text(encoding="utf-8") if path.exists() else None
            write_sidecar(self.model_path, config)
        except (OSError, UnicodeError) as exc:
            self.show_error(f"could not save {path.name}: {exc}")
            return
        self.config, self.previous_sidecar, self.sidecar_written = config, previous, True
        self.error_label.hide()
        super().accept()


def restore_sidecar(model_path: str, previous: str | None) -> None:
    """Put back the sidecar a dialog replaced (``None``: there was none)."""
    from kdx_engine.models.preprocessing import sidecar_path

    path = sidecar_path(model_path)
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(previous, encoding="utf-8")
