"""Real photos to train the baselines on, found offline in installed packages.

Sources (all redistributable; see each package for its licence):

- scikit-image ``skimage/data`` colour photos (CC0 / public domain),
- scikit-learn ``datasets/images`` (china.jpg, flower.jpg; CC BY 2.0),
- matplotlib ``mpl-data/sample_data`` photos,
- the Debian packages ``mate-backgrounds``, ``plasma-workspace-wallpapers``,
  ``lomiri-wallpapers-16.04`` / ``-20.04`` (Ubuntu wallpaper-contest photographs), ``opencv-doc``
  (the photos among OpenCV's sample images), ``jigzo-data`` (the photos inside a jigsaw game's
  puzzle files, cut out by :func:`extract_jigzo_photo`), ``gcompris-qt-data`` (the animal,
  monument and underwater photographs of an educational suite, read out of its Qt resource
  bundles by :func:`read_qt_resources`), ``enlightenment-data`` (photo wallpapers stored in
  Edje files, :func:`largest_jpeg`), ``lxqt-themes``, ``palapeli-data``, ``puzzle-jigsaw`` and
  ``sddm-theme-maldives`` (listed files), unpacked into a cache folder by
  ``scripts/get_photos.sh`` (no system install needed),
- optionally any Hugging Face image data set (``--hf-dataset``) for users who are online.

Every photo belongs to a *group* (one scene: the left/right stereo pair, the resolutions and
light/dark variants of one wallpaper). The held-out split is made of whole groups, chosen by a
hash of the group name, so held-out metrics are measured on scenes the model never saw.

Curation. Only photographs are used: a degradation label on vector art, flat gradients or
cartoons (most of the wallpapers) describes something the image does not show (blur on a flat
gradient is invisible). Which files are photographs is decided per source and listed below
(mate-backgrounds' own ``nature`` category; named lists of the Plasma and Lomiri wallpapers and of
the OpenCV samples that are photographs; the package photos minus a rendered icon). On top of that a measurable texture
criterion (:mod:`.texture`) drops photos whose random crops are mostly flat (sky, fog,
defocused backgrounds): ``prepare_photos`` records each photo's pass rate and whether it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from .texture import TextureCriterion

__all__ = [
    "PhotoSource",
    "find_package_photos",
    "find_debian_photos",
    "hf_dataset_photos",
    "is_heldout",
    "texture_pass_rate",
    "MATE_PHOTO_FOLDERS",
    "PLASMA_PHOTOGRAPHS",
    "LOMIRI_PHOTOGRAPHS",
    "OPENCV_PHOTOGRAPHS",
    "JIGZO_PHOTOGRAPHS",
    "extract_jigzo_photo",
    "GCOMPRIS_PHOTOGRAPHS",
    "read_qt_resources",
    "ENLIGHTENMENT_PHOTOGRAPHS",
    "largest_jpeg",
    "LISTED_PHOTOGRAPHS",
    "prepare_photos",
    "read_photo_index",
    "DEFAULT_PHOTO_CACHE",
    "PHOTO_INDEX_NAME",
]

DEFAULT_PHOTO_CACHE = Path(os.environ.get("DEQA_PHOTO_CACHE", Path.home() / ".cache" / "deqa" / "photos"))
PHOTO_INDEX_NAME = "photos.json"
_IMAGE_EXT = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class PhotoSource:
    """One photo on disk. ``group`` names the scene (the unit of the held-out split);
    ``photograph`` is False for drawings, renders and vector art (kept in the index, not used)."""

    group: str
    path: str
    origin: str
    photograph: bool = True


# mate-backgrounds sorts its wallpapers into folders: nature/ holds photographs; abstract/ and
# desktop/ hold vector art, gradients and logos.
MATE_PHOTO_FOLDERS = ("nature",)
# The Plasma wallpapers that are photographs (judged by eye, one by one; the others are vector
# art, renders or drawings: Altai, Autumn, Canopee, Cascade, Cluster, Elarun, Flow, FlyingKonqui,
# Honeywave, IceCold, Kay, Kokkini, MilkyWay, Opal, PastelHills, Patak, SafeLanding, Shell, Volna).
PLASMA_PHOTOGRAPHS = frozenset({
    "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
    "Kite", "OneStandsOut", "Path", "summer_1am",
})
# lomiri-wallpapers-16.04 / -20.04 put their files straight into /usr/share/backgrounds (the
# Ubuntu wallpaper contests). Photographs, judged by eye; the others are renders or digital art:
# Fossa, Infinite-Sea (a composite), Painting-Colors, analogpattern, life, umang, warty-final-ubuntu.
LOMIRI_PHOTOGRAPHS = frozenset({
    "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Kleiber_by_Lukas_Baubkus",
    "Picture_0B_by_freespace", "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede",
    "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi",
    "greentock_by_Peter_Nerlich", "picosdeeuropa_by_Aitzol_Berasategi",
    "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi",
})
# OpenCV's sample images (opencv-doc, under examples/): the colour photographs, by scene (two
# views of one scene share a group so the held-out split keeps them together). Left out on
# purpose: charts, synthetic test patterns and screenshots; grey-scale photos (basketball*,
# box*); images that already carry a degradation the label would not know of (apple and orange
# are noisy scans, licenseplate_motion and text_defocus are blurred, ela_modified is re-compressed,
# starry_night is a painting); 256-px copies too small for varied 224-px crops.
OPENCV_PHOTOGRAPHS = {
    "data/fruits.jpg": "fruits", "data/baboon.jpg": "baboon",
    "data/leuvenA.jpg": "leuven", "data/leuvenB.jpg": "leuven",
    "data/squirrel_cls.jpg": "squirrel", "data/home.jpg": "home",
    "data/aloeL.jpg": "aloe", "data/aloeR.jpg": "aloe", "data/board.jpg": "board",
    "data/chicky_512.png": "chicky", "data/rubberwhale1.png": "rubberwhale",
    "data/rubberwhale2.png": "rubberwhale", "data/smarties.png": "smarties", "data/messi5.jpg": "messi",
    "data/ela_original.jpg": "ela", "data/aero1.jpg": "aero", "data/aero3.jpg": "aero",
    "data/butterfly.jpg": "butterfly", "data/building.jpg": "building",
    "data/graf1.png": "graffiti", "data/graf3.png": "graffiti",
    "alphamat/input_images/plant.jpg": "plant", "text/scenetext01.jpg": "scenetext01",
    "text/scenetext03.jpg": "scenetext03", "text/scenetext05.jpg": "scenetext05",
    "hfs/data/000.jpg": "robin",
}

# jigzo-data's puzzles (usr/share/games/jigzo/puzzles/*/*.pzl): each file holds one photograph,
# by file stem -> scene. Left out: penguin-3x2 (CC BY-NC-SA, a non-commercial licence the shipped
# weights should not depend on). The rest are GPL-2+ / GPL-2 (debian/copyright of jigzo-data).
JIGZO_PHOTOGRAPHS = {
    "bike-3x4": "bike", "bird-2x3": "kookaburra", "blackberry-3x3": "blackberry", "castle-6x3": "castle",
    "clouds-4x4": "clouds", "gorilla2-3x3": "gorilla", "heli-4x3": "helicopter", "horse-4x3": "horse",
    "tobogan-4x3": "slide", "train-2x2": "train", "windmill-4x4": "windmill",
}
_PZL_IMAGE_RE = re.compile(rb"\nimage (\d+) (\d+) (\d+) (\d+) ")
_PZL_RECORD_RE = re.compile(rb"([\x21-\x7e]+)\.jpg\n(\d+)\n")  # printable name: records follow binary data


def extract_jigzo_photo(path: str | os.PathLike) -> tuple[str, Image.Image]:
    """The photograph inside a jigzo ``.pzl`` puzzle file: (its name, the image).

    A puzzle file is a text header (the piece map and ``image X Y W H``, the photo's rectangle in
    the texture), then length-prefixed records ``NAME-t.jpg`` (a 232-px thumbnail), a PNG (the
    piece masks) and ``NAME.jpg`` (a 1024-px texture atlas: the whole photo at X, Y, W, H, with
    the cut pieces packed beside it). The photo is that rectangle of the atlas, at its own size.
    """
    import io

    data = Path(path).read_bytes()
    if not data.startswith(b"PzlF\n"):
        raise ValueError(f"{path}: not a jigzo puzzle file (no PzlF header)")
    rect = _PZL_IMAGE_RE.search(data)
    if rect is None:
        raise ValueError(f"{path}: no 'image X Y W H' line in the puzzle header")
    x, y, w, h = (int(v) for v in rect.groups())
    for m in _PZL_RECORD_RE.finditer(data, rect.end()):
        name = m.group(1).decode("ascii", "replace")
        if name.endswith("-t"):
            continue  # the thumbnail
        blob = data[m.end(): m.end() + int(m.group(2))]
        with Image.open(io.BytesIO(blob)) as atlas:
            if atlas.width < x + w or atlas.height < y + h:
                raise ValueError(f"{path}: photo rectangle {w}x{h}+{x}+{y} lies outside the {atlas.width}x{atlas.height} texture")
            return name, atlas.convert("RGB").crop((x, y, x + w, y + h))
    raise ValueError(f"{path}: no texture record (NAME.jpg) after the header")

# gcompris-qt-data keeps its pictures as WebP inside Qt resource bundles (usr/share/gcompris-qt/rcc/
# NAME.rcc). The photographs, judged by eye, by (bundle, folder inside it) -> file stems; the
# paintings, cartoons, planet renders and the grey-scale castleClinton are left out. Licences per
# file in the package's debian/copyright: GPL-3 / GPL-3+, a few world animals CC BY(-SA), GFDL or
# public domain. Each file is one scene except two landmarks shown twice (_GCOMPRIS_SAME_SCENE).
GCOMPRIS_PHOTOGRAPHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("clickgame", "/gcompris/src/activities/clickgame/resource"): ("sea1", "sea2", "sea3", "sea4", "sea5", "sea6"),
    ("details", "/gcompris/src/activities/details/resource/image"): (
        "EgeskovSlotSpejling_background", "GizahPyramids_background", "EilanDonanCastle_background",
        "TajMahal_background", "Neuschwanstein_background"),
    ("erase", "/gcompris/src/activities/erase/resource"): (
        "gorilla", "northern_harrier", "pika", "caterpillar", "giraffe", "calf", "penguin", "nubian_ibex", "camels",
        "macaque", "swans", "dolphin", "long_nosed_monkey", "kingfisher", "heron", "chamaeleon", "flying_fox",
        "gibbon", "rhinoceros", "crab", "goat", "toucan", "gosling", "horse", "alpaca", "cheetah", "butterfly",
        "bee", "meerkats", "kitten", "red_panda", "squirrel", "spoonbills"),
    ("explore_farm_animals", "/gcompris/src/activities/explore_farm_animals/resource/animals"): (
        "dog", "cow", "cat", "chicken", "horse", "duck", "sheep", "owl", "pig"),
    ("explore_monuments", "/gcompris/src/activities/explore_monuments/resource/usa"): (
        "canyondeChelly", "georgeWashingtonBirthplace", "lincolnMemorial", "navajo", "mountRushmore",
        "statueofLiberty", "castillodeSanMarcos", "fortSumter"),
    ("explore_monuments", "/gcompris/src/activities/explore_monuments/resource/egypt"): (
        "meidumPyramid", "greatPyramidOfGiza", "bentPyramid", "redPyramid"),
    ("explore_monuments", "/gcompris/src/activities/explore_monuments/resource/india"): (
        "greatStupa", "gatewayofIndia", "konarkSunTemple", "charminar", "hawaMahal", "rangGhar", "victoriaMemorial",
        "mysorePalace", "goldenTemple", "ajantaCave", "qutubMinar"),
    ("explore_monuments", "/gcompris/src/activities/explore_monuments/resource/france"): (
        "chateaudeChambord", "pontduGard", "palaisdesPapes", "reimsCathedral", "eiffelTower", "citedeCarcassonne",
        "arlesAmphitheater", "chateaudeChenonceau", "montStMichel", "rocamadour"),
    ("explore_monuments", "/gcompris/src/activities/explore_monuments/resource/germany"): (
        "berlinCathedral", "schwerinPalace", "trierImperialBaths", "aulaPalatina", "brandenburgGate",
        "neuschwansteinCastle", "wormsCathedral"),
    ("explore_monuments", "/gcompris/src/activities/explore_monuments/resource/wonders"): (
        "machuPicchu", "tajMahal", "chichenItza", "colosseum", "petra", "greatWallofChina", "christTheRedeemer"),
    ("explore_world_animals", "/gcompris/src/activities/explore_world_animals/resource/animals"): (
        "crocodile", "giraffe", "koala", "bison", "dragon", "jaguar", "hedgehog", "kangaroo", "narwhal", "moose",
        "panda", "chameleon", "lemur", "polar_bear", "scarlet_macaw"),
    ("explore_world_music", "/gcompris/src/activities/explore_world_music/resource/music"): (
        "italy", "america", "australia", "japan", "orchestra", "africa", "ireland", "mexico", "middleeast"),
}
_GCOMPRIS_SAME_SCENE = {
    "details/TajMahal_background": "taj_mahal", "explore_monuments/tajMahal": "taj_mahal",
    "details/Neuschwanstein_background": "neuschwanstein", "explore_monuments/neuschwansteinCastle": "neuschwanstein",
}
# The WebP files are lossy and some look smoothed at full size: they are stored at 3/4 size, where
# that smoothing is under a pixel, so that "clean" crops of them are clean.
GCOMPRIS_SCALE = 0.75
# enlightenment-data (BSD-2-Clause): each background .edj holds one photo at 13 resolutions; the
# photographs (left out: Foggy-Trees and Peaks, near grey-scale; Dunes, Sunset-Hills, Flat-Fan and
# the Squiggles, vector art; Paper-Flower, a drawing; Flat-Stone-Pattern, a texture).
ENLIGHTENMENT_PHOTOGRAPHS = frozenset({
    "Bamboo", "God-Rays", "Green-Maple", "Lichen-Branches", "Mountain", "Red-Maple", "Sea-of-Lanterns",
    "Snow-Trees", "Spruce-Needles", "Sunset-Clouds", "White-Flower", "Yellow-Flower",
})
# Plain image files, by path under usr/share -> scene, judged by eye: lxqt-themes (LGPL-2.1+; left
# out: the logo and polygon wallpapers, the near-grey beam, the tilt-shift-blurred cloud),
# palapeli-data (GPL-2+), puzzle-jigsaw (CC0, Pexels), sddm-theme-maldives (CC BY 3.0, Nevit
# Dilmen; its maldives.jpg is a screenshot), the user-avatar photos of plasma-workspace-data
# (CC0-1.0 per file; left out: Car, a render) and of budgie-control-center-data (GPL-2+ package
# terms; only the 512-px faces, the others are 96 px). The avatars are 512x512 square crops of
# stock photos, many with a shallowly focused background: the texture rule decides which are used.
LISTED_PHOTOGRAPHS = {
    "lxqt/wallpapers/flowers.png": ("lxqt:meadow", "lxqt-themes"),
    "lxqt/wallpapers/fog.jpg": ("lxqt:fog", "lxqt-themes"),
    "lxqt/wallpapers/after-the-rain.jpg": ("lxqt:after_the_rain", "lxqt-themes"),
    "lxqt/wallpapers/Butterfly-Kenneth-Wimer.jpg": ("lxqt:butterfly_wimer", "lxqt-themes"),
    "lxqt/wallpapers/butterfly.png": ("lxqt:butterfly", "lxqt-themes"),
    "lxqt/wallpapers/Valendas.png": ("lxqt:valendas", "lxqt-themes"),
    "lxqt/wallpapers/appleflower.png": ("lxqt:apple_blossom", "lxqt-themes"),
    "lxqt/wallpapers/drop.png": ("lxqt:drop", "lxqt-themes"),
    "lxqt/wallpapers/this-is-not-windows.jpg": ("lxqt:green_hills", "lxqt-themes"),
    "palapeli/collection/cincinnati-bridge.jpg": ("palapeli:cincinnati_bridge", "palapeli-data"),
    "palapeli/collection/european-honey-bee.jpg": ("palapeli:honey_bee", "palapeli-data"),
    "palapeli/collection/panther-chameleon-female.jpg": ("palapeli:chameleon", "palapeli-data"),
    "palapeli/collection/castle-maintenon.jpg": ("palapeli:castle_maintenon", "palapeli-data"),
    "palapeli/collection/citrus-fruits.jpg": ("palapeli:citrus_fruits", "palapeli-data"),
    "puzzle-jigsaw/samples/pexels-photo-302304.jpeg": ("puzzle-jigsaw:tiger", "puzzle-jigsaw"),
    "sddm/themes/maldives/background.jpg": ("sddm:maldives", "sddm-theme-maldives"),
    "plasma/avatars/photos/Air Balloon.png": ("plasma-avatar:air_balloon", "plasma-workspace-data"),
    "plasma/avatars/photos/Astronaut.png": ("plasma-avatar:astronaut", "plasma-workspace-data"),
    "plasma/avatars/photos/Books.png": ("plasma-avatar:books", "plasma-workspace-data"),
    "plasma/avatars/photos/Brushes.png": ("plasma-avatar:brushes", "plasma-workspace-data"),
    "plasma/avatars/photos/Bulb.png": ("plasma-avatar:bulb", "plasma-workspace-data"),
    "plasma/avatars/photos/Cat.png": ("plasma-avatar:cat", "plasma-workspace-data"),
    "plasma/avatars/photos/Chameleon.png": ("plasma-avatar:chameleon", "plasma-workspace-data"),
    "plasma/avatars/photos/Cocktail.png": ("plasma-avatar:cocktail", "plasma-workspace-data"),
    "plasma/avatars/photos/Dog.png": ("plasma-avatar:dog", "plasma-workspace-data"),
    "plasma/avatars/photos/Fish.png": ("plasma-avatar:fish", "plasma-workspace-data"),
    "plasma/avatars/photos/Gamepad.png": ("plasma-avatar:gamepad", "plasma-workspace-data"),
    "plasma/avatars/photos/Owl.png": ("plasma-avatar:owl", "plasma-workspace-data"),
    "plasma/avatars/photos/Pancakes.png": ("plasma-avatar:pancakes", "plasma-workspace-data"),
    "plasma/avatars/photos/Parrot.png": ("plasma-avatar:parrot", "plasma-workspace-data"),
    "plasma/avatars/photos/Pencils.png": ("plasma-avatar:pencils", "plasma-workspace-data"),
    "plasma/avatars/photos/Shuttle.png": ("plasma-avatar:shuttle", "plasma-workspace-data"),
    "plasma/avatars/photos/Soccer.png": ("plasma-avatar:soccer", "plasma-workspace-data"),
    "plasma/avatars/photos/Sunflower.png": ("plasma-avatar:sunflower", "plasma-workspace-data"),
    "plasma/avatars/photos/Sushi.png": ("plasma-avatar:sushi", "plasma-workspace-data"),
    "pixmaps/budgie-faces/bicycle.jpg": ("budgie-face:bicycle", "budgie-control-center-data"),
    "pixmaps/budgie-faces/book.jpg": ("budgie-face:book", "budgie-control-center-data"),
    "pixmaps/budgie-faces/calculator.jpg": ("budgie-face:calculator", "budgie-control-center-data"),
    "pixmaps/budgie-faces/cat.jpg": ("budgie-face:cat", "budgie-control-center-data"),
    "pixmaps/budgie-faces/coffee2.jpg": ("budgie-face:coffee2", "budgie-control-center-data"),
    "pixmaps/budgie-faces/flower2.jpg": ("budgie-face:flower2", "budgie-control-center-data"),
    "pixmaps/budgie-faces/gamepad.jpg": ("budgie-face:gamepad", "budgie-control-center-data"),
    "pixmaps/budgie-faces/guitar2.jpg": ("budgie-face:guitar2", "budgie-control-center-data"),
    "pixmaps/budgie-faces/headphones.jpg": ("budgie-face:headphones", "budgie-control-center-data"),
    "pixmaps/budgie-faces/hummingbird.jpg": ("budgie-face:hummingbird", "budgie-control-center-data"),
    "pixmaps/budgie-faces/mountain.jpg": ("budgie-face:mountain", "budgie-control-center-data"),
    "pixmaps/budgie-faces/plane.jpg": ("budgie-face:plane", "budgie-control-center-data"),
    "pixmaps/budgie-faces/surfer.jpg": ("budgie-face:surfer", "budgie-control-center-data"),
    "pixmaps/budgie-faces/tomatoes.jpg": ("budgie-face:tomatoes", "budgie-control-center-data"),
    "pixmaps/budgie-faces/tree.jpg": ("budgie-face:tree", "budgie-control-center-data"),
}


def read_qt_resources(path: str | os.PathLike) -> Iterable[tuple[str, bytes]]:
    """Every file in a Qt resource bundle (``.rcc``, formats 1-3): (path inside it, bytes).

    Layout (big-endian): ``qres``, version, then the offsets of the tree, data and names
    sections. Tree nodes are 14 bytes (22 from version 2: + a timestamp): name offset, flags
    (2 = directory, 1 = zlib via qCompress, 4 = zstd), then a directory's child count and first
    child, or a file's locale and data offset. Data: a 4-byte length, then the bytes. Names: a
    2-byte length, a 4-byte hash, UTF-16 characters. zstd entries (Qt 6) are skipped.
    """
    import struct
    import zlib

    data = Path(path).read_bytes()
    if data[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource bundle (no qres header)")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    if version not in (1, 2, 3):
        raise ValueError(f"{path}: Qt resource format version {version} is not supported (1-3)")
    node_size = 14 if version == 1 else 22

    def name(offset: int) -> str:
        (n,) = struct.unpack(">H", data[names + offset: names + offset + 2])
        return data[names + offset + 6: names + offset + 6 + 2 * n].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        index, parent = stack.pop()
        node = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", data[node: node + 6])
        here = f"{parent}/{name(name_offset)}" if index else ""
        if flags & 2:
            count, first = struct.unpack(">II", data[node + 6: node + 14])
            stack.extend((first + c, here) for c in reversed(range(count)))
            continue
        (offset,) = struct.unpack(">I", data[node + 10: node + 14])
        (size,) = struct.unpack(">I", data[payload + offset: payload + offset + 4])
        blob = data[payload + offset + 4: payload + offset + 4 + size]
        if flags & 4:
            continue
        yield here, zlib.decompress(blob[4:]) if flags & 1 else blob


def largest_jpeg(path: str | os.PathLike) -> bytes:
    """The largest (in pixels) complete JPEG stream inside a container file (an Edje ``.edj``
    wallpaper stores its photo as raw JPEG entries, one per resolution)."""
    import io

    data = Path(path).read_bytes()
    best, best_px, start = None, 0, 0
    while (start := data.find(b"\xff\xd8\xff", start)) >= 0:
        end, found = start, None
        while (end := data.find(b"\xff\xd9", end + 2)) >= 0:  # an embedded thumbnail ends early: try the next EOI
            try:
                with Image.open(io.BytesIO(data[start: end + 2])) as im:
                    im.load()
                    found = (end + 2, im.width * im.height)
                break
            except (OSError, SyntaxError):
                continue
        if found is None:
            start += 3
            continue
        if found[1] > best_px:
            best, best_px = data[start: found[0]], found[1]
        start = found[0]
    if best is None:
        raise ValueError(f"{path}: no complete JPEG image inside")
    return best


def find_package_photos() -> list[PhotoSource]:
    """Colour photos shipped by scikit-image, scikit-learn and matplotlib (those installed)."""
    out: list[PhotoSource] = []
    try:
        import skimage.data

        root = Path(skimage.data.data_dir)
        # Photographs only: micrographs, retina scans, logos and charts would teach odd "clean".
        for name, group in [
            ("astronaut.png", "skimage:astronaut"),
            ("chelsea.png", "skimage:chelsea"),
            ("coffee.png", "skimage:coffee"),
            ("rocket.jpg", "skimage:rocket"),
            ("motorcycle_left.png", "skimage:motorcycle"),
            ("motorcycle_right.png", "skimage:motorcycle"),
        ]:
            if (root / name).is_file():
                out.append(PhotoSource(group, str(root / name), "scikit-image"))
    except ImportError:
        pass
    try:
        import sklearn.datasets

        root = Path(sklearn.datasets.__file__).parent / "images"
        for name in ("china.jpg", "flower.jpg"):
            if (root / name).is_file():
                out.append(PhotoSource(f"sklearn:{Path(name).stem}", str(root / name), "scikit-learn"))
    except ImportError:
        pass
    try:
        import matplotlib

        root = Path(matplotlib.get_data_path()) / "sample_data"
        # Minduka_Present_Blue_Pack.png is a rendered gift-box icon, not a photograph.
        for name, photo in (("grace_hopper.jpg", True), ("Minduka_Present_Blue_Pack.png", False)):
            if (root / name).is_file():
                out.append(PhotoSource(f"matplotlib:{Path(name).stem}", str(root / name), "matplotlib", photo))
    except ImportError:
        pass
    return out


_RES_RE = re.compile(r"[_-]?\d{3,5}x\d{3,5}$")


def find_debian_photos(root: str | os.PathLike) -> list[PhotoSource]:
    """Wallpapers unpacked by ``scripts/get_photos.sh`` under ``root`` (its ``root/`` folder).

    Only the largest file per group is kept: the other resolutions of a wallpaper are the same
    picture and would add nothing but decode time.
    """
    root = Path(root)
    share = root / "root" / "usr" / "share" if (root / "root").is_dir() else root / "usr" / "share"
    best: dict[str, tuple[int, Path, str, bool]] = {}

    def consider(group: str, path: Path, origin: str, photograph: bool) -> None:
        size = path.stat().st_size
        if group not in best or size > best[group][0]:
            best[group] = (size, path, origin, photograph)

    mate = share / "backgrounds" / "mate"
    if mate.is_dir():
        for path in sorted(mate.rglob("*")):
            if path.suffix.lower() in _IMAGE_EXT:
                stem = _RES_RE.sub("", path.stem)
                consider(f"mate:{path.parent.name}/{stem}", path, "mate-backgrounds", path.parent.name in MATE_PHOTO_FOLDERS)
    plasma = share / "wallpapers"
    if plasma.is_dir():
        for path in sorted(plasma.glob("*/contents/images*/*")):
            if path.suffix.lower() in _IMAGE_EXT:
                wallpaper = path.parent.parent.parent.name
                variant = path.parent.name  # images / images_dark: same scene, different look
                consider(f"plasma:{wallpaper}:{variant}", path, "plasma-workspace-wallpapers", wallpaper in PLASMA_PHOTOGRAPHS)
    lomiri = share / "backgrounds"
    if lomiri.is_dir():
        for path in sorted(lomiri.glob("*_by_*")):  # the contest files: "<title>_by_<author>.jpg"
            if path.suffix.lower() in _IMAGE_EXT:
                consider(f"lomiri:{path.stem}", path, "lomiri-wallpapers", path.stem in LOMIRI_PHOTOGRAPHS)
    # Light and dark variants of one wallpaper are one scene: the split must keep them together.
    out = [
        PhotoSource(_scene(group), str(path), origin, photograph)
        for group, (_, path, origin, photograph) in sorted(best.items())
    ]
    # OpenCV: the named photos only (the examples folder also holds hundreds of charts and masks).
    examples = share / "doc" / "opencv-doc" / "examples"
    for rel, scene in sorted(OPENCV_PHOTOGRAPHS.items()):
        if (examples / rel).is_file():
            out.append(PhotoSource(f"opencv:{scene}", str(examples / rel), "opencv-doc"))
    # Photos stored inside other files are cut out once into the cache, beside the package files.
    extracted = share.parent.parent / "extracted"
    # jigzo: the listed puzzles only (unlisted ones, e.g. the non-commercial penguin, are not read).
    for pzl in sorted((share / "games" / "jigzo" / "puzzles").glob("*/*.pzl")):
        if pzl.stem in JIGZO_PHOTOGRAPHS:
            target = _extract_once(extracted / "jigzo" / f"{pzl.stem}.png", lambda t, p=pzl: extract_jigzo_photo(p)[1].save(t))
            out.append(PhotoSource(f"jigzo:{JIGZO_PHOTOGRAPHS[pzl.stem]}", str(target), "jigzo-data"))
    out += _gcompris_photos(share, extracted / "gcompris")
    edj = share / "enlightenment" / "data" / "backgrounds"
    for name in sorted(ENLIGHTENMENT_PHOTOGRAPHS):
        if (edj / f"{name}.edj").is_file():
            # The JPEG as stored: no re-encoding.
            target = _extract_once(extracted / "enlightenment" / f"{name}.jpg",
                                   lambda t, e=edj / f"{name}.edj": t.write_bytes(largest_jpeg(e)))
            out.append(PhotoSource(f"enlightenment:{name}", str(target), "enlightenment-data"))
    for rel, (group, origin) in sorted(LISTED_PHOTOGRAPHS.items()):
        if (share / rel).is_file():
            out.append(PhotoSource(group, str(share / rel), origin))
    return out


def _extract_once(target: Path, write: Callable[[Path], object]) -> Path:
    """``target``, written by ``write(target)`` unless a previous run already did."""
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        write(target)
    return target


def _gcompris_photos(share: Path, cut: Path) -> list[PhotoSource]:
    """The listed gcompris photographs, decoded once from the bundles into ``cut`` (3/4 size).

    A bundle holds many photos, so it is read once for all of its missing ones (not through
    :func:`_extract_once`, which would re-read it per photo)."""
    import io

    bundles = share / "gcompris-qt" / "rcc"
    out = []
    for rcc in sorted({b for b, _ in GCOMPRIS_PHOTOGRAPHS}):
        wanted = {f"{folder}/{stem}.webp": stem for (b, folder), stems in GCOMPRIS_PHOTOGRAPHS.items() if b == rcc for stem in stems}
        if not (bundles / f"{rcc}.rcc").is_file():
            continue
        targets = {inner: cut / f"{rcc}__{stem}.png" for inner, stem in wanted.items()}
        if not all(t.is_file() for t in targets.values()):
            cut.mkdir(parents=True, exist_ok=True)
            for inner, blob in read_qt_resources(bundles / f"{rcc}.rcc"):
                if inner in targets and not targets[inner].is_file():
                    with Image.open(io.BytesIO(blob)) as im:
                        im = im.convert("RGB")
                        size = (round(im.width * GCOMPRIS_SCALE), round(im.height * GCOMPRIS_SCALE))
                        im.resize(size, Image.Resampling.LANCZOS).save(targets[inner])
        for inner, stem in sorted(wanted.items()):
            if targets[inner].is_file():
                scene = _GCOMPRIS_SAME_SCENE.get(f"{rcc}/{stem}", f"{rcc}/{stem}")
                out.append(PhotoSource(f"gcompris:{scene}", str(targets[inner]), "gcompris-qt-data"))
    return out


def _scene(group: str) -> str:
    return group.rsplit(":", 1)[0] if group.startswith("plasma:") else group


def hf_dataset_photos(
    name: str, out_dir: str | os.PathLike, *, split: str = "train", column: str = "image", limit: int = 500
) -> list[PhotoSource]:
    """Save up to ``limit`` images of a Hugging Face data set as files (needs internet)."""
    from datasets import load_dataset

    out_dir = Path(out_dir) / "hf"
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(name, split=split, streaming=True)
    sources: list[PhotoSource] = []
    for i, row in enumerate(ds):
        if i >= limit:
            break
        if column not in row:
            raise KeyError(f"--hf-dataset {name}: no column {column!r} (columns: {sorted(row)}); pass --hf-column")
        path = out_dir / f"{re.sub(r'[^A-Za-z0-9]+', '_', name)}_{i:06d}.png"
        row[column].convert("RGB").save(path)
        sources.append(PhotoSource(f"hf:{name}:{i}", str(path), f"hf:{name}"))
    return sources


def is_heldout(group: str, fraction: float) -> bool:
    """Deterministic group-level split: the same group is held out on every machine."""
    h = int(hashlib.sha1(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < fraction


def texture_pass_rate(photo: Image.Image, size: int, criterion: TextureCriterion, n: int = 40, seed: int = 0) -> float:
    """Fraction of ``n`` seeded random crops of ``photo`` (as rendered at ``size`` px) that pass."""
    import numpy as np

    from .synth import SynthConfig, random_crop

    if min(photo.size) < size:
        return 0.0
    cfg = SynthConfig(size=size)
    rng = np.random.default_rng(seed)
    return sum(criterion.passes(random_crop(photo, size, rng, cfg.crop_scale, cfg.max_aspect)) for _ in range(n)) / n


def prepare_photos(
    sources: Iterable[PhotoSource],
    out_dir: str | os.PathLike,
    *,
    max_side: int = 1024,
    heldout_fraction: float = 0.2,
    crop_size: int = 224,
    texture: TextureCriterion | None = None,
    min_pass_rate: float = 0.25,
    photographs_only: bool = True,
) -> list[dict]:
    """Decode, downscale (longest side <= ``max_side``) and save every photo once as PNG.

    Writes ``photos.json`` (group, file, origin, split, photograph, texture_pass_rate, use,
    reason) so that rendering never re-decodes the 5K wallpapers; re-running skips photos already
    prepared. A photo is *used* when it is a photograph (unless ``photographs_only`` is False),
    is at least ``crop_size`` px on its short side, and at least ``min_pass_rate`` of its random
    ``crop_size`` crops pass ``texture`` (default :class:`TextureCriterion`).
    """
    from ..imageio import load_image

    texture = texture or TextureCriterion()
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    index = []
    for src in sources:
        # The parent folder tells a wallpaper's light and dark variants (same scene, same file name) apart.
        stem = f"{src.group}_{Path(src.path).parent.name}_{Path(src.path).stem}"
        name = re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_") + ".png"
        target = out_dir / "images" / name
        if not target.is_file():
            img = load_image(src.path)
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            img.save(target)
        entry = asdict(src)
        entry["file"] = f"images/{name}"
        entry["split"] = "heldout" if is_heldout(src.group, heldout_fraction) else "train"
        with Image.open(target) as im:
            photo = im.convert("RGB")
        rate = texture_pass_rate(photo, crop_size, texture)
        entry["texture_pass_rate"] = round(rate, 3)
        if photographs_only and not src.photograph:
            entry["use"], entry["reason"] = False, "not a photograph"
        elif min(photo.size) < crop_size:
            entry["use"], entry["reason"] = False, f"smaller than {crop_size} px"
        elif rate < min_pass_rate:
            entry["use"], entry["reason"] = False, f"too flat: {rate:.0%} of crops pass the texture criterion (< {min_pass_rate:.0%})"
        else:
            entry["use"], entry["reason"] = True, ""
        index.append(entry)
    criterion = {"crop_size": crop_size, "min_pass_rate": min_pass_rate, "photographs_only": photographs_only, **texture.to_dict()}
    (out_dir / PHOTO_INDEX_NAME).write_text(json.dumps(index, indent=1))
    (out_dir / "curation.json").write_text(json.dumps(criterion, indent=1) + "\n")
    return index


def read_photo_index(photo_dir: str | os.PathLike, split: str | None = None, *, used_only: bool = True) -> list[dict]:
    """Entries of ``photos.json`` (optionally one split; by default only the photos curation
    kept), each with an absolute ``file``."""
    photo_dir = Path(photo_dir)
    path = photo_dir / PHOTO_INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no photo index; run `deqa baseline photos --out {photo_dir}` first")
    try:
        index = json.loads(path.read_text())
        if not isinstance(index, list) or not all(isinstance(e, dict) and "file" in e and "split" in e for e in index):
            raise ValueError("expected a list of photo entries with 'file' and 'split'")
    except ValueError as err:  # JSONDecodeError too
        raise ValueError(f"{path}: not a photo index ({err}); run `deqa baseline photos --out {photo_dir}` again") from None
    if split is not None:
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        index = [e for e in index if e["split"] == split]
    if used_only:
        index = [e for e in index if e.get("use", True)]
    for e in index:
        e["file"] = str(photo_dir / e["file"])
    if not index:
        raise ValueError(f"{path}: no usable photos in split {split!r} (see 'use'/'reason' in the index)")
    return index
