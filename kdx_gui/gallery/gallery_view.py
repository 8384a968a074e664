"""The gallery: thumbnails of the analysed images with each model's prediction and a T–S agreement
badge; filters, sort by T–S map correlation, keyboard navigation; drop files or folders, or paste.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QModelIndex, QSize, QSortFilterProxyModel, Qt
from PySide6.QtGui import (
    QAction,
    QColor,
    QFont,
    QGuiApplication,
    QIcon,
    QImage,
    QKeySequence,
    QPainter,
    QPixmap,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QComboBox,
    QMenu,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListView,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from kdx_engine.figures.image_captions import distinct_captions
from kdx_engine.figures.pixel_scaling import SMALL_IMAGE

from kdx_gui.state.jobs import JobRunner
from kdx_gui.state.session import ROLE_LETTERS, ROLES, GalleryImage, Session, label_hints_for
from kdx_gui.state.settings import AppSettings
from kdx_gui.widgets.drag_drop import accept_file_drag, local_files, mime_local_files

THUMBNAIL = 96
ID_ROLE = Qt.ItemDataRole.UserRole + 1
ORDER_ROLE = Qt.ItemDataRole.UserRole + 2
AGREE_ROLE = Qt.ItemDataRole.UserRole + 3
WRONG_ROLE = Qt.ItemDataRole.UserRole + 4
CORRELATION_ROLE = Qt.ItemDataRole.UserRole + 5
SOURCE_ROLE = Qt.ItemDataRole.UserRole + 6
FILTERS = {"all": "All images", "disagree": "T–S disagree", "misclassified": "Misclassified"}
SORTS = {"order": "File order", "correlation-up": "T–S map correlation ↑", "correlation-down": "T–S map correlation ↓"}


def make_thumbnail(rgb: np.ndarray, size: int = THUMBNAIL) -> QImage:
    """A QImage thumbnail of an H×W×3 uint8 array (safe on a worker thread); a small image enlarged to
    it shows square pixels (nearest-neighbour), as on the canvas, a larger one is reduced smoothly."""
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    image = QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    enlarged = max(height, width) < min(size, SMALL_IMAGE)
    mode = Qt.TransformationMode.FastTransformation if enlarged else Qt.TransformationMode.SmoothTransformation
    return image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode).copy()


def gallery_items(images, from_files: bool = True) -> list[GalleryImage]:
    """GalleryImage records (with thumbnails) for the engine's LoadedImages; runs in the loading job.
    Pasted images (``from_files=False``) have no file and no label hints."""
    items = []
    for image in images:
        path = Path(image.path)
        source = str(path) if from_files else None
        items.append(GalleryImage(image, path.name, source, make_thumbnail(image.rgb),
                                  label_hints_for(path) if from_files else ()))
    return items


class GalleryFilter(QSortFilterProxyModel):
    """Filters by T–S agreement or misclassification; sorts by file order or T–S map correlation."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.mode = "all"
        self.sort_key = "order"
        self.scan_files: frozenset[str] = frozenset()  # mode "scan": the rows a Scan view showed

    def set_mode(self, mode: str) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt ≥ 6.10 replaces invalidateFilter()
            self.beginFilterChange()
            self.mode = mode
            self.endFilterChange()
        else:
            self.mode = mode
            self.invalidateFilter()

    def set_sort(self, key: str) -> None:
        self.sort_key = key
        self.invalidate()
        self.sort(0, Qt.SortOrder.AscendingOrder)

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:
        index = self.sourceModel().index(row, 0, parent)
        if self.mode == "disagree":
            return index.data(AGREE_ROLE) is False
        if self.mode == "misclassified":
            return index.data(WRONG_ROLE) is True
        if self.mode == "scan":
            source = index.data(SOURCE_ROLE)
            return bool(source) and (source in self.scan_files or str(Path(source).resolve()) in self.scan_files)
        return True

    def lessThan(self, left: QModelIndex, right: QModelIndex) -> bool:
        return self._key(left) < self._key(right)

    def _key(self, index: QModelIndex) -> tuple:
        """Ascending key; images without a correlation go last in either direction."""
        order = index.data(ORDER_ROLE)
        if self.sort_key == "order":
            return (0, 0.0, order)
        value = index.data(CORRELATION_ROLE)
        if value is None or math.isnan(value):
            return (1, 0.0, order)
        return (0, value if self.sort_key == "correlation-up" else -value, order)


