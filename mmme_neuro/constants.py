"""Facts about the MMME dataset and its devices (see ``shared/MMME.md``).

Everything here is a fact of the acquisition set-up, not an analysis choice:
analysis choices live in :mod:`mmme_neuro.config`.
"""

from __future__ import annotations

from types import MappingProxyType

#: Neuroscan Quik-Cap 64, in the order of the Curry/EEGLAB exports of MMME.
EEG_CHANNELS: tuple[str, ...] = (
    "FP1", "FPZ", "FP2", "AF3", "AF4", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8",
    "FT7", "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1",
    "CZ", "C2", "C4", "C6", "T8", "M1", "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4",
    "CP6", "TP8", "M2", "P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8", "PO7", "PO5",
    "PO3", "POZ", "PO4", "PO6", "PO8", "CB1", "O1", "OZ", "O2", "CB2",
)  # fmt: skip

#: Mastoid channels (recorded, used as reference, not analysed as scalp sites).
MASTOID_CHANNELS: tuple[str, ...] = ("M1", "M2")

#: The 62 scalp channels that are analysed.
SCALP_CHANNELS: tuple[str, ...] = tuple(c for c in EEG_CHANNELS if c not in MASTOID_CHANNELS)

#: Auxiliary channels of the Neuroscan amplifier and their MNE channel types.
AUX_CHANNEL_TYPES: MappingProxyType[str, str] = MappingProxyType(
    {"HEO": "eog", "VEO": "eog", "EKG": "ecg", "EMG": "emg", "Trigger": "stim"}
)

#: All 70 columns of an MMME EEG recording (64 EEG + HEO, VEO, EKG, EMG, Trigger).
ALL_EEG_FILE_CHANNELS: tuple[str, ...] = EEG_CHANNELS + tuple(AUX_CHANNEL_TYPES)

#: Nominal sampling rates (Hz) of the MMME devices.
EEG_SFREQ: float = 1000.0
PHYSIO_SFREQ: float = 1000.0
CAMERA_FPS: float = 150.0

#: Column labels of the BIOPAC MP160 / AcqKnowledge 5 MATLAB export (17 columns).
BIOPAC_LABELS: tuple[str, ...] = (
    "PPG, X, PPGED-R",
    "RSP, X, RSPEC-R",
    "EMG A, X, EMG2-R",
    "SKT A, X, SKT2-R",
    "EDA, X, PPGED-R",
    "ECG, X, RSPEC-R",
    "EMG B, X, EMG2-R",
    "SKT B, X, SKT2-R",
    *(f"Digital (STP Input {i})" for i in range(8)),
    "ECG rate (.5 - 35 Hz)",
)

#: Units of the BIOPAC columns, in the same order as :data:`BIOPAC_LABELS`.
BIOPAC_UNITS: tuple[str, ...] = (
    "Volts", "Volts", "mV", "Deg C", "microsiemens", "mV", "mV", "Deg C",
    *("Volts",) * 8,
    "BPM",
)  # fmt: skip

#: Short signal names for the BIOPAC analogue columns.
BIOPAC_SIGNALS: MappingProxyType[str, str] = MappingProxyType(
    {
        "PPG, X, PPGED-R": "PPG",
        "RSP, X, RSPEC-R": "RSP",
        "EMG A, X, EMG2-R": "EMG_A",
        "SKT A, X, SKT2-R": "SKT_A",
        "EDA, X, PPGED-R": "EDA",
        "ECG, X, RSPEC-R": "ECG",
        "EMG B, X, EMG2-R": "EMG_B",
        "SKT B, X, SKT2-R": "SKT_B",
        "ECG rate (.5 - 35 Hz)": "ECG_RATE",
    }
)

#: Voltage of a digital line in the "high" state (V). Lines are 0 or 5 V.
DIGITAL_HIGH_V: float = 5.0

#: Marker that flags rest between clips.
REST_MARKER: int = 100
#: Markers known to be spurious in MMME recordings (ignored, reported).
SPURIOUS_MARKERS: frozenset[int] = frozenset({77, 88})

#: Clip emotion category of each clip marker (from the authors' analysis code).
CLIP_MARKERS_BY_EMOTION: MappingProxyType[str, tuple[int, ...]] = MappingProxyType(
    {
        "sad": (101, 109, 118, 127, 136, 148),
        "disgust": (102, 110, 112, 119, 128, 137),
        "happy": (103, 111, 120, 123, 129, 138),
        "fear": (104, 113, 121, 130, 134, 139),
        "tense": (105, 114, 122, 131, 140, 144),
        "calm": (106, 115, 124, 132, 141, 145),
        "angry": (107, 116, 125, 133, 142, 146),
        "surprise": (108, 117, 126, 135, 143, 147),
    }
)

