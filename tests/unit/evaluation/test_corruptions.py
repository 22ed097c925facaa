"""ImageNet-C corruptions of real FER+ faces: each type changes the face and grows with severity;
our implementations give the faces of ``imagecorruptions-imaug``'s 3-channel path (the tests
that need the library skip without it); the product never imports the library; the frost
textures ship as package data; sets cache correctly."""
import ast
import fnmatch
import importlib.resources
import itertools
import sys
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import pytest

import uar_stream
from uar_stream.evaluation import sets
from uar_stream.evaluation.corruptions import (
    CORRUPTIONS,
    FUNCTIONS,
    SAME_DISTRIBUTION,
    SEVERITIES,
    corrupt_face,
    corrupt_faces,
    downscale,
    noise,
    ops,
    resample_only,
    upscale,
    weather,
)

from tests.support.paths import ROOT


@pytest.fixture(scope="module")
def faces(ferplus):
    with np.load(ferplus / "publictest.npz") as d:
        return d["images"][[0, 7, 100, 900, 2000, 3000]]


@pytest.fixture(scope="module")
def lib():
    """The reference library (installed by the test command only); its tests skip without it."""
    return pytest.importorskip("imagecorruptions", reason="imagecorruptions-imaug is not installed")


def _library_face(lib, face, name, severity, seed):
    """The library's 3-channel path, as the evaluation applied it before it had its own."""
    np.random.seed(seed)
    kwargs = {"seed": seed} if name in ("glass_blur", "impulse_noise") else {}
    rgb = lib.corrupt(np.stack([upscale(face)] * 3, axis=-1), severity=severity,
                      corruption_name=name, **kwargs)
    return downscale(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), face.shape[0])


def _mad(a, b):
    return float(np.abs(a.astype(np.float64) - b).mean())


def _structure_lost(clean, corrupted):
    """1 - mean per-face Pearson correlation with the clean face."""
    a = clean.reshape(len(clean), -1).astype(np.float64)
    b = corrupted.reshape(len(corrupted), -1).astype(np.float64)
    a -= a.mean(1, keepdims=True)
    b -= b.mean(1, keepdims=True)
    return float(np.mean(1 - (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))))


# Where the ImageNet-C definition itself is not monotone in pixel change:
#  glass_blur: severity 2 shuffles once (severity 1 twice), severity 4 twice (3: three times);
#  frost, fog: blend a texture in with a weight that grows while the face's weight shrinks (fog
#    also renormalises brightness), so the face's structure, not its mean pixel change, is what a
#    higher severity removes.
_STEP_EXEMPT = {"glass_blur"}
_MEASURE = {"frost": _structure_lost, "fog": _structure_lost}


@pytest.fixture(scope="module")
def strengths(faces):
    out = {}
    for name in CORRUPTIONS:
        measure = _MEASURE.get(name, _mad)
        out[name] = [measure(faces, corrupt_faces(faces, name, s, seed=0)) for s in SEVERITIES]
    return out


def test_every_corruption_has_an_implementation():
    assert set(FUNCTIONS) == set(CORRUPTIONS)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_changes_the_face_and_grows_with_severity(strengths, name):
    d = strengths[name]
    assert d[0] > 0.5 if name not in _MEASURE else d[0] > 0.005, f"{name} barely changes the face: {d}"
    assert d[-1] > 1.2 * d[0], f"{name}: severity 5 is not clearly stronger than 1: {d}"
    if name not in _STEP_EXEMPT:
        # each step at least as strong, allowing ties (saturation) and 3% sampling wobble
        for lo, hi in itertools.pairwise(d):
            assert hi >= 0.97 * lo, f"{name}: strength falls with severity: {d}"


def test_unknown_names_and_severities_are_refused(faces):
    with pytest.raises(ValueError, match="unknown corruption 'speckle'"):
        corrupt_face(faces[0], "speckle", 1, seed=0)
    for bad in (0, 6):
        with pytest.raises(ValueError, match="severity"):
            corrupt_face(faces[0], "fog", bad, seed=0)


def test_noise_types_are_random_but_seeded(faces):
    a = corrupt_faces(faces[:2], "gaussian_noise", 3, seed=0)
    b = corrupt_faces(faces[:2], "gaussian_noise", 3, seed=0)
    c = corrupt_faces(faces[:2], "gaussian_noise", 3, seed=1)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).max() > 0
    # a chunk of a set equals the same faces of the whole set (worker splits do not matter)
    whole = corrupt_faces(faces, "shot_noise", 2, seed=0)
    np.testing.assert_array_equal(corrupt_faces(faces[3:], "shot_noise", 2, seed=0, start=3), whole[3:])


# Our faces are the library's exactly, except: snow follows the library's gray branch, which
# blends with x where the 3-channel branch blends with float32 gray(x), an ulp away; zoom_blur
# warps with OpenCV's 1/32-pixel interpolation table instead of scipy's zoom.
_TOLERANCE = {"snow": 1, "zoom_blur": 1}


