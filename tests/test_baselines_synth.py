"""The synthetic generator: each label must move a measurable property of the image the right way."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from deqa.baselines.synth import (
    _WATERMARK_WORDS,
    APPLY_ORDER,
    DEGRADATIONS,
    SynthConfig,
    apply_blur,
    apply_colour_cast,
    apply_exposure,
    apply_jpeg,
    apply_noise,
    apply_watermark,
    draws_text,
    find_fonts,
    jpeg_quality,
    load_synth_dataset,
    random_crop,
    render_dataset,
    render_sample,
    render_sample_at,
    rotate_hue,
    sample_plan,
    usable_photos,
)

LEVELS = [0.05, 0.3, 0.6, 0.95]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    img = Image.fromarray(data.coffee()).resize((160, 107))
    return np.asarray(img, dtype=np.float32) / 255.0


def _lap_var(img):
    return float(ndimage.laplace(img @ np.array([0.299, 0.587, 0.114], np.float32)).var())


def _strictly_increasing(xs):
    return all(b > a for a, b in zip(xs, xs[1:], strict=False))


@pytest.mark.parametrize("kind", ["gaussian", "motion", "box"])
def test_blur_lowers_laplacian_variance_monotonically(photo, kind):
    lv = [_lap_var(photo)] + [_lap_var(apply_blur(photo, t, np.random.default_rng(0), kind=kind)) for t in LEVELS]
    assert _strictly_increasing(lv[::-1]), lv


@pytest.mark.parametrize("kind", ["gaussian", "salt_pepper", "poisson"])
def test_noise_residual_std_rises_with_intensity(photo, kind):
    stds = [float((apply_noise(photo, t, np.random.default_rng(0), kind=kind) - photo).std()) for t in LEVELS]
    assert _strictly_increasing(stds), stds
    assert stds[0] > 0


def test_jpeg_quality_mapping_and_error_monotone(photo):
    assert jpeg_quality(0.0) == 90 and jpeg_quality(1.0) == 5
    qs = [jpeg_quality(t) for t in LEVELS]
    assert qs == sorted(qs, reverse=True)
    errs = [float(np.abs(apply_jpeg(photo, t, np.random.default_rng(0)) - photo).mean()) for t in LEVELS]
    assert _strictly_increasing(errs), errs


def test_exposure_moves_brightness_in_its_direction(photo):
    under = [float(apply_exposure(photo, t, np.random.default_rng(0), direction=-1).mean()) for t in LEVELS]
    over = [float(apply_exposure(photo, t, np.random.default_rng(0), direction=1).mean()) for t in LEVELS]
    assert _strictly_increasing(under[::-1]) and under[0] < photo.mean()
    assert _strictly_increasing(over) and over[0] > photo.mean()
    # t = 0 is the identity (up to float rounding through the gamma curve).
    np.testing.assert_allclose(apply_exposure(photo, 0.0, np.random.default_rng(0), direction=1), photo, atol=1e-5)


@pytest.mark.parametrize("kind", ["gains", "tint"])
def test_colour_cast_shifts_channel_balance_monotonically(photo, kind):
    def shift(t):
        out = apply_colour_cast(photo, t, np.random.default_rng(1), kind=kind)
        return float(np.abs(out.mean((0, 1)) - photo.mean((0, 1))).sum())

    shifts = [shift(t) for t in LEVELS]
    assert _strictly_increasing(shifts), shifts


@pytest.mark.parametrize("kind", ["gains", "tint"])
def test_colour_cast_hue_can_be_given(photo, kind):
    """A given hue angle is the cast's direction (0 red, 2π/3 green, 4π/3 blue); the drawn one is random."""
    for k, angle in enumerate((0.0, 2 * np.pi / 3, 4 * np.pi / 3)):
        shift = apply_colour_cast(photo, 0.8, np.random.default_rng(0), kind=kind, angle=angle).mean((0, 1)) - photo.mean((0, 1))
        assert int(np.argmax(shift)) == k, (angle, shift)
    drawn = {tuple(apply_colour_cast(photo, 0.8, np.random.default_rng(s), kind=kind).mean((0, 1)).round(3)) for s in range(4)}
    assert len(drawn) == 4


