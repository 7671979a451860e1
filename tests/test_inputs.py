"""Input expansion for deqa-score: files, directories, globs, manifests, with clear errors."""

import json

import pytest
from PIL import Image

from deqa.inputs import InputError, expand_inputs, read_manifest


@pytest.fixture
def tree(tmp_path):
    for rel in [
        "a.jpg",
        "b.PNG",
        "notes.md",
        "sub/c.jpg",
        "sub/deep/d.webp",
        ".hidden/e.jpg",
        "._f.jpg",
    ]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix.lower() in (".jpg", ".png", ".webp"):
            Image.new("RGB", (4, 4)).save(
                p, format={"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[p.suffix.lower()[1:]]
            )
        else:
            p.write_text("x")
    return tmp_path


def test_directory_flat_and_recursive(tree):
    assert expand_inputs([str(tree)]) == [str(tree / "a.jpg"), str(tree / "b.PNG")]
    assert expand_inputs([str(tree)], recursive=True) == [
        str(tree / p) for p in ["a.jpg", "b.PNG", "sub/c.jpg", "sub/deep/d.webp"]
    ]


def test_files_keep_order_missing_paths_stay_and_duplicates_go(tree):
    args = [
        str(tree / "sub/c.jpg"),
        str(tree / "missing.jpg"),
        str(tree / "a.jpg"),
        str(tree / "sub/c.jpg"),
    ]
    assert expand_inputs(args) == args[:3]


def test_globs(tree):
    assert expand_inputs([str(tree / "**/*.jpg")]) == [str(tree / "a.jpg"), str(tree / "sub/c.jpg")]
    with pytest.raises(InputError, match=r"\*\.tif: pattern matches no files"):
        expand_inputs([str(tree / "*.tif")])


def test_empty_directory_is_an_error(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="directory has no image files .*--recursive"):
        expand_inputs([str(tmp_path)])


def test_txt_manifest_relative_to_its_folder(tree):
    m = tree / "sub" / "list.txt"
    m.write_text("# my images\nc.jpg\n\n../a.jpg\n/abs/z.jpg\n")
    assert read_manifest(m) == [
        str(tree / "sub" / "c.jpg"),
        str(tree / "sub" / "../a.jpg"),
        "/abs/z.jpg",
    ]
    assert expand_inputs([str(m)]) == read_manifest(m)


@pytest.mark.parametrize("column", ["image", "Path", "image_path", "filename"])
def test_csv_manifest_columns(tree, column):
    m = tree / "m.csv"
    m.write_text(f"mos,{column}\n3.2,a.jpg\n4.1,sub/c.jpg\n")
    assert read_manifest(m) == [str(tree / "a.jpg"), str(tree / "sub/c.jpg")]


def test_tsv_and_jsonl_manifests(tree):
    t = tree / "m.tsv"
    t.write_text("image\tmos\na.jpg\t1\n")
    assert read_manifest(t) == [str(tree / "a.jpg")]
    j = tree / "m.jsonl"
    j.write_text(
        json.dumps({"image": "a.jpg", "mos": 3})
        + "\n\n"
        + json.dumps({"image": "sub/c.jpg"})
        + "\n"
    )
    assert read_manifest(j) == [str(tree / "a.jpg"), str(tree / "sub/c.jpg")]


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("m.csv", "mos,score\n1,2\n", r"m.csv: no image column; found columns \['mos', 'score'\]"),
        ("m.csv", "image,mos\na.jpg,1\n,2\n", r"m.csv line 3: empty 'image' value"),
        (
            "m.jsonl",
            '{"image": "a.jpg"}\n{"path": "b.jpg"}\n',
            r"m.jsonl line 2: expected an object with a non-empty \"image\"",
        ),
        ("m.jsonl", '{"image": "a.jpg"}\n{oops\n', r"m.jsonl line 2: not valid JSON"),
        ("m.txt", "# only a comment\n\n", r"m.txt: manifest lists no images"),
    ],
)
def test_manifest_errors_name_file_and_line(tmp_path, name, text, match):
    m = tmp_path / name
    m.write_text(text)
    with pytest.raises(InputError, match=match):
        expand_inputs([str(m)])


def test_non_utf8_manifest(tmp_path):
    m = tmp_path / "m.txt"
    m.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="not UTF-8"):
        read_manifest(m)


def test_one_file_named_two_ways_is_scored_once_under_the_first_name(tree):
    # A manifest in sub/ lists ../a.jpg; the command line names a.jpg too: one input.
    m = tree / "sub" / "list.txt"
    m.write_text("../a.jpg\nc.jpg\n")
    assert expand_inputs([str(m), str(tree / "a.jpg")]) == [
        str(tree / "sub" / "../a.jpg"),
        str(tree / "sub" / "c.jpg"),
    ]
    assert expand_inputs([str(tree / "a.jpg"), str(m)]) == [str(tree / "a.jpg"), str(tree / "sub" / "c.jpg")]


def test_same_file_check_follows_symlinked_folders(tree):
    # link -> sub/deep, so link/../c.jpg is sub/c.jpg (not <tree>/c.jpg, as plain normpath says),
    # and link/../a.jpg is sub/a.jpg, which does not exist: a different input from <tree>/a.jpg.
    (tree / "link").symlink_to(tree / "sub" / "deep", target_is_directory=True)
    assert expand_inputs([str(tree / "sub/c.jpg"), str(tree / "link/../c.jpg")]) == [str(tree / "sub/c.jpg")]
    both = [str(tree / "a.jpg"), str(tree / "link/../a.jpg")]
    assert expand_inputs(both) == both
    # Two differently named links to one image are two inputs: each name gets its row.
    (tree / "alias.jpg").symlink_to(tree / "a.jpg")
    assert expand_inputs([str(tree / "a.jpg"), str(tree / "alias.jpg")]) == [
        str(tree / "a.jpg"),
        str(tree / "alias.jpg"),
    ]


@pytest.mark.parametrize("arg", ["", "  "])
def test_an_empty_input_is_an_error_not_the_current_folder(tree, monkeypatch, arg):
    monkeypatch.chdir(tree)  # Path("") is "." and this folder holds images
    with pytest.raises(InputError, match="empty input path"):
        expand_inputs([arg])


def test_folder_scans_include_every_format_pillow_opens_here(tmp_path):
    from deqa.imageio import load_image

    img = Image.new("RGB", (8, 6), (10, 20, 30))
    img.convert("1").save(tmp_path / "a.pbm")
    img.save(tmp_path / "b.pnm", format="PPM")
    img.save(tmp_path / "c.avif")
    found = expand_inputs([str(tmp_path)])
    assert [p.rsplit("/", 1)[1] for p in found] == ["a.pbm", "b.pnm", "c.avif"]
    assert all(load_image(p).size == (8, 6) for p in found)


def test_recursive_scans_enter_symlinked_folders_once_and_survive_loops(tree, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    Image.new("RGB", (4, 4)).save(elsewhere / "x.jpg")
    (tree / "linked").symlink_to(elsewhere, target_is_directory=True)
    (tree / "sub" / "loop").symlink_to(tree, target_is_directory=True)  # back up the tree
    found = expand_inputs([str(tree)], recursive=True)
    assert str(tree / "linked" / "x.jpg") in found
    assert len(found) == len(set(found)) == 5  # a, b, linked/x, sub/c, sub/deep/d: the loop adds nothing