#: Clip marker -> clip emotion.
CLIP_EMOTION: MappingProxyType[int, str] = MappingProxyType(
    {m: emo for emo, markers in CLIP_MARKERS_BY_EMOTION.items() for m in markers}
)

#: All 48 clip markers, sorted.
CLIP_MARKERS: tuple[int, ...] = tuple(sorted(CLIP_EMOTION))

#: Expression emotion -> composite class used by MMME (negative / positive / surprise).
#: ``tense`` is the coding-file name of MMME's contempt/tension category.
COMPOSITE_EMOTION: MappingProxyType[str, str] = MappingProxyType(
    {
        "disgust": "negative",
        "fear": "negative",
        "angry": "negative",
        "sad": "negative",
        "tense": "negative",
        "happy": "positive",
        "surprise": "surprise",
    }
)

#: Estimated-emotion labels found in MMME coding files (normalised spelling).
EXPRESSION_EMOTIONS: tuple[str, ...] = (
    "disgust", "fear", "surprise", "happy", "angry", "sad", "tense",
)  # fmt: skip

#: Facial region of each action unit (MMME Table 1, FACS for AUs not in it).
AU_REGION: MappingProxyType[int, str] = MappingProxyType(
    {
        1: "upper", 2: "upper", 4: "upper", 6: "upper", 42: "upper",
        5: "mid", 7: "mid", 9: "mid", 10: "mid", 11: "mid", 12: "mid", 41: "mid",
        13: "lower", 14: "lower", 15: "lower", 16: "lower", 17: "lower", 18: "lower",
        20: "lower", 23: "lower", 24: "lower", 25: "lower", 26: "lower", 27: "lower",
        43: "upper", 45: "upper", 46: "upper",
    }
)  # fmt: skip

#: Dataset-level facts used by the synthetic generator to match MMME's shape.
MMME_N_SUBJECTS: int = 110
MMME_N_ME: int = 634
MMME_N_MAE: int = 2841
MMME_ME_DURATION_MEAN_S: float = 0.3817
MMME_ME_DURATION_SD_S: float = 0.1005
MMME_SESSION_MINUTES: float = 73.0

#: Presentation order of each clip within its emotion category (the
#: ``<clip order>`` field of coding-file names), read off the public MMME
#: coding file for the seven coded emotions. Calm clips are never coded; their
#: order is assumed by analogy (the first block uses markers 144-147 and
#: 101/112/123/134).
CLIP_ORDER: MappingProxyType[int, int] = MappingProxyType(
    {
        146: 1, 107: 2, 116: 3, 125: 4, 133: 5, 142: 6,  # angry
        112: 1, 102: 2, 110: 3, 119: 4, 128: 5, 137: 6,  # disgust
        134: 1, 104: 2, 113: 3, 121: 4, 130: 5, 139: 6,  # fear
        123: 1, 103: 2, 111: 3, 120: 4, 129: 5, 138: 6,  # happy
        101: 1, 148: 2, 109: 3, 118: 4, 127: 5, 136: 6,  # sad
        147: 1, 108: 2, 117: 3, 126: 4, 135: 5, 143: 6,  # surprise
        144: 1, 105: 2, 114: 3, 122: 4, 131: 5, 140: 6,  # tense
        145: 1, 106: 2, 115: 3, 124: 4, 132: 5, 141: 6,  # calm (assumed)
    }
)  # fmt: skip

#: FACS names of the action units (MMME Table 1 and FACS for AUs outside it).
AU_DESCRIPTION: MappingProxyType[int, str] = MappingProxyType(
    {
        1: "Inner Brow Raiser", 2: "Outer Brow Raiser", 4: "Brow Lowerer", 5: "Upper Lid Raiser",
        6: "Cheek Raiser", 7: "Lid Tightener", 9: "Nose Wrinkler", 10: "Upper Lip Raiser",
        11: "Nasolabial Deepener", 12: "Lip Corner Puller", 13: "Cheek Puffer", 14: "Dimpler",
        15: "Lip Corner Depressor", 16: "Lower Lip Depressor", 17: "Chin Raiser",
        18: "Lip Puckerer", 20: "Lip Stretcher", 23: "Lip Tightener", 24: "Lip Pressor",
        25: "Lips Part", 26: "Jaw Drop", 27: "Mouth Stretch", 41: "Lid Droop", 42: "Slit",
        43: "Eyes Closed", 45: "Blink", 46: "Wink",
    }
)  # fmt: skip
