"""Figure regeneration check: unchanged, changed, missing and uncommitted figures are told apart."""

from __future__ import annotations

import shutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mmme_neuro.cli import main  # noqa: E402
from mmme_neuro.viz.compare import compare_figure_dirs, format_report  # noqa: E402


def _figure(path, shift: float = 0.0, size=(3, 2)) -> None:
    fig, ax = plt.subplots(figsize=size)
    x = np.linspace(0, 1, 50)
    ax.plot(x, np.sin(6 * x) + shift, color="C0")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60)
    plt.close(fig)


def test_compare_figure_dirs(tmp_path, capsys):
    ref, new = tmp_path / "figures", tmp_path / "regen"
    for name in ("a.png", "b.png", "c.png", "gone.png"):
        _figure(ref / "erp" / name)
    (new / "erp").mkdir(parents=True)
    shutil.copy(ref / "erp" / "a.png", new / "erp" / "a.png")
    _figure(new / "erp" / "b.png", shift=0.5)  # a moved line
    _figure(new / "erp" / "c.png", size=(4, 2))  # another size
    _figure(new / "erp" / "extra.png")  # produced, not committed
    table = compare_figure_dirs(ref, new)
    status = dict(zip(table["figure"], table["status"], strict=True))
    assert status == {"erp/a.png": "same", "erp/b.png": "changed", "erp/c.png": "size_changed",
                      "erp/extra.png": "new", "erp/gone.png": "missing"}  # fmt: skip
    assert table.set_index("figure").loc["erp/b.png", "rms"] > 2.0
    report = format_report(table)
    assert report.startswith("# Figure check: 1 of 5") and "no longer produced" in report and "commit it on purpose" in report
    # a tolerance large enough accepts the moved line; difference images of a check are not figures
    loose = compare_figure_dirs(ref, new, tol=255.0, analyses=["erp"])
    assert loose.set_index("figure").loc["erp/b.png", "status"] == "same"
    assert not any(f.endswith("-failed-diff.png") for f in loose["figure"])
    # command line: exit 1 on a difference, 0 when equal, 2 on a bad root
    assert main(["compare-figures", str(ref), str(new)]) == 1
    assert "erp/gone.png" in capsys.readouterr().out
    same = tmp_path / "same"
    shutil.copytree(ref, same)
    assert main(["compare-figures", str(ref), str(same)]) == 0
    assert main(["compare-figures", str(ref), str(tmp_path / "nowhere")]) == 2
    with pytest.raises(ValueError, match="tol"):
        compare_figure_dirs(ref, same, tol=-1)


def test_committed_figures_compare_equal_to_themselves():
    from pathlib import Path

    figures = Path(__file__).resolve().parents[1] / "figures"
    table = compare_figure_dirs(figures, figures)
    assert len(table) >= 20 and table["ok"].all()
    assert {f.split("/")[0] for f in table["figure"]} >= {"erp_me_vs_mae", "tfr_me_vs_mae", "network_nodal_efficiency",
                                                          "physio_concordance", "decoding_multimodal"}  # fmt: skip
