"""Issue 4's acceptance measure: automatic mold registration on 20 random demo studies.

Each variant moves the mold in the MPI (±15° about each axis, ±10 mm) and a little in
the MRI (±5°, ±3 mm), leaves one well empty in the MPI in half of them and adds two
hot spots that are not fiducials (besides the calibration vials and labelled cells
every demo MPI has). The target registration error is measured at the labelled-cell
sources against the generator's true MRI → MPI transform.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpi_viewer.demo.study import make_demo_study, truth_transform
from mpi_viewer.errors import InputError
from mpi_viewer.registration.molds import load_template, register_with_template

N_VARIANTS = 20


def _variants():
    rng = np.random.default_rng(20240604)
    names = load_template("mouse_mold_v1").names
    out = []
    for i in range(N_VARIANTS):
        missing = (str(rng.choice(names)),) if i % 2 == 0 else ()
        out.append(
            dict(
                seed=100 + i,
                mpi_rotation_deg=tuple(float(v) for v in rng.uniform(-15, 15, 3)),
                mpi_translation_mm=tuple(float(v) for v in rng.uniform(-10, 10, 3)),
                mri_rotation_deg=tuple(float(v) for v in rng.uniform(-5, 5, 3)),
                mri_translation_mm=tuple(float(v) for v in rng.uniform(-3, 3, 3)),
                missing_fiducials=missing,
                extra_hot_spots=2,
                mri_spacing_mm=(0.5, 0.5, 0.5),
                include_ct=False,
            )
        )
    return out


@pytest.mark.slow
def test_twenty_random_variants_register_within_half_a_millimetre():
    tre_max = []
    failures = []
    for params in _variants():
        study = make_demo_study(**params)
        truth = truth_transform(study)
        try:
            reg = register_with_template(study.mri, study.mpi, "mouse_mold_v1")
        except InputError as exc:  # a refusal is allowed (once), a wrong success never
            failures.append(str(exc))
            tre_max.append(np.inf)
            continue
        src_mri = np.array([s["mri_mm"] for s in study.truth["sources"]])
        expected = np.array([truth.TransformPoint([float(v) for v in p]) for p in src_mri])
        tre = np.linalg.norm(reg.fit.transform_points(src_mri) - expected, axis=1)
        tre_max.append(float(tre.max()))
        # no wrong transform reported as success
        assert tre.max() <= 1.0, (params, tre)
        # the matched names are the wells really in both images
        in_mpi = {f["name"] for f in study.truth["fiducials"] if f["in_mpi"]}
        assert set(reg.matched_names) <= in_mpi
        assert len(reg.matched_names) == len(in_mpi)
    good = sum(t <= 0.5 for t in tre_max)
    assert good >= 19, (tre_max, failures)


@pytest.mark.slow
def test_mri_showing_four_wells_one_cut_registers_or_offers_the_right_pose():
    """Issue 15: the MRI's field of view holds only M3–M6 (self-congruent under a 180°
    turn), one of them cut by the edge; four variants, each well cut once."""
    from test_molds_poses import FOUR, crop_to_wells, tre_mm

    from mpi_viewer.registration.molds import AmbiguousPoseError

    rng = np.random.default_rng(15)
    outcomes = []
    for i in range(4):
        study = make_demo_study(
            seed=300 + i,
            mpi_rotation_deg=tuple(float(v) for v in rng.uniform(-15, 15, 3)),
            mpi_translation_mm=tuple(float(v) for v in rng.uniform(-10, 10, 3)),
            mri_rotation_deg=tuple(float(v) for v in rng.uniform(-5, 5, 3)),
            mri_translation_mm=tuple(float(v) for v in rng.uniform(-3, 3, 3)),
            extra_hot_spots=2,
            mri_spacing_mm=(0.5, 0.5, 0.5),
            include_ct=False,
        )
        mri = crop_to_wells(study, cut=(FOUR[i % 4], float(rng.uniform(-0.75, 0.75))))
        try:
            reg = register_with_template(mri, study.mpi, "mouse_mold_v1")
        except AmbiguousPoseError as exc:  # allowed if the right pose is offered
            assert len(exc.candidates) <= 2
            assert min(tre_mm(c.fit, study) for c in exc.candidates) < 0.5
            outcomes.append("offered")
            continue
        assert tre_mm(reg.fit, study) < 0.5, reg.report_lines()  # never a wrong success
        assert len(reg.candidates) <= 2 and set(reg.matched_names) <= set(FOUR)
        outcomes.append(reg.decided_by)
    assert outcomes.count("prior") >= 3, outcomes