@pytest.mark.parametrize("layout", ["tiled", "centre", "diagonal", "corner"])
def test_watermark_visibility_grows_with_intensity(photo, layout):
    def diff(t):
        return float(np.abs(apply_watermark(photo, t, np.random.default_rng(2), layout=layout) - photo).mean())

    diffs = [diff(t) for t in LEVELS]
    assert _strictly_increasing(diffs), diffs
    assert diffs[0] > 0


@pytest.mark.parametrize("layout", ["tiled", "centre", "diagonal", "corner"])
def test_watermark_size_jitter(photo, layout):
    """size_jitter=1 is the training generator bit for bit; 0 draws every mark of one t at one size."""
    # At the model's 224 px: on the small fixture the tiled text often sits at its 8-px floor.
    big = np.asarray(Image.fromarray((photo * 255).astype(np.uint8)).resize((224, 224)), np.float32) / 255.0

    def mark(seed, jitter=None):
        kw = {} if jitter is None else {"size_jitter": jitter}
        return apply_watermark(big, 0.5, np.random.default_rng(seed), layout=layout, **kw)

    for seed in range(4):
        np.testing.assert_array_equal(mark(seed, 1.0), mark(seed))
    # Most seeds draw a size factor off the midpoint: without the spread, their marks change size.
    assert sum(not np.array_equal(mark(seed, 0.0), mark(seed)) for seed in range(4)) >= 3


@pytest.mark.parametrize("layout", ["tiled", "centre", "diagonal", "corner"])
def test_watermark_size_match_sizes_words_by_their_ink(photo, layout):
    """size_match keeps the random stream, scales a heavy word down and a light one up."""
    big = np.asarray(Image.fromarray((photo * 255).astype(np.uint8)).resize((224, 224)), np.float32) / 255.0
    fonts = sorted(find_fonts())
    bold = next(f for f in fonts if "Bold" in Path(f).name and "Oblique" not in Path(f).name)
    scales = {}
    for text in ("www.example.com", "demo"):
        a, b = np.random.default_rng(5), np.random.default_rng(5)
        info: dict = {}
        plain = apply_watermark(big, 0.6, a, layout=layout, text=text, font_path=bold)
        matched = apply_watermark(big, 0.6, b, layout=layout, text=text, font_path=bold, size_match=True, info=info)
        assert a.random() == b.random()  # same draws: later samples are unchanged
        assert info["opacity"] == pytest.approx(0.2 + 0.65 * 0.6)  # the opacity is still the label's
        scales[text] = info["size_scale"]
        if abs(info["size_scale"] - 1) > 0.1:
            assert not np.array_equal(plain, matched)
    assert scales["www.example.com"] < 0.8 < 1.0 < scales["demo"], scales
    with pytest.raises(ValueError, match="size_match and ink"):
        apply_watermark(big, 0.6, np.random.default_rng(5), layout=layout, size_match=True, ink=True)


def test_watermark_fixed_word_and_font_keep_the_random_stream(photo):
    """text=/font_path= replace the drawn word and font and nothing else."""
    big = np.asarray(Image.fromarray((photo * 255).astype(np.uint8)).resize((224, 224)), np.float32) / 255.0
    fonts = find_fonts()
    changed = 0
    for seed in range(4):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        plain = apply_watermark(big, 0.6, a, layout="centre")
        fixed = apply_watermark(big, 0.6, b, layout="centre", text="SAMPLE", font_path=fonts[0])
        assert a.random() == b.random()  # the same number of draws: later samples are unchanged
        changed += not np.array_equal(plain, fixed)
        # With the layout given, the generator's first two draws are the font and the word:
        # handing those back reproduces its mark bit for bit.
        r = np.random.default_rng(seed)
        font, word = str(r.choice(fonts)), str(r.choice(_WATERMARK_WORDS))
        np.testing.assert_array_equal(
            apply_watermark(big, 0.6, np.random.default_rng(seed), layout="centre", text=word, font_path=font), plain)
    assert changed >= 3


