"""Every p of a summary.md names its test and df or permutations; none is 0 or below 1/n.

The markdown builders of the analysis scripts are fed the committed
``figures/<analysis>/summary.json`` (read only), patched to the current keys
(mixed models: ``t``, ``df``, ``test``, ``subject_level_test`` ...) and to
extreme p-values: 0.0, 1e-320 (underflow) and a permutation p at its floor
``1 / n_permutations``.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mmme_neuro.decoding import TIME_NULL

ROOT = Path(__file__).resolve().parents[1]

#: A printed p: ``p = 0.01``, ``p_FDR = 3e-05``, ``p <= 0.001``, ``p < 1e-300``.
P_RE = re.compile(r"\bp(?:_FDR)?\s*(=\s*<=|=\s*<|<=|<|=)\s*([^\s,;|)]+)")
#: A p printed as zero: ``p = 0``, ``p = 0.0``, ``p = 0.000``, ``p_FDR = 0e+00`` (not ``0.01``).
ZERO_RE = re.compile(r"\bp(?:_FDR)?\s*=\s*0(?:\.0*)?(?:e[+-]?\d+)?(?![\d.])")
#: What a line with a p must name: a t with its df (``t(9)``, ``t (df)``, ``df = 9``) or a
#: number of permutations / sign flips (``512 sign flips``, ``1000 sign-flip permutations``).
#: A bare ``t = 2.1`` or ``z = 2.73`` does not count.
NAMED_RE = re.compile(
    r"\bt\(\d+\)|\(df\b|\bdf = \d|\b\d+ (?:[a-z-]+ )*?(?:permutations|sign flips)\b"
)
#: The number of permutations a line names.
N_PERM_RE = re.compile(r"\b(\d+) (?:[a-z-]+ )*?(?:permutations|sign flips)\b")


def _is_p_header(cell: str) -> bool:
    return re.fullmatch(r"(?:paired )?p(?: \(.*\))?|p_FDR", cell.strip()) is not None


def _cells(row: str) -> list[str]:
    """Cells of a markdown table row (an escaped pipe ``\\|`` stays in its cell)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def violations(md: str) -> list[str]:
    """Lines of ``md`` that break the rules, each with the reason."""
    out: list[str] = []
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if ZERO_RE.search(line):
            out.append(f"p printed as 0: {line}")
        ps = P_RE.findall(line)
        if ps and not NAMED_RE.search(line):
            out.append(f"p without its test's df or permutations: {line}")
        for _, value in ps:
            value = value.rstrip(".")
            try:
                v = float(value)
            except ValueError:
                if value != "n/a":
                    out.append(f"p not a number: {line}")
                continue
            if v <= 0:
                out.append(f"p printed as 0: {line}")
            m = N_PERM_RE.search(line)
            if m and v < float(f"{1 / int(m.group(1)):.2g}"):
                out.append(f"p below its permutation floor 1/{m.group(1)}: {line}")
        # a table with p columns: test and df/permutations in its header or the line above
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            cells = _cells(line)
            p_cols = [j for j, c in enumerate(cells) if _is_p_header(c)]
            if not p_cols:
                continue
            above = next((x for x in reversed(lines[:i]) if x.strip()), "")
            m = N_PERM_RE.search(above) or N_PERM_RE.search(line)
            printed = False  # any p printed (not n/a)
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                values = _cells(row)
                if len(values) != len(cells):
                    out.append(f"table row of {len(values)} cells, {len(cells)} columns: {row}")
                    continue
                for j in p_cols:
                    text = values[j].removeprefix("<=").removeprefix("<").strip()
                    if text == "n/a":
                        continue
                    printed = True
                    v = float(text)
                    if v <= 0:
                        out.append(f"p printed as 0 in a table: {row}")
                    floor = 1 / int(m.group(1)) if m else 0.0
                    if not values[j].startswith("<") and v < floor:
                        out.append(f"p below its permutation floor in a table: {row}")
            if printed and not (NAMED_RE.search(line) or NAMED_RE.search(above)):
                out.append(f"p column without its test's df or permutations: {line}")
    return out


