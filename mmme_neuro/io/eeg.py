"""One entry point to read the EEG formats MMME data arrive in.

:func:`read_eeg` dispatches on the file extension (or a BIDS path) to the MNE
reader of Neuroscan Curry 7/8, EEGLAB, BrainVision, Neuroscan CNT, EDF/BDF,
FIF and BIDS, never preloads by default, checks companion files and data
sizes (a clear :class:`EEGReadError` instead of a late crash or silently
short data), types the MMME auxiliary channels (:func:`set_mmme_channel_types`)
and applies the Quik-Cap 64 montage. Markers are extracted separately by
:func:`mmme_neuro.io.markers.read_eeg_markers` (re-exported here).

What :func:`read_eeg` learns while reading is kept, for this session only (it
is not written to FIF), in ``raw.info["temp"]["mmme_neuro"]``:

``source_file``
    The file that was read.
``reader_warnings``
    Text of the warnings the MNE reader emitted (also logged).
``omitted_annotations``
    Markers the reader left out because they lie outside the data range
    (list of dicts with ``description``, ``sample``, ``detail``), used by
    :func:`read_eeg_markers` so that no marker is silently lost.
``channels``
    The note returned by :func:`set_mmme_channel_types` (mastoids, aux
    channels, Quik-Cap matches) and the montage decision.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import mne
import numpy as np

from ..constants import EEG_CHANNELS, MASTOID_CHANNELS
from ..montage import make_quikcap64_montage, quikcap64_positions
from .markers import TEMP_KEY, parse_marker_code, read_eeg_markers

__all__ = [
    "EEGReadError",
    "SUPPORTED_EXTENSIONS",
    "EEGLAB_IDENTITY_FIELDS",
    "check_data_file",
    "header_identity",
    "parse_marker_code",
    "read_eeg",
    "read_eeg_markers",
    "set_mmme_channel_types",
]

logger = logging.getLogger(__name__)

#: Extension (lower case) -> format name, as dispatched by :func:`read_eeg`.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".cdt": "curry",
    ".dat": "curry",
    ".set": "eeglab",
    ".vhdr": "brainvision",
    ".cnt": "cnt",
    ".edf": "edf",
    ".bdf": "bdf",
    ".fif": "fif",
    ".fif.gz": "fif",
}

#: Companion files users sometimes pass instead of the entry file.
_COMPANION_HINTS: dict[str, str] = {
    ".fdt": "pass the EEGLAB header .set, not its .fdt data file",
    ".eeg": "pass the BrainVision header .vhdr, not its .eeg data file",
    ".vmrk": "pass the BrainVision header .vhdr, not its .vmrk marker file",
    ".dpa": "pass the Curry data file .cdt, not its .dpa header",
    ".dpo": "pass the Curry data file .cdt, not its .dpo header",
    ".cef": "pass the Curry data file .cdt, not its .cef event file",
    ".ceo": "pass the Curry data file .cdt, not its .ceo event file",
    ".dap": "pass the Curry 7 data file .dat, not its .dap header",
    ".rs3": "pass the Curry 7 data file .dat, not its .rs3 sensor file",
}

#: Channel-name patterns (upper case, spaces/-/_ removed) -> MNE channel type.
_AUX_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(HEO|VEO|HEOG|VEOG|EOG)[LRUD]?\d*$|^EOG.*$|^[HV]EOG(LEFT|RIGHT).*$"), "eog"),
    (re.compile(r"^(EKG|ECG).*$"), "ecg"),
    (re.compile(r"^EMG.*$"), "emg"),
    (re.compile(r"^(TRIGGER|TRIG|STI\d*|STATUS)$"), "stim"),
)

_OMITTED_RE = re.compile(r"Omitted (\d+) annotation\(s\) that were outside data range")

#: Bytes per sample of the formats whose data size is checked.
_FLOAT32_BYTES = 4


class EEGReadError(ValueError):
    """An EEG file cannot be read: unknown format, missing or truncated file."""


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name)).upper()


def read_eeg(
    path: str | os.PathLike | Any,
    *,
    preload: bool = False,
    data_format: Literal["auto", "int16", "int32"] | None = None,
    montage: bool | Literal["quikcap"] = True,
    verbose: bool | str | int | None = None,
) -> mne.io.BaseRaw:
    """Read an EEG recording of any format used for MMME.

    Parameters
    ----------
    path : path-like | mne_bids.BIDSPath
        The entry file: Curry ``.cdt`` (Curry 8, with ``.cdt.dpa``) or
        ``.dat`` (Curry 7, with ``.dap``/``.rs3``); EEGLAB ``.set`` (data in
        the ``.set`` or in a ``.fdt``); BrainVision ``.vhdr``; Neuroscan
        ``.cnt``; ``.edf``; ``.bdf``; ``.fif``/``.fif.gz``. A
        :class:`mne_bids.BIDSPath`, or a file inside a BIDS dataset (a parent
        folder has ``dataset_description.json``), is read with
        :func:`mne_bids.read_raw_bids`, which also applies the sidecars.
    preload : bool
        Load the data into memory. Default ``False``: a full MMME session is
        64 channels x ~4.4 M samples, so read segments with
        ``raw.get_data(start=..., stop=...)`` or crop first.
    data_format : {"auto", "int16", "int32"} | None
        Sample format of Neuroscan ``.cnt`` files only. ``None`` tries MNE's
        ``"auto"``; if the header does not allow that (sample count 0, as in
        MNE's ``scan41_short.cnt``), the format is guessed from the data
        (int32 samples read as int16 have high words that are almost all 0
        or -1; otherwise int16) and a warning says so. Pass it explicitly
        to silence the warning.
    montage : bool | "quikcap"
        ``True``: if every EEG channel has a Quik-Cap 64 name (any case), or
        the file has no electrode positions, give the channels that match the
        Quik-Cap their template positions (CB1/CB2 included), so MMME
        recordings have identical positions whatever the export; otherwise
        (another cap with its own positions, e.g. a 10-10 EEGLAB file) keep
        the file's positions. ``"quikcap"``: always use the template for the
        matching channels (others get no position). ``False``: keep what the
        reader set.
    verbose : bool | str | int | None
        MNE verbosity for the underlying reader.

    Returns
    -------
    raw : mne.io.BaseRaw
        The recording, channel types set by :func:`set_mmme_channel_types`.

    Raises
    ------
    EEGReadError
        Unknown extension, missing file or companion file, truncated data,
        or a reader failure (the message names the file and the problem).
    ValueError
        Invalid arguments.
    """
    if not isinstance(preload, bool):
        raise ValueError(f"preload must be True or False, got {preload!r}")
    if data_format not in (None, "auto", "int16", "int32"):
        raise ValueError(
            f"Invalid data_format={data_format!r}; expected None, 'auto', 'int16' or 'int32'."
        )
    if montage not in (True, False, "quikcap"):
        raise ValueError(f"Invalid montage={montage!r}; expected True, False or 'quikcap'.")

    bids_path = _as_bids_path(path)
    if bids_path is not None:
        fmt, fname = "bids", Path(str(bids_path.fpath))
    else:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(
                f"path must be a path-like or an mne_bids.BIDSPath, got {type(path).__name__}"
            )
        fname = Path(path).expanduser()
        fmt = _format_of(fname)
    if data_format is not None and fmt != "cnt":
        raise ValueError(
            f"data_format={data_format!r} only applies to Neuroscan .cnt files, not to {fname.name}"
        )
    if bids_path is None and not fname.is_file():
        raise EEGReadError(f"{fname}: file not found.")

    store: dict[str, Any] = {"source_file": str(fname), "format": fmt}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if fmt == "bids":
                raw = _read_bids(bids_path, preload=preload, verbose=verbose)
            elif fmt == "curry":
                raw = _read_curry(fname, preload=preload, verbose=verbose)
            elif fmt == "eeglab":
                raw = _read_eeglab(fname, preload=preload, verbose=verbose)
            elif fmt == "brainvision":
                raw = _read_brainvision(fname, preload=preload, verbose=verbose)
            elif fmt == "cnt":
                raw = _read_cnt(fname, preload=preload, data_format=data_format, verbose=verbose)
            elif fmt in ("edf", "bdf"):
                reader = mne.io.read_raw_edf if fmt == "edf" else mne.io.read_raw_bdf
                raw = reader(fname, preload=preload, verbose=verbose)
            else:  # fif
                raw = mne.io.read_raw_fif(fname, preload=preload, verbose=verbose)
        except EEGReadError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError, IndexError, TypeError) as err:
            raise EEGReadError(
                f"{fname}: cannot be read as {fmt} ({type(err).__name__}: {err})"
            ) from err
    messages = list(dict.fromkeys(str(w.message) for w in caught))
    for msg in messages:
        # auxiliary channels (EOG/ECG/EMG/stim) without positions are normal for MMME files
        level = logging.INFO if msg.startswith("Not setting positions of") else logging.WARNING
        logger.log(level, "%s: reader warning: %s", fname.name, msg.strip())
    store["reader_warnings"] = messages
    store["omitted_annotations"] = _omitted_annotations(raw, fname, fmt, messages)

    note = set_mmme_channel_types(raw)
    note["montage"] = _apply_montage(raw, montage, note)
    store["channels"] = note
    _set_store(raw, store)
    logger.info(
        "Read %s: %d channels, %.3f Hz, %d samples (%.3f s), montage: %s",
        fname.name,
        raw.info["nchan"],
        raw.info["sfreq"],
        raw.n_times,
        raw.n_times / raw.info["sfreq"],
        note["montage"],
    )
    return raw


def set_mmme_channel_types(raw: mne.io.BaseRaw) -> dict[str, Any]:
    """Type the MMME auxiliary channels and recognise Quik-Cap and mastoid names.

    Names are compared case-insensitively, ignoring spaces, ``-`` and ``_``:

    - ``HEO``, ``VEO``, ``HEOG``, ``VEOGR``, ``EOG*`` -> ``eog``;
    - ``EKG*``, ``ECG*`` -> ``ecg``; ``EMG*`` (e.g. ``EMGright``) -> ``emg``;
    - ``Trigger``, ``TRIG``, ``STI``, ``STI 014``, ``Status`` -> ``stim``;
    - Quik-Cap 64 names (``Fp1``/``FP1``, ``Fz``/``FZ`` ...) -> ``eeg``
      (only when the reader typed them ``eeg`` or ``misc``).

    Channels the reader already typed as something other than ``eeg`` or
    ``misc`` are left alone. The mastoids M1/M2 stay ``eeg`` (later
    preprocessing re-references to them or drops them); they are listed in
    the returned note, never hidden in ``info["description"]``.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Recording, modified in place.

    Returns
    -------
    note : dict
        ``types_set`` (channel -> new type), ``quikcap_eeg`` (EEG channels
        with a Quik-Cap name), ``other_eeg`` (EEG channels without one),
        ``mastoids`` (M1/M2 as spelled in the file), ``aux`` (channel ->
        type for eog/ecg/emg/stim channels).
    """
    if not isinstance(raw, mne.io.BaseRaw):
        raise TypeError(f"raw must be an mne.io.BaseRaw, got {type(raw).__name__}")
    quikcap = {c.upper() for c in EEG_CHANNELS}
    mastoids = {c.upper() for c in MASTOID_CHANNELS}
    types = dict(zip(raw.ch_names, raw.get_channel_types(), strict=True))
    new_types: dict[str, str] = {}
    for name, ch_type in types.items():
        if ch_type not in ("eeg", "misc"):
            continue
        key = _norm(name)
        target = None
        if key in quikcap:
            target = "eeg"
        else:
            for pattern, aux_type in _AUX_PATTERNS:
                if pattern.match(key):
                    target = aux_type
                    break
        if target is not None and target != ch_type:
            new_types[name] = target
    if new_types:
        with warnings.catch_warnings():
            # "The unit for channel(s) ... has changed from V to NA."
            warnings.filterwarnings(
                "ignore", message=".*unit for channel.*", category=RuntimeWarning
            )
            raw.set_channel_types(new_types, verbose="error")
        logger.info("Channel types set: %s", new_types)
    types = dict(zip(raw.ch_names, raw.get_channel_types(), strict=True))
    eeg = [n for n, t in types.items() if t == "eeg"]
    return {
        "types_set": new_types,
        "quikcap_eeg": [n for n in eeg if _norm(n) in quikcap],
        "other_eeg": [n for n in eeg if _norm(n) not in quikcap],
        "mastoids": [n for n in eeg if _norm(n) in mastoids],
        "aux": {n: t for n, t in types.items() if t in ("eog", "ecg", "emg", "stim")},
    }


def _format_of(fname: Path) -> str:
    name = fname.name.lower()
    for ext in sorted(SUPPORTED_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext):
            return SUPPORTED_EXTENSIONS[ext]
    for ext, hint in _COMPANION_HINTS.items():
        if name.endswith(ext):
            raise EEGReadError(f"{fname}: {hint}.")
    raise EEGReadError(
        f"{fname}: unknown EEG file extension {fname.suffix or '(none)'!r}; supported: "
        f"{', '.join(SUPPORTED_EXTENSIONS)}, or a BIDS path."
    )


def _as_bids_path(path: Any) -> Any:
    """Return a BIDSPath if ``path`` is one or a file inside a BIDS dataset."""
    try:
        import mne_bids
    except ImportError:  # pragma: no cover - mne-bids is a dependency
        return None
    if isinstance(path, mne_bids.BIDSPath):
        return path
    if not isinstance(path, str | os.PathLike):
        return None
    fname = Path(path).expanduser()
    if not fname.name.startswith("sub-") or not fname.is_file():
        return None
    if not any((p / "dataset_description.json").is_file() for p in fname.resolve().parents):
        return None
    try:
        return mne_bids.get_bids_path_from_fname(fname)
    except Exception as err:  # noqa: BLE001 - fall back to the plain reader
        logger.info("%s looks like a BIDS file but is not parsed as one (%s)", fname, err)
        return None


def _read_bids(bids_path: Any, *, preload: bool, verbose: Any) -> mne.io.BaseRaw:
    import mne_bids

    raw = mne_bids.read_raw_bids(bids_path, verbose=verbose if verbose is not None else "error")
    if preload:
        raw.load_data()
    return raw


# --- Curry -------------------------------------------------------------------

_CURRY_LOCK = threading.Lock()


class _LazyNumpy:
    """numpy stand-in for curryreader: ``fromfile`` memory-maps binary files."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def fromfile(file: Any, dtype: Any = float, count: int = -1, sep: str = "", **kwargs: Any):
        if sep != "" or not isinstance(file, str | os.PathLike):
            return np.fromfile(file, dtype=dtype, count=count, sep=sep, **kwargs)
        itemsize = np.dtype(dtype).itemsize
        available = os.path.getsize(file) // itemsize
        count = available if count < 0 else int(count)
        if count > available:
            raise ValueError(f"{file}: {count} values expected, {available} in the file")
        if count == 0:
            return np.zeros(0, dtype=dtype)
        return np.memmap(file, dtype=dtype, mode="c", shape=(count,))


class _QuietLogging:
    """logging stand-in for curryreader: no ``basicConfig`` of the root logger."""

    def __getattr__(self, name: str) -> Any:
        return getattr(logging, name)

    @staticmethod
    def basicConfig(*args: Any, **kwargs: Any) -> None:  # noqa: N802 - mirrors logging
        return None

    @staticmethod
    def info(msg: str, *args: Any, **kwargs: Any) -> None:
        logger.debug("curryreader: " + msg, *args)


@contextlib.contextmanager
def _lazy_curryreader() -> Iterator[None]:
    """Stop ``curryreader.read`` from loading the whole data file.

    MNE's Curry reader (1.11+) calls ``curryreader.read`` two or three times,
    and each call reads the entire ``.cdt`` into memory (1.2 GB for an MMME
    session) even with ``preload=False``; it also configures the root
    logger. Here its ``np.fromfile`` becomes a copy-on-write memory map and
    its ``logging.basicConfig`` a no-op, for the duration of the read.
    """
    import curryreader

    with _CURRY_LOCK:
        saved = curryreader.np, curryreader.log
        curryreader.np, curryreader.log = _LazyNumpy(), _QuietLogging()
        try:
            yield
        finally:
            curryreader.np, curryreader.log = saved


def _curry_files(fname: Path) -> tuple[Path, Path]:
    name = fname.name.lower()
    if name.endswith(".cdt"):
        candidates = [Path(str(fname) + s) for s in (".dpa", ".dpo")]
    else:  # .dat, Curry 7
        candidates = [fname.with_suffix(".dap")]
    for hdr in candidates:
        if hdr.is_file():
            return fname, hdr
    raise EEGReadError(
        f"{fname}: Curry header not found (looked for {', '.join(p.name for p in candidates)})."
    )


def _curry_header_value(text: str, *keys: str) -> str | None:
    for key in keys:
        match = re.search(rf"^\s*{key}\s*=\s*(\S+)", text, flags=re.MULTILINE)
        if match:
            return match.group(1)
    return None


def _read_curry(fname: Path, *, preload: bool, verbose: Any) -> mne.io.BaseRaw:
    fname, hdr = _curry_files(fname)
    if fname.suffix.lower() == ".dat" and not fname.with_suffix(".rs3").is_file():
        raise EEGReadError(
            f"{fname}: Curry 7 sensor file {fname.with_suffix('.rs3').name} not found."
        )
    text = hdr.read_text(errors="replace")
    n_samples = _curry_header_value(text, "NumSamples", "NUM_SAMPLES")
    n_channels = _curry_header_value(text, "NumChannels", "NUM_CHANNELS")
    n_trials = _curry_header_value(text, "NumTrials", "NUM_TRIALS") or "1"
    is_ascii = (_curry_header_value(text, "DataFormat", "DATA_FORMAT") or "").upper() == "ASCII"
    try:
        expected = int(n_samples) * int(n_channels) * int(n_trials) * _FLOAT32_BYTES
    except (TypeError, ValueError):
        expected = -1
    size = fname.stat().st_size
    if not is_ascii and expected > 0 and size < expected:
        raise EEGReadError(
            f"{fname}: data file truncated: header {hdr.name} gives {n_samples} samples x "
            f"{n_channels} channels ({expected} bytes of float32), the file has {size} bytes."
        )
    with _lazy_curryreader():
        raw = mne.io.read_raw_curry(fname, preload=preload, verbose=verbose)
    if not isinstance(raw, mne.io.BaseRaw):
        raise EEGReadError(f"{fname}: Curry file holds epochs, not a continuous recording.")
    return raw


# --- EEGLAB / BrainVision / CNT ---------------------------------------------


def _read_eeglab(fname: Path, *, preload: bool, verbose: Any) -> mne.io.BaseRaw:
    try:
        raw = mne.io.read_raw_eeglab(fname, preload=preload, verbose=verbose)
    except FileNotFoundError as err:
        raise EEGReadError(
            f"{fname}: EEGLAB data file missing: {err}. Keep the .fdt next to the .set "
            "with the name stored in EEG.data."
        ) from err
    check_data_file(raw, fname)
    return raw


def check_data_file(raw: mne.io.BaseRaw, fname: str | Path) -> None:
    """Raise :class:`EEGReadError` if the header of an opened recording disagrees with its data.

    MNE opens a truncated data file without complaint and fails only when the
    missing samples are read, with a message that names neither the file nor
    the cause; worse, a header that lists one channel fewer (or more) than
    the data file holds is opened with one warning at most, and every
    channel then holds the samples of others. Every reader of the package
    calls this after opening a recording (:func:`read_eeg`, the BIDS sessions
    of :func:`mmme_neuro.bids.read_bids_session`), before any data are
    trusted; each inconsistency is an error naming the file and both numbers:

    * EEGLAB (``.set`` + ``.fdt``): the header's ``nbchan`` must equal the
      number of its ``chanlocs`` (when it has any) and the number of channels
      the reader made; its ``pnts`` the number of samples; the ``.fdt`` must
      hold exactly ``nbchan x pnts x trials`` float32 values (a longer file is
      an error too: its channels do not line up with the header's). Data
      stored in the ``.set`` itself must be ``nbchan x pnts``.
    * BrainVision (``.vhdr``, binary data): ``NumberOfChannels`` must equal
      the number of ``[Channel Infos]`` entries; the data file must hold whole
      samples of all channels, and exactly ``DataPoints`` of them when the
      header gives ``DataPoints``.
    * Other formats: nothing to check here (Curry is checked before MNE opens
      it, EDF/BDF/CNT carry their size in their own header).

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording as MNE (or mne-bids) opened it.
    fname : path-like
        Its header (``.set``, ``.vhdr`` ...), named in the message.

    Raises
    ------
    EEGReadError
        If the header and the data disagree.
    """
    fname = Path(fname)
    suffix = fname.suffix.lower()
    if suffix == ".set":
        _check_eeglab_data_file(raw, fname)
    elif suffix == ".vhdr":
        _check_brainvision_data_file(raw, fname)


#: EEGLAB header fields that may hold the participant's identity (see :func:`header_identity`).
EEGLAB_IDENTITY_FIELDS: tuple[str, ...] = ("setname", "filename", "filepath", "datfile", "data", "subject")
#: EEGLAB header fields read by :func:`_eeglab_header` (never the data).
_EEGLAB_FIELDS: tuple[str, ...] = ("nbchan", "pnts", "trials", "chanlocs", *EEGLAB_IDENTITY_FIELDS)


def _mat_int(value: Any) -> int | None:
    arr = np.asarray(value).ravel()
    if arr.size != 1 or arr.dtype.kind not in "iuf" or not np.isfinite(arr[0]):
        return None
    return int(arr[0])


def _mat_str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind == "U" and arr.size == 1:
        return str(arr.ravel()[0])
    return None


def _eeglab_header(fname: Path) -> dict[str, Any]:
    """What an EEGLAB header says about its data and its identity, without loading the data.

    Returns ``nbchan``, ``pnts``, ``trials`` (int or None), ``n_chanlocs``
    (None if the header has no ``chanlocs`` field), ``data_ref`` (the data
    file name in ``EEG.data``, None when the data are in the ``.set``),
    ``data_shape`` (shape of data stored in the ``.set``, else None) and
    ``identity`` (:data:`EEGLAB_IDENTITY_FIELDS` -> their non-empty text).
    """
    from scipy.io import loadmat, whosmat

    try:
        try:
            variables = {name: (shape, cls) for name, shape, cls in whosmat(str(fname))}
            if "EEG" in variables:  # old style: one struct (loaded whole, as MNE does)
                hdr = loadmat(str(fname), variable_names=["EEG"], simplify_cells=True)["EEG"]
                data = hdr.get("data")
                shape = None if isinstance(data, str) or data is None else tuple(np.shape(data))
            else:
                data_is_text = variables.get("data", (None, "char"))[1] == "char"
                wanted = [f for f in _EEGLAB_FIELDS if f in variables and (f != "data" or data_is_text)]
                hdr = loadmat(str(fname), variable_names=wanted, simplify_cells=True)
                shape = None if data_is_text else tuple(variables["data"][0])
        except NotImplementedError:  # MATLAB v7.3 (HDF5): MNE reads these with pymatreader
            from pymatreader import read_mat

            hdr = read_mat(str(fname), variable_names=[f for f in _EEGLAB_FIELDS if f != "data"])
            hdr = hdr.get("EEG", hdr)
            shape = None  # not known without loading the data; an .fdt is still checked by size
    except Exception as err:  # noqa: BLE001 - the reader has opened it; report, check what we can
        raise EEGReadError(f"{fname}: cannot read the EEGLAB header fields ({type(err).__name__}: {err})") from err
    chanlocs = hdr.get("chanlocs")
    if chanlocs is None:
        n_chanlocs = None
    elif isinstance(chanlocs, dict):
        labels = chanlocs.get("labels")
        n_chanlocs = len(labels) if isinstance(labels, list | np.ndarray) and np.ndim(labels) else 1
    else:
        n_chanlocs = len(chanlocs) if np.ndim(chanlocs) else 1
    identity = {}
    for field in EEGLAB_IDENTITY_FIELDS:
        text = _mat_str(hdr.get(field))
        if text and text.strip():
            identity[field] = text.strip()
    return {
        "nbchan": _mat_int(hdr.get("nbchan")),
        "pnts": _mat_int(hdr.get("pnts")),
        "trials": _mat_int(hdr.get("trials")) if hdr.get("trials") is not None else 1,
        "n_chanlocs": n_chanlocs,
        "data_ref": identity.get("data"),
        "data_shape": shape,
        "identity": identity,
    }


def _check_eeglab_data_file(raw: mne.io.BaseRaw, fname: Path) -> None:
    hdr = _eeglab_header(fname)
    nbchan, pnts, trials, n_locs = hdr["nbchan"], hdr["pnts"], hdr["trials"] or 1, hdr["n_chanlocs"]
    n_read = int(raw.info["nchan"])
    if nbchan is not None and n_locs and n_locs != nbchan:
        raise EEGReadError(
            f"{fname}: the header gives nbchan {nbchan} but its chanlocs list {n_locs} channels; "
            "the channel names cannot be matched to the data"
        )
    if nbchan is not None and nbchan != n_read:
        raise EEGReadError(f"{fname}: the header gives nbchan {nbchan} but the reader found {n_read} channels")
    if pnts is not None and pnts != raw.n_times:
        raise EEGReadError(f"{fname}: the header gives pnts {pnts} but the reader found {raw.n_times} samples")
    nbchan = n_read if nbchan is None else nbchan
    pnts = raw.n_times if pnts is None else pnts
    shape = hdr["data_shape"]
    if shape is not None:
        if tuple(shape[:2]) != (nbchan, pnts):
            raise EEGReadError(
                f"{fname}: the data stored in the header are {' x '.join(map(str, shape))}, "
                f"not nbchan {nbchan} x pnts {pnts}"
            )
        return
    data_file = Path(raw.filenames[0])
    if data_file.suffix.lower() != ".fdt":
        return
    expected = nbchan * pnts * trials * _FLOAT32_BYTES
    size = data_file.stat().st_size
    if size != expected:
        per_channel, per_sample = pnts * trials * _FLOAT32_BYTES, nbchan * _FLOAT32_BYTES
        hint = (f"; it would hold {size // per_channel} channels of {pnts} samples" if size % per_channel == 0
                else f"; it would hold {size // per_sample} samples of {nbchan} channels" if size % per_sample == 0
                else "")  # fmt: skip
        raise EEGReadError(
            f"{fname}: data file {data_file.name} {'truncated: it ' if size < expected else ''}holds {size} bytes, "
            f"which is not nbchan {nbchan} x pnts {pnts}{f' x trials {trials}' if trials != 1 else ''} x "
            f"{_FLOAT32_BYTES} bytes = {expected}{hint}; the header and the data disagree, so no channel "
            "can be trusted"
        )


def _brainvision_header(fname: Path) -> str:
    return fname.read_text(encoding="utf-8", errors="replace")


def _brainvision_entry(text: str, key: str) -> str | None:
    match = re.search(rf"^\s*{key}\s*=\s*(.+?)\s*$", text, flags=re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else None


def _brainvision_data_file(fname: Path) -> Path:
    name = _brainvision_entry(_brainvision_header(fname), "DataFile")
    if not name:
        raise EEGReadError(f"{fname}: no DataFile entry in the BrainVision header.")
    return fname.parent / name


def _check_brainvision_data_file(raw: mne.io.BaseRaw, fname: Path) -> None:
    text = _brainvision_header(fname)
    declared = _brainvision_entry(text, "NumberOfChannels")
    section = re.search(r"^\s*\[Channel Infos\]\s*$(.*?)(?=^\s*\[|\Z)", text,
                        flags=re.MULTILINE | re.DOTALL | re.IGNORECASE)  # fmt: skip
    n_infos = len(re.findall(r"^\s*Ch\d+\s*=", section.group(1), flags=re.MULTILINE | re.IGNORECASE)) if section else 0
    if declared is not None and declared.strip().isdigit() and section is not None and int(declared) != n_infos:
        raise EEGReadError(
            f"{fname}: the header gives NumberOfChannels {int(declared)} but its [Channel Infos] list "
            f"{n_infos} channels; the channel names cannot be matched to the data"
        )
    fmt = raw._raw_extras[0].get("fmt")
    n_bytes = {"short": 2, "int": 4, "single": 4}.get(fmt) if isinstance(fmt, str) else None
    if not n_bytes:  # ASCII data: nothing to count
        return
    data_file = _brainvision_data_file(fname)
    nchan = int(raw.info["nchan"])
    frame = nchan * n_bytes  # binary data: the file holds whole samples of all channels
    size = data_file.stat().st_size
    if size % frame:
        raise EEGReadError(
            f"{fname}: data file {data_file.name} truncated: it holds {size} bytes, which is not a whole "
            f"number of samples of NumberOfChannels {nchan} x {n_bytes} bytes = {frame} bytes; the header "
            "and the data disagree, so no channel can be trusted"
        )
    points = _brainvision_entry(text, "DataPoints")
    if points is not None and points.strip().isdigit() and size != int(points) * frame:
        raise EEGReadError(
            f"{fname}: data file {data_file.name} holds {size} bytes, which is not DataPoints {int(points)} x "
            f"NumberOfChannels {nchan} x {n_bytes} bytes = {int(points) * frame}; the header and the data "
            "disagree, so no channel can be trusted"
        )


def header_identity(path: str | os.PathLike) -> dict[str, str]:
    """Text an EEG header stores about who and which file it is (never the data).

    Renamed files keep their old names inside: EEGLAB's ``setname``,
    ``filename``, ``filepath``, ``datfile``, ``data`` (the ``.fdt`` name) and
    ``subject``; BrainVision's ``DataFile`` and ``MarkerFile`` (``.vhdr``) and
    the ``DataFile`` of the ``.vmrk``. :func:`mmme_neuro.ingest.session_redactions`
    hides these in every message and output.

    Parameters
    ----------
    path : path-like
        The entry file (``.set``, ``.vhdr``; other formats give ``{}``).

    Returns
    -------
    identity : dict of str to str
        Field -> its non-empty text (``vmrk:DataFile`` for the marker file's);
        ``{}`` if the header cannot be read (the reader then reports why).
    """
    fname = Path(path)
    try:
        stat = fname.stat()
    except OSError:
        return {}
    return dict(_header_identity(str(fname), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _header_identity(path: str, size: int, mtime_ns: int) -> dict[str, str]:
    """:func:`header_identity`, read once per file version (size and mtime are the cache key)."""
    fname = Path(path)
    suffix = fname.suffix.lower()
    try:
        if suffix == ".set":
            return dict(_eeglab_header(fname)["identity"])
        if suffix == ".vhdr":
            text = _brainvision_header(fname)
            out = {k: v for k in ("DataFile", "MarkerFile") if (v := _brainvision_entry(text, k))}
            vmrk = fname.parent / out.get("MarkerFile", fname.with_suffix(".vmrk").name)
            if vmrk.is_file():
                ref = _brainvision_entry(_brainvision_header(vmrk), "DataFile")
                if ref:
                    out["vmrk:DataFile"] = ref
            return out
    except (OSError, EEGReadError) as err:
        logger.debug("%s: header fields not read (%s)", fname.name, err)
    return {}


def _read_brainvision(fname: Path, *, preload: bool, verbose: Any) -> mne.io.BaseRaw:
    data_file = _brainvision_data_file(fname)
    if not data_file.is_file():
        raise EEGReadError(f"{fname}: BrainVision data file {data_file.name} not found.")
    raw = mne.io.read_raw_brainvision(fname, preload=preload, verbose=verbose)
    check_data_file(raw, fname)
    return raw


def _guess_cnt_format(fname: Path) -> str | None:
    """Guess int16/int32 samples of a Neuroscan CNT from its data bytes."""
    with open(fname, "rb") as fid:
        head = fid.read(900)
        if len(head) < 900:
            return None
        n_channels = int(np.frombuffer(head[370:372], "<u2")[0])
        event_pos = int(np.frombuffer(head[886:890], "<i4")[0])
        start = 900 + 75 * n_channels
        stop = min(event_pos, start + (1 << 20), os.path.getsize(fname))
        if stop - start < 4 * n_channels:
            return None
        fid.seek(start)
        words = np.frombuffer(fid.read((stop - start) // 4 * 4), "<i2")
    high_words_flat = np.isin(words[1::2], (0, -1)).mean()
    return "int32" if high_words_flat > 0.9 else "int16"


def _last_error_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for line in lines:
        if line.startswith("RuntimeError:"):
            return line.removeprefix("RuntimeError:").strip()
    return lines[0] if lines else type(err).__name__


def _read_cnt(
    fname: Path, *, preload: bool, data_format: str | None, verbose: Any
) -> mne.io.BaseRaw:
    if data_format is not None:
        return mne.io.read_raw_cnt(fname, data_format=data_format, preload=preload, verbose=verbose)
    try:
        return mne.io.read_raw_cnt(fname, data_format="auto", preload=preload, verbose=verbose)
    except RuntimeError as err:
        guess = _guess_cnt_format(fname)
        if guess is None:
            raise EEGReadError(
                f"{fname}: cannot infer the CNT sample format ({err}); pass "
                "data_format='int16' or 'int32'."
            ) from err
        logger.warning(
            "%s: MNE cannot infer the CNT sample format (%s). Falling back to "
            "data_format=%r, guessed from the data (int32 samples have high 16-bit "
            "words that are almost all 0 or -1). Pass data_format= explicitly if wrong.",
            fname.name, _last_error_line(err), guess,
        )  # fmt: skip
        return mne.io.read_raw_cnt(fname, data_format=guess, preload=preload, verbose=verbose)


# --- annotations the reader omitted -------------------------------------------


def _omitted_annotations(
    raw: mne.io.BaseRaw, fname: Path, fmt: str, messages: list[str]
) -> list[dict[str, Any]]:
    """Markers the reader dropped as out of range, from its warning and the file."""
    n_warned = sum(int(m.group(1)) for m in map(_OMITTED_RE.search, messages) if m)
    if n_warned == 0:
        return []
    source = {"brainvision": fname.with_suffix(".vmrk")}.get(fmt, fname)
    sfreq = raw.info["sfreq"]
    found: list[dict[str, Any]] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "eeglab":
                all_annot = mne.read_annotations(source)
            elif fmt == "brainvision":
                all_annot = mne.read_annotations(source, sfreq=sfreq)
            else:
                all_annot = None
    except Exception as err:  # noqa: BLE001 - fall back to the warning's count
        logger.info("%s: could not re-read annotations (%s)", fname.name, err)
        all_annot = None
    if all_annot is not None:
        kept = Counter(
            (str(d), round(o * sfreq)) for d, o in zip(raw.annotations.description,
                                                       raw.annotations.onset, strict=True)
        )  # fmt: skip
        for desc, onset in zip(all_annot.description, all_annot.onset, strict=True):
            key = (str(desc), round(onset * sfreq))
            if kept[key] > 0:
                kept[key] -= 1
                continue
            found.append(
                {
                    "description": str(desc),
                    "sample": int(key[1]),
                    "detail": f"outside the data range [0, {raw.n_times - 1}]; omitted by the reader",
                }
            )
    if len(found) != n_warned:
        logger.warning(
            "%s: the reader omitted %d annotation(s), %d identified; the rest are "
            "reported without code", fname.name, n_warned, len(found),
        )  # fmt: skip
        found = found[:n_warned] + [
            {"description": None, "sample": None, "detail": "omitted by the reader, not identified"}
        ] * max(0, n_warned - len(found))
    return found


# --- montage ------------------------------------------------------------------


def _has_positions(raw: mne.io.BaseRaw, picks: list[str]) -> bool:
    for name in picks:
        loc = raw.info["chs"][raw.ch_names.index(name)]["loc"][:3]
        if np.all(np.isfinite(loc)) and np.any(loc != 0):
            return True
    return False


def _apply_montage(raw: mne.io.BaseRaw, montage: bool | str, note: dict[str, Any]) -> str:
    if montage is False:
        return "kept as read"
    matched = note["quikcap_eeg"]
    if not matched:
        return "kept as read (no Quik-Cap channel names)"
    eeg = matched + note["other_eeg"]
    if montage is True and note["other_eeg"] and _has_positions(raw, eeg):
        return "kept the file's positions (not a Quik-Cap layout)"
    positions = quikcap64_positions()

    template = make_quikcap64_montage().get_positions()
    dig = mne.channels.make_dig_montage(
        ch_pos={name: positions[_norm(name)] for name in matched},
        nasion=template["nasion"],
        lpa=template["lpa"],
        rpa=template["rpa"],
        coord_frame="head",
    )
    raw.set_montage(dig, on_missing="ignore", verbose="error")
    return f"Quik-Cap 64 template for {len(matched)} channel(s)"


def _set_store(raw: mne.io.BaseRaw, store: dict[str, Any]) -> None:
    temp = raw.info.get("temp")
    if temp is None:
        temp = {}
    if not isinstance(temp, dict):
        logger.warning("info['temp'] holds a %s; read notes not stored", type(temp).__name__)
        return
    temp[TEMP_KEY] = store
    raw.info["temp"] = temp