def test_fonts_found_in_installed_packages():
    fonts = find_fonts()
    assert any("DejaVuSans" in f for f in fonts)
    names = [Path(f).name for f in fonts]
    assert len(names) == len(set(names))  # one file per name


def test_fonts_without_latin_glyphs_are_skipped():
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    # matplotlib's DejaVu*Display fonts hold no letters: a watermark set in them draws nothing.
    assert not draws_text(str(ttf / "DejaVuSansDisplay.ttf"))
    assert draws_text(str(ttf / "DejaVuSans.ttf"))
    assert not draws_text(str(ttf / "no-such-font.ttf"))
    assert not any("Display" in Path(f).name for f in find_fonts())


@pytest.mark.parametrize("layout", ["tiled", "centre", "diagonal", "corner"])
def test_every_watermark_is_visible(photo, layout):
    # Whatever font, word and placement the generator draws, a labelled watermark leaves marks.
    for seed in range(60):
        out = apply_watermark(photo, 0.5, np.random.default_rng(seed), layout=layout)
        assert (np.abs(out - photo).max(axis=2) > 0.1).mean() > 0.001, f"seed {seed}: invisible watermark"


def test_unknown_kinds_and_layouts_are_rejected(photo):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="blur kind"):
        apply_blur(photo, 0.5, rng, kind="radial")
    with pytest.raises(ValueError, match="layout"):
        apply_watermark(photo, 0.5, rng, layout="spiral")


def test_config_validation():
    with pytest.raises(ValueError, match="unknown degradation"):
        SynthConfig(heads=("blur", "rain"))
    with pytest.raises(ValueError, match="sum to 1"):
        SynthConfig(count_probs=(0.5, 0.4))
    with pytest.raises(ValueError, match="unknown key"):
        SynthConfig.from_dict({"size": 64, "sizee": 3})
    assert set(APPLY_ORDER) == set(DEGRADATIONS)


def test_plan_counts_follow_count_probs():
    cfg = SynthConfig(count_probs=(0.0, 0.0, 1.0))
    rng = np.random.default_rng(0)
    for _ in range(20):
        plan = sample_plan(rng, cfg)
        assert len(plan) == 2 and all(cfg.min_intensity <= v <= 1.0 for v in plan.values())


def test_render_sample_labels_match_the_plan():
    photo = Image.fromarray((np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8))
    cfg = SynthConfig(size=32, count_probs=(0.0, 1.0))
    img, labels = render_sample(photo, np.random.default_rng(3), cfg)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert labels.shape == (6,) and (labels > 0).sum() == 1
    with pytest.raises(ValueError, match="smaller than"):
        random_crop(photo, 100, np.random.default_rng(0))


def test_render_dataset_resumes_to_identical_bytes(tmp_path):
    p = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)).save(p)
    cfg = SynthConfig(size=24)
    full = render_dataset([p], tmp_path / "full", 10, cfg, seed=5, chunk=4, progress=False)
    # Simulate an interruption after the first chunk, then resume.
    part = render_dataset([p], tmp_path / "part", 10, cfg, seed=5, chunk=4, progress=False)
    prog = json.loads((part / "progress.json").read_text())
    prog["done"] = 4
    (part / "progress.json").write_text(json.dumps(prog))
    np.load(part / "images.npy", mmap_mode="r+")[4:] = 0
    render_dataset([p], part, 10, cfg, seed=5, chunk=4, progress=False)
    a, la, _ = load_synth_dataset(full)
    b, lb, meta = load_synth_dataset(part)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert meta["n"] == 10


