"""Sphinx configuration of the mmme-neuro documentation site.

Build with ``make docs`` (``python -m sphinx -W --keep-going -b html docs docs/_build/html``);
``tests/test_docs.py`` builds it with warnings as errors. Nothing is downloaded at build
time: no intersphinx inventory; the notebooks are not executed here: ``tests/test_notebooks.py``
executes them on the ``ci`` study and keeps the executed copies in ``build/executed-notebooks``,
which are rendered with their outputs while their cells are the notebooks' (``make docs`` runs
that test first).
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import sys
from pathlib import Path

from sphinx.util import logging

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
if str(ROOT) not in sys.path:  # the analysis scripts (`analyses`) from this work tree
    sys.path.insert(0, str(ROOT))

import mmme_neuro  # noqa: E402

# -- Project -----------------------------------------------------------------

project = "mmme-neuro"
author = "mmme-neuro developers"
copyright = "mmme-neuro developers"
release = mmme_neuro.__version__
version = release

# -- General -----------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_nb",  # brings myst_parser: Markdown pages and Jupyter notebooks
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", ".DS_Store"]
root_doc = "index"
default_role = "py:obj"  # `name` in a docstring links to the object when it exists

# -- autodoc / autosummary / numpydoc ----------------------------------------

autosummary_generate = True  # stubs go to docs/generated/ (gitignored)
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # types are in the numpydoc Parameters/Returns sections
autodoc_preserve_defaults = True  # show `cfg=None`, not the repr of a default object
numpydoc_show_class_members = False  # members are documented by autodoc, not listed twice
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Cross-references to the libraries the toolkit builds on. Their inventories come from the web, which CI
# and the tests do not reach: they are fetched only when MMME_DOCS_INTERSPHINX=1 (`make docs-online`);
# otherwise those references stay plain text.
_INVENTORIES: dict[str, tuple[str, str | None]] = {
    "python": ("https://docs.python.org/3", None),
    "mne": ("https://mne.tools/stable", None),
    "mne_bids": ("https://mne.tools/mne-bids/stable", None),
    "mne_connectivity": ("https://mne.tools/mne-connectivity/stable", None),
    "xarray": ("https://docs.xarray.dev/en/stable", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "scipy": ("https://docs.scipy.org/doc/scipy", None),
    "pandas": ("https://pandas.pydata.org/docs", None),
    "statsmodels": ("https://www.statsmodels.org/stable", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
    "nilearn": ("https://nilearn.github.io/stable", None),
}
intersphinx_mapping: dict[str, tuple[str, str | None]] = (
    _INVENTORIES if os.environ.get("MMME_DOCS_INTERSPHINX") == "1" else {}
)

# -- MyST / MyST-NB ----------------------------------------------------------

myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # executed by tests/test_notebooks.py; their executed copies are rendered
nb_merge_streams = True

# -- HTML --------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"mmme-neuro {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {"index": []}
html_show_sourcelink = False
html_copy_source = False

# -- Tutorials: the notebooks of ../notebooks, copied into the source tree ----

logger = logging.getLogger("mmme_neuro.docs")
NOTEBOOKS = ROOT / "notebooks"
TUTORIALS = DOCS / "tutorials" / "_nb"  # gitignored
#: Executed copies written by tests/test_notebooks.py (``make docs`` runs it first): rendered with their outputs.
EXECUTED = ROOT / "build" / "executed-notebooks"


def _cell_sources(path: Path) -> list[tuple[str, str]]:
    import json

    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    return [(c["cell_type"], "".join(c["source"]).strip()) for c in cells]


def _copy_notebooks() -> None:
    """Mirror ``notebooks/*.ipynb`` into ``docs/tutorials/_nb/`` (unchanged files untouched).

    A notebook's executed copy (``build/executed-notebooks``) is used instead when its cells are the
    notebook's: the page then shows the outputs and figures of a run on the ``ci`` study. A stale
    execution (the notebook changed since) is never shown.
    """
    TUTORIALS.mkdir(parents=True, exist_ok=True)
    wanted = {p.name: p for p in sorted(NOTEBOOKS.glob("*.ipynb"))}
    for stale in TUTORIALS.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name, src in wanted.items():
        done = EXECUTED / name
        if done.is_file() and _cell_sources(done) == _cell_sources(src):
            src = done
        else:
            logger.info("tutorial %s rendered without outputs (run `make docs`, which executes it first)", name)
        dst = TUTORIALS / name
        if not (dst.is_file() and filecmp.cmp(src, dst, shallow=False)):
            tmp = dst.with_name(f".{name}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)


_copy_notebooks()

# -- Small build hooks ---------------------------------------------------------

_PLACEHOLDER = re.compile(r"^<([a-z_]+)>$")
_HTML_TAGS = frozenset("a abbr b br code del details div em hr i img ins kbd li mark ol p pre s small span strong "
                       "sub summary sup table td th tr u ul".split())  # fmt: skip
_SKLEARN_REQUEST = re.compile(r"^set_\w+_request$")


def _skip_numpydoc_for_modules(app, what, name, obj, options, lines):
    """Module docstrings are narrative reST (their own sections: "Events", "Edge rule" ...).

    numpydoc's section model is for callables and classes; applied to a module it drops every
    section it does not know. Mark module docstrings as already processed so numpydoc leaves
    them to autodoc, which renders them as written.
    """
    if what == "module":
        from numpydoc.numpydoc import DEDUPLICATION_TAG

        lines += ["..", DEDUPLICATION_TAG]


def _report_unknown_sections(app, what, name, obj, options, lines):
    """Make a docstring section numpydoc does not know a build warning.

    numpydoc drops such a section (its text would be missing from the page) and only says so
    with a Python warning, which ``sphinx-build -W`` does not see.
    """
    if what == "module" or not lines:
        return
    import warnings

    from numpydoc.docscrape import NumpyDocString

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            NumpyDocString("\n".join(lines))
        except Exception as err:  # numpydoc itself reports it with its location
            logger.debug("numpydoc pre-check of %s failed: %s", name, err)
    for w in caught:
        if "Unknown section" in str(w.message):
            logger.warning(
                "%s: %s (numpydoc drops it)", name, str(w.message).split(" in the docstring")[0]
            )


def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_*_request`` methods of our estimators."""
    if _SKLEARN_REQUEST.match(name):
        return True
    return None


def _placeholders_as_text(app, doctree):
    """Show ``<name>`` placeholders of Markdown pages (``<subject>_<yyyymmdd>``) as text.

    MyST passes them through as raw HTML, which a browser hides as unknown tags; real HTML
    tags (``<b>``, ``<br>`` ...) are left alone.
    """
    from docutils import nodes

    for raw in list(doctree.findall(nodes.raw)):
        m = _PLACEHOLDER.match(raw.astext())
        if m and "html" in raw.get("format", "").split() and m.group(1) not in _HTML_TAGS:
            raw.replace_self(nodes.Text(raw.astext()))


def setup(app):
    app.connect("autodoc-process-docstring", _skip_numpydoc_for_modules, priority=100)
    app.connect("autodoc-process-docstring", _report_unknown_sections, priority=100)
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("doctree-read", _placeholders_as_text)
