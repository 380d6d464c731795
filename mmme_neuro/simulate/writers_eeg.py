"""Write synthetic EEG in the formats MMME was released in: EEGLAB ``.set/.fdt`` and BrainVision.

Both writers take the sample-major float32 arrays of
:func:`~mmme_neuro.simulate.eeg.simulate_eeg_chunks` (columns in the order of
:data:`~mmme_neuro.constants.ALL_EEG_FILE_CHANNELS`, µV; 68 columns without
or 69 with the Trigger column) and write every marker of ``subject.markers``
with ``in_eeg`` True as an event (spurious 77/88 and duplicated markers
included, as the real files have them).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .._utils import atomic_path
from ..constants import ALL_EEG_FILE_CHANNELS, AUX_CHANNEL_TYPES, EEG_CHANNELS
from ..montage import quikcap64_positions
from ._mat import savemat_reproducible
from .design import SubjectDesign

__all__ = ["eeglab_chanlocs", "write_brainvision", "write_eeglab"]


#: MAT header text of the synthetic .set files (fixed, so files are reproducible).
_SET_HEADER_TEXT = "MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by: mmme_neuro synthetic EEGLAB export"

def write_eeglab(
    subject: SubjectDesign, chunks: Iterable[np.ndarray], path_set: str | os.PathLike
) -> Path:
    """Write an EEGLAB dataset (``.set`` header + ``.fdt`` data), streaming the data.

    Parameters
    ----------
    subject : SubjectDesign
        The subject (sampling rate, markers, expected number of samples).
    chunks : iterable of ndarray, shape (n_samples_chunk, n_channels)
        Consecutive chunks of the recording in µV, ``n_channels`` 68 or 69 (the
        first columns of ``ALL_EEG_FILE_CHANNELS``), e.g.
        ``simulate_eeg_chunks(subject, effects, seed)``. They are appended to the
        ``.fdt`` as they come, so memory stays bounded by one chunk.
    path_set : path-like
        Destination ``.set`` file; the data go to the ``.fdt`` of the same stem.

    Returns
    -------
    path_set : pathlib.Path
        The written ``.set`` file.

    Raises
    ------
    ValueError
        If the path does not end in ``.set``, the chunks have the wrong number
        of columns or do not add up to ``subject.eeg_n_samples`` samples.

    Notes
    -----
    The ``.fdt`` is raw little-endian float32, sample-major (all channels of
    sample 1, then all channels of sample 2 ...), which is MATLAB's
    column-major layout of EEG.data (nbchan x pnts). The ``.set`` is a MATLAB
    v5 file holding the fields of the EEG struct at top level, as
    :func:`eeglabio.raw.export_set` writes it, except that ``EEG.data`` is the
    name of the ``.fdt``. We do not call ``export_set`` itself because it
    needs the whole (channels x samples) array in memory and embeds it in the
    ``.set``: ~1.2 GB of float32 per full-scale session. Event latencies are
    1-based samples (``round(eeg_time_s * srate) + 1``), types are the marker
    codes as strings (``'101'``). Both files are written to temporary names and
    renamed into place (``.fdt`` first), so readers never see a half-written
    dataset.
    """
    path_set = Path(path_set)
    if path_set.suffix.lower() != ".set":
        raise ValueError(f"EEGLAB header must end in .set, got {path_set.name}")
    path_fdt = path_set.with_suffix(".fdt")
    n_expected = subject.eeg_n_samples
    with atomic_path(path_set) as tmp_set:
        with atomic_path(path_fdt) as tmp_fdt:
            n_samples, n_chan = _write_fdt(chunks, tmp_fdt)
            if n_samples != n_expected:
                raise ValueError(f"chunks hold {n_samples} samples, expected {n_expected}")
            struct = _eeglab_struct(subject, n_chan, n_samples, path_set.stem, path_fdt.name)
            savemat_reproducible(tmp_set, struct, description=_SET_HEADER_TEXT, appendmat=False, oned_as="row")
    return path_set


def write_brainvision(
    subject: SubjectDesign, data: np.ndarray, path_vhdr: str | os.PathLike
) -> Path:
    """Write a BrainVision recording (``.vhdr``, ``.vmrk``, ``.eeg``) with pybv.

    Parameters
    ----------
    subject : SubjectDesign
        The subject (sampling rate, markers, recording start).
    data : ndarray, shape (n_samples, n_channels)
        The whole recording in µV, sample-major as returned by
        :func:`~mmme_neuro.simulate.eeg.simulate_eeg`; ``n_channels`` 68 or 69
        (the first columns of ``ALL_EEG_FILE_CHANNELS``).
    path_vhdr : path-like
        Destination header; the ``.vmrk`` and ``.eeg`` get the same stem.

    Returns
    -------
    path_vhdr : pathlib.Path
        The written header.

    Notes
    -----
    :func:`pybv.write_brainvision` needs the whole recording in memory (and
    converts it to float64 volts): about 550 bytes per sample, ~2.4 GB for a
    full-scale 73-min session. Use it for the ``ci``/``default`` scales; the
    EEGLAB writer streams. Data are stored as float32 in µV; events are
    ``Stimulus`` markers ``S<code>`` (MNE annotation ``Stimulus/S101``) at the
    0-based sample of each marker. The three files are written in a temporary
    directory next to the target and moved into place (``.eeg``, ``.vmrk``,
    then ``.vhdr``).
    """
    import pybv

    path_vhdr = Path(path_vhdr)
    if path_vhdr.suffix.lower() != ".vhdr":
        raise ValueError(f"BrainVision header must end in .vhdr, got {path_vhdr.name}")
    data = np.asarray(data)
    n_chan = _check_columns(data)
    if data.shape[0] != subject.eeg_n_samples:
        raise ValueError(f"data hold {data.shape[0]} samples, expected {subject.eeg_n_samples}")
    samples, codes = _marker_samples(subject)
    events = [
        {"onset": int(s), "duration": 1, "description": int(c), "type": "Stimulus"}
        for s, c in zip(samples, codes, strict=True)
        if 0 <= s < data.shape[0]
    ]
    folder = path_vhdr.parent
    folder.mkdir(parents=True, exist_ok=True)
    stem = path_vhdr.stem
    with tempfile.TemporaryDirectory(dir=folder, prefix=f".{stem}.") as tmp:
        pybv.write_brainvision(
            data=data.T * 1e-6,  # pybv expects volts
            sfreq=float(subject.eeg_sfreq),
            ch_names=list(ALL_EEG_FILE_CHANNELS[:n_chan]),
            fname_base=stem,
            folder_out=tmp,
            events=events,
            resolution=0.1,
            unit="µV",
            fmt="binary_float32",
            meas_date=subject.camera_start.strftime("%Y%m%d%H%M%S%f"),
            overwrite=True,
        )
        for ext in (".eeg", ".vmrk", ".vhdr"):
            os.replace(Path(tmp) / f"{stem}{ext}", folder / f"{stem}{ext}")
    return path_vhdr


def eeglab_chanlocs(n_chan: int = len(ALL_EEG_FILE_CHANNELS)) -> np.recarray:
    """EEGLAB ``chanlocs`` struct array of the first ``n_chan`` recording columns.

    Parameters
    ----------
    n_chan : int
        Number of columns (68 without, 69 with the Trigger column).

    Returns
    -------
    chanlocs : numpy.recarray, shape (n_chan,)
        Fields as written by :func:`eeglabio.raw.export_set`: ``labels``,
        ``X``, ``Y``, ``Z`` (mm), ``sph_theta``, ``sph_phi``, ``sph_radius``,
        ``theta``, ``radius``, ``sph_theta_besa``, ``sph_phi_besa``, ``type``.
        EEG positions come from :func:`~mmme_neuro.montage.quikcap64_positions`
        converted to EEGLAB's axes as eeglabio does (X = MNE y, towards the
        nose; Y = -MNE x, towards the left ear; Z up), in millimetres (the unit
        of EEGLAB's own templates; MNE's reader detects it). Auxiliary channels
        have empty coordinates (MATLAB ``[]``) and types ``EOG``/``ECG``/``EMG``/
        ``STIM``.
    """
    from eeglabio.utils import cart_to_eeglab

    pos = quikcap64_positions()
    mne_xyz = np.array([pos[c] for c in EEG_CHANNELS]) * 1000.0
    cart = np.column_stack([mne_xyz[:, 1], -mne_xyz[:, 0], mne_xyz[:, 2]])
    full = cart_to_eeglab(cart)  # (64, 10): X Y Z + 7 spherical/polar values
    names = ALL_EEG_FILE_CHANNELS[:n_chan]
    fields = ["labels", "X", "Y", "Z", "sph_theta", "sph_phi", "sph_radius", "theta",
              "radius", "sph_theta_besa", "sph_phi_besa", "type"]  # fmt: skip
    cols: list[np.ndarray] = [np.empty(n_chan, dtype=object) for _ in fields]
    for i, name in enumerate(names):
        cols[0][i] = name
        if i < len(EEG_CHANNELS):
            for j in range(10):
                cols[1 + j][i] = float(full[i, j])
            cols[11][i] = "EEG"
        else:
            for j in range(10):
                cols[1 + j][i] = np.zeros((0, 0))
            cols[11][i] = AUX_CHANNEL_TYPES[name].upper()
    return np.rec.fromarrays(cols, names=fields)


# --------------------------------------------------------------------------- helpers


def _check_columns(arr: np.ndarray) -> int:
    n_all = len(ALL_EEG_FILE_CHANNELS)
    if arr.ndim != 2 or arr.shape[1] not in (n_all - 1, n_all):
        raise ValueError(
            f"expected an array of shape (n_samples, {n_all - 1} or {n_all}), got {arr.shape}"
        )
    return int(arr.shape[1])


def _write_fdt(chunks: Iterable[np.ndarray], path: Path) -> tuple[int, int]:
    """Append chunks to a raw float32 file; return (n_samples, n_channels)."""
    n_samples, n_chan = 0, None
    with open(path, "wb") as fh:
        for chunk in chunks:
            arr = np.asarray(chunk)
            nc = _check_columns(arr)
            if n_chan is None:
                n_chan = nc
            elif nc != n_chan:
                raise ValueError(f"chunk with {nc} columns after chunks with {n_chan}")
            np.ascontiguousarray(arr, dtype="<f4").tofile(fh)
            n_samples += arr.shape[0]
    if n_chan is None:
        raise ValueError("no data chunks")
    return n_samples, n_chan


def _marker_samples(subject: SubjectDesign) -> tuple[np.ndarray, np.ndarray]:
    """0-based samples and codes of the markers present in the EEG, in time order."""
    mk = subject.markers
    mk = mk[mk.in_eeg.astype(bool)]
    samples = subject.eeg_sample(mk.eeg_time_s.to_numpy(dtype=float))
    order = np.argsort(samples, kind="stable")
    return samples[order], mk.code.to_numpy(dtype=np.int64)[order]


def _eeglab_struct(
    subject: SubjectDesign, n_chan: int, n_samples: int, setname: str, fdt_name: str
) -> dict:
    """The EEG struct fields (eeglabio's set, plus the .fdt reference and bookkeeping)."""
    sfreq = float(subject.eeg_sfreq)
    samples, codes = _marker_samples(subject)
    n_ev = len(codes)
    event = np.rec.fromarrays(
        [
            np.array([str(c) for c in codes], dtype=object),
            samples.astype(float) + 1.0,  # EEGLAB latencies are 1-based samples
            np.zeros(n_ev),
            np.arange(1, n_ev + 1, dtype=float),
        ],
        names=["type", "latency", "duration", "urevent"],
    )
    urevent = np.rec.fromarrays(
        [event["type"], event["latency"], event["duration"]], names=["type", "latency", "duration"]
    )
    return dict(
        setname=setname,
        filename=f"{setname}.set",
        filepath="",
        subject="",
        comments=f"Synthetic MMME-like EEG (mmme-neuro), session {subject.session_id}",
        nbchan=float(n_chan),
        pnts=float(n_samples),
        trials=1.0,
        srate=sfreq,
        xmin=0.0,
        xmax=float((n_samples - 1) / sfreq),
        ref="common",
        data=fdt_name,
        chanlocs=eeglab_chanlocs(n_chan),
        event=event,
        urevent=urevent,
        epoch=np.zeros((0, 0)),
        icawinv=np.zeros((0, 0)),
        icasphere=np.zeros((0, 0)),
        icaweights=np.zeros((0, 0)),
        icachansind=np.zeros((0, 0)),
    )