def test_render_sample_at_is_sample_i_of_a_set(tmp_path):
    """Any one sample renders again on its own (the polar bench recovers draws this way)."""
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((20, 20, 3)) * 255).astype(np.uint8)).save(small)  # under the set's size: never drawn
    Image.fromarray((rng.random((64, 80, 3)) * 255).astype(np.uint8)).save(big)
    cfg = SynthConfig(size=24)
    out = render_dataset([small, big], tmp_path / "d", 9, cfg, seed=5, chunk=4, progress=False)
    images, labels, _ = load_synth_dataset(out)
    usable = usable_photos([str(small), str(big)], cfg)
    assert usable == [str(big)]
    for i in (0, 4, 8):
        img, lab, k = render_sample_at(usable, cfg, 5, i)
        np.testing.assert_array_equal(img, images[i])
        np.testing.assert_array_equal(lab, labels[i])
        assert k == 0
    assert not np.array_equal(render_sample_at(usable, cfg, 6, 0)[0], images[0])


def test_a_set_rendered_before_a_config_field_existed_is_kept(tmp_path, monkeypatch):
    """A finished set whose meta predates a SynthConfig field (at its default) is not rendered again
    (the review's case: every build cache re-rendered after watermark_ink was added); a set that
    asks for another value of it is, with overwrite (the build script's --overwrite)."""
    import deqa.baselines.synth as synth

    p = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)).save(p)
    out = render_dataset([p], tmp_path / "old", 6, SynthConfig(size=24), seed=5, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    del meta["config"]["watermark_ink"], meta["config"]["hue_rotate_prob"]  # as written by older code
    (out / "meta.json").write_text(json.dumps(meta))
    before = (out / "images.npy").read_bytes()
    calls = []
    monkeypatch.setattr(synth, "_render_chunk", lambda job: calls.append(job) or pytest.fail("re-rendered"))
    render_dataset([p], out, 6, SynthConfig(size=24), seed=5, progress=False)
    assert calls == [] and (out / "images.npy").read_bytes() == before
    # A field whose default changed the draws when it came (non-square crops): an older generator, redrawn.
    del meta["config"]["max_aspect"]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"old holds a set rendered with other settings \(config.max_aspect\)"):
        render_dataset([p], out, 6, SynthConfig(size=24), seed=5, progress=False)  # not without a say-so
    with pytest.raises(pytest.fail.Exception, match="re-rendered"):
        render_dataset([p], out, 6, SynthConfig(size=24), seed=5, progress=False, overwrite=True)
    monkeypatch.undo()
    render_dataset([p], out, 6, SynthConfig(size=24, watermark_ink=True), seed=5, progress=False, overwrite=True)
    assert load_synth_dataset(out)[2]["config"]["watermark_ink"] is True


def test_load_unfinished_dataset_says_how_to_resume(tmp_path):
    p = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(p)
    out = render_dataset([p], tmp_path / "d", 4, SynthConfig(size=16), progress=False)
    prog = json.loads((out / "progress.json").read_text())
    prog["done"] = 2
    (out / "progress.json").write_text(json.dumps(prog))
    with pytest.raises(ValueError, match="resume"):
        load_synth_dataset(out)
    with pytest.raises(FileNotFoundError, match="deqa baseline synth"):
        load_synth_dataset(tmp_path / "nothing")


# --- curation: the texture criterion, textured crops, sweep sets ------------------------------
def _gradient(h=240, w=320) -> np.ndarray:
    ramp = np.linspace(0.1, 0.9, w, dtype=np.float32)
    return np.repeat(np.stack([ramp, ramp * 0.8, ramp * 0.6], -1)[None], h, axis=0)


