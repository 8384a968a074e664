#!/bin/sh
# Adds KDX to the desktop's application menu for this user: the icons (hicolor theme, every PNG size and
# the SVG) and kdx.desktop with Exec pointing at the kdx-gui beside this script (the bundle's folder).
# Run from the unpacked bundle: ./install_desktop_entry.sh   (undo: rm the files it names)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
for png in "$here"/icons/kdx_*.png; do
  size=$(basename "$png" .png | sed 's/kdx_//')
  mkdir -p "$data/icons/hicolor/${size}x${size}/apps"
  cp "$png" "$data/icons/hicolor/${size}x${size}/apps/kdx.png"
done
mkdir -p "$data/icons/hicolor/scalable/apps" "$data/applications"
cp "$here/icons/kdx.svg" "$data/icons/hicolor/scalable/apps/kdx.svg"
sed -e "s|^Exec=kdx-gui|Exec=\"$here/kdx-gui\"|" -e "s|^TryExec=kdx-gui|TryExec=$here/kdx-gui|" \
  "$here/kdx.desktop" > "$data/applications/kdx.desktop"
echo "installed $data/applications/kdx.desktop and the kdx icons under $data/icons/hicolor"
