"""Mold templates, fiducial detection and matching, checked against known truths:
the demo study's fiducial centres and transforms, and synthetic point sets posed by
a known rigid motion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mpi_viewer import cli
from mpi_viewer.demo.study import (
    make_demo_study,
    rotation_matrix,
    truth_transform,
    write_demo_study,
)
from mpi_viewer.errors import InputError
from mpi_viewer.registration.molds import (
    MoldParams,
    Template,
    detect_fiducials,
    list_templates,
    load_template,
    match_fiducials,
    register_with_template,
)

SHIPPED = ("mouse_mold_v1", "rat_mold_v1", "phantom_holder_7well_v1")


# -- templates ----------------------------------------------------------------------------
def test_shipped_templates_load_and_are_listed():
    assert set(SHIPPED) <= set(list_templates())
    for name in SHIPPED:
        t = load_template(name)
        assert t.name == name and t.units == "mm" and len(t.fiducials) >= 3
        assert t.positions_mm.shape == (len(t.fiducials), 3)
        assert t.appearance["MPI"] == "hot"
    mouse = load_template("mouse_mold_v1")
    assert len(mouse.fiducials) >= 5
    assert mouse.fiducials[0]["name"] == "M1"  # dict-style access as in the JSON
    assert_allclose(mouse.fiducials[0].position_mm, (-15.0, -9.0, -40.0))
    assert len(load_template("phantom_holder_7well_v1").wells) == 7
    # to_dict round-trips through JSON
    again = Template.from_dict(json.loads(json.dumps(mouse.to_dict())))
    assert again == mouse


def _user_template(folder, name="my_mold", **changes):
    data = load_template("mouse_mold_v1").to_dict()
    data["name"] = name
    data.update(changes)
    p = folder / f"{name}.json"
    p.write_text(json.dumps(data), encoding="utf-8")
    return p


def test_user_templates_from_folders_env_var_and_path(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    pa = _user_template(a, "lab_mold")
    _user_template(b, "env_mold")
    monkeypatch.setenv("MPI_VIEWER_TEMPLATES", str(b))
    names = list_templates(search_dirs=[a])
    assert {"lab_mold", "env_mold", *SHIPPED} <= set(names)
    assert load_template("lab_mold", search_dirs=[a]).name == "lab_mold"
    assert load_template("env_mold").source.endswith("env_mold.json")
    assert load_template(pa).name == "lab_mold"
    assert load_template(str(pa)).name == "lab_mold"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("fiducials"), "missing field 'fiducials'"),
        (lambda d: d.pop("units"), "missing field 'units'"),
        (lambda d: d.update(units="cm"), "'units' is 'cm'"),
        (lambda d: d["fiducials"][2].pop("diameter_mm"), "fiducials[2].diameter_mm"),
        (lambda d: d["fiducials"][1].update(position_mm=[1, "a", 3]), "fiducials[1].position_mm"),
        (lambda d: d["fiducials"][1].update(position_mm=[1, 2]), "fiducials[1].position_mm"),
        (lambda d: d["fiducials"][0].update(diameter_mm=-3), "fiducials[0].diameter_mm"),
        (lambda d: d["fiducials"][3].update(name="M1"), "duplicate fiducial name(s) M1"),
        (lambda d: d.update(fiducials=d["fiducials"][:2]), "at least 3"),
        (lambda d: d.update(appearance={"MRI": "glowing"}), "appearance.MRI"),
    ],
)
def test_bad_template_file_is_one_line_naming_the_field(tmp_path, mutate, expected):
    data = load_template("mouse_mold_v1").to_dict()
    mutate(data)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_template(p)
    msg = str(err.value)
    assert expected in msg and str(p) in msg and "\n" not in msg


def test_not_json_and_unknown_name(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"name": "x", ', encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        load_template(p)
    with pytest.raises(InputError, match="no such template"):
        load_template("no_such_mold")
    with pytest.raises(InputError, match="no such template file"):
        load_template(tmp_path / "absent.json")


def test_nan_position_is_refused(tmp_path):
    text = load_template("mouse_mold_v1").to_dict()
    text["fiducials"][4]["position_mm"] = [0.0, float("nan"), 1.0]
    p = tmp_path / "nan.json"
    p.write_text(json.dumps(text), encoding="utf-8")  # json writes NaN, Python reads it back
    with pytest.raises(InputError, match=r"fiducials\[4\]\.position_mm"):
        load_template(p)


def test_params_round_trip():
    p = MoldParams(template="rat_mold_v1", model="similarity", tolerance_mm=2.0)
    assert MoldParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p


# -- matching on synthetic point sets -------------------------------------------------------
def _posed(template, rot_deg, trans_mm):
    r = rotation_matrix(rot_deg)
    return template.positions_mm @ r.T + np.asarray(trans_mm), r


def test_match_finds_correspondence_pose_with_missing_and_extra_candidates():
    t = load_template("mouse_mold_v1")
    rng = np.random.default_rng(7)
    pts, r = _posed(t, (20.0, -35.0, 170.0), (12.0, -40.0, 5.0))
    keep = [i for i in range(len(pts)) if t.names[i] != "M4"]  # one well empty
    noisy = pts[keep] + rng.normal(0, 0.1, (len(keep), 3))
    extras = rng.uniform(pts.min(0) - 10, pts.max(0) + 10, (15, 3))
    cand = np.vstack([extras, noisy])
    order = rng.permutation(len(cand))  # correspondence is not given
    cand = cand[order]
    m = match_fiducials(cand, t)
    assert m.missing == ["M4"] and not m.ambiguous
    for k, name in enumerate(t.names[i] for i in keep):
        assert m.pairs[name] == int(np.nonzero(order == 15 + k)[0][0])
        assert m.residuals_mm[name] < 0.5
    assert_allclose(m.matrix, r, atol=0.01)
    assert_allclose(m.template_to_image(t.positions_mm), pts, atol=0.15)
    lines = m.report_lines()
    assert "6 of 7" in lines[0] and "M4" in " ".join(lines)


def test_symmetric_template_is_ambiguous_and_refused(tmp_path):
    # a rectangle with one well off the plane's centre line: a 180° turn about z maps it onto itself
    fids = [
        {"name": f"S{i}", "position_mm": p, "diameter_mm": 3.0}
        for i, p in enumerate([[-10, -5, 0], [10, -5, 0], [10, 5, 0], [-10, 5, 0]])
    ]
    p = tmp_path / "sym.json"
    p.write_text(
        json.dumps({"name": "sym", "units": "mm", "fiducials": fids, "appearance": {"MPI": "hot"}}),
        encoding="utf-8",
    )
    t = load_template(p)
    pts, _ = _posed(t, (0, 0, 30), (5, 5, 5))
    with pytest.raises(InputError, match="ambiguous"):
        match_fiducials(pts, t)
    m = match_fiducials(pts, t, strict=False)
    assert m.ambiguous and len(m.pairs) == 4


def test_too_few_matches_and_bad_tolerance():
    t = load_template("mouse_mold_v1")
    pts, _ = _posed(t, (0, 0, 0), (0, 0, 0))
    with pytest.raises(InputError, match="only 0 of 7"):
        match_fiducials(pts[:2], t)
    # a random cloud has no rigid copy of the template in it
    cloud = np.random.default_rng(3).uniform(-50, 50, (25, 3))
    with pytest.raises(InputError) as err:
        match_fiducials(cloud, t)
    assert "mouse_mold_v1" in str(err.value)
    with pytest.raises(InputError, match="tolerance"):
        match_fiducials(pts, t, tolerance_mm=0)


# -- detection on the demo study ------------------------------------------------------------
@pytest.fixture(scope="module")
def study():
    return make_demo_study(extra_hot_spots=2)


@pytest.mark.parametrize(
    ("modality", "key"), [("MRI", "mri_mm"), ("CT", "ct_mm"), ("MPI", "mpi_mm")]
)
def test_detection_finds_every_well_within_a_fifth_of_a_millimetre(study, modality, key):
    vol = {"MRI": study.mri, "CT": study.ct, "MPI": study.mpi}[modality]
    c = detect_fiducials(vol, "mouse_mold_v1")
    assert c.modality == modality and len(c) <= 30
    for f in study.truth["fiducials"]:
        d = np.linalg.norm(c.positions_mm - np.asarray(f[key]), axis=1)
        assert d.min() < 0.2, (f["name"], d.min())
    if modality != "MPI":  # MRI/CT spheres measure their own size: 3 mm wells
        wells = [
            int(np.argmin(np.linalg.norm(c.positions_mm - np.asarray(f[key]), axis=1)))
            for f in study.truth["fiducials"]
        ]
        assert_allclose(c.sizes_mm[wells], 3.0, atol=0.3)


def test_detection_in_anisotropic_oblique_mri():
    s = make_demo_study(
        mri_spacing_mm=(0.4, 0.4, 0.9), mri_direction_deg=(10.0, -20.0, 30.0), include_ct=False
    )
    c = detect_fiducials(s.mri, "mouse_mold_v1")
    for f in s.truth["fiducials"]:
        assert np.linalg.norm(c.positions_mm - np.asarray(f["mri_mm"]), axis=1).min() < 0.3


def test_dark_wells_are_found_when_the_template_says_dark(study, tmp_path):
    data = load_template("mouse_mold_v1").to_dict()
    data["appearance"]["MRI"] = "dark"
    data["name"] = "mouse_dark"
    p = tmp_path / "mouse_dark.json"
    p.write_text(json.dumps(data), encoding="utf-8")
    inverted = study.mri.with_array(1200.0 - study.mri.array)
    m = match_fiducials(detect_fiducials(inverted, p), p)
    assert len(m.pairs) == 7
    for f in study.truth["fiducials"]:
        assert np.linalg.norm(m.positions_mm[f["name"]] - f["mri_mm"]) < 0.2


def test_unknown_modality_is_refused(study):
    vol = study.mpi.with_array(study.mpi.array)
    vol.modality = "unknown"
    with pytest.raises(InputError, match="modality"):
        detect_fiducials(vol, "mouse_mold_v1")
    assert len(detect_fiducials(vol, "mouse_mold_v1", modality="MPI")) > 7


# -- registration -------------------------------------------------------------------------
def _tre(reg, study, fixed_key, truth_fn):  # max over the labelled-cell sources, mm
    src_fixed = np.array([s[fixed_key] for s in study.truth["sources"]])
    expected = truth_fn(src_fixed)
    return np.linalg.norm(reg.fit.transform_points(src_fixed) - expected, axis=1)


def _pose(study, scanner):
    p = study.truth["poses_mold_to_scanner"][scanner]
    return np.asarray(p["matrix"]), np.asarray(p["translation"])


def test_mri_to_mpi_ct_to_mpi_and_mri_to_ct(study):
    def via(tx):
        return lambda pts: np.array([tx.TransformPoint([float(v) for v in p]) for p in pts])

    reg = register_with_template(study.mri, study.mpi, "mouse_mold_v1")
    assert reg.matched_names == [f"M{i}" for i in range(1, 8)]
    assert _tre(reg, study, "mri_mm", via(truth_transform(study))).max() < 0.5
    lines = reg.report_lines()
    assert any("M7" in ln for ln in lines) and any("ambiguous: no" in ln for ln in lines)

    # sources in the CT's frame from their mold coordinates and the CT pose
    rc, tc = _pose(study, "ct")
    src_ct = np.array([s["mold_mm"] for s in study.truth["sources"]]) @ rc.T + tc
    reg_ct = register_with_template(study.ct, study.mpi, "mouse_mold_v1")
    mpi_expected = np.array([s["mpi_mm"] for s in study.truth["sources"]])
    assert np.linalg.norm(reg_ct.fit.transform_points(src_ct) - mpi_expected, axis=1).max() < 0.5
    ct_truth = via(truth_transform(study, fixed="ct"))
    assert_allclose(ct_truth(src_ct), mpi_expected, atol=1e-6)  # the test's own frames agree

    reg_mc = register_with_template(study.mri, study.ct, "mouse_mold_v1")
    src_mri = np.array([s["mri_mm"] for s in study.truth["sources"]])
    assert np.linalg.norm(reg_mc.fit.transform_points(src_mri) - src_ct, axis=1).max() < 0.5


def test_missing_well_and_extra_hot_spots_in_mpi():
    s = make_demo_study(
        missing_fiducials=("M3",),
        extra_hot_spots=2,
        include_ct=False,
        mri_spacing_mm=(0.5, 0.5, 0.5),
    )
    reg = register_with_template(s.mri, s.mpi, "mouse_mold_v1")
    assert "M3" not in reg.matched_names and len(reg.matched_names) == 6
    assert reg.moving_match.missing == ["M3"]
    record = json.loads(json.dumps(reg.to_dict()))  # session-ready
    assert (
        record["moving_match"]["missing"] == ["M3"] and record["matched_names"] == reg.matched_names
    )
    src = np.array([x["mri_mm"] for x in s.truth["sources"]])
    tx = truth_transform(s)
    expected = np.array([tx.TransformPoint([float(v) for v in p]) for p in src])
    assert np.linalg.norm(reg.fit.transform_points(src) - expected, axis=1).max() < 0.5


def test_template_that_does_not_fit_is_refused(study):
    with pytest.raises(InputError) as err:
        register_with_template(study.mri, study.mpi, "rat_mold_v1")
    assert "rat_mold_v1" in str(err.value) and "\n" not in str(err.value)
    # the MPI alone, with all its hot spots, does not fit the rat mold either
    with pytest.raises(InputError):
        match_fiducials(detect_fiducials(study.mpi, "rat_mold_v1"), "rat_mold_v1")


def test_image_with_two_wells_is_refused():
    s = make_demo_study(
        missing_fiducials=("M1", "M2", "M3", "M4", "M5"),
        extra_hot_spots=2,
        include_ct=False,
        mri_spacing_mm=(0.5, 0.5, 0.5),
    )
    with pytest.raises(InputError) as err:
        register_with_template(s.mri, s.mpi, "mouse_mold_v1")
    assert "moving image" in str(err.value)


# -- command line ---------------------------------------------------------------------------
def test_cli_register_with_template(tmp_path, capsys):
    small = dict(include_ct=False, mri_spacing_mm=(0.5, 0.5, 0.5))
    paths = write_demo_study(tmp_path / "demo", **small)
    out = tmp_path / "t.tfm"
    rc = cli.main(
        [
            "register",
            str(paths["mri"]),
            str(paths["mpi"]),
            "--template",
            "mouse_mold_v1",
            "-o",
            str(out),
        ]
    )
    assert rc == 0 and out.is_file()
    import SimpleITK as sitk

    tx = sitk.ReadTransform(str(out))
    s = make_demo_study(**small)
    truth = truth_transform(s)
    for src in s.truth["sources"]:
        p = [float(v) for v in src["mri_mm"]]
        assert np.linalg.norm(np.subtract(tx.TransformPoint(p), truth.TransformPoint(p))) < 0.5
    assert "M1" in capsys.readouterr().out

    bad = tmp_path / "bad.json"
    data = load_template("mouse_mold_v1").to_dict()
    data["units"] = "inch"
    bad.write_text(json.dumps(data), encoding="utf-8")
    out2 = tmp_path / "t2.tfm"
    rc = cli.main(
        ["register", str(paths["mri"]), str(paths["mpi"]), "--template", str(bad), "-o", str(out2)]
    )
    err = capsys.readouterr().err
    assert rc == 2 and not out2.exists()
    assert len(err.strip().splitlines()) == 1 and "units" in err


# -- self-congruence of templates -----------------------------------------------------------
def test_template_self_match_finds_a_symmetric_subset(tmp_path):
    from mpi_viewer.registration._fiducial_match import kabsch
    from mpi_viewer.registration.molds import template_self_match

    # a rectangle of four wells and one well off it: 180° turns map the rectangle onto itself
    pts = [[-10, -5, 0], [10, -5, 0], [10, 5, 0], [-10, 5, 0], [3, 1, 7]]
    fids = [{"name": f"S{i}", "position_mm": p, "diameter_mm": 3.0} for i, p in enumerate(pts)]
    t = Template.from_dict(
        {"name": "rect", "units": "mm", "fiducials": fids, "appearance": {"MPI": "hot"}}
    )
    k, mapping = template_self_match(t)
    assert k == 4 and sorted(mapping) == sorted(mapping.values()) == ["S0", "S1", "S2", "S3"]
    assert all(a != b for a, b in mapping.items())
    # the mouse mold's largest self-congruent subset is a real rigid copy (checked by Kabsch)
    mouse = load_template("mouse_mold_v1")
    k, mapping = template_self_match(mouse)
    pos = dict(zip(mouse.names, mouse.positions_mm, strict=True))
    src = np.array([pos[a] for a in mapping])
    dst = np.array([pos[b] for b in mapping.values()])
    r, tr = kabsch(src, dst)
    assert k == len(mapping) < len(mouse.names) - 1  # so one missing well is never ambiguous
    assert np.linalg.norm(src @ r.T + tr - dst, axis=1).max() < 1.5
    assert np.linalg.norm(src @ r.T + tr - src, axis=1).max() > 1.5  # and not the identity


# -- real anatomy -----------------------------------------------------------------------------
REAL_MRI = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "real"
    / "mouse_mri"
    / "sherm_mouse_t1_1.nii"
)


def _paint_spheres(vol, centres_mm, diameter_mm, value, sub=4):
    """Partial-volume spheres (sub³ supersampling) painted into a copy of ``vol``."""
    a = vol.array.astype(np.float32).copy()
    r = diameter_mm / 2
    offs = (
        np.stack(np.meshgrid(*[np.arange(sub)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5
    ) / sub - 0.5
    for c in centres_mm:
        idx = vol.physical_to_index(c)[0]
        half = np.ceil((r + 1) / np.asarray(vol.spacing_mm)[::-1]).astype(int)
        lo = np.maximum(np.floor(idx).astype(int) - half, 0)
        hi = np.minimum(np.floor(idx).astype(int) + half + 2, a.shape)
        grid = np.stack(
            np.meshgrid(*[np.arange(i, j) for i, j in zip(lo, hi, strict=True)], indexing="ij"), -1
        ).reshape(-1, 3)
        pts = (grid[:, None, :] + offs[None]).reshape(-1, 3)
        frac = (
            (np.linalg.norm(vol.index_to_physical(pts) - c, axis=1) <= r)
            .reshape(len(grid), -1)
            .mean(1)
        )
        g = tuple(grid.T)
        a[g] = a[g] * (1 - frac) + value * frac
    return vol.with_array(a)


@pytest.mark.skipif(not REAL_MRI.is_file(), reason="real data folder ../shared/data/real is absent")
def test_wells_in_a_real_mouse_mri_with_thick_flipped_slices():
    from mpi_viewer.io.images import read_volume

    vol = read_volume(
        REAL_MRI, modality="MRI"
    )  # 0.125 × 0.125 × 0.75 mm, direction diag(-1, -1, 1)
    # a real head has no wells: the mouse mold is refused
    with pytest.raises(InputError):
        match_fiducials(detect_fiducials(vol, "mouse_mold_v1"), "mouse_mold_v1")
    # five 2.5 mm Gd wells of a small asymmetric holder, posed by a known motion, in the anatomy
    q = np.array(
        [[-5.0, -4.0, -3.0], [4.0, -4.5, -0.5], [0.5, 5.0, 1.0], [4.5, 2.5, 3.5], [-4.5, 3.0, 2.0]]
    )
    fids = [
        {"name": f"T{i + 1}", "position_mm": p.tolist(), "diameter_mm": 2.5}
        for i, p in enumerate(q)
    ]
    tpl = Template.from_dict(
        {"name": "tiny", "units": "mm", "fiducials": fids, "appearance": {"MRI": "bright"}}
    )
    r = rotation_matrix((8.0, -5.0, 12.0))
    p = q @ r.T + np.array([-8.0, -8.0, 7.5])
    painted = _paint_spheres(vol, p, 2.5, 1.2 * float(vol.array.max()))
    m = match_fiducials(detect_fiducials(painted, tpl), tpl, tolerance_mm=0.5)
    assert m.matched_names == tpl.names
    assert np.linalg.norm(np.array([m.positions_mm[n] for n in tpl.names]) - p, axis=1).max() < 0.15
    assert_allclose(m.matrix, r, atol=0.01)