@pytest.mark.parametrize("name", sorted(set(CORRUPTIONS) - SAME_DISTRIBUTION))
def test_corruptions_equal_the_library(lib, faces, name):
    for s in (1, 3, 5):
        for i, f in enumerate(faces[:3]):
            ours = corrupt_face(f, name, s, seed=100 + i)
            ref = _library_face(lib, f, name, s, seed=100 + i)
            assert np.abs(ours.astype(int) - ref).max() <= _TOLERANCE.get(name, 0), \
                f"{name} severity {s} face {i}"


def test_shot_noise_sampler_is_the_poisson_quantile_function():
    from scipy.stats import poisson
    rng = np.random.default_rng(1)
    for c in (60, 12, 3):
        cdf, guide = noise.poisson_tables(c)
        levels = np.repeat(np.array([0, 1, 77, 128, 254, 255], np.uint8), 2000).reshape(6, 2000)
        u = rng.random(levels.shape + (3,))
        got = noise.poisson_by_inversion(levels, u, cdf, guide, c, np.empty(u.shape, np.uint8))
        # inversion: X = F^-1(U), scipy's ppf at the library's rate (level / 255.) * c
        x = poisson.ppf(u, (levels / 255.)[..., None] * c)
        np.testing.assert_array_equal(got, np.uint8(np.clip(x / c, 0, 1) * 255))


@pytest.mark.parametrize("severity", SEVERITIES)
def test_shot_noise_is_as_strong_as_the_library(lib, faces, severity):
    ours = corrupt_faces(faces, "shot_noise", severity, seed=0)
    ref = np.stack([_library_face(lib, f, "shot_noise", severity, seed=i) for i, f in enumerate(faces)])
    assert not np.array_equal(ours, ref)  # other random numbers...
    assert _mad(faces, ours) == pytest.approx(_mad(faces, ref), rel=0.03)  # ...same strength


def test_bilinear_remap_equals_scipy():
    from scipy.ndimage import map_coordinates
    rng = np.random.default_rng(0)
    img = rng.random((60, 50)).astype(np.float32)
    # displacements large enough that many pixels need scipy's 'reflect' border handling
    dy, dx = (rng.normal(0, 4, (2, 60, 50))).astype(np.float32)
    yy, xx = np.meshgrid(np.arange(60), np.arange(50), indexing="ij")
    ref = map_coordinates(img, ((yy + dy).reshape(-1, 1), (xx + dx).reshape(-1, 1)),
                          order=1, mode="reflect").reshape(img.shape)
    np.testing.assert_array_equal(ops.remap_linear(img, dy, dx), ref)


def test_helpers_equal_the_library_helpers(lib):
    from imagecorruptions import corruptions as libc
    rng = np.random.default_rng(0)
    layer = rng.random((70, 70))
    for angle in (-120.0, -45.0, 10.0, 80.0):
        np.testing.assert_array_equal(ops.motion_blur_2d(layer, 12, 8, angle),
                                      libc._motion_blur(layer, 12, 8, angle))
    for z in (2, 2.5, 4.5):
        np.testing.assert_allclose(ops.clipped_zoom(layer, z),
                                   libc.clipped_zoom(layer[..., None], z)[..., 0], rtol=0, atol=1e-12)
    for radius, alias in ((3, 0.1), (8, 0.5), (10, 0.5)):
        np.testing.assert_array_equal(ops.disk(radius, alias), libc.disk(radius, alias))
    for decay in (2, 1.4):
        np.random.seed(5)
        ref = libc.plasma_fractal(256, decay)
        np.random.seed(5)
        np.testing.assert_array_equal(weather.plasma_fractal(256, decay), ref)


def test_pixelate_and_jpeg_equal_pillow():
    # Pillow is the library's arithmetic for these two (it resizes and saves PIL images); it is
    # installed with matplotlib. Odd sizes too, not only 224 -> 56..134, but none that shrinks
    # more in height than in width: Pillow 13 may resize those vertically first (see box_resize).
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(3)
    for h, w, sh, sw in ((224, 224, 134, 134), (224, 224, 56, 56), (97, 97, 40, 40), (41, 41, 29, 29),
                         (61, 97, 40, 23), (50, 80, 33, 47)):
        img = rng.integers(0, 256, (h, w), dtype=np.uint8)
        pil = Image.fromarray(img)
        small = ops.box_resize(img, sw, sh)
        np.testing.assert_array_equal(small, np.array(pil.resize((sw, sh), Image.BOX)))
        np.testing.assert_array_equal(ops.nearest_resize(small, w, h),
                                      np.array(Image.fromarray(small).resize((w, h), Image.NEAREST)))
    face = upscale(rng.integers(0, 256, (48, 48), dtype=np.uint8))
    for s, q in zip(SEVERITIES, (25, 18, 15, 10, 7), strict=True):
        buf = BytesIO()
        Image.fromarray(np.stack([face] * 3, -1)).save(buf, "JPEG", quality=q)
        ref = cv2.cvtColor(np.array(Image.open(buf)), cv2.COLOR_RGB2GRAY)
        np.testing.assert_array_equal(FUNCTIONS["jpeg_compression"](face, s, 0), ref)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_product_never_imports_the_library(faces, monkeypatch):
    pkg = Path(uar_stream.__file__).parent
    offenders = [str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
                 if any(m.split(".")[0] == "imagecorruptions" for m in _imported_modules(p))]
    assert not offenders, f"these modules import imagecorruptions: {offenders}"
    # and every corruption runs with the library made unimportable
    for mod in [m for m in sys.modules if m.split(".")[0] == "imagecorruptions"] + ["imagecorruptions"]:
        monkeypatch.setitem(sys.modules, mod, None)
    for name in CORRUPTIONS:
        out = corrupt_face(faces[0], name, 3, seed=7)
        assert out.shape == faces[0].shape and out.dtype == np.uint8


