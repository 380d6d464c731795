"""The documentation site builds with warnings as errors, and its key pages exist.

A malformed docstring (a broken numpydoc section, a reST table, an undefined substitution
such as ``|t|``) fails here, not on a reader's screen. The build runs in a subprocess (Sphinx
changes logging and warning filters) into ``tmp_path``; nothing is downloaded and the
notebooks are not executed (``tests/test_notebooks.py`` does that).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _public_modules(package: str) -> list[str]:
    """Dotted names of the public leaf modules of ``package`` (from the file tree, no import)."""
    root = REPO / package
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if path.name == "__init__.py" or any(p.startswith("_") for p in parts):
            continue
        names.append(".".join(parts))
    return names


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    html = out / "html"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(out / "doctrees"), str(DOCS), str(html)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"sphinx-build -W failed ({proc.returncode}):\n{proc.stderr[-20000:]}"
    )
    return html


def test_key_pages_exist(site):
    for page in ("index.html", "install.html", "statistics.html", "reliability.html", "api.html",
                 "data-model.html", "configuration.html", "summary-json.html", "benchmarks.html",
                 "tutorials/index.html", "tutorials/_nb/01_quickstart.html", "tutorials/_nb/02_decoding.html",
                 "analyses/index.html", "analyses/erp_me_vs_mae.html", "analyses/decoding_multimodal.html",
                 "generated/mmme_neuro.erp.html", "generated/mmme_neuro.stats.html"):  # fmt: skip
        assert (site / page).is_file(), page
    erp = (site / "generated" / "mmme_neuro.erp.html").read_text(encoding="utf-8")
    assert 'id="mmme_neuro.erp.compute_evoked"' in erp
    assert "Quickstart" in (site / "tutorials" / "_nb" / "01_quickstart.html").read_text(
        encoding="utf-8"
    )


def test_every_public_module_has_an_api_page(site):
    missing = [m for m in _public_modules("mmme_neuro") + _public_modules("analyses")
               if not (site / "generated" / f"{m}.html").is_file()]  # fmt: skip
    assert not missing, f"add these modules to docs/api.md: {missing}"


def test_module_docs_keep_their_own_sections(site):
    # numpydoc would drop the unknown sections of module docstrings; docs/conf.py keeps them
    bids = (site / "generated" / "mmme_neuro.bids.html").read_text(encoding="utf-8")
    assert "Resumability and atomicity" in bids
    # Markdown placeholders such as <subject> are shown, not swallowed as HTML tags
    conf = (site / "configuration.html").read_text(encoding="utf-8")
    assert "&lt;subject&gt;_&lt;yyyymmdd&gt;" in conf