def test_texture_criterion_rejects_a_flat_gradient_and_keeps_a_photo(photo):
    from deqa.baselines.texture import TextureCriterion, textured_fraction, tile_laplacian_std

    crit = TextureCriterion()
    grad = _gradient()
    assert textured_fraction(grad) == 0.0 and not crit.passes(grad)
    assert crit.fraction(photo) >= crit.min_fraction and crit.passes(photo)
    # uint8 input reads the same as float input; tiles are full 32-px tiles only.
    u8 = (photo * 255 + 0.5).astype(np.uint8)
    assert tile_laplacian_std(u8).shape == (107 // 32, 160 // 32)
    assert abs(crit.fraction(u8) - crit.fraction(photo)) <= 1 / 15
    # Blurring the photo hard makes it fail: the criterion measures what blur takes away.
    assert not crit.passes(apply_blur(photo, 1.0, np.random.default_rng(0), kind="gaussian"))
    assert TextureCriterion(min_fraction=0).passes(grad)
    with pytest.raises(ValueError, match="min_fraction"):
        TextureCriterion(min_fraction=1.5)


def test_textured_crop_redraws_flat_crops():
    # Left half flat gradient, right half a real photo: crops must come from the textured side.
    from skimage import data

    from deqa.baselines.synth import textured_crop

    left = (_gradient(300, 300) * 255).astype(np.uint8)
    right = np.asarray(Image.fromarray(data.coffee()).resize((300, 300)))
    photo = Image.fromarray(np.concatenate([left, right], 1))
    cfg = SynthConfig(size=64, crop_scale=(0.2, 0.25), max_aspect=1.0)
    fracs = [textured_crop(photo, np.random.default_rng(i), cfg)[1] for i in range(12)]
    assert min(fracs) >= cfg.min_texture
    plain = SynthConfig(size=64, crop_scale=(0.2, 0.25), max_aspect=1.0, min_texture=0.0)
    assert min(textured_crop(photo, np.random.default_rng(i), plain)[1] for i in range(12)) < cfg.min_texture


def test_crops_are_square_at_any_aspect():
    photo = Image.fromarray((np.random.default_rng(0).random((120, 300, 3)) * 255).astype(np.uint8))
    for i in range(10):
        assert random_crop(photo, 48, np.random.default_rng(i), max_aspect=1.78).shape == (48, 48, 3)
    with pytest.raises(ValueError, match="max_aspect"):
        SynthConfig(max_aspect=0.5)


def test_sweep_sets_draw_the_head_on_every_sample():
    cfg = SynthConfig(sweep="blur")
    rng = np.random.default_rng(0)
    vals = [sample_plan(rng, cfg)["blur"] for _ in range(400)]
    assert min(vals) > 0 and max(vals) < 1
    assert min(vals) < cfg.min_intensity  # uniform on [0, 1], not [min_intensity, 1]
    assert 0.4 < np.mean(vals) < 0.6
    with pytest.raises(ValueError, match="sweep"):
        SynthConfig(sweep="rain")


@pytest.mark.parametrize("background,darker", [(1.0, True), (0.0, False)])
def test_watermark_contrasts_with_its_background(background, darker):
    img = np.full((96, 128, 3), background, np.float32)
    out = apply_watermark(img, 0.5, np.random.default_rng(0), layout="centre")
    delta = float((out - img).mean())
    assert (delta < 0) if darker else (delta > 0)


def test_motion_blur_as_visible_as_gaussian_at_equal_intensity(photo):
    def loss(kind, t):
        return _lap_var(photo) / _lap_var(apply_blur(photo, t, np.random.default_rng(3), kind=kind))

    for t in (0.3, 0.8):
        ratio = np.log(loss("motion", t)) / np.log(loss("gaussian", t))
        assert 0.6 < ratio < 1.6, (t, ratio)


def test_cli_sweep_without_nuisance(tmp_path):
    """`synth --sweep HEAD --no-nuisance`: the swept head on every sample, no other degradation;
    --no-nuisance alone is an error naming the missing option."""
    from skimage import data

    from deqa.baselines.synth import load_synth_dataset
    from deqa.cli.baseline import main as baseline_main

    photos = tmp_path / "photos"
    (photos / "images").mkdir(parents=True)
    Image.fromarray(data.astronaut()).save(photos / "images" / "astronaut.png")
    (photos / "photos.json").write_text(
        json.dumps([{"group": "skimage:astronaut", "file": "images/astronaut.png", "split": "heldout", "use": True}])
    )
    out = tmp_path / "clean_noise"
    argv = ["synth", "--photos", str(photos), "--split", "heldout", "--out", str(out), "--n", "12", "--size", "64"]
    assert baseline_main([*argv, "--sweep", "noise", "--no-nuisance"]) == 0
    _, labels, meta = load_synth_dataset(out)
    j = meta["config"]["heads"].index("noise")
    assert (labels[:, j] > 0).all()
    assert (np.delete(labels, j, axis=1) == 0).all()
    with pytest.raises(SystemExit, match="--no-nuisance needs --sweep"):
        baseline_main([*argv[:6], str(tmp_path / "other"), *argv[7:], "--no-nuisance"])
    # The same --out with other settings: refused, the set left as it was; --overwrite renders in its place.
    before = (out / "images.npy").read_bytes()
    with pytest.raises(SystemExit, match=r"clean_noise holds a set rendered with other settings \(seed, config.count_probs\); .*--overwrite"):
        baseline_main([*argv, "--sweep", "noise", "--seed", "5"])
    assert (out / "images.npy").read_bytes() == before
    assert baseline_main([*argv, "--sweep", "noise", "--no-nuisance"]) == 0  # the same settings: kept
    assert (out / "images.npy").read_bytes() == before
    assert baseline_main([*argv, "--sweep", "noise", "--seed", "5", "--overwrite"]) == 0
    assert (out / "images.npy").read_bytes() != before and load_synth_dataset(out)[2]["seed"] == 5


def test_hue_rotation_keeps_neutrals_and_moves_colours(photo):
    """The augmentation gives a scene new colours but no cast: greys stay grey, each pixel keeps
    its channel mean, saturated colours move round the hue circle."""
    greys = np.linspace(0.05, 0.95, 12, dtype=np.float32)[:, None].repeat(3, 1)[None]
    assert np.abs(rotate_hue(greys, 1.3) - greys).max() < 1e-6
    red = np.array([[[0.6, 0.3, 0.3]]], np.float32)
    turned = rotate_hue(red, 2 * np.pi / 3)  # a third of the way round: red -> green
    assert np.allclose(turned, [[[0.3, 0.6, 0.3]]], atol=1e-5)
    out = rotate_hue(photo, 2.0)
    inside = (out > 0.001).all(-1) & (out < 0.999).all(-1)  # not clipped
    assert np.allclose(out.mean(-1)[inside], photo.mean(-1)[inside], atol=1e-5)
    assert np.abs(out - photo).mean() > 0.02  # the coffee photo's browns did move
    assert np.allclose(rotate_hue(photo, 0.0), photo, atol=1e-6)


def test_hue_rotation_in_rendering_is_off_by_default_and_training_only(tmp_path):
    from deqa.cli.baseline import main as baseline_main

    img = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)
    pil = Image.fromarray(img)
    off = SynthConfig(size=32, count_probs=(1.0,))
    on = SynthConfig(size=32, count_probs=(1.0,), hue_rotate_prob=1.0)
    a, la = render_sample(pil, np.random.default_rng(5), off)
    b, lb = render_sample(pil, np.random.default_rng(5), on)
    assert (la == 0).all() and (lb == 0).all()  # clean either way
    assert not np.array_equal(a, b) and np.allclose(a.mean(-1), b.mean(-1), atol=1.5)
    with pytest.raises(ValueError, match="hue_rotate_prob"):
        SynthConfig(hue_rotate_prob=1.5)
    (tmp_path / "images").mkdir()
    pil.resize((240, 180)).save(tmp_path / "images" / "p.png")
    (tmp_path / "photos.json").write_text(json.dumps([{"group": "g", "file": "images/p.png", "split": "heldout", "use": True}]))
    with pytest.raises(SystemExit, match="--hue-rotate is a training augmentation"):
        baseline_main(["synth", "--photos", str(tmp_path), "--split", "heldout", "--out", str(tmp_path / "o"),
                       "--n", "4", "--size", "32", "--hue-rotate", "0.5"])
    with pytest.raises(SystemExit, match=r"deqa baseline synth: SynthConfig.hue_rotate_prob must be in \[0, 1\], got 1.5"):
        baseline_main(["synth", "--photos", str(tmp_path), "--split", "train", "--out", str(tmp_path / "o"),
                       "--n", "4", "--size", "32", "--hue-rotate", "1.5"])