def test_frost_textures_ship_as_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pkg = importlib.resources.files("uar_stream.evaluation.corruptions") / "frost"
    for i in range(len(weather.FROST_FILES)):
        tex = cv2.imread(str(weather.frost_path(i)))
        assert tex is not None and tex.ndim == 3 and min(tex.shape[:2]) >= 224
    assert (pkg / "LICENSE").is_file() and "Apache License" in (pkg / "LICENSE").read_text()
    assert "Apache License 2.0" in (pkg / "NOTICE.md").read_text()
    # the wheel takes what pyproject's package-data names: every file of the folder must match
    with open(ROOT / "pyproject.toml", "rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    globs = data["uar_stream.evaluation.corruptions"]
    for p in pkg.iterdir():
        assert any(fnmatch.fnmatch(f"frost/{p.name}", g) for g in globs), f"{p.name} is not packaged"


def test_resampling_alone_is_close_to_the_clean_face(faces):
    r = resample_only(faces)
    assert r.shape == faces.shape and r.dtype == np.uint8
    assert _mad(faces, r) < 3.0


def test_sets_are_cached_and_workers_give_the_same_sets(faces, tmp_path):
    sids = [("fog", 2), ("glass_blur", 1), (sets.RESAMPLE, 0)]
    first = {b.sid: b for b in sets.generate(faces, sids, tmp_path, seed=0, workers=2)}
    assert set(first) == set(sids) and not any(b.from_cache for b in first.values())
    assert all(b.build_cpu_s > 0 for b in first.values())
    again = {b.sid: b for b in sets.generate(faces, sids, tmp_path, seed=0)}
    assert all(b.from_cache and b.build_cpu_s == 0 for b in again.values())
    for sid in sids:
        np.testing.assert_array_equal(first[sid].value, again[sid].value)
        np.testing.assert_array_equal(first[sid].value, sets._build(faces, sid, 0))
    # other faces or another seed -> another cache key, nothing reused
    other = list(sets.generate(faces[:3], sids[:1], tmp_path, seed=0, workers=1))
    assert not other[0].from_cache
    # a scorer runs where the set was built and its result comes back instead of the faces
    scored = {b.sid: b.value for b in sets.generate(faces, sids, tmp_path, seed=0, workers=2,
                                                   score=_mean_pixel)}
    assert scored == {sid: float(first[sid].value.mean()) for sid in sids}


def test_a_sampled_set_is_the_full_sets_rows(faces, tmp_path):
    # A set built from a sample of the faces gives each of them the random draws of the full
    # set (its seed is its row), and is cached under its own name.
    rows = np.array([1, 4, 5])
    sids = [("gaussian_noise@48", 3), ("glass_blur", 2)]
    full = {b.sid: b.value for b in sets.generate(faces, sids, tmp_path, seed=0, workers=1)}
    part = {b.sid: b.value for b in sets.generate(faces, sids, tmp_path, seed=0, workers=1,
                                                  rows={sid: rows for sid in sids})}
    for sid in sids:
        assert part[sid].shape == (3, 48, 48)
        np.testing.assert_array_equal(part[sid], full[sid][rows])
        key = sets.set_key(faces, 0)
        assert sets.set_path(tmp_path, key, sid, rows).is_file()
        assert sets.set_path(tmp_path, key, sid).is_file()
    with pytest.raises(ValueError, match="index"):
        corrupt_faces(faces, "fog", 1, index=rows)


def test_the_sets_declared_equal_to_resampling_are(faces):
    from uar_stream.evaluation.corruptions import SAME_AS_RESAMPLING
    assert SAME_AS_RESAMPLING  # the evaluation shares the round trip's scores with these
    for name, severity in SAME_AS_RESAMPLING:
        np.testing.assert_array_equal(corrupt_faces(faces, name, severity), resample_only(faces))
    # and the severities left out do change the face (they are built and scored)
    assert _mad(corrupt_faces(faces, "saturate", 4), resample_only(faces)) > 3


def _mean_pixel(sid, images):  # module level: a scorer must pickle
    return float(images.mean())
