"""The scan's table as a Qt model over its columns: sorting and filtering reorder an index array (numpy),
so a 20,000-row scan sorts at once; thumbnails are read only for the rows a view asks to draw."""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSize, Qt
from PySide6.QtGui import QImage, QImageReader

THUMBNAIL_SIDE = 40
THUMBNAIL_CACHE = 512
RAW_ROLE = Qt.ItemDataRole.UserRole + 1

# Named row filters over the columns (each returns a boolean array, or None when its columns are missing).
FILTERS: dict[str, tuple[str, Callable]] = {}


def _filter(key: str, title: str):
    def register(fn):
        FILTERS[key] = (title, fn)
        return fn
    return register


@_filter("all", "All rows")
def _all(columns, n):
    return np.ones(n, dtype=bool)


@_filter("t-right-s-wrong", "T right, S wrong")
def _t_right_s_wrong(columns, n):
    return _true(columns, "teacher_correct", n) & _false(columns, "student_correct", n)


@_filter("s-right-t-wrong", "S right, T wrong")
def _s_right_t_wrong(columns, n):
    return _true(columns, "student_correct", n) & _false(columns, "teacher_correct", n)


@_filter("ts-disagree", "T and S predict differently")
def _disagree(columns, n):
    t, s = columns.get("teacher_predicted"), columns.get("student_predicted")
    if t is None or s is None:
        return None
    return np.array([a is not None and b is not None and a != b for a, b in zip(t, s)])


def energy_column(columns, role: str) -> str | None:
    """The energy-in-mask column of ``role`` under the scan's first CAM method (``gradcam_student_energy``
    after a default scan, ``layercam_student_energy`` after ``--methods layercam``), or None."""
    suffix = f"_{role}_energy"
    return next((name for name in columns if name.endswith(suffix) and not name.startswith("unicam_")), None)


@_filter("s-energy-below-t", "Student energy in mask < Teacher's")
def _student_energy_below(columns, n):
    t, s = energy_column(columns, "teacher"), energy_column(columns, "student")
    if t is None or s is None:
        return None
    return _numbers(columns, s, n) < _numbers(columns, t, n)


@_filter("s-right-off-object", "S right, evidence off the object (energy in mask < mask area)")
def _right_off_object(columns, n):
    name = energy_column(columns, "student")
    if name is None:
        return None
    energy, share = _numbers(columns, name, n), _numbers(columns, "mask_share", n)
    return _true(columns, "student_correct", n) & (energy < share)


@_filter("errors", "Unreadable images")
def _errors(columns, n):
    return np.array([e is not None for e in columns.get("error", [None] * n)])


def _true(columns, name, n):
    """Rows whose boolean column is true (None, i.e. unknown, is neither true nor false)."""
    return np.array([isinstance(v, (bool, np.bool_)) and bool(v) for v in columns.get(name, [None] * n)], dtype=bool)


def _false(columns, name, n):
    return np.array([isinstance(v, (bool, np.bool_)) and not v for v in columns.get(name, [None] * n)], dtype=bool)


def _numbers(columns, name, n) -> np.ndarray:
    """A column as float64 (None → NaN; NaN compares false, so undefined values never pass a filter)."""
    values = columns.get(name)
    if values is None:
        return np.full(n, np.nan)
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def numeric_column(columns: dict, name: str) -> np.ndarray:
    return _numbers(columns, name, len(columns.get("path", [])))


