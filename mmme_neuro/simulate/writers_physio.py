"""Writers of synthetic physiology in the formats MMME physiology arrives in.

- :func:`write_acqknowledge_mat`: AcqKnowledge 5 "Save as MATLAB" export
  (MAT v5: ``data``, ``labels``, ``units``, ``isi``, ``isi_units``, ``start_sample``),
  the format of MMME's BIOPAC files.
- :func:`write_physio_csv`: a plain CSV/TSV with one header row of labels and
  no time column (the readers take the sampling rate as an argument).

Both write atomically (temporary file + rename) and are byte-for-byte
deterministic: the MAT header carries a fixed description instead of the
creation time scipy would put there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._utils import atomic_path
from ..constants import BIOPAC_LABELS, BIOPAC_UNITS
from ._mat import savemat_reproducible
from .design import SubjectDesign

__all__ = ["write_acqknowledge_mat", "write_physio_csv"]

#: Description written in the 116-byte MAT-file header (fixed, so files are reproducible).
MAT_HEADER_TEXT = (
    "MATLAB 5.0 MAT-file, Platform: PCWIN64, Created by: mmme_neuro synthetic AcqKnowledge export"
)
_CSV_CHUNK_ROWS = 200_000


def _check_data(subject: SubjectDesign, data: np.ndarray) -> np.ndarray:
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != len(BIOPAC_LABELS):
        raise ValueError(
            f"data must have shape (n_samples, {len(BIOPAC_LABELS)}), got {data.shape}"
        )
    if data.shape[0] != subject.physio_n_samples:
        raise ValueError(
            f"data has {data.shape[0]} samples, the design of {subject.session_id} has "
            f"{subject.physio_n_samples}"
        )
    return data


def _char_matrix(strings: tuple[str, ...]) -> np.ndarray:
    """Right-pad ``strings`` with spaces to a common width (a MATLAB char matrix)."""
    width = max(len(s) for s in strings)
    return np.array([s.ljust(width) for s in strings])


def write_acqknowledge_mat(
    subject: SubjectDesign, data: np.ndarray, path: str | os.PathLike
) -> Path:
    """Write a session's physiology as an AcqKnowledge "Save as MATLAB" file.

    Parameters
    ----------
    subject : SubjectDesign
        The session (gives the sampling rate and checks the length).
    data : ndarray, shape (physio_n_samples, 17)
        Signals in :data:`~mmme_neuro.constants.BIOPAC_LABELS` order and
        :data:`~mmme_neuro.constants.BIOPAC_UNITS`
        (from :func:`~mmme_neuro.simulate.physio.simulate_physio`).
    path : path-like
        Destination ``.mat`` file (replaced atomically).

    Returns
    -------
    path : pathlib.Path
        The written file. Variables: ``data`` (n_samples x 17 double),
        ``labels`` and ``units`` (17-row char matrices, space-padded), ``isi``
        (sample interval, ms), ``isi_units`` (``'ms'``), ``start_sample`` (0).

    Notes
    -----
    scipy serialises ``data`` through one in-memory copy (``tobytes``): peak
    memory while writing is about twice the size of ``data``.
    """
    data = _check_data(subject, data)
    path = Path(path)
    mdict = {
        "data": data,
        "labels": _char_matrix(BIOPAC_LABELS),
        "units": _char_matrix(BIOPAC_UNITS),
        "isi": np.array([[1000.0 / float(subject.physio_sfreq)]]),
        "isi_units": np.array(["ms"]),
        "start_sample": np.array([[0.0]]),
    }
    with atomic_path(path) as tmp:
        savemat_reproducible(tmp, mdict, description=MAT_HEADER_TEXT, do_compression=False, oned_as="column")
    return path


def write_physio_csv(
    subject: SubjectDesign, data: np.ndarray, path: str | os.PathLike, sep: str | None = None
) -> Path:
    """Write a session's physiology as a plain CSV (or TSV) with a header row of labels.

    Parameters
    ----------
    subject : SubjectDesign
        The session (checks the length; the sampling rate is *not* in the file).
    data : ndarray, shape (physio_n_samples, 17)
        Signals in :data:`~mmme_neuro.constants.BIOPAC_LABELS` order.
    path : path-like
        Destination (replaced atomically).
    sep : str | None
        Field separator; default tab for ``.tsv``/``.txt`` files, comma otherwise.
        Labels containing the separator are quoted (``"PPG, X, PPGED-R"``).

    Returns
    -------
    path : pathlib.Path
        The written file: one header row, then one row per sample, values
        with 8 significant digits, no index or time column.
    """
    data = _check_data(subject, data)
    path = Path(path)
    if sep is None:
        sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            for start in range(0, max(data.shape[0], 1), _CSV_CHUNK_ROWS):
                frame = pd.DataFrame(
                    data[start : start + _CSV_CHUNK_ROWS], columns=list(BIOPAC_LABELS)
                )
                frame.to_csv(fh, sep=sep, index=False, header=start == 0, float_format="%.8g",
                             lineterminator="\n")  # fmt: skip
    return path
