"""EEG band-PSD features the way the MMME authors' notebooks compute them (the baseline of ``bench_erp``).

Faithful to ``shared/MMME.md``: the *whole* recording is loaded and converted
to a pandas DataFrame, every sample is labelled with the current clip marker
in a Python loop, and for each coded expression a 1-s window centred on the
apex is cut from the DataFrame and a periodogram is computed per channel, from
which the mean power in the five bands (delta 1-4, theta 4-8, alpha 8-13,
beta 13-30, gamma 30-47 Hz) is taken. No preprocessing, as in the notebooks.

Used only by :mod:`benchmarks.bench_erp`; not part of the package.
"""

from __future__ import annotations

from pathlib import Path

import mne
import pandas as pd
from scipy.signal import periodogram

BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 47.0),
}  # fmt: skip
CLIP_MARKERS = set(range(101, 149))
REST_MARKER = 100


def load_dataframe(eeg_file: str | Path) -> tuple[pd.DataFrame, float, list[str]]:
    """Whole recording -> DataFrame (one row per sample, one column per channel, µV) + event column."""
    raw = mne.io.read_raw_eeglab(eeg_file, preload=True, verbose="error")
    sf = float(raw.info["sfreq"])
    eeg = [c for c, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t == "eeg"]
    df = raw.to_data_frame(picks=eeg, scalings={"eeg": 1e6})
    events, ids = mne.events_from_annotations(raw, verbose="error")
    code = {v: int(k) if str(k).isdigit() else 0 for k, v in ids.items()}
    df["event"] = 0
    df.loc[events[:, 0], "event"] = [code[e] for e in events[:, 2]]
    return df, sf, eeg


def label_samples(df: pd.DataFrame) -> list[int]:
    """Clip marker of every sample (0 outside clips), one sample at a time in a Python loop."""
    labels = []
    current = 0
    for value in df["event"]:
        if value in CLIP_MARKERS:
            current = value
        elif value == REST_MARKER:
            current = 0
        labels.append(current)
    return labels


def apex_band_psd(df: pd.DataFrame, sf: float, channels: list[str], expressions: pd.DataFrame) -> pd.DataFrame:
    """Band power of a 1-s window centred on each apex (``marker``, ``apex_s`` from clip start)."""
    rows = []
    for ex in expressions.itertuples():
        clip_rows = df.index[df["label"] == ex.marker]
        if len(clip_rows) == 0:
            continue
        apex = int(clip_rows[0] + round(ex.apex_s * sf))
        window = df.iloc[apex - int(sf // 2): apex + int(sf // 2)]
        row = {"expression_id": ex.expression_id}
        for ch in channels:
            freqs, pxx = periodogram(window[ch].to_numpy(), fs=sf)
            for band, (lo, hi) in BANDS.items():
                row[f"{ch}_{band}"] = float(pxx[(freqs >= lo) & (freqs < hi)].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def run(eeg_file: str | Path, expressions: pd.DataFrame) -> pd.DataFrame:
    """The whole authors' pipeline on one recording; returns one feature row per expression."""
    df, sf, channels = load_dataframe(eeg_file)
    df["label"] = label_samples(df)
    return apex_band_psd(df, sf, channels, expressions)
