"""File > Open Sample > mpi-viewer > Demo MPI study (synthetic)."""

from __future__ import annotations

from mpi_viewer.plugins._layers import image_layer_kwargs, registered_affine

from mpi_viewer.geometry.volume import Volume


def _tuple(volume: Volume, **extra):
    kwargs = image_layer_kwargs(volume)
    kwargs.update(extra)
    return (volume.array, kwargs, "image")


def demo_layer_data(study, *, transform=None) -> list:
    """Layer-data tuples of a demo study; the MPI drawn in MRI space through ``transform``.

    ``transform`` is (matrix, translation), fixed (MRI) → moving (MPI); without it the
    MPI stays in its own scanner frame.
    """
    out = [_tuple(study.mri, name="MRI (synthetic demo)")]
    if study.ct is not None:
        out.append(_tuple(study.ct, name="CT (synthetic demo)", visible=False))
    mpi_kwargs = {"name": "MPI (synthetic demo)"}
    if transform is not None:
        matrix, translation = transform
        mpi_kwargs.update(
            translate=[0.0] * study.mpi.ndim,
            affine=registered_affine(study.mpi, matrix, translation),
        )
    data, kwargs, kind = _tuple(study.mpi, **mpi_kwargs)
    kwargs["metadata"]["mpi_viewer"]["transform_fixed_to_moving"] = (
        None
        if transform is None
        else {
            "matrix": [list(r) for r in transform[0]],
            "translation": list(transform[1]),
            "fixed": "MRI (synthetic demo)",
        }
    )
    out.append((data, kwargs, kind))
    return out


def demo_study():
    """The synthetic demo study, the MPI registered to the MRI by its mold fiducials."""
    from mpi_viewer.demo.study import make_demo_study

    study = make_demo_study()
    return demo_layer_data(study, transform=demo_registration(study))


def demo_registration(study):
    """Register the demo MPI to its MRI from the mold fiducials (no truth used)."""
    import numpy as np

    try:
        from mpi_viewer.registration.molds import register_with_template

        reg = register_with_template(study.mri, study.mpi, study.truth["template"])
        return np.asarray(reg.fit.matrix), np.asarray(reg.fit.translation)
    except Exception:  # noqa: BLE001 - fall back to the mold's known fiducial list below
        pass
    from mpi_viewer.registration.landmarks import fit_landmarks

    fids = [f for f in study.truth["fiducials"] if f["in_mpi"]]
    fit = fit_landmarks(
        np.array([f["mri_mm"] for f in fids]),
        np.array([f["mpi_mm"] for f in fids]),
        model="rigid",
        names=[f["name"] for f in fids],
    )
    return np.asarray(fit.matrix), np.asarray(fit.translation)
