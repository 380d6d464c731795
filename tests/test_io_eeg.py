"""Tests of :mod:`mmme_neuro.io.eeg` and :mod:`mmme_neuro.io.markers`.

Real files come from ``/work/shared/data/eeg_formats`` (MNE testing data);
they are copied to ``tmp_path`` before any manipulation. The expected numbers
were checked by hand against ``raw.annotations`` and the files' headers.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest

from mmme_neuro.constants import EEG_CHANNELS
from mmme_neuro.io.eeg import EEGReadError, read_eeg, set_mmme_channel_types
from mmme_neuro.io.markers import parse_marker_code, read_eeg_markers
from mmme_neuro.montage import quikcap64_positions

DATA = Path("/work/shared/data/eeg_formats")
CURRY = DATA / "curry" / "test_bdf_stim_channel Curry 8.cdt"
EEGLAB = DATA / "eeglab" / "test_raw.set"
EEGLAB_CHANLOC = DATA / "eeglab" / "test_raw_chanloc.set"
BRAINVISION = DATA / "brainvision" / "test_NO.vhdr"
CNT = DATA / "neuroscan_cnt" / "scan41_short.cnt"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared EEG test files missing")

SFREQ = 250.0
N_TIMES = 5000  # 20 s at 250 Hz
AUX = ["HEO", "VEO", "EKG", "EMG", "Trigger"]
# (description, onset in s) written to the synthetic files
SYNTH_MARKERS = [
    ("100", 1.0),
    ("101", 2.0),
    ("77", 3.0),  # spurious
    ("102", 4.0),
    ("102", 4.048),  # duplicate, 48 ms after the first
    ("88", 5.0),  # spurious
    ("103", 6.0),
    ("boundary", 7.0),  # non-numeric
    ("101", 8.0),  # same code again, far away: kept
    ("148", 19.996),  # last sample
    ("104", 25.0),  # after the end of the data
]
EXPECTED_SAMPLES = [250, 500, 1000, 1500, 2000, 4999]
EXPECTED_CODES = [100, 101, 102, 103, 101, 148]


def _copy(tmp_path: Path, *files: Path) -> list[Path]:
    out = []
    for f in files:
        dst = tmp_path / f.name
        shutil.copyfile(f, dst)
        out.append(dst)
    return out


def _dropped(report: pd.DataFrame) -> dict[str, int]:
    return report.loc[report["action"] == "dropped", "rule"].value_counts().to_dict()


def _synthetic_data() -> np.ndarray:
    rng = np.random.default_rng(42)
    data = rng.normal(0.0, 10e-6, (len(EEG_CHANNELS) + len(AUX), N_TIMES))
    data[-1] = 0.0
    return data


def _check_mmme_raw(raw: mne.io.BaseRaw) -> None:
    types = raw.get_channel_types()
    assert types[-5:] == ["eog", "eog", "ecg", "emg", "stim"]  # HEO VEO EKG EMG Trigger
    assert types[:64] == ["eeg"] * 64
    ref = quikcap64_positions()
    for name in raw.ch_names:
        if name.upper() in ref:
            loc = raw.info["chs"][raw.ch_names.index(name)]["loc"][:3]
            assert np.all(np.isfinite(loc)), name
            np.testing.assert_allclose(loc, ref[name.upper()], atol=1e-9, err_msg=name)
    note = raw.info["temp"]["mmme_neuro"]["channels"]
    assert [m.upper() for m in note["mastoids"]] == ["M1", "M2"]
    assert "Quik-Cap 64 template for 64" in note["montage"]


# --- real files ---------------------------------------------------------------


def test_curry8_real_file():
    raw = read_eeg(CURRY)
    assert not raw.preload
    assert raw.ch_names == ["C3", "C4", "Cz"]
    assert raw.info["sfreq"] == 500.0
    assert raw.n_times == 5000  # 10.000 s
    assert raw.get_channel_types() == ["eeg"] * 3
    # all channels are Quik-Cap names: template positions replace Curry's
    ref = quikcap64_positions()
    np.testing.assert_allclose(raw.info["chs"][2]["loc"][:3], ref["CZ"])
    # 18 events in the .cef: codes 4, 2, 1 x 7 (the BDF stim channel's events)
    # each followed 1 sample later by a Curry 50000 event (not a trigger code)
    assert len(raw.annotations) == 18
    events, report = read_eeg_markers(raw)
    assert events["code"].tolist() == [4, 2] + [1] * 7
    assert events["sample"].tolist() == [242, 310, 952, 1606, 2249, 2900, 3537, 4162, 4790]
    assert set(events["source"]) == {"annotation"}
    assert _dropped(report) == {"invalid_code": 9}
    assert set(report["code"]) == {50000}


def test_curry_does_not_read_whole_data_file(monkeypatch):
    """curryreader.read() would np.fromfile the whole .cdt; read_eeg maps it."""
    import curryreader

    original = np.fromfile

    def guarded(file, *args, **kwargs):
        if isinstance(file, str | Path) and str(file).endswith(".cdt"):
            raise AssertionError("whole .cdt read into memory")
        return original(file, *args, **kwargs)

    monkeypatch.setattr(np, "fromfile", guarded)
    raw = read_eeg(CURRY)
    monkeypatch.undo()
    assert curryreader.np is np  # shim removed
    ref = mne.io.read_raw_curry(CURRY, preload=True, verbose="error")
    np.testing.assert_array_equal(
        raw.get_data(start=100, stop=900), ref.get_data(start=100, stop=900)
    )


def test_eeglab_set_fdt_real_file():
    raw = read_eeg(EEGLAB)
    assert not raw.preload
    assert Path(raw.filenames[0]).name == "test_raw.fdt"
    assert raw.info["nchan"] == 32 and raw.ch_names[0] == "EEG 000"
    assert raw.info["sfreq"] == 128.0
    assert raw.n_times == 30504  # 238.3125 s
    assert set(raw.get_channel_types()) == {"eeg"}
    # 154 annotations, none numeric: 80 'square' + 74 'rt'
    events, report = read_eeg_markers(raw)
    assert events.empty
    assert _dropped(report) == {"non_numeric": 154}
    assert report["description"].value_counts().to_dict() == {"square": 80, "rt": 74}


def test_eeglab_chanloc_real_file():
    raw = read_eeg(EEGLAB_CHANLOC)
    assert raw.info["nchan"] == 61 and raw.info["sfreq"] == 128.0
    assert raw.n_times == 385  # 3.0078125 s
    note = raw.info["temp"]["mmme_neuro"]["channels"]
    # 10-10 cap with PO9/PO10/AF7/AF8: not Quik-Cap, file positions kept
    assert note["other_eeg"] == ["PO9", "PO10", "AF7", "AF8"]
    assert len(note["quikcap_eeg"]) == 57
    assert "kept the file's positions" in note["montage"]
    file_pos = mne.io.read_raw_eeglab(EEGLAB_CHANLOC, verbose="error").get_montage()
    np.testing.assert_allclose(
        raw.get_montage().get_positions()["ch_pos"]["Fp1"],
        file_pos.get_positions()["ch_pos"]["Fp1"],
    )
    # 'boundary' at 0 s and 'S 12' at 0.014025 s (sample 2)
    events, report = read_eeg_markers(raw)
    assert events[["sample", "code"]].values.tolist() == [[2, 12]]
    assert report[["description", "rule"]].values.tolist() == [["boundary", "non_numeric"]]


def test_brainvision_real_file():
    raw = read_eeg(BRAINVISION)
    assert raw.info["nchan"] == 65 and raw.info["sfreq"] == 5000.0
    assert raw.n_times == 2238  # 0.4476 s
    types = dict(zip(raw.ch_names, raw.get_channel_types(), strict=True))
    assert types["EMGright"] == types["EMGleft"] == "emg"
    assert sum(t == "eeg" for t in types.values()) == 63
    events, report = read_eeg_markers(raw)  # only a 'New Segment', which MNE drops
    assert events.empty and report.empty


def test_cnt_real_file_formats(caplog):
    # header has 0 samples: MNE's 'auto' fails; we fall back to the data's format
    with caplog.at_level(logging.WARNING, logger="mmme_neuro.io.eeg"):
        raw = read_eeg(CNT)
    assert "data_format='int16'" in caplog.text
    assert raw.info["nchan"] == 128 and raw.info["sfreq"] == 400.0
    assert raw.n_times == 3070  # 7.675 s, as in MNE's own tests (int16)
    assert read_eeg(CNT, data_format="int16").n_times == 3070
    types = dict(zip(raw.ch_names, raw.get_channel_types(), strict=True))
    assert types["HEOG"] == types["VEOGR"] == "eog"
    assert sum(t == "eeg" for t in types.values()) == 126
    # int16 gives EEG-sized values, int32 would give volts
    assert np.percentile(np.abs(raw.get_data(picks="eeg")), 99) < 1e-3
    # 6 annotations: 7, 7, 109, 7, 109, and a code-0 event at the last sample
    events, report = read_eeg_markers(raw)
    assert events["code"].tolist() == [7, 7, 109, 7, 109]
    assert events["sample"].tolist() == [333, 1010, 1664, 2324, 2984]
    assert report[["code", "sample", "rule"]].values.tolist() == [[0, 3069, "invalid_code"]]
    # an explicit int32 is honoured (half as many samples)
    assert read_eeg(CNT, data_format="int32").n_times == 1535


# --- synthetic MMME-shaped round trips -----------------------------------------


def test_eeglab_roundtrip(tmp_path):
    from eeglabio.raw import export_set

    fname = tmp_path / "sub-01_mmme.set"
    desc = [d for d, _ in SYNTH_MARKERS] + ["105"]
    onsets = [o for _, o in SYNTH_MARKERS] + [-1 / SFREQ]  # latency 0: sample -1
    export_set(
        str(fname),
        _synthetic_data(),
        SFREQ,
        list(EEG_CHANNELS) + AUX,
        annotations=[np.array(desc), np.array(onsets), np.zeros(len(desc))],
    )
    raw = read_eeg(fname)
    assert raw.n_times == N_TIMES and raw.info["sfreq"] == SFREQ and not raw.preload
    _check_mmme_raw(raw)
    store = raw.info["temp"]["mmme_neuro"]
    assert any("Omitted 2 annotation" in w for w in store["reader_warnings"])
    assert sorted(o["description"] for o in store["omitted_annotations"]) == ["104", "105"]
    events, report = read_eeg_markers(raw)
    assert events["sample"].tolist() == EXPECTED_SAMPLES
    assert events["code"].tolist() == EXPECTED_CODES
    assert _dropped(report) == {
        "omitted_by_reader": 2, "spurious": 2, "duplicate": 1, "non_numeric": 1,
    }  # fmt: skip
    omitted = report[report["rule"] == "omitted_by_reader"].sort_values("code")
    assert omitted[["code", "sample"]].values.tolist() == [[104, 6250], [105, -1]]
    assert len(SYNTH_MARKERS) + 1 == len(events) + len(report)


def test_brainvision_roundtrip(tmp_path):
    import pybv

    ev = []
    for desc, onset in SYNTH_MARKERS:
        if desc == "104":
            continue  # pybv refuses onsets beyond the data: appended below
        if desc.isdigit():
            ev.append({"onset": round(onset * SFREQ), "description": int(desc)})
        else:
            ev.append({"onset": round(onset * SFREQ), "description": desc, "type": "Comment"})
    pybv.write_brainvision(
        data=_synthetic_data(),
        sfreq=SFREQ,
        ch_names=[c.capitalize() for c in EEG_CHANNELS] + ["heo", "VEO", "ECG", "emg", "TRIGGER"],
        fname_base="mmme",
        folder_out=tmp_path,
        events=ev,
    )
    vmrk = tmp_path / "mmme.vmrk"
    vmrk.write_text(vmrk.read_text() + "Mk99=Stimulus,S104,6251,1,0\n")
    raw = read_eeg(tmp_path / "mmme.vhdr")
    assert raw.n_times == N_TIMES and raw.info["sfreq"] == SFREQ
    _check_mmme_raw(raw)
    assert raw.ch_names[0] == "Fp1"  # the file's names are kept
    events, report = read_eeg_markers(raw)
    assert events["sample"].tolist() == EXPECTED_SAMPLES
    assert events["code"].tolist() == EXPECTED_CODES
    assert _dropped(report) == {
        "omitted_by_reader": 1, "spurious": 2, "duplicate": 1, "non_numeric": 1,
    }  # fmt: skip
    row = report[report["rule"] == "omitted_by_reader"].iloc[0]
    assert (row["code"], row["sample"]) == (104, 6250)


def test_fif_roundtrip_stim_channel(tmp_path):
    data = _synthetic_data()
    stim = np.zeros(N_TIMES)
    for code, sample in [(100, 250), (101, 500), (77, 750), (102, 1000), (102, 1012),
                         (88, 1250), (103, 1500), (101, 2000), (148, 4995)]:  # fmt: skip
        stim[sample : sample + 5] = code
    data[-1] = stim
    names = [c.lower() for c in EEG_CHANNELS] + ["HEO", "veo", "EKG", "EMG", "STI"]
    raw0 = mne.io.RawArray(data, mne.create_info(names, SFREQ, "eeg"), verbose="error")
    fname = tmp_path / "mmme_raw.fif"
    raw0.save(fname, verbose="error")
    raw = read_eeg(fname)
    assert not raw.preload and raw.n_times == N_TIMES
    _check_mmme_raw(raw)
    events, report = read_eeg_markers(raw)
    assert set(events["source"]) == {"stim_channel"}
    assert events["sample"].tolist() == [250, 500, 1000, 1500, 2000, 4995]
    assert events["code"].tolist() == EXPECTED_CODES
    assert _dropped(report) == {"spurious": 2, "duplicate": 1}
    # preload gives the same answer
    events2, _ = read_eeg_markers(read_eeg(fname, preload=True))
    pd.testing.assert_frame_equal(events, events2)


def test_fif_first_samp_and_meas_date(tmp_path):
    info = mne.create_info(["FZ", "CZ"], SFREQ, "eeg")
    raw0 = mne.io.RawArray(np.zeros((2, N_TIMES)), info, verbose="error")
    raw0.set_meas_date(1_600_000_000)
    raw0.set_annotations(
        mne.Annotations([2.0, 6.0], [0, 0], ["101", "103"], orig_time=raw0.info["meas_date"])
    )
    raw0.crop(tmin=2.0)  # first_samp = 500
    fname = tmp_path / "cropped_raw.fif"
    raw0.save(fname, verbose="error")
    raw = read_eeg(fname)
    assert raw.first_samp == 500
    events, _ = read_eeg_markers(raw)
    assert events["sample"].tolist() == [0, 1000]  # relative to the first sample
    np.testing.assert_allclose(events["time_s"], [0.0, 4.0])


def test_bids_roundtrip(tmp_path):
    import mne_bids
    import pybv

    pybv.write_brainvision(
        data=_synthetic_data(),
        sfreq=SFREQ,
        ch_names=list(EEG_CHANNELS) + AUX,
        fname_base="src",
        folder_out=tmp_path / "src",
        events=np.array([[250, 100], [500, 101], [750, 77]]),
    )
    src = mne.io.read_raw_brainvision(tmp_path / "src" / "src.vhdr", verbose="error")
    set_mmme_channel_types(src)
    bids_path = mne_bids.BIDSPath(subject="01", task="mmme", datatype="eeg", root=tmp_path / "bids")
    mne_bids.write_raw_bids(src, bids_path, verbose="error")
    for target in (bids_path, bids_path.copy().update(suffix="eeg", extension=".vhdr").fpath):
        raw = read_eeg(target)
        assert raw.info["temp"]["mmme_neuro"]["format"] == "bids"
        assert raw.n_times == N_TIMES
        _check_mmme_raw(raw)
        events, report = read_eeg_markers(raw)
        assert events["code"].tolist() == [100, 101]
        assert _dropped(report) == {"spurious": 1}


# --- channel handling and marker rules ------------------------------------------


def test_set_mmme_channel_types_names():
    names = ["Fp1", "FPZ", "fz", "M1", "m2", "HEOG", "VEO", "ekg", "ECG", "EMG_left",
             "TRIGGER", "STI 014", "foo"]  # fmt: skip
    raw = mne.io.RawArray(
        np.zeros((len(names), 10)), mne.create_info(names, 100.0, "misc"), verbose="error"
    )
    note = set_mmme_channel_types(raw)
    assert raw.get_channel_types() == (
        ["eeg"] * 5 + ["eog"] * 2 + ["ecg"] * 2 + ["emg"] + ["stim"] * 2 + ["misc"]
    )
    assert note["mastoids"] == ["M1", "m2"]
    assert note["quikcap_eeg"] == ["Fp1", "FPZ", "fz", "M1", "m2"]


def test_parse_marker_code():
    for text, code in [("101", 101), ("S101", 101), ("S 101", 101), ("Stimulus/S101", 101),
                       ("Stimulus/S 12", 12), ("Comment/77", 77), ("s  7", 7)]:  # fmt: skip
        assert parse_marker_code(text) == code
    for text in ["boundary", "rt", "square", "Response/R  1", "New Segment/", "", "1.5"]:
        assert parse_marker_code(text) is None


def test_marker_options():
    raw = mne.io.RawArray(
        np.zeros((1, 1000)), mne.create_info(["FZ"], 100.0, "eeg"), verbose="error"
    )
    raw.set_annotations(mne.Annotations([1.0, 1.15, 2.0, 3.0], 0, ["5", "5", "77", "300"]))
    events, report = read_eeg_markers(raw, dedup_window_s=0.2)
    assert events["code"].tolist() == [5]
    assert _dropped(report) == {"duplicate": 1, "spurious": 1, "invalid_code": 1}
    events, report = read_eeg_markers(
        raw, dedup_window_s=None, spurious=(), valid_codes=None, expected_codes=[5]
    )
    assert events["code"].tolist() == [5, 5, 77, 300]
    assert report[["code", "rule", "action"]].values.tolist() == [
        [77, "unexpected_code", "kept"], [300, "unexpected_code", "kept"],
    ]  # fmt: skip
    with pytest.raises(ValueError, match="dedup_window_s"):
        read_eeg_markers(raw, dedup_window_s=-1)
    with pytest.raises(ValueError, match="source"):
        read_eeg_markers(raw, source="events")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no stim channel"):
        read_eeg_markers(raw, source="stim_channel")


# --- bad input -------------------------------------------------------------------


def test_truncated_fdt(tmp_path):
    set_file, fdt = _copy(tmp_path, EEGLAB, EEGLAB.with_suffix(".fdt"))
    fdt.write_bytes(fdt.read_bytes()[:100_000])
    with pytest.raises(EEGReadError, match=r"test_raw\.fdt truncated"):
        read_eeg(set_file)


def test_missing_fdt(tmp_path):
    (set_file,) = _copy(tmp_path, EEGLAB)
    with pytest.raises(EEGReadError, match=r"test_raw\.set.*\.fdt"):
        read_eeg(set_file)


def test_missing_and_truncated_brainvision_eeg(tmp_path):
    vhdr, vmrk = _copy(tmp_path, BRAINVISION, BRAINVISION.with_suffix(".vmrk"))
    with pytest.raises(EEGReadError, match=r"test_NO\.vhdr.*test_NO\.eeg not found"):
        read_eeg(vhdr)
    (eeg,) = _copy(tmp_path, BRAINVISION.with_suffix(".eeg"))
    eeg.write_bytes(eeg.read_bytes()[:-7])
    with pytest.raises(EEGReadError, match=r"test_NO\.eeg truncated"):
        read_eeg(vhdr)


def _write_small_set(folder: Path, *, nbchan: int = 69, n_chanlocs: int | None = None, pnts: int = 500,
                     data_channels: int | None = None, data_samples: int | None = None) -> Path:
    """A top-level-field EEGLAB .set/.fdt (as the synthetic studies write) whose header may lie about its data."""
    from scipy.io import savemat

    from mmme_neuro.simulate.writers_eeg import eeglab_chanlocs

    n_chanlocs = nbchan if n_chanlocs is None else n_chanlocs
    data = np.random.default_rng(0).normal(0, 10, (data_samples or pnts, data_channels or nbchan))
    data.astype("<f4").tofile(folder / "x.fdt")  # sample-major: MATLAB's nbchan x pnts, column-major
    savemat(folder / "x.set", {
        "setname": "x", "filename": "x.set", "nbchan": float(nbchan), "pnts": float(pnts), "trials": 1.0,
        "srate": SFREQ, "xmin": 0.0, "xmax": (pnts - 1) / SFREQ, "data": "x.fdt",
        "chanlocs": eeglab_chanlocs(69)[:n_chanlocs],
    }, appendmat=False, oned_as="row")  # fmt: skip
    return folder / "x.set"


def test_eeglab_header_disagreeing_with_its_data(tmp_path):
    """Issue 24: a header that lists one channel fewer than its .fdt holds was read with one warning,
    every channel then holding the samples of others; each header-vs-data inconsistency is now an error
    naming the file and both numbers."""
    raw = read_eeg(_write_small_set(tmp_path))  # consistent: read
    assert raw.info["nchan"] == 69 and raw.n_times == 500
    with pytest.raises(EEGReadError, match=r"x\.fdt holds 138000 bytes, which is not nbchan 68 x pnts 500 x 4 "
                                           r"bytes = 136000; it would hold 69 channels of 500 samples"):  # fmt: skip
        read_eeg(_write_small_set(tmp_path, nbchan=68, data_channels=69))
    with pytest.raises(EEGReadError, match=r"x\.set: the header gives nbchan 69 but its chanlocs list 68 channels"):
        read_eeg(_write_small_set(tmp_path, n_chanlocs=68))
    with pytest.raises(EEGReadError, match=r"x\.fdt holds 138000 bytes, which is not nbchan 69 x pnts 499 x 4"):
        read_eeg(_write_small_set(tmp_path, pnts=499, data_samples=500))
    with pytest.raises(EEGReadError, match=r"x\.fdt truncated: it holds 137724 bytes, which is not nbchan 69 x pnts 500"):
        read_eeg(_write_small_set(tmp_path, data_samples=499))


def test_brainvision_header_disagreeing_with_its_data(tmp_path):
    """NumberOfChannels one fewer than [Channel Infos] (MNE drops the last entry with a warning), and a
    header that lists one channel fewer consistently but gives DataPoints: errors, not scrambled channels."""
    import pybv

    n_times = 68 * 8  # the data of 69 channels are also whole samples of 68: the size alone cannot tell
    names = [f"C{i}" for i in range(69)]
    pybv.write_brainvision(data=np.random.default_rng(1).normal(0, 1e-5, (69, n_times)), sfreq=SFREQ,
                           ch_names=names, fname_base="bv", folder_out=tmp_path)  # fmt: skip
    vhdr = tmp_path / "bv.vhdr"
    text = vhdr.read_text()
    assert read_eeg(vhdr).info["nchan"] == 69
    vhdr.write_text(text.replace("NumberOfChannels=69", "NumberOfChannels=68"))
    with pytest.raises(EEGReadError, match=r"bv\.vhdr: the header gives NumberOfChannels 68 but its \[Channel "
                                           r"Infos\] list 69 channels"):  # fmt: skip
        read_eeg(vhdr)
    lines = [ln for ln in text.replace("NumberOfChannels=69", f"NumberOfChannels=68\nDataPoints={n_times}")
             .splitlines() if not ln.startswith("Ch69=")]  # fmt: skip
    vhdr.write_text("\n".join(lines) + "\n")
    with pytest.raises(EEGReadError, match=rf"bv\.eeg holds {69 * n_times * 4} bytes, which is not DataPoints "
                                           rf"{n_times} x NumberOfChannels 68 x 4 bytes"):  # fmt: skip
        read_eeg(vhdr)


def test_bad_curry(tmp_path):
    cdt, _dpa, _cef = _copy(tmp_path, CURRY, Path(f"{CURRY}.dpa"), Path(f"{CURRY}.cef"))
    cdt.write_bytes(cdt.read_bytes()[:30_000])
    with pytest.raises(EEGReadError, match=r"Curry 8\.cdt: data file truncated"):
        read_eeg(cdt)
    _dpa.unlink()
    with pytest.raises(EEGReadError, match=r"Curry 8\.cdt: Curry header not found"):
        read_eeg(cdt)


def test_unknown_and_missing_files(tmp_path):
    odd = tmp_path / "recording.xyz"
    odd.write_bytes(b"\0" * 10)
    with pytest.raises(EEGReadError, match=r"recording\.xyz: unknown EEG file extension"):
        read_eeg(odd)
    (fdt,) = _copy(tmp_path, EEGLAB.with_suffix(".fdt"))
    with pytest.raises(EEGReadError, match=r"test_raw\.fdt: pass the EEGLAB header \.set"):
        read_eeg(fdt)
    with pytest.raises(EEGReadError, match=r"nothere\.set: file not found"):
        read_eeg(tmp_path / "nothere.set")
    with pytest.raises(ValueError, match="only applies to Neuroscan .cnt"):
        read_eeg(EEGLAB, data_format="int32")
    with pytest.raises(ValueError, match="montage"):
        read_eeg(EEGLAB, montage="standard_1020")  # type: ignore[arg-type]
    assert issubclass(EEGReadError, ValueError)


def test_annotation_samples_equal_mne_time_as_index():
    """Marker samples are MNE's ``time_as_index(..., use_rounding=True, origin=...)`` without ``raw.times``."""
    from mmme_neuro.io.markers import _time_as_index

    info = mne.create_info(["FZ", "CZ"], 1000.0, "eeg")
    raw = mne.io.RawArray(np.zeros((2, 20000)), info, first_samp=1234, verbose="error")
    onsets = np.array([0.0, 0.0004, 0.0005, 0.0015, 1.23456, 7.9995, 19.0])
    np.testing.assert_array_equal(_time_as_index(raw, onsets, None), raw.time_as_index(onsets, use_rounding=True))
    raw.set_meas_date(1_600_000_000)
    origin = raw.info["meas_date"]
    for shift in (0.0, 0.5, 3.2105):
        times = onsets + shift
        np.testing.assert_array_equal(_time_as_index(raw, times, origin),
                                      raw.time_as_index(times, use_rounding=True, origin=origin))  # fmt: skip
    raw.set_meas_date(None)
    with pytest.raises(ValueError, match="origin must be None"):
        _time_as_index(raw, onsets, origin)
