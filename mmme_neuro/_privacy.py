"""Keeping participant names out of logs, messages and outputs.

Raw MMME files are named ``<name>_<yyyymmdd>.<ext>``; every library that
reads them (MNE, mne-bids, our readers) may log the file name, and headers
store names too (EEGLAB ``setname``/``filename``/``datfile``/``subject``).
A :class:`Redactor` rewrites text so that names appear as pseudonyms and the
raw directory as ``<raw>``; while a session is processed, :func:`redact_names`
applies one to every log record.

What is replaced, and what is not:

* **names** (and file stems holding names) are replaced as whole tokens,
  case-insensitively: a name must not be preceded or followed by a letter or
  a digit (``_``, ``-``, ``.``, ``/``, spaces ... are boundaries), so the name
  ``li`` hides ``Li``, ``li_20230718`` and ``/raw/li.set`` but leaves
  ``EEGLAB file`` and ``linear`` alone;
* **directories** (the raw directory) are replaced as whole path prefixes:
  the path must start where a path can start and end at a separator or where
  a path ends. A directory given as one bare component (``s``, ``data``) is
  replaced only where it is followed by a separator (``s/sub-01.set``), never
  as a word (``69 channels``, ``EEGLAB data file``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

__all__ = ["Redactor", "as_redactor", "redact_names"]

_lock = threading.RLock()

#: Not a letter or a digit on either side: the token boundaries of names.
_NAME_BEFORE = r"(?<![^\W_])"
_NAME_AFTER = r"(?![^\W_])"
#: A path starts where no path character precedes it ...
_PATH_BEFORE = r"(?<![\w.~/\\-])"
#: ... and ends where no path character follows (a final '.' ends a sentence, not the path).
_PATH_AFTER = r"(?![\w~-]|\.\w)"
_SEPARATORS = ("/", "\\")


def _path_variants(path: str | os.PathLike) -> set[str]:
    """The spellings of a directory that may appear in messages: as given, absolute, resolved."""
    text = os.fspath(path)
    out = set()
    for variant in (text, os.path.abspath(text), os.path.realpath(text)):
        variant = os.path.normpath(variant)
        if variant not in ("", ".", "..", os.sep) and Path(variant).anchor != variant:
            out.add(variant)
    return out


class Redactor:
    """Replace names (whole tokens) and directories (whole path prefixes) in text.

    Parameters
    ----------
    names : mapping of str to str
        Text to hide (names, file stems holding names) -> what to show
        (pseudonyms). Matched as whole tokens (no letter or digit on either
        side), case-insensitively; longer keys win over shorter ones, so a
        stem ``name_20230718`` is replaced before the bare ``name``. Empty
        keys and keys of one character are ignored (too likely to be
        ordinary text).
    paths : mapping of path-like to str
        Directories to hide -> what to show (``"<raw>"``). Each is matched as
        given, absolute and resolved, only as a whole path prefix (see the
        module docstring).

    Examples
    --------
    >>> r = Redactor({"li": "sub-01"}, {"s": "<raw>"})
    >>> r("s/li_20230718.set: 69 channels, EEGLAB data file of Li")
    '<raw>/sub-01_20230718.set: 69 channels, EEGLAB data file of sub-01'
    """

    def __init__(self, names: Mapping[str, str] | None = None,
                 paths: Mapping[str | os.PathLike, str] | None = None) -> None:  # fmt: skip
        self._names: dict[str, str] = {}
        for hide, show in (names or {}).items():
            hide = str(hide).strip()
            if len(hide) > 1 and hide.casefold() not in self._names:
                self._names[hide.casefold()] = str(show)
        self._paths: dict[str, str] = {}
        for path, show in (paths or {}).items():
            for variant in _path_variants(path):
                self._paths.setdefault(variant, str(show))
        self._path_order: list[str] = []
        self._name_re = self._compile_names()
        self._path_re = self._compile_paths()

    @property
    def names(self) -> dict[str, str]:
        """Hidden names (case-folded) -> pseudonyms."""
        return dict(self._names)

    @property
    def paths(self) -> dict[str, str]:
        """Hidden directory spellings -> replacement."""
        return dict(self._paths)

    def merged(self, other: Redactor | Mapping[str, str] | None) -> Redactor:
        """A redactor hiding what this one and ``other`` hide (this one wins on conflicts)."""
        other = as_redactor(other)
        return Redactor({**other._names, **self._names}, {**other._paths, **self._paths})

    def _compile_names(self) -> re.Pattern[str] | None:
        if not self._names:
            return None
        keys = sorted(self._names, key=lambda k: (-len(k), k))
        alternation = "|".join(re.escape(k) for k in keys)
        return re.compile(f"{_NAME_BEFORE}(?:{alternation}){_NAME_AFTER}", re.IGNORECASE)

    def _compile_paths(self) -> re.Pattern[str] | None:
        if not self._paths:
            return None
        self._path_order = sorted(self._paths, key=lambda k: (-len(k), k))
        parts = []
        for i, variant in enumerate(self._path_order):
            ending = _PATH_AFTER if any(s in variant for s in _SEPARATORS) else r"(?=[/\\])"
            parts.append(f"(?P<p{i}>{_PATH_BEFORE}{re.escape(variant)}{ending})")
        return re.compile("|".join(parts))

    def __call__(self, text: str) -> str:
        """``text`` with every hidden directory and name replaced."""
        if not isinstance(text, str) or not text:
            return text
        if self._path_re is not None:
            text = self._path_re.sub(lambda m: self._paths[self._path_order[int(m.lastgroup[1:])]], text)
        if self._name_re is not None:
            text = self._name_re.sub(lambda m: self._names.get(m.group(0).casefold(), "<name>"), text)
        return text

    def __bool__(self) -> bool:
        return bool(self._names or self._paths)

    def __repr__(self) -> str:  # never shows the names themselves
        return f"Redactor({len(self._names)} names, {len(self._paths)} directory spellings)"


def as_redactor(replacements: Redactor | Mapping[str, str] | Iterable[tuple[str, str]] | None) -> Redactor:
    """``replacements`` as a :class:`Redactor` (a mapping gives names only)."""
    if isinstance(replacements, Redactor):
        return replacements
    return Redactor(dict(replacements or {}))


@contextlib.contextmanager
def redact_names(replacements: Redactor | Mapping[str, str]) -> Iterator[None]:
    """Rewrite every log record created inside the block with a :class:`Redactor`.

    Parameters
    ----------
    replacements : Redactor | mapping of str to str
        The redactor, or names to hide (file stems, names) -> what to show
        (pseudonyms), replaced as whole tokens, case-insensitively, longer
        keys first (so a stem ``name_20230718`` wins over the bare ``name``).
    """
    redactor = as_redactor(replacements)
    with _lock:
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs):  # noqa: ANN002, ANN003
            record = previous(*args, **kwargs)
            try:
                msg = record.getMessage()
            except Exception:  # noqa: BLE001 - a malformed record is left to logging itself
                return record
            record.msg, record.args = redactor(msg), ()
            return record

        logging.setLogRecordFactory(factory)
        try:
            yield
        finally:
            logging.setLogRecordFactory(previous)