def _summary(analysis: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((ROOT / "figures" / analysis / "summary.json").read_text()))


def _subject_level(t: float = 2.31, df: float = 9.0, p: float = 0.046) -> dict[str, Any]:
    return {"test": "paired t-test on subject means", "t": t, "df": df, "p": p, "n": 10,
            "mean_diff": 1.0}  # fmt: skip


def _model_row(rec: dict[str, Any], p: float, t: float = 3.0) -> None:
    """Patch a mixed-model record of an old summary.json to the current keys (t with df, no z)."""
    rec.pop("z", None)
    rec.update(t=t, df=9.0, p=p, test="t test on n_subjects - 1 df", random_effects="(1 | subject)",
               subject_level_test=_subject_level(p=p))  # fmt: skip


# ----------------------------------------------------------------------------- the checker itself


@pytest.mark.parametrize("line", [
    "- without covariate: 2.12 µV [0.60, 3.64], z = 2.73, p = 0.00629, d = 0.37 (363 trials).",
    "- ME-MaE: cluster 1, 4-16.2 Hz, 31 channels (FPZ), mass 7777.2, p = 0.00195, dz = 8.40.",
    "- gamma temporal: -4.94 dB, z = -42.34, p_FDR = 0",
    "- ME-MaE delta global_efficiency_auc: t = 0.21, p = 0.838, dz = 0.07.",
    "- emg: paired t(9) = -221.69, p = 0, dz = -70.11.",
    "- emg: paired t(9) = -221.69, p = 0.0 , dz = -70.11.",
    "- cluster permutation test, 1000 sign flips: p = 0.0001, dz = 1.",
])  # fmt: skip
def test_checker_rejects_the_old_lines(line):
    """The lines summaries printed before (z only, bare t, p = 0, p below 1/n) fail the check."""
    assert violations(line)


@pytest.mark.parametrize("table", [
    "## Mixed models\n\n| measure | term | estimate | p | d_lmm |\n|---|---|---|---|---|\n"
    "| hr | ME - MaE | -3.41 | 4.76e-20 | -1.65 |",
    "Text.\n\n| task | n | UF1 | chance | p |\n|---|---|---|---|---|\n| me_vs_mae | 36 | 0.9 | 0.5 "
    "| 0 |",
    "t(9) in (df) t\n\n| term | random effects | p |\n|---|---|---|\n"
    "| ME - MaE | (1 | subject) | 0.01 |",
    "100 label permutations\n\n| task | UF1 | p |\n|---|---|---|\n| me_vs_mae | 0.9 | 0.001 |",
])  # fmt: skip
def test_checker_rejects_the_old_tables(table):
    """Tables fail: p column without test and df/permutations, p = 0, p < 1/n, a pipe in a cell."""
    assert violations(table)


def _floor(n: int) -> str:
    """The printed floor of a permutation p with ``n`` permutations: never below ``1 / n``."""
    from mmme_neuro.reporting import format_p

    text = format_p(1 / n, n_permutations=n)
    assert text.startswith("<= ") and float(text[3:]) >= 1 / n
    return text[3:]


def test_checker_accepts_named_lines():
    ok = ("- a: paired t(9) = 2.31, p = 0.046.\n"
          "- b: cluster permutation test, 512 sign flips (exact): p <= 0.002.\n"
          "- c: NBS, 1000 sign-flip permutations; significant components: p = 0.004, p <= 0.001.\n"
          "- d: t(3391) = 40.1, p_FDR < 1e-300 (t test)\n")  # fmt: skip
    assert violations(ok) == []


# ----------------------------------------------------------------------------- the analyses


