"""The converted study against the official BIDS validator, and the metadata the conversion fills in.

The validator is ``bids-validator-deno`` from PyPI (pinned in the ``dev``
extra; it runs offline). A converted study must give 0 errors; the fields
this project knows (line frequency, amplifier, cap, reference, placement,
template positions) must not be among the validator's "recommended key
missing" warnings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mne_bids
import numpy as np
import pandas as pd
import pytest

from mmme_neuro.bids import read_bids_session, read_participants_table
from mmme_neuro.montage import TEMPLATE_SPACE, quikcap64_positions

VALIDATOR = shutil.which("bids-validator-deno", path=str(Path(sys.executable).parent)) or shutil.which("bids-validator-deno")
#: Recommended eeg.json keys the conversion fills from the configuration.
FILLED = ("Manufacturer", "ManufacturersModelName", "CapManufacturer", "CapManufacturersModelName",
          "EEGPlacementScheme", "EEGReference", "EEGGround", "PowerLineFrequency")  # fmt: skip


def _validate(root: Path) -> list[dict]:
    out = subprocess.run([VALIDATOR, "--json", str(root)], capture_output=True, text=True, timeout=600, check=False)
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError as err:  # the validator could not run: show what it said
        raise AssertionError(f"bids-validator-deno printed no JSON report (exit {out.returncode}): {out.stderr[-2000:]}") from err
    return report["issues"]["issues"]


@pytest.mark.skipif(VALIDATOR is None, reason="bids-validator-deno is not installed (pip install -e '.[dev]')")
def test_converted_study_passes_the_bids_validator(ci_bids):
    issues = _validate(ci_bids)
    errors = [i for i in issues if i["severity"] == "error"]
    assert errors == [], Counter((i["code"], i.get("subCode")) for i in errors)
    missing = {i.get("subCode") for i in issues if i["code"] in ("SIDECAR_KEY_RECOMMENDED", "JSON_KEY_RECOMMENDED")}
    assert not missing & set(FILLED), sorted(missing & set(FILLED))


def test_eeg_json_and_template_positions(ci_bids):
    eeg_dir = ci_bids / "sub-01" / "eeg"
    sidecar = json.loads((eeg_dir / "sub-01_task-mmme_eeg.json").read_text())
    assert sidecar["PowerLineFrequency"] == 50
    assert sidecar["Manufacturer"] == "Compumedics Neuroscan" and sidecar["CapManufacturersModelName"] == "Quik-Cap 64"
    assert all(sidecar[k] not in ("n/a", "", None) for k in FILLED)
    # template positions are declared as a template (MNI coordinates of the Colin27 head), not as CapTrak
    assert not list(eeg_dir.glob("*space-CapTrak*"))
    coords = json.loads((eeg_dir / f"sub-01_space-{TEMPLATE_SPACE}_coordsystem.json").read_text())
    assert coords["EEGCoordinateSystem"] == TEMPLATE_SPACE and "not digitised" in coords["EEGCoordinateSystemDescription"]
    elec = pd.read_csv(eeg_dir / f"sub-01_space-{TEMPLATE_SPACE}_electrodes.tsv", sep="\t", index_col="name", float_precision="round_trip")
    template = quikcap64_positions()
    np.testing.assert_array_equal(elec.loc[list(template), ["x", "y", "z"]].to_numpy(), np.array(list(template.values())))
    # events.json describes columns only (SamplingFrequency is not a column)
    events = json.loads((eeg_dir / "sub-01_task-mmme_events.json").read_text())
    assert "SamplingFrequency" not in events
    # read back: the EEG channels have the template positions in MNE's head frame, as at ingestion
    raw = read_bids_session(ci_bids, "sub-01").raw
    pos = raw.get_montage().get_positions()
    assert pos["coord_frame"] == "head"
    np.testing.assert_array_equal(pos["ch_pos"]["CZ"], template["CZ"])
    bp = mne_bids.BIDSPath(subject="01", task="mmme", datatype="eeg", root=ci_bids)
    assert mne_bids.read_raw_bids(bp, verbose=False).info["line_freq"] == 50


def test_participants_table_keyed_by_name_or_pseudonym(tmp_path):
    mapping = {"Zhang Wei": "sub-01", "Li Na": "sub-02"}
    by_name = tmp_path / "people.csv"
    by_name.write_text("Subject,Age,Sex,Handedness,notes\nzhang wei,23,female,right,x\nLi Na,31,M,L,\n")
    t = read_participants_table(by_name, mapping)
    assert t.to_dict(orient="records") == [
        {"participant_id": "sub-01", "age": 23.0, "sex": "F", "hand": "R"},
        {"participant_id": "sub-02", "age": 31.0, "sex": "M", "hand": "L"},
    ]
    by_id = tmp_path / "people.tsv"
    by_id.write_text("participant_id\tage\thand\n02\tn/a\tA\n")
    assert read_participants_table(by_id, mapping).iloc[0].to_dict() == {
        "participant_id": "sub-02", "age": None, "sex": None, "hand": "A"}
    for text, match in (("subject,age\nWang Fang,20\n", r"people.csv, row 2: the subject is not a participant"),
                        ("subject,age\nLi Na,twenty\n", r"row 2, column 'age': 'twenty' is not a number"),
                        ("subject,sex\nLi Na,x\n", r"row 2, column 'sex': 'x' is not one of \['F', 'M', 'O'\]"),
                        ("participant_id\nsub-01\n01\n", "sub-01 is listed more than once"),
                        ("name,age\nLi Na,3\n", "needs a 'participant_id'")):  # fmt: skip
        by_name.write_text(text)
        with pytest.raises(ValueError, match=match) as err:
            read_participants_table(by_name, mapping)
        assert "Wang Fang" not in str(err.value) and "Li Na" not in str(err.value)  # names are not repeated


def test_conversion_writes_participants_from_the_table(ci_study, _ci_bids_pristine, tmp_path_factory):
    from conftest import convert_ci

    from mmme_neuro.bids import convert_study
    from mmme_neuro.config import load_config
    from mmme_neuro.io.coding import read_coding

    root = convert_ci(_ci_bids_pristine, tmp_path_factory, "participants")
    before = {p: p.stat().st_mtime_ns for p in root.glob("sub-*/eeg/*")}
    coding = read_coding(next(ci_study.raw_dir.glob("*.xlsx")))
    names = sorted(coding.mapping, key=coding.mapping.get)
    table = tmp_path_factory.mktemp("people") / "people.xlsx"
    pd.DataFrame({"subject": names[:2], "age": [22, 35], "sex": ["F", "M"], "hand": ["R", "R"]}).to_excel(table, index=False)
    config = load_config(None, bids={"participants_file": str(table)})
    assert convert_study(ci_study.raw_dir, root, config=config, progress=False, qa=False).accounting_ok
    out = pd.read_csv(root / "participants.tsv", sep="\t", na_values="n/a")
    assert list(out["age"][:2]) == [22, 35] and list(out["sex"][:2]) == ["F", "M"] and out["age"][2:].isna().all()
    assert not any(n in (root / "participants.tsv").read_text() for n in names)  # pseudonyms only
    # the table feeds participants.tsv only: no subject was converted again
    assert {p: p.stat().st_mtime_ns for p in root.glob("sub-*/eeg/*")} == before