@pytest.mark.parametrize("layout", ["tiled", "centre", "diagonal", "corner"])
def test_ink_matched_watermarks_leave_one_ink_whatever_word_and_font(layout):
    """ink=True: the mark's summed change depends on t, not on the word and font, up to the opacity clip."""
    fonts = {Path(f).name: f for f in find_fonts()}
    lightest = ("demo", "DejaVuSans-ExtraLight.ttf")  # needs an opacity above 1 at high t: clipped, documented
    pairs = [("NOT FOR SALE", "DejaVuSans-Bold.ttf"), ("Getty", "DejaVuSerif.ttf"), ("www.example.com", "DejaVuSansMono-Bold.ttf")]
    flat = np.full((224, 224, 3), 0.2, np.float32)  # one background: the shade's contrast is the same everywhere

    def ink(t, word, font, matched):
        # Same seed: same place, size and shade; text= / font_path= change only the word and font.
        out = apply_watermark(flat, t, np.random.default_rng(3), layout=layout, text=word, font_path=fonts[font], ink=matched)
        return float(np.abs(out - flat).sum())

    def spread(values):
        return max(values) / min(values)

    for t in (0.1, 0.5):
        assert spread([ink(t, *p, True) for p in [lightest, *pairs]]) < 1.08
    assert spread([ink(0.1, *p, False) for p in [lightest, *pairs]]) > 3
    for t in (0.9, 1.0):
        assert spread([ink(t, *p, False) for p in pairs]) > 1.4
        assert spread([ink(t, *p, True) for p in pairs]) < 1.03
    # The clip: the lightest mark cannot reach the others' ink at t = 1, but it is as inked as opacity 1 allows.
    assert ink(1.0, *lightest, True) < min(ink(1.0, *p, True) for p in pairs)