def test_erp_markdown():
    from analyses.erp_me_vs_mae import build_markdown

    s = _summary("erp_me_vs_mae")
    info = s["results"]["clusters"]["ME-MaE"]
    n = info["n_permutations"]
    rec = next(c for c in s["contrasts"] if c["kind"] == "cluster" and c["contrast"] == "ME-MaE")
    ne = next(c for c in s["contrasts"] if c["kind"] == "cluster" and c["contrast"] == "ME-NE")
    for c, p in ((rec, 1 / n), (ne, 0.0)):  # at the floor; 0 (impossible, printed as the floor)
        c.update(significant=True, p=p, cluster=1, time_s=[0.3, 0.5], location=["PZ", "CPZ"],
                 peak_channel="PZ", peak_time_s=0.4)  # fmt: skip
    emg = s["results"]["emg_me_vs_mae"]
    emg["emg_rms_uv"]["p"] = 0.0
    emg["emg_temporal_power"]["p"] = 1e-320
    mm = s["results"]["mixed_models_p3_mean"]
    _model_row(mm["without_covariate"], 0.0)
    mm["without_covariate"]["subject_level_test"]["p"] = 1e-320
    _model_row(mm["with_emg_covariate"], 0.4)
    md = build_markdown(s)
    assert violations(md) == [], md
    floor = _floor(n)
    assert f"cluster permutation test, {n} sign flips (exact): p <= {floor}" in md
    assert md.count(f"p <= {floor}") == 2  # p = 0 of a permutation test: at its floor
    assert "p < 1e-300" in md and "p = < 1e-300" not in md
    # without a significant cluster the line still names the test and its sign flips
    s2 = _summary("erp_me_vs_mae")
    _model_row(s2["results"]["mixed_models_p3_mean"]["without_covariate"], 0.01)
    _model_row(s2["results"]["mixed_models_p3_mean"]["with_emg_covariate"], 0.5)
    md2 = build_markdown(s2)
    assert f"(n = 10; cluster permutation test, {n} sign flips (exact))" in md2
    assert "no significant cluster" in md2
    assert violations(md2) == []


def test_erp_verdict_needs_an_effect_to_survive():
    """'does not survive the EMG covariate' only when the uncovaried effect was significant."""
    from analyses.erp_me_vs_mae import build_markdown

    s = _summary("erp_me_vs_mae")
    mm = s["results"]["mixed_models_p3_mean"]
    _model_row(mm["without_covariate"], 0.5, t=0.7)
    _model_row(mm["with_emg_covariate"], 0.6)
    s["results"]["erp_effect_survives_emg_covariate"] = None
    md = build_markdown(s)
    assert "is not significant (t(9) = 0.70, p = 0.5)" in md and "survive" not in md
    _model_row(mm["without_covariate"], 0.01)
    s["results"]["erp_effect_survives_emg_covariate"] = False
    assert "does **not** survive the EMG covariate" in build_markdown(s)


def test_tfr_markdown():
    from analyses.tfr_me_vs_mae import build_markdown

    s = _summary("tfr_me_vs_mae")
    clusters = [c for c in s["contrasts"] if c["kind"] == "cluster"]
    sig = [c for c in clusters if c.get("significant")]
    # the committed study may have fewer significant clusters than the three patched below: mark
    # further ME-MaE / ME-NE clusters significant (the markdown prints significant ones only)
    for c in clusters:
        if len(sig) >= 3 or len(sig) >= 2 and c["contrast"] != "ME-NE":
            continue
        if not c.get("significant") and c.get("n_permutations"):
            c["significant"] = True
            sig.append(c)
    assert len(sig) >= 3 and any(c["contrast"] == "ME-NE" for c in sig[2:])
    n = sig[0]["n_permutations"]
    sig[0]["p"] = 1 / n
    sig[1]["p"] = 0.0
    sig[2]["p"] = 0.02
    models = [c for c in s["contrasts"] if c["kind"] == "mixed_model"]
    for i, c in enumerate(models):
        c.update(df=9.0, test="t test on n_subjects - 1 df", random_effects="(1 | subject)",
                 subject_level_test=_subject_level(), p=[0.0, 1e-320, 0.01][i % 3])  # fmt: skip
    md = build_markdown(s)
    assert violations(md) == [], md
    floor = _floor(n)
    # the two patched clusters (1/n and 0) print at the floor
    assert md.count(f"cluster permutation test, {n} sign flips (exact): p <= {floor}") >= 2
    assert "p = 0.02," in md
    assert "p_FDR < 1e-300" in md and "p_FDR = <" not in md and "t(9) = " in md


