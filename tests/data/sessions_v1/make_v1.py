"""Write the version-1 session fixtures (run with the code of the release before schema 2)."""

import sys
from pathlib import Path

import numpy as np

from mpi_viewer.cli import main
from mpi_viewer.demo.study import make_demo_session
from mpi_viewer.study import session as S
from mpi_viewer.study.pipeline import compute_and_save, new_session

d = Path(sys.argv[1]).resolve()
make_demo_session(d, write_study=False)
args = ["--phantoms", str(d / "phantoms.csv")]
assert (
    main(
        [
            "quantify",
            str(d / "mpi.nii.gz"),
            "--seed=-1.5,-0.9,10.9",
            "--seed=6.8,-1.5,-10.9",
            "--method",
            "nsd",
            *args,
            "--iron-per-cell",
            "15",
            "--iron-per-cell-sd",
            "1.5",
            "-o",
            str(d / "q_nsd.csv"),
            "--save-session",
            str(d / "quantify_nsd_session.json"),
        ]
    )
    == 0
)
assert main(["calibrate", str(d / "mpi.nii.gz"), *args, "-o", str(d / "cal.json")]) == 0
assert (
    main(
        [
            "quantify",
            str(d / "mpi.nii.gz"),
            "--seed=-0.95,2.7,-24.9",
            "--calibration",
            str(d / "cal.json"),
            "--iron-per-cell",
            "15",
            "--masks",
            str(d / "labels.nii.gz"),
            "-o",
            str(d / "q_cal.csv"),
            "--save-session",
            str(d / "quantify_cal_session.json"),
        ]
    )
    == 0
)
assert (
    main(
        [
            "quantify",
            str(d / "mpi.nii.gz"),
            "--mask",
            str(d / "labels.nii.gz"),
            *args,
            "--through-origin",
            "-o",
            str(d / "q_mask.csv"),
            "--save-session",
            str(d / "quantify_mask_session.json"),
        ]
    )
    == 0
)

half = {"method": "halfmax", "fraction": 0.5, "n_sd": 5.0, "noise_sd": None, "split_sources": True}
seeds = [[6.8, -1.5, -10.9], [10.2, -1.3, -8.7]]


def points(name):
    rows = (d / name).read_text().splitlines()[1:]
    return [r.split(",")[0] for r in rows], [[float(v) for v in r.split(",")[1:4]] for r in rows]


sp = d / "landmarks_session.json"
s = new_session(sp, mpi=d / "mpi.nii.gz", mri=d / "mri.nii.gz", phantoms=d / "phantoms.csv")
names, fx = points("fiducials_mri.csv")
names_m, mv = points("fiducials_mpi.csv")
assert names == names_m
s.registration = S.RegistrationSection(
    fixed="mri",
    moving="mpi",
    method="landmarks",
    model="similarity",
    landmarks=S.Landmarks(names=names, fixed_xyz_mm=fx, moving_xyz_mm=mv, excluded=[names[0]]),
    fle_mm=0.25,
)
s.rois = [
    S.ROISection(
        method="nsd",
        params={"method": "nsd", "n_sd": 4.0},
        seeds_xyz_mm=seeds,
        names=["strong", "weak"],
    )
]
s.calibration = S.CalibrationSection(source="phantoms", roi_params=half)
s.cells = S.CellsSection(mean_pg=12.0, sd_pg=0.0)
compute_and_save(s, sp)

from mpi_viewer.geometry.transform import transform_to_matrix  # noqa: E402
from mpi_viewer.io.transform_files import read_transform  # noqa: E402

m, t = transform_to_matrix(read_transform(d / "truth_mri_to_mpi.tfm"))
sp = d / "transform_session.json"
s = new_session(sp, mpi=d / "mpi.nii.gz", mri=d / "mri.nii.gz", phantoms=d / "phantoms.csv")
s.registration = S.RegistrationSection(
    fixed="mri",
    moving="mpi",
    method="transform",
    model="affine",
    matrix=np.asarray(m, float).tolist(),
    translation=np.asarray(t, float).tolist(),
)
s.rois = [
    S.ROISection(
        method="kmeans",
        params={"method": "kmeans", "n_sd": 4.0},
        seeds_xyz_mm=seeds,
        names=["strong", "weak"],
    )
]
s.calibration = S.CalibrationSection(
    source="phantoms", options={"through_origin": True}, roi_params=half
)
compute_and_save(s, sp)
print("ok")
