"""xarray data model: validation, provenance, atomic and deterministic netCDF I/O."""

import numpy as np
import pytest
import xarray as xr

from mmme_neuro._utils import sha256_file
from mmme_neuro.config import Config
from mmme_neuro.containers import load_netcdf, provenance, save_netcdf, validate


def _erp(n_sub=2):
    rng = np.random.default_rng(0)
    return xr.DataArray(
        rng.normal(size=(n_sub, 2, 3, 5)),
        dims=("subject", "condition", "channel", "time"),
        coords={
            "subject": [f"sub-{i + 1:02d}" for i in range(n_sub)],
            "condition": ["ME", "MaE"],
            "channel": ["FZ", "CZ", "PZ"],
            "time": ("time", np.arange(5) / 250.0, {"units": "s"}),
        },
        name="erp",
        attrs={"units": "µV", **provenance(Config(), analysis="erp", equalized=False)},
    )


def test_round_trip_identical_and_deterministic(tmp_path):
    da = _erp()
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    save_netcdf(da, a)
    save_netcdf(da, b)
    assert sha256_file(a) == sha256_file(b)
    back = load_netcdf(a)
    xr.testing.assert_identical(back, da)
    assert back.attrs["config_hash"] == Config().hash()
    assert back.attrs["equalized"] is False


def test_provenance_hashes_inputs(tmp_path):
    f = tmp_path / "input.txt"
    f.write_text("x")
    attrs = provenance(Config(), inputs={"coding": f})
    assert attrs["input_hashes"] == {"coding": sha256_file(f)}
    ds = _erp().to_dataset()
    ds.attrs.update(attrs)
    save_netcdf(ds, tmp_path / "ds.nc")
    assert load_netcdf(tmp_path / "ds.nc").attrs["input_hashes"] == {"coding": sha256_file(f)}


def test_refuses_to_overwrite_inputs(tmp_path):
    inp = tmp_path / "input.nc"
    inp.write_bytes(b"raw")
    with pytest.raises(FileExistsError, match="input file"):
        save_netcdf(_erp(), inp, inputs=[inp])
    assert inp.read_bytes() == b"raw"


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    out = tmp_path / "x.nc"

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(RuntimeError):
        save_netcdf(_erp(), out)
    assert list(tmp_path.iterdir()) == []


def test_validate_rejects_unknown_dims_and_units():
    with pytest.raises(ValueError, match="trial"):
        validate(xr.DataArray(np.zeros(3), dims=("trial",)))
    with pytest.raises(ValueError, match="units"):
        validate(xr.DataArray(np.zeros(3), dims=("time",), coords={"time": [0.0, 0.1, 0.2]}))


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os

    from mmme_neuro._utils import atomic_write_text

    out = atomic_write_text(tmp_path / "x.txt", "hi")
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