def test_network_markdown():
    from analyses.network_nodal_efficiency import build_markdown

    s = _summary("network_nodal_efficiency")
    nodes = [c for c in s["contrasts"] if c["kind"] == "node"]
    for c in nodes:
        c.update(n_permutations=1000, exact=False, df=c["n"] - 1)
    first_sig = next(c for c in nodes if c["significant"])
    first_sig["p"] = 0.001
    nbs = [c for c in s["contrasts"] if c["kind"] == "nbs_component"]
    if len(nbs) < 2:  # the committed study has one component: a second one, a copy in another band
        bands = {c["band"] for c in nbs}
        other = next(b for b in ("delta", "theta", "alpha", "beta", "gamma") if b not in bands)
        nbs.append({**nbs[0], "band": other, "freq_hz": nbs[0]["freq_hz"]})
        s["contrasts"].append(nbs[-1])
        s["results"]["nbs"][nbs[0]["contrast"]].setdefault(other, dict(s["results"]["nbs"][nbs[0]["contrast"]][nbs[0]["band"]]))
    nbs[0]["p"] = 0.001
    nbs[1]["p"] = 0.0
    glob = [c for c in s["contrasts"] if c["kind"] == "global"]
    glob[0]["p"] = 0.0
    glob[1]["p"] = 1e-320
    for c in glob[:10]:
        c["df"] = c["n"] - 1
    md = build_markdown(s)
    assert violations(md) == [], md
    assert f"{first_sig['location']} p <= 0.001" in md
    assert "(max-statistic sign-flip test, 1000 permutations):" in md
    assert "NBS, 1000 sign-flip permutations; significant components: p <= 0.001" in md
    assert md.count("p < 1e-300") == 2 and "paired t(9) = " in md
    # an older summary without the node permutation counts: the nodes without p, still no violation
    assert violations(build_markdown(_summary("network_nodal_efficiency"))) == []


def test_physio_markdown():
    from analyses.physio_concordance import build_markdown

    s = _summary("physio_concordance")
    rows = s["results"]["epoch_models"]
    for i, m in enumerate(rows):
        m.pop("z", None)
        m.update(t=-9.2, df=11.0, test="t test on n_subjects - 1 df", paired_t=-4.0, paired_df=11.0,
                 random_effects="(1 | subject) + (1 | subject:condition)",
                 paired_p=[1e-320, 0.002][i % 2], p=[0.0, 1e-320, 0.03][i % 3])  # fmt: skip
    md = build_markdown(s)
    assert violations(md) == [], md  # also: every row has as many cells as the header
    assert "| < 1e-300 |" in md and "-9.20 (11)" in md
    assert "(1 \\| subject) + (1 \\| subject:condition)" in md


