"""Render packaging/icons/kdx.svg to the PNG sizes beside it (16…512 px) with Qt's SVG renderer:
`python packaging/render_icons.py packaging/icons`."""
import sys
from pathlib import Path
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

icons = Path(sys.argv[1])
app = QGuiApplication([])
renderer = QSvgRenderer(str(icons / "kdx.svg"))
assert renderer.isValid()
for size in (16, 24, 32, 48, 64, 128, 256, 512):
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    assert image.save(str(icons / f"kdx_{size}.png"))
