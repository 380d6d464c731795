"""Publication style and dataset figures: produced, readable, deterministic."""

from __future__ import annotations

import hashlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib as mpl  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from mmme_neuro.config import MeRule  # noqa: E402
from mmme_neuro.constants import COMPOSITE_EMOTION, EXPRESSION_EMOTIONS  # noqa: E402
from mmme_neuro.viz import dataset as vd  # noqa: E402
from mmme_neuro.viz.style import (  # noqa: E402
    CONDITION_COLORS,
    OKABE_ITO,
    STYLE_RC,
    figure_size,
    new_figure,
    publication_style,
    save_figure,
)


def make_tables(n: int = 200, n_subjects: int = 12, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random expressions and report tables with the schema of the coding reader."""
    rng = np.random.default_rng(seed)
    emotion = rng.choice(EXPRESSION_EMOTIONS, n)
    duration = np.round(np.exp(rng.normal(np.log(0.6), 0.6, n)), 2) + 0.01
    onset_to_apex = np.round(duration * rng.uniform(0.2, 1.0, n), 2)
    kind = np.where((duration <= 0.5) | (onset_to_apex <= 0.25), "ME", "MaE")
    pool = np.array([1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 25, 26])
    aus = [", ".join(f"AU{a}" for a in sorted(rng.choice(pool, rng.integers(1, 4), replace=False))) for _ in range(n)]
    expr = pd.DataFrame(
        {
            "subject": [f"sub-{i:02d}" for i in rng.integers(1, n_subjects + 1, n)],
            "emotion": emotion,
            "composite_emotion": [COMPOSITE_EMOTION[e] for e in emotion],
            "kind": kind,
            "duration_s": duration,
            "onset_to_apex_s": onset_to_apex,
            "aus": aus,
            "issues": "",
        }
    )
    status = rng.choice(["ok", "flagged", "excluded"], n + 20, p=[0.5, 0.4, 0.1])
    codes = ["apex_equals_offset", "fps_deviates", "duplicate_superseded", "stamp_time_mismatch"]
    issues = ["" if s == "ok" else ";".join(sorted(set(rng.choice(codes, rng.integers(1, 3))))) for s in status]
    report = pd.DataFrame({"source_row": np.arange(n + 20) + 2, "subject": "sub-01", "marker": 101,
                           "status": status, "issues": issues, "reason": ""})  # fmt: skip
    return expr, report


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_tables()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- style


def test_palette_is_okabe_ito() -> None:
    assert set(OKABE_ITO.values()) >= {CONDITION_COLORS[c] for c in ("ME", "MaE", "NE")}
    assert len({CONDITION_COLORS[c] for c in ("ME", "MaE", "NE")}) == 3


def test_publication_style_restores_rcparams() -> None:
    before = mpl.rcParams["font.size"], mpl.rcParams["axes.spines.top"]
    with publication_style():
        assert mpl.rcParams["font.size"] == STYLE_RC["font.size"]
        assert not mpl.rcParams["axes.spines.top"] and not mpl.rcParams["axes.spines.right"]
        assert mpl.rcParams["savefig.dpi"] == 300
        assert mpl.rcParams["font.family"] == ["sans-serif"]
    with publication_style(**{"font.size": 9}):
        assert mpl.rcParams["font.size"] == 9
    assert (mpl.rcParams["font.size"], mpl.rcParams["axes.spines.top"]) == before


def test_figure_size() -> None:
    assert figure_size("double", 100) == pytest.approx((180 / 25.4, 100 / 25.4))
    assert figure_size("single", 50)[0] == pytest.approx(88 / 25.4)
    assert figure_size(120, 60) == pytest.approx((120 / 25.4, 60 / 25.4))
    with pytest.raises(ValueError, match="width"):
        figure_size("triple")


def _simple_figure():
    fig, ax = new_figure("single", 50)
    ax.plot([0, 1, 2], [1, 3, 2], color=CONDITION_COLORS["ME"], label="ME")
    ax.set_xlabel("Time (s)")
    ax.legend()
    return fig


def test_save_figure_deterministic_atomic_and_closes(tmp_path: Path) -> None:
    digests = []
    for run in ("a", "b"):
        fig = _simple_figure()
        paths = save_figure(fig, tmp_path / run / "fig.v1", formats=("png", "pdf", "svg"))
        assert [p.name for p in paths] == ["fig.v1.png", "fig.v1.pdf", "fig.v1.svg"]  # dots of the stem kept
        assert not plt.fignum_exists(fig.number)
        assert sorted(p.name for p in (tmp_path / run).iterdir()) == sorted(p.name for p in paths)  # no temp files left
        digests.append([_digest(p) for p in paths])
    assert digests[0] == digests[1]
    pdf = (tmp_path / "a" / "fig.v1.pdf").read_bytes()
    assert b"CreationDate" not in pdf
    assert b"Date" not in (tmp_path / "a" / "fig.v1.svg").read_bytes()


def test_save_figure_png_300_dpi(tmp_path: Path) -> None:
    (path,) = save_figure(_simple_figure(), tmp_path / "fig", formats=("png",))
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        assert img.info["dpi"] == pytest.approx((300, 300), abs=0.1)
        assert img.size[0] == pytest.approx(88 / 25.4 * 300, abs=2)
        assert "Software" not in img.info


def test_save_figure_refuses_inputs(tmp_path: Path) -> None:
    source = tmp_path / "data.png"
    source.write_bytes(b"input")
    with pytest.raises(FileExistsError):
        save_figure(_simple_figure(), tmp_path / "data", formats=("png",), inputs=[source])
    assert source.read_bytes() == b"input"


# --------------------------------------------------------------------------- dataset figures


def test_emotion_counts_plot(tables) -> None:
    expr, _ = tables
    ax = vd.plot_emotion_counts(expr)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Dis", "Fea", "Sur", "Hap", "Ang", "Sad", "Con"]
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == len(expr)
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == 14  # a count on every bar
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].startswith("ME (n = ") and legend[1].startswith("MaE (n = ")
    plt.close(ax.figure)


def test_plots_draw_on_given_axes(tables) -> None:
    expr, report = tables
    fig, axes = new_figure("double", 60, 1, 3)
    assert vd.plot_emotion_counts(expr, ax=axes[0]) is axes[0]
    assert vd.plot_subject_counts(expr, ax=axes[1]) is axes[1]
    assert vd.plot_quality(report, ax=axes[2]) is axes[2]
    assert len(fig.axes) == 3
    plt.close(fig)


def test_durations_draw_rule_boundaries(tables) -> None:
    expr, _ = tables
    rule = MeRule(max_duration_s=0.45, max_onset_to_apex_s=0.2)
    axes = vd.plot_durations(expr, rule)
    xs = []
    for ax in axes:
        vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        xs.append(vlines[0].get_xdata()[0])
        assert ax.get_xscale() == "log"
        assert "(ms)" in ax.get_xlabel()
    assert xs == pytest.approx([450.0, 200.0])
    plt.close(axes[0].figure)


def test_composite_pies_and_au_counts(tables) -> None:
    expr, _ = tables
    axes = vd.plot_composite_pies(expr)
    assert [ax.get_title().split(" ")[0] for ax in axes] == ["ME", "MaE"]
    plt.close(axes[0].figure)
    ax = vd.plot_au_counts(expr, kind="ME", descriptions=True)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "AU4 Brow Lowerer" in labels
    # grouped by region: upper AUs first
    assert labels.index("AU4 Brow Lowerer") < labels.index("AU7 Lid Tightener") < labels.index("AU14 Dimpler")
    plt.close(ax.figure)


def test_plots_handle_empty_tables(tables) -> None:
    expr, report = tables
    empty = expr.iloc[0:0]
    fig = vd.plot_dataset_overview(empty, report.iloc[0:0])
    assert len(fig.axes) >= 6
    plt.close(fig)


def test_overview_and_determinism(tables, tmp_path: Path) -> None:
    expr, report = tables
    fig = vd.plot_dataset_overview(expr, report, MeRule())
    assert len(fig.axes) == 8  # a, b (2 pies), c (2 histograms), d, e, f
    png, pdf = save_figure(fig, tmp_path / "a" / "overview", formats=("png", "pdf"))
    with Image.open(png) as img:
        img.verify()
    with Image.open(png) as img:
        assert img.size[0] / 300 * 25.4 == pytest.approx(180, abs=1)
    # PDF is the format that exposes layout noise (e.g. "-0" vs "0"): same figure, same bytes
    (pdf2,) = save_figure(vd.plot_dataset_overview(expr, report, MeRule()), tmp_path / "b" / "overview", formats=("pdf",))
    assert _digest(pdf) == _digest(pdf2)


def test_overview_without_report(tables) -> None:
    expr, _ = tables
    fig = vd.plot_dataset_overview(expr)
    assert len(fig.axes) == 7
    plt.close(fig)