def test_decoding_markdown():
    from analyses.decoding_multimodal import NULL_TEXT, build_markdown

    s = _summary("decoding_multimodal")
    scores = s["results"]["scores"]
    n = scores[0]["n_permutations"]
    scores[0]["uf1_p"] = 1 / (n + 1)
    scores[0]["uar_p"] = 0.0
    scores[1]["uf1_p"] = 0.5
    for v in s["results"]["time_resolved"].values():
        v.update(n_permutations=1000, exact=False, null=TIME_NULL)
        if v["significant_clusters"]:
            v["significant_clusters"][0]["p"] = 0.001
    md = build_markdown(s)
    assert violations(md) == [], md
    floor = _floor(n + 1)
    first = f"| {scores[0]['task']} | {scores[0]['feature_set']} |"
    row = next(line for line in md.splitlines() if line.startswith(first))
    assert row.count(f"<= {floor}") == 2
    assert f"label permutation test ({NULL_TEXT[s['results'].get('null', 'shuffle_within_subject')]}, the " \
        f"cross-validation re-run), {n} permutations" in md
    text = f"one-sided; null: {TIME_NULL}, 999 random label-swap permutations plus the observed): 0.328-0.508 s, p <= 0.001."
    assert md.count(text) >= 1
    # no label permutations: p is n/a, not 0
    s["results"]["n_permutations"] = 0
    for sc in s["results"]["scores"]:
        sc.update(n_permutations=0, uf1_p=None, uar_p=None)
    assert violations(build_markdown(s)) == []


def test_dataset_summary_and_run_table_print_no_p():
    from analyses import __main__ as cli
    from analyses.dataset_summary import build_markdown

    s = _summary("dataset_summary")
    tables = {
        "durations": pd.DataFrame({"kind": ["ME"], "measure": ["duration"], "text": ["380 ± 100"]}),
        "quality_counts": pd.DataFrame({"issue": ["x"], "status": ["flagged"], "count": [1]}),
        "emotion_counts": pd.DataFrame({"emotion": ["disgust"] * 2, "label": ["negative"] * 2,
                                        "kind": ["ME", "MaE"], "count": [3, 4]}),
    }  # fmt: skip
    md = build_markdown(s, tables) + cli._markdown(
        [{"analysis": "erp_me_vs_mae", "status": "ok", "seconds": 1.0}], 1.0, {"status": "none"})
    assert not P_RE.search(md) and violations(md) == []


# ----------------------------------------------------------------------------- planned and
# EMG-matched sections


def _planned_record(p: float, p_unc: float, **kw: Any) -> dict[str, Any]:
    from mmme_neuro.reporting import make_contrast

    fields = dict(
        location=["CPZ", "PZ"],
        time_s=[0.3, 0.5],
        statistic=4.2,
        p=p,
        effect_size=1.3,
        statistic_name="t",
        df=9.0,
        test="paired t-test on subject means",
        correction="holm",
        family_size=2,
        p_uncorrected=p_unc,
        effect_size_name="cohen_dz",
        name="P3",
        band=None,
        mean_diff=1.4,
        units="µV",
        n=10,
        ci_low=0.7,
        ci_high=2.1,
        significant=True,
    )
    return make_contrast("ME-MaE", kind="planned", **{**fields, **kw})


def _matched_block(
    kind: str, test: dict[str, Any], effects: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "contrast": "ME-MaE",
        "method": "nearest",
        "measure": "emg_rms_uv",
        "caliper_sd": 0.2,
        "n_strata": None,
        "n_subjects": 10,
        "n_subjects_matched": 9,
        "subjects_tested": [],
        "subjects_not_matched": {
            "sub-03": "no_overlap: no ME-MaE pair within the caliper (0.2 SD = 0.3)"
        },
        "min_count_excluded": [],
        "epochs_before": {"ME": 60, "MaE": 300},
        "epochs_after": {"ME": 40, "MaE": 40},
        "smd_before": {"median": -1.2, "max_abs": 3.0},
        "smd_after": {"median": 0.01, "max_abs": 0.15},
        "test": test,
        "effects": effects,
        "n_disappear": sum(e["survives_emg_matching"] is False for e in effects),
    }


