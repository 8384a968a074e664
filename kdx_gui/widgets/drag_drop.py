"""Local files carried by a drag, a drop or the clipboard."""
from __future__ import annotations

from PySide6.QtCore import QMimeData


def mime_local_files(mime: QMimeData | None) -> list[str]:
    """The local files a drag, a drop or the clipboard names (none when it holds no file URLs)."""
    if mime is None or not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


def local_files(event) -> list[str]:
    return mime_local_files(event.mimeData())


def accept_file_drag(event) -> None:
    """Accept a drag that carries local files; ignore anything else."""
    if local_files(event):
        event.acceptProposedAction()
    else:
        event.ignore()
