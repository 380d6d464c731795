"""Small shared helpers: atomic writes, file hashes, argument validation."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Return the SHA-256 hex digest of a file, read in chunks.

    Parameters
    ----------
    path : path-like
        File to hash.
    chunk_size : int
        Bytes read at a time.

    Returns
    -------
    digest : str
        Hexadecimal SHA-256 digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def stat_key(path: str | os.PathLike) -> list[int]:
    """``[size, mtime_ns]`` of a file: when both match a record, its recorded hash is reused."""
    st = Path(path).stat()
    return [int(st.st_size), int(st.st_mtime_ns)]


def check_not_input(path: Path, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse to write to ``path`` if it is one of the ``inputs``.

    Raises
    ------
    FileExistsError
        If ``path`` resolves to one of ``inputs``.
    """
    target = Path(path).resolve()
    for inp in inputs:
        if Path(inp).resolve() == target:
            raise FileExistsError(
                f"Refusing to write {target}: it is an input file of this analysis. "
                "Inputs are never modified; choose another output path."
            )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (), keep_name: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` on success.

    The temporary file lives in the same directory, so the final
    :func:`os.replace` is atomic: readers see either the old file or the new
    one, never a half-written file. On error the temporary file is removed.

    Parameters
    ----------
    path : path-like
        Final destination.
    inputs : iterable of path-like
        Input files of the computation; writing onto one of them is refused.
    keep_name : bool
        End the temporary name with the final file name (``.tmp-XXXX-<name>``)
        instead of ``.tmp``: writers that check names or extensions (MNE's
        ``_epo.fif``, ``.h5``, ``.html``) accept it.

    Yields
    ------
    tmp : pathlib.Path
        Where the caller writes.
    """
    path = Path(path)
    check_not_input(path, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep_name:
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)
    else:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; give the result the permissions of an ordinary new file
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str, **kwargs: Any) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_path`."""
    with atomic_path(path, **kwargs) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, **kwargs: Any) -> Path:
    """Write ``data`` to ``path`` atomically; see :func:`atomic_path`."""
    with atomic_path(path, **kwargs) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def time_to_sample(t_s, sfreq: float):
    """Sample index of time(s) ``t_s`` (s) at ``sfreq`` (Hz): nearest sample, halves rounded up.

    The product is first rounded to 1e-6 samples, so that times on a decimal
    grid (e.g. 10-ms coded times at 250 Hz, exactly 2.5 samples) round the
    same way whatever floating-point path produced them. Used by the
    synthetic ground truth and by ingestion alike.
    """
    import numpy as np

    x = np.floor(np.round(np.asarray(t_s, dtype=float) * float(sfreq), 6) + 0.5).astype(np.int64)
    return x if x.ndim else int(x)


def check_option(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Raise a ValueError naming ``name`` if ``value`` is not in ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"Invalid value for {name!r}: {value!r}. Expected one of {allowed}.")
    return value


def n_threads(n_jobs: Any, limit: int | None = None) -> int:
    """Threads for an ``n_jobs`` argument: a positive int, or -1 for all cores; at most ``limit``.

    Raises
    ------
    ValueError
        If ``n_jobs`` is not a positive int or -1 (booleans are refused).
    """
    if isinstance(n_jobs, bool | np.bool_) or not isinstance(n_jobs, int | np.integer) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}")
    k = (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)
    return k if limit is None else max(1, min(k, int(limit)))