@pytest.mark.parametrize("layout", ["tiled", "centre", "diagonal", "corner"])
def test_ink_matched_watermarks_keep_the_stream_and_grow_with_intensity(photo, layout):
    for seed in range(4):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        apply_watermark(photo, 0.5, a, layout=layout)
        apply_watermark(photo, 0.5, b, layout=layout, ink=True)
        assert a.random() == b.random()  # the same draws: the rest of a rendered sample is unchanged
    diffs = [float(np.abs(apply_watermark(photo, t, np.random.default_rng(2), layout=layout, ink=True) - photo).mean())
             for t in LEVELS]
    assert _strictly_increasing(diffs), diffs


def test_ink_matched_rendering_changes_only_the_watermarked_samples(tmp_path):
    from deqa.cli.baseline import main as baseline_main

    img = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)
    (tmp_path / "images").mkdir()
    Image.fromarray(img).resize((240, 180)).save(tmp_path / "images" / "p.png")
    (tmp_path / "photos.json").write_text(json.dumps([{"group": "g", "file": "images/p.png", "split": "heldout", "use": True}]))
    sets = {}
    for name, extra in (("plain", []), ("ink", ["--watermark-ink"])):
        assert baseline_main(["synth", "--photos", str(tmp_path), "--split", "heldout", "--out", str(tmp_path / name),
                              "--n", "40", "--size", "48", "--seed", "7", *extra]) == 0
        sets[name] = load_synth_dataset(tmp_path / name)
    (xa, ya, ma), (xb, yb, mb) = sets["plain"], sets["ink"]
    assert ma["config"]["watermark_ink"] is False and mb["config"]["watermark_ink"] is True
    np.testing.assert_array_equal(ya, yb)  # the same plans
    marked = ya[:, list(SynthConfig().heads).index("watermark")] > 0
    assert 0 < marked.sum() < len(marked)
    np.testing.assert_array_equal(xa[~marked], xb[~marked])
    assert sum(not np.array_equal(p, q) for p, q in zip(xa[marked], xb[marked], strict=True)) >= marked.sum() // 2
    with pytest.raises(ValueError, match="watermark_ink must be true or false"):
        SynthConfig(watermark_ink="yes")
    with pytest.raises(SystemExit, match="the heads .* draw no watermark to ink-match"):
        baseline_main(["synth", "--photos", str(tmp_path), "--split", "heldout", "--out", str(tmp_path / "x"),
                       "--n", "4", "--size", "48", "--heads", "blur,noise,jpeg,exposure", "--watermark-ink"])


