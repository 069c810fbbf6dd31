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