def test_erp_planned_and_matched_sections():
    from analyses.erp_me_vs_mae import build_markdown

    s = _summary("erp_me_vs_mae")
    for key in ("without_covariate", "with_emg_covariate"):
        _model_row(s["results"]["mixed_models_p3_mean"][key], 0.2)
    s["contrasts"] += [_planned_record(0.0, 1e-320), _planned_record(0.03, 0.015, name="late")]
    test = {
        "tested": True,
        "n_subjects": 9,
        "n_permutations": 512,
        "exact": True,
        "significant_clusters": [
            {"cluster": 1, "sign": 1, "p": 0.0, "n_sites": 6, "time_s": [0.3, 0.5]},
            {"cluster": 2, "sign": -1, "p": 0.04, "n_sites": 3, "time_s": [0.1, 0.2]},
        ],
    }
    effects = [
        {"cluster": 1, "survives_emg_matching": False, "label": "cluster 1 (+, 0.3-0.5 s)"},
        {"cluster": 2, "survives_emg_matching": True, "label": "cluster 2 (-, 0.1-0.2 s)"},
    ]
    s["results"]["emg_matched"] = _matched_block("cluster", test, effects)
    md = build_markdown(s)
    assert violations(md) == [], md
    assert "paired t(9) = 4.20, p < 1e-300 (holm; uncorrected p < 1e-300)" in md
    assert (
        "cluster permutation test, 512 sign flips (exact): cluster 1 (+) 0.300-0.500 s over 6 "
        f"channels, p <= {_floor(512)}" in md
    )
    assert "disappear under EMG matching** (1 of 2): cluster 1 (+, 0.3-0.5 s)" in md
    # untestable: every effect null, no p printed
    s["results"]["emg_matched"] = _matched_block(
        "cluster",
        {"tested": False, "reason": "0 subject(s)"},
        [{**effects[0], "survives_emg_matching": None}],
    )
    md2 = build_markdown(s)
    assert violations(md2) == [] and "cannot be told apart from facial EMG" in md2


def test_tfr_and_network_matched_sections():
    from analyses.network_nodal_efficiency import build_markdown as net_md
    from analyses.tfr_me_vs_mae import build_markdown as tfr_md

    s = _summary("tfr_me_vs_mae")
    for c in [c for c in s["contrasts"] if c["kind"] == "mixed_model"]:
        c.update(
            df=9.0,
            test="t test on n_subjects - 1 df",
            random_effects="(1 | subject)",
            subject_level_test=_subject_level(),
            p=0.01,
        )
    s["contrasts"].append(_planned_record(1e-320, 1e-321, band="theta", freq_hz=[4.0, 8.0]))
    test = {
        "tested": True,
        "n_subjects": 9,
        "n_permutations": 1000,
        "exact": False,
        "significant_clusters": [
            {
                "cluster": 1,
                "sign": -1,
                "p": 0.0,
                "n_sites": 12,
                "time_s": [0.0, 1.0],
                "freq_hz": [24.0, 45.0],
            }
        ],
    }
    s["results"]["emg_matched"] = _matched_block(
        "cluster",
        test,
        [{"cluster": 2, "survives_emg_matching": False, "label": "cluster 2 (-, 23.8-45 Hz, T8)"}],
    )
    md = tfr_md(s)
    assert violations(md) == [], md
    assert f"24-45 Hz, 0.00-1.00 s, 12 channels, p <= {_floor(1000)}" in md and "theta 4-8 Hz" in md

    n = _summary("network_nodal_efficiency")
    n["contrasts"].append(_planned_record(0.0, 0.0, band="alpha", freq_hz=[8.0, 13.0]))
    test = {
        "tested": True,
        "n_subjects": 9,
        "n_permutations": 512,
        "exact": True,
        "p_maxstat": {"alpha:C3": 0.0, "gamma:T8": 0.03},
    }
    n["results"]["emg_matched"] = _matched_block(
        "node",
        test,
        [
            {
                "band": "beta",
                "node": "T8",
                "survives_emg_matching": False,
                "label": "beta T8 (t = 5.1, maxstat)",
            }
        ],
    )
    md = net_md(n)
    assert violations(md) == [], md
    assert f"alpha:C3 p <= {_floor(512)}" in md
    assert "Nodes that disappear under EMG matching** (1 of 1): beta T8" in md
