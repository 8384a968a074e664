"""What ships beside the code: the desktop entry and its icons, and ``kdx zoo build`` writing only where
it is told."""
from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from kdx_engine.cli import main

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def test_the_desktop_entry_starts_the_window_with_the_kdx_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(PACKAGING / "kdx.desktop", encoding="utf-8")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application" and section["Name"] == "KDX"
    assert section["Exec"].split()[0] == "kdx-gui" and section["Icon"] == "kdx"
    assert section["Terminal"] == "false" and section["Categories"].endswith(";")


def test_every_icon_size_is_a_square_rgba_png_rendered_from_the_svg():
    for size in SIZES:
        with Image.open(PACKAGING / "icons" / f"kdx_{size}.png") as image:
            assert image.size == (size, size) and image.mode == "RGBA"
            alpha = image.getchannel("A")
            assert alpha.getpixel((0, 0)) == 0 and alpha.getpixel((size // 2, size // 2)) == 255  # rounded corners
    assert (PACKAGING / "icons" / "kdx.svg").read_text().lstrip().startswith("<?xml")


def test_install_desktop_entry_points_the_menu_at_the_bundle(tmp_path):
    bundle = tmp_path / "kdx bundle"  # a space, as in many home folders
    (bundle / "icons").mkdir(parents=True)
    for name in ("kdx.desktop", "install_desktop_entry.sh"):
        (bundle / name).write_bytes((PACKAGING / name).read_bytes())
    for icon in (PACKAGING / "icons").iterdir():
        (bundle / "icons" / icon.name).write_bytes(icon.read_bytes())
    data = tmp_path / "share"
    subprocess.run(["sh", str(bundle / "install_desktop_entry.sh")], check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_HOME": str(data)})
    installed = (data / "applications" / "kdx.desktop").read_text()
    assert f'Exec="{bundle}/kdx-gui" %F' in installed and f"TryExec={bundle}/kdx-gui" in installed
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / "kdx.svg").is_file()
    for size in SIZES:
        assert (data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "kdx.png").is_file()


@pytest.mark.parametrize("given", [[], ["--out", "models"], ["--samples", "samples"]])
def test_zoo_build_needs_both_folders_and_writes_nothing_without_them(given, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["zoo", "build", "--quick", *given])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "required" in error and ("--out" in error or "--samples" in error)
    assert list(tmp_path.iterdir()) == []
