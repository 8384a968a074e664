"""The canvas controls: CAM method, target-class rule, colormap, opacity, percentile threshold, shared
or per-panel scale, UniCAM reference set and variant. They edit ``session.settings`` and follow it."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QLabel,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QWidget,
)

from kdx_engine.figures import COLORMAPS

from kdx_gui.state.session import UNICAM_VARIANTS, Session
from kdx_gui.state.settings import AppSettings
from kdx_gui.widgets.layout import FlowLayout, labelled
from kdx_gui.widgets.wording import ordinal

TARGET_RULES = {"predicted": "predicted", "true": "true class", "class": "one class:"}
GALLERY_REFERENCE = "gallery images"
FOLDER_REFERENCE = "folder…"


class CanvasControls(QWidget):
    """Two rows of controls above the canvas."""

    def __init__(self, session: Session, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.settings = session, settings
        self.method = QComboBox()
        self.method.setToolTip("CAM method for the Teacher, Student and Base panels")
        self.method.setEnabled(False)
        self.rule = QComboBox()
        for key, text in TARGET_RULES.items():
            self.rule.addItem(text, key)
        self.rule.setToolTip("Which class each map explains: each model's own prediction, the image's true class "
                             "(from its folder or file name), or one chosen class for every model")
        self.target_class = QComboBox()
        self.target_class.setToolTip("The class explained by every model when the rule is 'one class'")
        self.colormap = QComboBox()
        self.colormap.addItems(list(COLORMAPS))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setFixedWidth(90)
        self.opacity_label = QLabel()
        self.threshold = QSlider(Qt.Orientation.Horizontal)
        self.threshold.setRange(0, 99)
        self.threshold.setFixedWidth(90)
        self.threshold.setToolTip("Hide map values below this percentile of each map")
        self.threshold_label = QLabel()
        self.scale = QComboBox()
        self.scale.addItem("per panel", False)
        self.scale.addItem("shared", True)
        self.scale.setToolTip("Per panel: each map min–max. Shared: one scale for the models' maps (and one for "
                              "the UniCAM maps), so magnitudes compare")
        self.reference = QComboBox()
        self.reference.addItem(GALLERY_REFERENCE, None)
        self.reference.addItem(FOLDER_REFERENCE, "__choose__")
        self.reference.setToolTip("UniCAM reference set: images sampled (seeded, class-balanced) from the gallery "
                                  "or from a dataset folder")
        self.reference_n = QSpinBox()
        self.reference_n.setRange(4, 256)
        self.reference_n.setPrefix("n = ")
        self.reference_n.setToolTip("Reference images + the query image")
        self.variant = QComboBox()
        self.variant.addItems(list(UNICAM_VARIANTS))

        # label + control units in a flow layout: they wrap to more lines on a narrow window, and a label
        # always shows its whole text
        self.labels = [QLabel(text) for text in ("Method", "Target", "Scale", "Colormap", "Opacity", "Threshold",
                                                 "UniCAM reference", "Variant")]
        method, target, scale, colormap, opacity, threshold, reference, variant = self.labels
        units = [labelled(method, self.method), labelled(target, self.rule, self.target_class),
                 labelled(scale, self.scale), labelled(colormap, self.colormap),
                 labelled(opacity, self.opacity, self.opacity_label),
                 labelled(threshold, self.threshold, self.threshold_label),
                 labelled(reference, self.reference, self.reference_n), labelled(variant, self.variant)]
        flow = FlowLayout(self, spacing=12, line_spacing=2)
        flow.setContentsMargins(4, 2, 4, 2)
        for unit in units:
            flow.addWidget(unit)
        for box in (self.method, self.rule, self.target_class, self.colormap, self.scale, self.reference,
                    self.variant):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(max(box.minimumContentsLength(), 9))
        self.opacity_label.setMinimumWidth(self.opacity_label.fontMetrics().horizontalAdvance("0.00") + 4)
        self.threshold_label.setMinimumWidth(self.threshold_label.fontMetrics().horizontalAdvance("99th pct") + 4)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

        self.method.currentIndexChanged.connect(self._method_changed)
        self.rule.currentIndexChanged.connect(self._rule_changed)
        self.target_class.currentIndexChanged.connect(self._class_changed)
        self.colormap.currentTextChanged.connect(self._colormap_changed)
        self.opacity.valueChanged.connect(self._opacity_changed)
        self.threshold.valueChanged.connect(self._threshold_changed)
        self.scale.currentIndexChanged.connect(self._scale_changed)
        self.reference.activated.connect(self._reference_chosen)
        self.reference_n.valueChanged.connect(self._reference_n_changed)
        self.variant.currentTextChanged.connect(self._variant_changed)
        session.settingsChanged.connect(self.sync)
        session.engineReady.connect(self._engine_ready)
        session.modelChanged.connect(self._fill_classes)
        self._syncing = False
        self.sync()

    # one small slot per control: bound methods, so no lambda keeps the widget alive
    def _method_changed(self, _index: int) -> None:
        self._edit(method=self.method.currentData())

    def _rule_changed(self, _index: int) -> None:
        self._edit(target_rule=self.rule.currentData())

    def _class_changed(self, index: int) -> None:
        if index >= 0:
            self._edit(class_index=index)

    def _colormap_changed(self, name: str) -> None:
        self._edit(colormap=name)

    def _opacity_changed(self, value: int) -> None:
        self._edit(opacity=value / 100)

    def _threshold_changed(self, value: int) -> None:
        self._edit(threshold=float(value))

    def _scale_changed(self, _index: int) -> None:
        self._edit(shared_scale=bool(self.scale.currentData()))

    def _reference_n_changed(self, n: int) -> None:
        self._edit(reference_n=n)

    def _variant_changed(self, name: str) -> None:
        self._edit(unicam_variant=name)

    def _engine_ready(self, status) -> None:
        from kdx_engine.cams import ARCHITECTURE_METHODS, CAM_METHODS

        self._syncing = True
        self.method.clear()
        for name in CAM_METHODS:
            self.method.addItem(name, name)
        for name in ARCHITECTURE_METHODS:  # a model without the architecture's layers says so in its panel
            self.method.addItem(f"{name} (ViT/DeiT)", name)
        self.method.setEnabled(True)
        self._syncing = False
        for widget in (self.reference, self.reference_n, self.variant):
            widget.setEnabled(status.has("unicam"))
            if not status.has("unicam"):
                widget.setToolTip(status.why_missing("unicam"))
        self.sync()

    def _fill_classes(self, *_args) -> None:
        self._syncing = True
        self.target_class.clear()
        self.target_class.addItems(list(self.session.class_names()))
        self._syncing = False
        self.sync()

    def _edit(self, **changes) -> None:
        if not self._syncing:
            self.session.update_settings(**changes)

    def _reference_chosen(self, index: int) -> None:
        data = self.reference.itemData(index)
        if data == "__choose__":
            folder = QFileDialog.getExistingDirectory(self, "UniCAM reference folder (class_name/image)",
                                                      self.settings.last_folder("datasets"))
            if folder:
                self.settings.remember_folder("datasets", folder)
                self.set_reference_folder(folder)
            else:
                self.sync()
        else:
            self._edit(reference_folder=data)

    def set_reference_folder(self, folder: str | None) -> None:
        self.session.update_settings(reference_folder=folder)

    def sync(self, *_args) -> None:
        """Show ``session.settings`` without echoing the changes back."""
        s = self.session.settings
        self._syncing = True
        _select_data(self.method, s.method)
        _select_data(self.rule, s.target_rule)
        self.target_class.setEnabled(s.target_rule == "class")
        if 0 <= s.class_index < self.target_class.count():
            self.target_class.setCurrentIndex(s.class_index)
        self.colormap.setCurrentText(s.colormap)
        self.opacity.setValue(round(s.opacity * 100))
        self.opacity_label.setText(f"{s.opacity:.2f}")
        self.threshold.setValue(round(s.threshold))
        self.threshold_label.setText(f"{ordinal(round(s.threshold))} pct" if s.threshold else "off")
        _select_data(self.scale, s.shared_scale)
        if s.reference_folder:
            index = self.reference.findData(s.reference_folder)
            if index < 0:
                self.reference.insertItem(1, Path(s.reference_folder).name or s.reference_folder, s.reference_folder)
                self.reference.setItemData(1, s.reference_folder, Qt.ItemDataRole.ToolTipRole)
                index = 1
            self.reference.setCurrentIndex(index)
        else:
            self.reference.setCurrentIndex(0)
        self.reference_n.setValue(s.reference_n)
        self.variant.setCurrentText(s.unicam_variant)
        self._syncing = False


def _select_data(box: QComboBox, value) -> None:
    index = box.findData(value)
    if index >= 0:
        box.setCurrentIndex(index)
    elif box.count() == 0 and value is not None:
        box.addItem(str(value), value)