def test_cli_synth_with_fewer_heads_than_the_default_counts(tmp_path):
    """--heads with 1-3 heads: the default P(k degradations) reaches 4 at once, so it is cut at the
    number of heads, the rest folded into "all of them" (it failed: 5 entries for 3 heads)."""
    from skimage import data

    from deqa.baselines.synth import load_synth_dataset
    from deqa.cli.baseline import main as baseline_main

    photos = tmp_path / "photos"
    (photos / "images").mkdir(parents=True)
    Image.fromarray(data.astronaut()).save(photos / "images" / "astronaut.png")
    (photos / "photos.json").write_text(
        json.dumps([{"group": "skimage:astronaut", "file": "images/astronaut.png", "split": "heldout", "use": True}])
    )
    for heads, probs in (("blur", (0.2, 0.8)), ("blur,noise", (0.2, 0.35, 0.45)), ("blur,noise,jpeg", (0.2, 0.35, 0.25, 0.2))):
        out = tmp_path / heads.replace(",", "_")
        assert baseline_main(["synth", "--photos", str(photos), "--split", "heldout", "--out", str(out),
                              "--n", "6", "--size", "48", "--heads", heads]) == 0
        _, labels, meta = load_synth_dataset(out)
        assert labels.shape == (6, len(heads.split(",")))
        assert meta["config"]["count_probs"] == pytest.approx(probs)


def test_a_damaged_photo_index_or_photo_is_named(tmp_path):
    from deqa.baselines.photos import read_photo_index
    from deqa.cli.baseline import main as baseline_main

    (tmp_path / "photos.json").write_text('[{"file": "a.png", ')
    with pytest.raises(ValueError, match=r"photos.json: not a photo index"):
        read_photo_index(tmp_path, "train")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "photos.json").write_text(json.dumps([{"group": "g", "file": "images/bad.png", "split": "train", "use": True}]))
    with pytest.raises(SystemExit, match=r"deqa baseline synth: error: photo .*images/bad.png: cannot be read"):
        baseline_main(["synth", "--photos", str(tmp_path), "--split", "train", "--out", str(tmp_path / "s"), "--n", "2", "--size", "32"])


def test_a_size_larger_than_every_photo_is_refused_before_anything_is_written(tmp_path):
    p = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(p)
    with pytest.raises(ValueError, match=r"no photo is at least 64 px on its short side \(the largest short side is 40 px\)"):
        render_dataset([p], tmp_path / "out", 4, SynthConfig(size=64), progress=False)
    assert not (tmp_path / "out").exists()
