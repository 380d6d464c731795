"""BIOPAC physiology readers: channel types and units, marker decoding and rules, bad inputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.io

from mmme_neuro.constants import BIOPAC_LABELS, BIOPAC_UNITS, DIGITAL_HIGH_V
from mmme_neuro.io import physio as physio_mod
from mmme_neuro.io.physio import PhysioReadError, decode_digital_lines, read_physio

FS = 1000.0
N = 5000
COL = {label: i for i, label in enumerate(BIOPAC_LABELS)}
DIGITAL = [COL[f"Digital (STP Input {i})"] for i in range(8)]

#: (sample, code) of every pulse written on the digital lines of the test file (20 samples each).
PULSES = [(100, 101), (600, 100), (1000, 77), (1500, 102), (1540, 102), (2000, 88),
          (2500, 103), (3000, 200), (3500, 104)]  # fmt: skip
#: 103 = 0b1100111 settles over 2 samples (bits 0-1 first, then 0-2 + 5, then all) and
#: falls over 1 sample (bits 5-6 last).
SETTLING = {2500: 0b0000011, 2501: 0b0100111, 2520: 0b1100000}
EXPECTED_EVENTS = [(100, 101), (600, 100), (1500, 102), (2500, 103), (3000, 200), (3500, 104)]
EXPECTED_REPORT = [(1000, 77, "spurious", "dropped"), (1540, 102, "duplicate", "dropped"),
                   (2000, 88, "spurious", "dropped"), (3000, 200, "unknown_code", "kept")]  # fmt: skip
TYPES = {"PPG": "bio", "RSP": "resp", "EMG_A": "emg", "SKT_A": "temperature", "EDA": "gsr",
         "ECG": "ecg", "EMG_B": "emg", "SKT_B": "temperature", "ECG_RATE": "misc"}  # fmt: skip
UNITS = {"PPG": "V", "RSP": "V", "EMG_A": "V", "SKT_A": "°C", "EDA": "S", "ECG": "V",
         "EMG_B": "V", "SKT_B": "°C", "ECG_RATE": "BPM"}  # fmt: skip


def _codes_to_lines(codes: np.ndarray) -> np.ndarray:
    return ((codes[:, None] >> np.arange(8)) & 1) * DIGITAL_HIGH_V


def _make_data(n: int = N, pulses=PULSES, settling=SETTLING) -> np.ndarray:
    """17 columns in BIOPAC units with known analogue values and coded digital lines."""
    t = np.arange(n) / FS
    data = np.zeros((n, 17), order="F")
    data[:, COL["PPG, X, PPGED-R"]] = 0.01 * np.sin(2 * np.pi * 1.2 * t)  # V
    data[:, COL["RSP, X, RSPEC-R"]] = 0.5 * np.sin(2 * np.pi * 0.25 * t)  # V
    data[:, COL["EMG A, X, EMG2-R"]] = 0.02 * np.cos(2 * np.pi * 50 * t)  # mV
    data[:, COL["SKT A, X, SKT2-R"]] = 32.0 + 0.001 * t  # °C
    data[:, COL["EDA, X, PPGED-R"]] = 5.0 + 0.1 * t  # µS
    data[:, COL["ECG, X, RSPEC-R"]] = 1.2 * np.sin(2 * np.pi * 1.2 * t)  # mV
    data[:, COL["EMG B, X, EMG2-R"]] = -0.01  # mV
    data[:, COL["SKT B, X, SKT2-R"]] = 31.5  # °C
    data[:, COL["ECG rate (.5 - 35 Hz)"]] = 72.0  # BPM
    codes = np.zeros(n, dtype=np.int64)
    for s, c in pulses:
        codes[s : s + 20] = c
    for s, c in settling.items():
        if s < n:
            codes[s] = c
    data[:, DIGITAL] = _codes_to_lines(codes)
    return data


def _char(strings) -> np.ndarray:
    width = max(len(s) for s in strings)
    return np.array([s.ljust(width) for s in strings])


def _write_mat(path: Path, data: np.ndarray, labels=BIOPAC_LABELS, units=BIOPAC_UNITS,
               isi=1.0, isi_units="ms", **extra) -> Path:  # fmt: skip
    mdict = {"data": data, "isi": np.array([[isi]]), "isi_units": np.array([isi_units]),
             "start_sample": np.array([[0.0]])}  # fmt: skip
    if labels is not None:
        mdict["labels"] = _char(labels)
    if units is not None:
        mdict["units"] = _char(units)
    mdict.update(extra)
    scipy.io.savemat(path, mdict, format="5", oned_as="column")
    return path


@pytest.fixture(scope="module")
def mat_file(tmp_path_factory) -> Path:
    return _write_mat(tmp_path_factory.mktemp("physio") / "Untitled1 (001).mat", _make_data())


def _check_markers(events: pd.DataFrame, report: pd.DataFrame) -> None:
    assert list(events.columns) == ["sample", "time_s", "code"]
    assert list(zip(events["sample"], events["code"], strict=True)) == EXPECTED_EVENTS
    np.testing.assert_array_equal(events["time_s"], events["sample"] / FS)
    got = list(zip(report["sample"], report["code"], report["rule"], report["action"], strict=True))
    assert got == EXPECTED_REPORT
    # bookkeeping: every pulse on the lines is either an event or a dropped report row
    assert len(PULSES) == len(events) + int((report["action"] == "dropped").sum())


# ----------------------------------------------------------------------------- .mat


def test_mat_channels_types_units_sfreq(mat_file):
    raw, _, _ = read_physio(mat_file)
    data = _make_data()
    assert raw.info["sfreq"] == 1000.0
    assert raw.n_times == N
    assert raw.ch_names == list(TYPES)
    assert dict(zip(raw.ch_names, raw.get_channel_types(), strict=True)) == TYPES
    store = raw.info["temp"]["mmme_neuro"]["physio"]
    assert store["units"] == UNITS
    assert store["source_units"]["EDA"] == "microsiemens"
    assert json.loads(raw.info["description"].split("; ", 1)[1])["units"] == UNITS
    got = raw.get_data()
    np.testing.assert_allclose(
        got[raw.ch_names.index("EMG_A")], data[:, COL["EMG A, X, EMG2-R"]] * 1e-3
    )
    np.testing.assert_allclose(
        got[raw.ch_names.index("ECG")], data[:, COL["ECG, X, RSPEC-R"]] * 1e-3
    )
    np.testing.assert_allclose(
        got[raw.ch_names.index("EDA")], data[:, COL["EDA, X, PPGED-R"]] * 1e-6
    )
    np.testing.assert_array_equal(
        got[raw.ch_names.index("SKT_A")], data[:, COL["SKT A, X, SKT2-R"]]
    )
    np.testing.assert_array_equal(got[raw.ch_names.index("PPG")], data[:, COL["PPG, X, PPGED-R"]])
    np.testing.assert_array_equal(got[raw.ch_names.index("ECG_RATE")], 72.0)
    assert not any(name.lower().startswith("digital") for name in raw.ch_names)


def test_mat_events_report_annotations(mat_file):
    raw, events, report = read_physio(mat_file)
    _check_markers(events, report)
    assert list(raw.annotations.description) == [str(c) for _, c in EXPECTED_EVENTS]
    np.testing.assert_allclose(raw.annotations.onset, [s / FS for s, _ in EXPECTED_EVENTS])
    counts = raw.info["temp"]["mmme_neuro"]["physio"]["marker_counts"]
    assert counts == {"decoded": 9, "kept": 6, "dropped": 3}


def test_mat_subset_reordered_labels_tolerated(tmp_path):
    data = _make_data()
    order = [16, *DIGITAL[::-1], 5, 0, 4, 2]  # no RSP/SKT/EMG B, shuffled
    labels = [BIOPAC_LABELS[j].upper().replace(" ", "  ") for j in order]
    path = _write_mat(tmp_path / "subset.mat", np.asfortranarray(data[:, order]),
                      labels=labels, units=[BIOPAC_UNITS[j] for j in order])  # fmt: skip
    raw, events, report = read_physio(path)
    assert raw.ch_names == ["ECG_RATE", "ECG", "PPG", "EDA", "EMG_A"]
    assert raw.get_channel_types() == ["misc", "ecg", "bio", "gsr", "emg"]
    np.testing.assert_allclose(raw.get_data(picks="EMG_A")[0], data[:, 2] * 1e-3)
    _check_markers(events, report)


def test_mat_without_labels(tmp_path):
    path = _write_mat(tmp_path / "nolabels.mat", _make_data(), labels=None, units=None)
    raw, events, report = read_physio(path)
    assert raw.ch_names == list(TYPES)
    assert raw.info["temp"]["mmme_neuro"]["physio"]["units"] == UNITS  # default BIOPAC units
    _check_markers(events, report)
    path16 = _write_mat(tmp_path / "nolabels16.mat", _make_data()[:, 1:], labels=None, units=None)
    with pytest.raises(PhysioReadError, match="nolabels16.mat.*no labels"):
        read_physio(path16)
    raw2, _, _ = read_physio(path16, labels=BIOPAC_LABELS[1:])
    assert raw2.ch_names == list(TYPES)[1:]


def test_mat_isi_in_seconds_and_sfreq_check(tmp_path):
    path = _write_mat(tmp_path / "s.mat", _make_data(), isi=0.004, isi_units="s")
    raw, events, _ = read_physio(path, sfreq=250.0)
    assert raw.info["sfreq"] == 250.0
    np.testing.assert_allclose(events["time_s"], events["sample"] / 250.0)
    with pytest.raises(PhysioReadError, match=r"s\.mat.*sfreq=1000"):
        read_physio(path, sfreq=1000.0)


def test_high_at_start_and_unknown_code(tmp_path):
    path = _write_mat(tmp_path / "start.mat", _make_data(pulses=[(0, 101), (800, 7)], settling={}))
    raw, events, report = read_physio(path)
    assert events[["sample", "code"]].values.tolist() == [[800, 7]]
    assert report[["sample", "code", "rule", "action"]].values.tolist() == [
        [0, 101, "high_at_start", "dropped"],
        [800, 7, "unknown_code", "kept"],
    ]


def test_preload_false_is_refused(mat_file):
    with pytest.raises(ValueError, match="preload"):
        read_physio(mat_file, preload=False)


# ----------------------------------------------------------------------------- decoder


def _decode(codes, **kwargs) -> list[tuple]:
    out = decode_digital_lines(_codes_to_lines(np.asarray(codes)), **kwargs)
    return list(out[["sample", "code", "n_samples", "status"]].itertuples(index=False, name=None))


def test_decode_settling_rules():
    # rising over 2 samples (3 -> 39 -> 103), falling over 1 (96) -> one event, settled code
    assert _decode([0, 0, 3, 39] + [103] * 10 + [96, 0, 0]) == [(2, 103, 13, "ok")]
    # short pulse, never stable: bitwise OR of the transitional codes
    assert _decode([0, 3, 100, 0, 0]) == [(1, 103, 2, "ok")]
    # a new code written without returning to 0 is a new event
    assert _decode([0] + [101] * 5 + [100] * 5 + [0]) == [(1, 101, 5, "ok"), (6, 100, 5, "ok")]
    # code already high at the first sample
    assert _decode([5] * 4 + [0]) == [(0, 5, 4, "high_at_start")]
    # pulses shorter than min_duration_samples are glitches
    assert _decode([0, 9, 0, 0, 9, 9, 9, 0], min_duration_samples=2) == [
        (1, 9, 1, "glitch"),
        (4, 9, 3, "ok"),
    ]
    # threshold: 2.4 V is low, 2.6 V high
    lines = np.zeros((4, 8))
    lines[1:3, 0] = [2.4, 2.6]
    assert decode_digital_lines(lines)[["sample", "code"]].values.tolist() == [[2, 1]]
    assert decode_digital_lines(np.zeros((0, 8))).empty


def test_decode_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        decode_digital_lines(np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        decode_digital_lines(np.full((3, 8), np.nan))
    with pytest.raises(ValueError, match="min_duration_samples"):
        decode_digital_lines(np.zeros((3, 8)), min_duration_samples=0)


# ----------------------------------------------------------------------------- CSV / TSV / .acq


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_text_files(tmp_path, suffix):
    path = tmp_path / f"physio{suffix}"
    pd.DataFrame(_make_data(), columns=list(BIOPAC_LABELS)).to_csv(
        path, sep="," if suffix == ".csv" else "\t", index=False
    )
    raw, events, report = read_physio(path, sfreq=FS)
    assert raw.ch_names == list(TYPES)
    assert raw.info["sfreq"] == FS
    _check_markers(events, report)
    with pytest.raises(PhysioReadError, match=f"physio{suffix}.*sfreq="):
        read_physio(path)


def test_acq_via_bioread(tmp_path, monkeypatch):
    """No .acq sample exists in this environment: feed a bioread-like object."""
    data = _make_data()
    channels = [SimpleNamespace(name=label, units=unit, data=data[:, j].copy(), frequency_divider=1)
                for j, (label, unit) in enumerate(zip(BIOPAC_LABELS, BIOPAC_UNITS, strict=True))]  # fmt: skip
    fake = SimpleNamespace(samples_per_second=FS, channels=channels)
    import bioread

    monkeypatch.setattr(bioread, "read_file", lambda p: fake)
    path = tmp_path / "session.acq"
    path.write_bytes(b"not really acq")
    raw, events, report = read_physio(path, sfreq=FS)
    assert dict(zip(raw.ch_names, raw.get_channel_types(), strict=True)) == TYPES
    _check_markers(events, report)

    def _boom(p):
        raise ValueError("bad header")

    monkeypatch.setattr(bioread, "read_file", _boom)
    with pytest.raises(PhysioReadError, match="session.acq.*bad header"):
        read_physio(path)


# ----------------------------------------------------------------------------- bad inputs


def _bad_files(tmp: Path) -> dict[str, tuple[Path, dict]]:
    good = _write_mat(tmp / "good.mat", _make_data(n=3000))
    raw_bytes = good.read_bytes()
    out: dict[str, tuple[Path, dict]] = {}
    p = tmp / "truncated.mat"
    p.write_bytes(raw_bytes[: len(raw_bytes) // 2])
    out["truncated"] = (p, {})
    p = tmp / "garbage.mat"
    p.write_bytes(b"\x00\x01garbage" * 40)
    out["corrupt"] = (p, {})
    out["label_count"] = (_write_mat(tmp / "labels16.mat", _make_data(n=3000), labels=BIOPAC_LABELS[:16],
                                     units=None), {})  # fmt: skip
    out["transposed"] = (_write_mat(tmp / "transposed.mat", _make_data(n=3000).T.copy()), {})
    out["empty_data"] = (_write_mat(tmp / "oned.mat", np.zeros((0, 17)), labels=BIOPAC_LABELS), {})
    d = _make_data(n=3000)
    d[:, COL["EDA, X, PPGED-R"]] = np.nan
    out["nan_column"] = (_write_mat(tmp / "nancol.mat", d), {})
    d = _make_data(n=3000)
    d[5, DIGITAL[3]] = np.nan
    out["nan_digital"] = (_write_mat(tmp / "nandig.mat", d), {})
    out["sfreq_mismatch"] = (good, {"sfreq": 500.0})
    out["missing_line"] = (_write_mat(tmp / "sevenlines.mat", np.delete(_make_data(n=3000), DIGITAL[7], axis=1),
                                      labels=[lb for lb in BIOPAC_LABELS if not lb.endswith("7)")],
                                      units=None), {})  # fmt: skip
    p = tmp / "nodata.mat"
    scipy.io.savemat(p, {"x": np.zeros(3)})
    out["no_data_variable"] = (p, {})
    p = tmp / "noisi.mat"
    scipy.io.savemat(p, {"data": _make_data(n=100), "labels": _char(BIOPAC_LABELS)})
    out["no_isi"] = (p, {})
    p = tmp / "physio.edf"
    p.write_bytes(b"0")
    out["unsupported"] = (p, {})
    out["missing_file"] = (tmp / "absent.mat", {})
    p = tmp / "text.csv"
    p.write_text("a,b\n1,x\n")
    out["non_numeric_csv"] = (p, {"sfreq": 100.0})
    dup = list(BIOPAC_LABELS)
    dup[1] = dup[0]
    out["duplicate_labels"] = (_write_mat(tmp / "dup.mat", _make_data(n=3000), labels=dup), {})
    return out


BAD_CASES = ["truncated", "corrupt", "label_count", "transposed", "empty_data", "nan_column", "nan_digital",
             "sfreq_mismatch", "missing_line", "no_data_variable", "no_isi", "unsupported",
             "missing_file", "non_numeric_csv", "duplicate_labels"]  # fmt: skip


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return _bad_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_inputs_raise_naming_the_file(bad_files, case):
    path, kwargs = bad_files[case]
    with pytest.raises(PhysioReadError) as info:
        read_physio(path, **kwargs)
    assert path.name in str(info.value)


def test_partial_nan_analog_is_kept_with_warning(tmp_path, caplog):
    d = _make_data()
    d[10:20, COL["PPG, X, PPGED-R"]] = np.nan
    path = _write_mat(tmp_path / "partnan.mat", d)
    with caplog.at_level(logging.WARNING, logger=physio_mod.__name__):
        raw, events, _ = read_physio(path)
    assert "10 NaN" in caplog.text
    assert len(events) == len(EXPECTED_EVENTS)


# ----------------------------------------------------------------------------- synthetic subject


@pytest.mark.parametrize("index", [1, 2])  # 1: missing clips, 2: duplicated marker
def test_synthetic_subject_markers_exact(tmp_path, index):
    from mmme_neuro.simulate.design import design_study
    from mmme_neuro.simulate.effects import Effects
    from mmme_neuro.simulate.physio import simulate_physio
    from mmme_neuro.simulate.writers_physio import write_acqknowledge_mat

    subject = design_study("ci", seed=1).subjects[index]
    data, _ = simulate_physio(subject, Effects(), 1)
    path = write_acqknowledge_mat(subject, data, tmp_path / f"{subject.session_id}.mat")
    raw, events, report = read_physio(path, sfreq=subject.physio_sfreq)
    mk = subject.markers
    planted = mk[mk.in_physio.astype(bool) & ~mk.kind.isin(["spurious", "duplicate"])]
    expected_samples = np.round(
        subject.to_physio_time(planted.eeg_time_s.to_numpy(dtype=float)) * subject.physio_sfreq
    ).astype(np.int64)
    np.testing.assert_array_equal(events["code"], planted["code"])
    np.testing.assert_array_equal(events["sample"], expected_samples)
    n_in_physio = int(mk.in_physio.astype(bool).sum())
    dropped = report[report["action"] == "dropped"]
    assert n_in_physio == len(events) + len(dropped)
    assert sorted(dropped.loc[dropped.rule == "spurious", "code"]) == [77, 88]
    assert (dropped.rule == "duplicate").sum() == int((mk.kind == "duplicate").sum())
    assert raw.n_times == subject.physio_n_samples


def test_mat_v73_hdf5(tmp_path):
    """MATLAB v7.3 exports are HDF5: arrays transposed, chars as uint16 (read with h5py)."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "v73.mat"
    data = _make_data()
    with h5py.File(path, "w", userblock_size=512) as f:
        f["data"] = data.T
        for name, strings in (
            ("labels", BIOPAC_LABELS),
            ("units", BIOPAC_UNITS),
            ("isi_units", ["ms"]),
        ):
            chars = np.array([[ord(ch) for ch in s] for s in _char(strings)], dtype=np.uint16)
            f[name] = chars.T
            f[name].attrs["MATLAB_class"] = np.bytes_(b"char")
        f["isi"] = np.array([[1.0]])
        f["start_sample"] = np.array([[0.0]])
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(128))
    raw, events, report = read_physio(path)
    assert raw.ch_names == list(TYPES)
    np.testing.assert_allclose(raw.get_data(picks="EDA")[0], data[:, COL["EDA, X, PPGED-R"]] * 1e-6)
    _check_markers(events, report)
