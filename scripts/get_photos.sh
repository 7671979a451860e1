#!/usr/bin/env bash
# Fetch the real photos the built-in model is trained on, without installing anything system-wide:
# `apt-get download` puts the Debian packages' .deb files in the cache folder and `dpkg -x`
# unpacks them there (no root needed for either, only a reachable Debian mirror).
#
#   scripts/get_photos.sh [CACHE_DIR]      (default: ${DEQA_PHOTO_CACHE:-$HOME/.cache/deqa/photos})
#
# The photos shipped by Python packages (scikit-image, scikit-learn, matplotlib) need no download;
# `deqa baseline photos --out DIR` lists in DIR/photos.json every photo it found and whether it is used.
set -euo pipefail
CACHE="${1:-${DEQA_PHOTO_CACHE:-$HOME/.cache/deqa/photos}}"
PACKAGES=(mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 opencv-doc
          jigzo-data gcompris-qt-data enlightenment-data lxqt-themes palapeli-data puzzle-jigsaw sddm-theme-maldives
          plasma-workspace-data budgie-control-center-data)
# Large packages: only the folder holding the photos is unpacked (opencv-doc is 96 MB of mostly
# HTML; enlightenment-data is a 400 MB download, its backgrounds ~100 MB of it).
declare -A ONLY=(
  [opencv-doc]='./usr/share/doc/opencv-doc/examples/*'
  [gcompris-qt-data]='./usr/share/gcompris-qt/rcc/*'
  [enlightenment-data]='./usr/share/enlightenment/data/backgrounds/*'
  [lxqt-themes]='./usr/share/lxqt/wallpapers/*'
  [plasma-workspace-data]='./usr/share/plasma/avatars/photos/*'
  [budgie-control-center-data]='./usr/share/pixmaps/budgie-faces/*'
)
mkdir -p "$CACHE/debs" "$CACHE/root"
CACHE="$(cd "$CACHE" && pwd)"  # absolute: we cd below
cd "$CACHE/debs"
for pkg in "${PACKAGES[@]}"; do
  if ! ls "${pkg}"_*.deb >/dev/null 2>&1; then
    echo "downloading $pkg ..."
    apt-get download "$pkg" || {
      echo "apt-get download $pkg failed: run 'apt-get update' first (or check the Debian mirror)" >&2
      exit 1
    }
  fi
  deb=$(ls "${pkg}"_*.deb | head -n 1)
  stamp="$CACHE/root/.${deb}.extracted"
  if [ ! -e "$stamp" ]; then
    if [ -n "${ONLY[$pkg]:-}" ]; then
      dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$CACHE/root" --wildcards "${ONLY[$pkg]}"
    else
      dpkg -x "$deb" "$CACHE/root"
    fi
    touch "$stamp"
  fi
done
n=$(find "$CACHE/root/usr/share" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | wc -l)
echo "photos under $CACHE/root: $n image files"