class ScanTableModel(QAbstractTableModel):
    """Rows of a scan (``columns``: name → list of values) shown through ``order`` (visible row indices)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.columns: dict[str, list] = {}
        self.names: list[str] = []
        self.order = np.zeros(0, dtype=np.int64)
        self.filter_key = "all"
        self.text = ""
        self.sort_column: int | None = None
        self.sort_order = Qt.SortOrder.AscendingOrder
        self.thumbnails: OrderedDict[str, QImage] = OrderedDict()
        self.thumbnail_reads = 0

    # --- content -------------------------------------------------------------------------------
    def set_columns(self, columns: dict[str, list]) -> None:
        self.beginResetModel()
        self.columns = columns
        self.names = list(columns)
        self.thumbnails.clear()
        self.thumbnail_reads = 0
        self._refilter()
        self.endResetModel()

    @property
    def n_rows(self) -> int:
        return len(self.columns.get("path", []))

    def row_record(self, visible_row: int) -> dict:
        index = int(self.order[visible_row])
        return {name: values[index] for name, values in self.columns.items()}

    def visible_paths(self) -> list[str]:
        files = self.columns.get("file", [])
        return [files[i] for i in self.order]

    def available_filters(self) -> dict[str, str]:
        """The named filters whose columns this scan has."""
        n = self.n_rows
        return {key: title for key, (title, fn) in FILTERS.items() if fn(self.columns, n) is not None}

    def set_filter(self, key: str, text: str | None = None) -> None:
        self.beginResetModel()
        self.filter_key = key
        if text is not None:
            self.text = text
        self._refilter()
        self.endResetModel()

    def _refilter(self) -> None:
        n = self.n_rows
        keep = FILTERS.get(self.filter_key, FILTERS["all"])[1](self.columns, n)
        if keep is None:
            keep = np.ones(n, dtype=bool)
        if self.text:
            needle = self.text.casefold()
            keep = keep & np.array([needle in (p or "").casefold() for p in self.columns.get("path", [])], dtype=bool)
        self.order = np.flatnonzero(keep)
        if self.sort_column is not None and self.sort_column < len(self.names):
            self._apply_sort()

    # --- Qt model ------------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.order)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.names)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal and section < len(self.names):
            return self.names[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        name = self.names[index.column()]
        value = self.columns[name][int(self.order[index.row()])]
        if role == Qt.ItemDataRole.DisplayRole:
            return _text(value)
        if role == RAW_ROLE:
            return value
        if role == Qt.ItemDataRole.DecorationRole and name == "path":
            return self._thumbnail(int(self.order[index.row()]))
        if role == Qt.ItemDataRole.TextAlignmentRole and isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and name in ("path", "error") or (
                role == Qt.ItemDataRole.ToolTipRole and name.endswith("_note")):
            return None if value is None else str(value)
        return None

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self.names):
            self.sort_column = None  # the view's "no sort indicator" (-1), or no table yet
            return
        self.layoutAboutToBeChanged.emit()
        self.sort_column, self.sort_order = column, order
        self._apply_sort()
        self.layoutChanged.emit()

    def _apply_sort(self) -> None:
        """Stable sort of the visible rows by one column; undefined values (None, NaN) last either way."""
        values = self.columns[self.names[self.sort_column]]
        subset = [values[i] for i in self.order]
        numeric = all(v is None or isinstance(v, (int, float)) for v in subset)
        if numeric:
            keys = np.array([np.nan if v is None else float(v) for v in subset], dtype=np.float64)
            missing = np.isnan(keys)
            keys = np.where(missing, 0.0, keys)
            if self.sort_order == Qt.SortOrder.DescendingOrder:
                keys = -keys
            positions = np.lexsort((keys, missing))
        else:
            text = [("" if v is None else str(v)).casefold() for v in subset]
            missing = [v is None for v in subset]
            reverse = self.sort_order == Qt.SortOrder.DescendingOrder
            ranked = sorted(range(len(subset)), key=lambda i: text[i], reverse=reverse)
            positions = np.array(sorted(ranked, key=lambda i: missing[i]), dtype=np.int64)
        self.order = self.order[positions] if len(positions) else self.order

    def _thumbnail(self, index: int) -> QImage | None:
        """The row's image, scaled down, read the first time a view draws the row (a bounded cache)."""
        files = self.columns.get("file")
        if not files or files[index] is None:
            return None
        path = files[index]
        if path in self.thumbnails:
            self.thumbnails.move_to_end(path)
            return self.thumbnails[path]
        reader = QImageReader(path)
        size = reader.size()
        if size.isValid() and size.width() > 0 and size.height() > 0:
            scale = THUMBNAIL_SIDE / max(size.width(), size.height())
            reader.setScaledSize(QSize(max(1, round(size.width() * scale)), max(1, round(size.height() * scale))))
        image = reader.read()
        self.thumbnail_reads += 1
        self.thumbnails[path] = image if not image.isNull() else None
        while len(self.thumbnails) > THUMBNAIL_CACHE:
            self.thumbnails.popitem(last=False)
        return self.thumbnails[path]


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return str(value)