class GalleryView(QWidget):
    """Thumbnails of the session's images; selecting one makes it the current image."""

    def __init__(self, session: Session, jobs: JobRunner, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.jobs, self.settings = session, jobs, settings
        self.setAcceptDrops(True)
        self._pasted = 0

        self.model = QStandardItemModel(self)
        self.proxy = GalleryFilter(self)
        self.proxy.setSourceModel(self.model)
        self.list = QListView()
        self.list.setModel(self.proxy)
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setIconSize(QSize(THUMBNAIL, THUMBNAIL))
        self.list.setGridSize(QSize(THUMBNAIL + 64, THUMBNAIL + 52))
        small = self.list.font()
        small.setPointSizeF(max(small.pointSizeF() - 1, 7))
        self.list.setFont(small)
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(True)
        self.list.setSelectionMode(QListView.SelectionMode.ExtendedSelection)
        self.list.setAcceptDrops(False)
        self.list.selectionModel().currentChanged.connect(self._current_index_changed)
        self.remove_action = QAction("Remove from the gallery", self.list)
        self.remove_action.setShortcuts([QKeySequence(QKeySequence.StandardKey.Delete), QKeySequence("Backspace")])
        self.remove_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.remove_action.setToolTip("Take the selected images out of the gallery (the files stay)")
        self.remove_action.triggered.connect(self.remove_selected)
        self.list.addAction(self.remove_action)
        self.list.installEventFilter(self)  # Delete also where the shortcut does not reach (no active window)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)

        self.filter_box = QComboBox()
        for key, text in FILTERS.items():
            self.filter_box.addItem(text, key)
        self.filter_box.currentIndexChanged.connect(self._filter_chosen)
        self.sort_box = QComboBox()
        for key, text in SORTS.items():
            self.sort_box.addItem(text, key)
        self.sort_box.currentIndexChanged.connect(self._sort_chosen)
        self.add_button = QPushButton("Add images…")
        self.add_button.clicked.connect(self.open_dialog)
        self.count_label = QLabel()
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b00020;")
        self.message.setVisible(False)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Show"))
        controls.addWidget(self.filter_box)
        controls.addWidget(QLabel("Sort"))
        controls.addWidget(self.sort_box)
        controls.addStretch(1)
        controls.addWidget(self.count_label)
        controls.addWidget(self.add_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.message)

        session.imagesChanged.connect(self.rebuild)
        session.predictionsChanged.connect(self.refresh_predictions)
        session.modelChanged.connect(self.refresh_predictions)
        session.currentChanged.connect(self._select_current)
        self.rebuild()

    # --- adding images -------------------------------------------------------------------------
    def open_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add images", self.settings.last_folder("images"),
                                                "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.gif);;All files (*)")
        if paths:
            self.add_paths(paths)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of images", self.settings.last_folder("images"))
        if folder:
            self.add_paths([folder])

    def add_paths(self, paths: list[str]) -> None:
        """Load images and folders (recursively) in a job; bad files are listed below the gallery."""
        paths = [str(p) for p in paths]
        if paths:
            self.settings.remember_folder("images", paths[0])

        def work(progress):
            from kdx_gui.state import analysis

            images, errors = analysis.load_gallery_images(paths, progress)
            return gallery_items(images), [str(e) for e in errors]

        self.jobs.submit(f"loading {len(paths)} path(s)", work, on_success=self._images_loaded,
                         on_failure=self.show_message)

    def paste(self) -> bool:
        """Add the clipboard's image (or the files it names); False when it holds neither."""
        mime = QGuiApplication.clipboard().mimeData()
        if mime is not None and mime.hasImage():
            image = QImage(mime.imageData())
            if not image.isNull():
                self._pasted += 1
                self._add_encoded(png_bytes(image), f"pasted-{self._pasted}.png")
                return True
        files = mime_local_files(mime)
        if files:
            self.add_paths(files)
            return True
        self.show_message("the clipboard holds no image")
        return False

    def _add_encoded(self, data: bytes, name: str) -> None:
        def work(progress):
            from kdx_engine.data import image_from_bytes

            return gallery_items([image_from_bytes(data, name)], from_files=False), []

        self.jobs.submit(f"pasting {name}", work, on_success=self._images_loaded, on_failure=self.show_message)

    def _images_loaded(self, result) -> None:
        items, errors = result
        if errors:
            shown = "; ".join(errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
            self.show_message(f"{len(errors)} file(s) skipped: {shown}", "\n".join(errors))
        else:
            self.message.setVisible(False)
        self.session.add_images(items)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.list and event.type() == event.Type.KeyPress \
                and event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) \
                and event.modifiers() == Qt.KeyboardModifier.NoModifier:
            self.remove_selected()
            return True
        return super().eventFilter(watched, event)

    def remove_selected(self) -> int:
        """Take the selected images (else the current one) out of the gallery; returns how many."""
        ids = self.selected_ids()
        if not ids and self.session.current_image is not None:
            ids = [self.session.current_image.id]
        return self.session.remove_images(ids)

    def context_menu(self) -> QMenu:
        menu = QMenu(self.list)
        count = len(self.selected_ids())
        self.remove_action.setText(f"Remove {count} selected image(s) from the gallery" if count > 1
                                   else "Remove from the gallery")
        self.remove_action.setEnabled(count > 0)
        menu.addAction(self.remove_action)
        return menu

    def _context_menu(self, pos) -> None:
        index = self.list.indexAt(pos)
        if index.isValid() and not self.list.selectionModel().isSelected(index):
            self.list.setCurrentIndex(index)
        self.context_menu().exec(self.list.viewport().mapToGlobal(pos))

    def show_message(self, text: str, details: str = "") -> None:
        self.message.setText(text)
        self.message.setToolTip(details or text)
        self.message.setVisible(True)

    def dragEnterEvent(self, event) -> None:
        accept_file_drag(event)

    def dropEvent(self, event) -> None:
        files = local_files(event)
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.add_paths(files)

    # --- view ----------------------------------------------------------------------------------
    def rebuild(self) -> None:
        self.model.clear()
        for order, item in enumerate(self.session.images):
            entry = QStandardItem(item.name)
            entry.setEditable(False)
            entry.setData(item.id, ID_ROLE)
            entry.setData(order, ORDER_ROLE)
            entry.setToolTip(item.source or item.name)
            entry.setData(item.source, SOURCE_ROLE)
            self.model.appendRow(entry)
        self.refresh_predictions()
        self._select_current(self.session.current)

    def refresh_predictions(self, *_args) -> None:
        names = self.session.class_names()
        captions = distinct_captions([(item.name, item.source) for item in self.session.images])
        for row, item in enumerate(self.session.images):
            entry = self.model.item(row)
            if entry is None:
                continue
            prediction = self.session.predictions.get(item.id)
            label = self.session.label_of(item)
            agree, wrong, lines = None, None, [captions[row]]
            if prediction is not None:
                parts = []
                for role in ROLES:
                    if role in prediction.classes:
                        k = prediction.classes[role]
                        mark = "" if label is None else (" ✓" if k == label else " ✗")
                        parts.append(f"{ROLE_LETTERS[role]} {names[k] if k < len(names) else k}{mark}")
                lines += [" · ".join(parts[:2])] + ([parts[2]] if len(parts) > 2 else [])
                if "teacher" in prediction.classes and "student" in prediction.classes:
                    agree = prediction.classes["teacher"] == prediction.classes["student"]
                if label is not None and prediction.classes:
                    wrong = any(k != label for k in prediction.classes.values())
                entry.setData(prediction.correlation, CORRELATION_ROLE)
                if not math.isnan(prediction.correlation):
                    lines[0] += f"  r={prediction.correlation:.2f}"
            else:
                entry.setData(math.nan, CORRELATION_ROLE)
            entry.setData(agree, AGREE_ROLE)
            entry.setData(wrong, WRONG_ROLE)
            entry.setText("\n".join(lines))
            entry.setIcon(QIcon(badged_pixmap(item.thumbnail, agree, wrong)))
        self.proxy.invalidate()
        self._update_count()

    def _filter_chosen(self, _index: int) -> None:
        self.set_filter(self.filter_box.currentData())

    def _sort_chosen(self, _index: int) -> None:
        self.set_sort(self.sort_box.currentData())

    def set_filter(self, mode: str) -> None:
        self.proxy.set_mode(mode)
        self._update_count()
        self._select_current(self.session.current)

    def set_scan_filter(self, title: str, files) -> None:
        """Show only the images among ``files`` (rows of a scan), as the filter ``title``."""
        self.proxy.scan_files = frozenset(str(f) for f in files) | frozenset(str(Path(f).resolve()) for f in files)
        index = self.filter_box.findData("scan")
        if index < 0:
            self.filter_box.addItem(title, "scan")
            index = self.filter_box.count() - 1
        self.filter_box.setItemText(index, title)
        if self.filter_box.currentIndex() == index:
            self.set_filter("scan")
        else:
            self.filter_box.setCurrentIndex(index)

    def set_sort(self, key: str) -> None:
        self.proxy.set_sort(key)
        self._select_current(self.session.current)

    def visible_ids(self) -> list[int]:
        """Image ids in the order the gallery shows them (after filter and sort)."""
        return [self.proxy.index(row, 0).data(ID_ROLE) for row in range(self.proxy.rowCount())]

    def selected_ids(self) -> list[int]:
        """Ids of the selected images, in the order the gallery shows them."""
        rows = sorted(index.row() for index in self.list.selectionModel().selectedIndexes())
        return [self.proxy.index(row, 0).data(ID_ROLE) for row in rows]

    def _update_count(self) -> None:
        total, shown = self.model.rowCount(), self.proxy.rowCount()
        self.count_label.setText(f"{shown} of {total} images" if shown != total else f"{total} images")

    def _current_index_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        row = self.proxy.mapToSource(current).row()
        self.session.set_current(row)

    def _select_current(self, row: int) -> None:
        source = self.model.index(row, 0) if row >= 0 else QModelIndex()
        index = self.proxy.mapFromSource(source) if source.isValid() else QModelIndex()
        if index.isValid() and self.list.currentIndex() != index:
            self.list.setCurrentIndex(index)
            self.list.scrollTo(index)


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data)


BADGES = {True: ("#2e7d32", "="), False: ("#c62828", "≠"), None: ("#9e9e9e", "?")}


def badged_pixmap(thumbnail: QImage, agree: bool | None, wrong: bool | None) -> QPixmap:
    """The thumbnail centred on a square canvas with the T–S agreement badge (= / ≠) in its corner and
    a red frame when a model misclassifies it."""
    pixmap = QPixmap(THUMBNAIL, THUMBNAIL)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.drawImage((THUMBNAIL - thumbnail.width()) // 2, (THUMBNAIL - thumbnail.height()) // 2, thumbnail)
    if wrong:
        painter.setPen(QColor("#c62828"))
        painter.drawRect(1, 1, THUMBNAIL - 3, THUMBNAIL - 3)
    colour, text = BADGES[agree]
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(colour))
    painter.drawEllipse(THUMBNAIL - 26, 2, 24, 24)
    painter.setPen(QColor("white"))
    font = QFont()
    font.setBold(True)
    font.setPixelSize(16)
    painter.setFont(font)
    painter.drawText(THUMBNAIL - 26, 2, 24, 24, Qt.AlignmentFlag.AlignCenter, text)
    painter.end()
    return pixmap
