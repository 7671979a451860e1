"""Photo sources and curation: photographs only, enough texture, held-out split by scene."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deqa.baselines.photos import (
    PhotoSource,
    find_debian_photos,
    is_heldout,
    prepare_photos,
    read_photo_index,
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


def test_heldout_split_is_by_scene_and_stable():
    assert is_heldout("skimage:astronaut", 0.2) and not is_heldout("sklearn:china", 0.2)
    assert not any(is_heldout(g, 0.0) for g in ("a", "b", "c"))
