"""xarray conventions of mmme-neuro: dimension names, units, provenance, netCDF I/O.

Every result is an :class:`xarray.DataArray` (or Dataset) whose dimensions are
named from :data:`DIMS`, whose coordinates carry units in their ``units``
attribute, and whose ``attrs`` carry provenance (package version, config hash,
input file hashes). See ``docs/data-model.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from . import __version__
from ._utils import atomic_path, sha256_file
from .config import Config

__all__ = ["COORD_UNITS", "DIMS", "load_netcdf", "provenance", "save_netcdf", "validate"]

#: Dimension names and what they index.
DIMS: dict[str, str] = {
    "subject": "participant pseudonym (sub-01 ...)",
    "condition": "expression condition: ME, MaE, NE",
    "epoch": "one expression-locked (or control) epoch; trial-level data",
    "channel": "EEG channel name (Quik-Cap spelling)",
    "time": "time relative to the alignment landmark (s)",
    "train_time": "training time of a temporal-generalisation matrix (s, relative to the landmark)",
    "test_time": "testing time of a temporal-generalisation matrix (s, relative to the landmark)",
    "freq": "frequency (Hz)",
    "band": "named frequency band (delta, theta, alpha, beta, gamma)",
    "node": "network node (= EEG channel)",
    "node_other": "second node of a connectivity pair",
    "density": "edge density of a thresholded network (proportion of possible edges)",
    "signal": "physiological signal (ECG, PPG, RSP, EDA, SKT ...)",
    "window": "post-onset analysis window (concordance)",
    "feature": "named feature (decoding, concordance)",
}

#: Units of the coordinate of each dimension that has one.
COORD_UNITS: dict[str, str] = {"time": "s", "train_time": "s", "test_time": "s", "freq": "Hz", "density": "1"}

_JSON_PREFIX = "json:"


def provenance(
    config: Config | None = None,
    inputs: Mapping[str, str | os.PathLike] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build provenance attributes for a result.

    Parameters
    ----------
    config : Config | None
        Effective configuration (its hash and seed are recorded).
    inputs : mapping of str to path-like | None
        Named input files; their SHA-256 hashes are recorded.
    **extra
        Further attributes (e.g. ``analysis="erp"``, ``preprocessing={...}``).

    Returns
    -------
    attrs : dict
        ``mmme_neuro_version``, ``config_hash``, ``seed``, ``input_hashes``
        (name -> sha256) and ``extra``.
    """
    attrs: dict[str, Any] = {"mmme_neuro_version": __version__}
    if config is not None:
        attrs["config_hash"] = config.hash()
        attrs["seed"] = config.seed
    if inputs:
        attrs["input_hashes"] = {name: sha256_file(p) for name, p in sorted(inputs.items())}
    attrs.update(extra)
    return attrs


def validate(obj: xr.DataArray | xr.Dataset) -> xr.DataArray | xr.Dataset:
    """Check that ``obj`` follows the data model; return it unchanged.

    Raises
    ------
    ValueError
        On a dimension not in :data:`DIMS`, or a ``time``/``freq``/``density``
        coordinate without the right ``units`` attribute.
    """
    for dim in obj.dims:
        if dim not in DIMS:
            raise ValueError(f"dimension {dim!r} is not part of the data model; use one of {sorted(DIMS)}")
    for dim, unit in COORD_UNITS.items():
        if dim in obj.coords and obj.coords[dim].attrs.get("units") != unit:
            raise ValueError(f"coordinate {dim!r} must have attrs['units'] == {unit!r}")
    return obj


def _encode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, (dict, list, tuple)) or value is None:
            out[key] = _JSON_PREFIX + json.dumps(value, sort_keys=True, default=str)
        elif isinstance(value, (bool, np.bool_)):
            out[key] = _JSON_PREFIX + json.dumps(bool(value))
        elif isinstance(value, Path):
            out[key] = str(value)
        else:
            out[key] = value
    return out


def _decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, str) and value.startswith(_JSON_PREFIX):
            out[key] = json.loads(value[len(_JSON_PREFIX):])
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = value
    return out


def _encoded(obj: xr.DataArray | xr.Dataset) -> xr.Dataset:
    ds = obj.to_dataset(name=obj.name or "data", promote_attrs=True) if isinstance(obj, xr.DataArray) else obj.copy()
    ds.attrs = _encode_attrs(ds.attrs)
    for name in list(ds.variables):
        ds[name].attrs = _encode_attrs(ds[name].attrs)
    if isinstance(obj, xr.DataArray):
        ds.attrs["mmme_neuro_kind"] = "DataArray"
        ds.attrs["mmme_neuro_name"] = obj.name or "data"
    return ds


def save_netcdf(
    obj: xr.DataArray | xr.Dataset,
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write ``obj`` to netCDF-4 (h5netcdf engine) atomically.

    Dict/list attributes (provenance) are stored as JSON strings and restored
    by :func:`load_netcdf`. The file is written to a temporary name and
    renamed, so readers never see a half-written file.

    Parameters
    ----------
    obj : DataArray | Dataset
        Result following the data model (checked by :func:`validate`).
    path : path-like
        Destination (``.nc``).
    inputs : iterable of path-like
        Input files of the computation; writing onto one of them is refused.

    Returns
    -------
    path : Path
    """
    validate(obj)
    ds = _encoded(obj)
    with atomic_path(path, inputs=inputs) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=False)
    return Path(path)


def load_netcdf(path: str | os.PathLike) -> xr.DataArray | xr.Dataset:
    """Read a file written by :func:`save_netcdf` fully into memory.

    Returns a DataArray if a DataArray was saved, else a Dataset; attributes
    are decoded back to dicts/lists/bools.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such result file: {path}")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        ds = ds.load()
    ds.attrs = _decode_attrs(ds.attrs)
    for name in list(ds.variables):
        ds[name].attrs = _decode_attrs(ds[name].attrs)
    if ds.attrs.pop("mmme_neuro_kind", None) == "DataArray":
        name = ds.attrs.pop("mmme_neuro_name")
        da = ds[name]
        da.attrs = {**ds.attrs, **da.attrs}
        return da
    return ds
