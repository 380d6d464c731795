"""Study-level consistency of a BIDS conversion: the lock and the study manifest.

A BIDS study written by :func:`mmme_neuro.bids.convert_study` is made of many
files written one subject at a time. Two things keep it whole:

The lock
    ``BIDS_ROOT/.mmme-neuro.lock`` is held (``fcntl.flock``, exclusive) for the
    whole conversion and records who holds it (pid, host, start time,
    command). A second conversion of the same root fails at once
    (:class:`StudyLockError`: "another conversion (pid N, started ...) is
    running on ROOT"), or waits if asked to (:func:`study_lock`). A process
    that dies loses its lock with it (the kernel releases it); the file it
    leaves is a *stale* lock, taken over with a warning by the next
    conversion on the same host. A lock file of another host whose lock is
    not held is not taken over (its file system may not share locks between
    hosts): the error says to remove it if no conversion runs there. Where
    ``fcntl`` does not exist (Windows) the file is created with
    ``O_CREAT | O_EXCL`` and a lock of a dead pid on the same host is taken
    over.

The manifest
    ``BIDS_ROOT/derivatives/mmme-neuro/study_manifest.json`` (:data:`MANIFEST`).
    A conversion first marks it ``in_progress`` (pid, host, start time),
    before it changes anything else; only a conversion that reaches its end
    writes it ``complete`` (atomically, last, after ``conversion_summary.json``):
    the coding file's SHA-256, the hash of the conversion settings, the
    SHA-256 of ``conversion_summary.json`` and ``exclusions.tsv``, the counts
    and accounting of the conversion, and per converted subject the SHA-256
    of its conversion record (``conversion/sub-XX.json``) and of its input
    files; failed subjects with their reasons; subjects found in the root
    but not converted (``stale``). It holds no time and no absolute path, so
    a re-run with unchanged inputs rewrites it byte for byte.
    :func:`check_study` (called by :func:`mmme_neuro.dataset.prepare_bids`
    and ``mmme-neuro run`` before anything is analysed) refuses a study whose
    manifest is missing, in progress, or does not match the subjects present,
    their records or the conversion summary, with the reason.

A conversion killed half-way (even between two subjects of a re-conversion
after the coding file changed) therefore leaves a study that is refused until
``mmme-neuro convert`` is re-run to its end; it never passes for a finished one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._utils import atomic_write_text, sha256_file

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DERIVATIVES",
    "LOCK_FILE",
    "MANIFEST",
    "StudyError",
    "StudyLockError",
    "StudyStateError",
    "check_study",
    "lock_holder",
    "mark_in_progress",
    "study_lock",
    "write_manifest",
]

logger = logging.getLogger(__name__)

#: mmme-neuro's derivatives folder of a BIDS study (relative to its root).
DERIVATIVES = Path("derivatives") / "mmme-neuro"
#: The lock file of a conversion (relative to the BIDS root).
LOCK_FILE = ".mmme-neuro.lock"
#: The study manifest (relative to the BIDS root).
MANIFEST = DERIVATIVES / "study_manifest.json"
_MANIFEST_VERSION = 1
_RERUN = "re-run mmme-neuro convert"


class StudyError(RuntimeError):
    """A BIDS study cannot be converted or analysed now (locked, or its conversion did not finish)."""


class StudyLockError(StudyError):
    """Another conversion holds the study's lock; the message names its pid, start time and root."""


class StudyStateError(StudyError):
    """The study's conversion did not finish or does not match its manifest; the message says why."""


# ----------------------------------------------------------------------------- lock


def _holder_info(command: str) -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": command, "version": __version__}  # fmt: skip


def _parse_holder(text: str) -> dict[str, Any] | None:
    try:
        info = json.loads(text)
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def lock_holder(bids_root: str | os.PathLike) -> dict[str, Any] | None:
    """What the lock file of ``bids_root`` records (``pid``, ``host``, ``started``, ``command``), None if there is none.

    The file of a finished conversion is removed; one that remains was left
    by a running conversion or by one that died (see :func:`study_lock`).
    """
    try:
        return _parse_holder((Path(bids_root) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def _describe(holder: Mapping[str, Any] | None) -> str:
    if not holder:
        return "pid unknown"
    host = "" if holder.get("host") == socket.gethostname() else f" on host {holder.get('host')}"
    return f"pid {holder.get('pid')}{host}, started {holder.get('started')}"


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    except (TypeError, ValueError):
        return False
    return True


def _read_fd(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while block := os.read(fd, 65536):
        chunks.append(block)
    return _parse_holder(b"".join(chunks).decode("utf-8", errors="replace"))


def _write_fd(fd: int, info: Mapping[str, Any]) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(dict(info), indent=1, sort_keys=True) + "\n").encode())
    os.fsync(fd)


def _busy(root: Path, holder: Mapping[str, Any] | None) -> StudyLockError:
    return StudyLockError(f"another conversion ({_describe(holder)}) is running on {root}; "
                          "wait for it to finish (two conversions of one BIDS root would corrupt it)")  # fmt: skip


def _acquire_flock(root: Path, path: Path, info: Mapping[str, Any], deadline: float | None) -> int:
    """Open and lock ``path``; return the descriptor (see :func:`study_lock`)."""
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = None
            for _ in range(20):  # the holder writes its record right after locking
                if (holder := _read_fd(fd)) is not None:
                    break
                time.sleep(0.05)
            os.close(fd)
            if deadline is not None and time.monotonic() >= deadline:
                raise _busy(root, holder) from None
            if not waited:
                logger.warning("waiting for the conversion of %s (%s) to finish", root, _describe(holder))
                waited = True
            time.sleep(0.5)
            continue
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # a file system without flock
                logger.info("%s: no file locks on this file system (%s); exclusive creation instead", root, err)
                return _acquire_excl(root, path, info, deadline, reuse_empty=True)
            raise
        except BaseException:
            os.close(fd)
            raise
        try:
            if not os.path.samestat(os.fstat(fd), os.stat(path)):  # removed by its holder meanwhile
                os.close(fd)
                continue
        except FileNotFoundError:
            os.close(fd)
            continue
        try:
            left = _read_fd(fd)
            if left:
                if left.get("host") != socket.gethostname():
                    raise StudyLockError(
                        f"{path} was left by a conversion on host {left.get('host')} ({_describe(left)}); if no "
                        f"conversion of {root} is running there, remove that file and {_RERUN}"
                    )
                logger.warning("%s: taking over the stale lock of a conversion that no longer runs (%s)",
                               root, _describe(left))  # fmt: skip
            _write_fd(fd, info)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _acquire_excl(root: Path, path: Path, info: Mapping[str, Any], deadline: float | None,
                  reuse_empty: bool = False) -> int:  # fmt: skip
    """Without file locks: create ``path`` exclusively; take over a lock of a dead pid on this host.

    ``reuse_empty``: an empty file is the one just created by the failed attempt to lock it.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = lock_holder(root)
            if reuse_empty and holder is None and path.is_file() and path.stat().st_size == 0:
                path.unlink(missing_ok=True)
                reuse_empty = False
                continue
            if holder and holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
                logger.warning("%s: taking over the stale lock of a conversion that no longer runs (%s)",
                               root, _describe(holder))  # fmt: skip
                path.unlink(missing_ok=True)
                continue
            if deadline is not None and time.monotonic() >= deadline:
                raise _busy(root, holder) from None
            time.sleep(0.5)
            continue
        _write_fd(fd, info)
        return fd


@contextlib.contextmanager
def study_lock(bids_root: str | os.PathLike, *, command: str = "convert",
               timeout_s: float | None = 0.0) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Hold the exclusive lock of a BIDS root for the duration of the block.

    Parameters
    ----------
    bids_root : path-like
        An existing directory; the lock file is ``bids_root/.mmme-neuro.lock``.
    command : str
        Recorded in the lock file, for the messages of those who find it held.
    timeout_s : float | None
        How long to wait for another holder to finish (s); 0: fail at once,
        None: wait as long as it takes.

    Yields
    ------
    info : dict
        What the lock file records: ``pid``, ``host``, ``started`` (UTC),
        ``command``, ``version``.

    Raises
    ------
    StudyLockError
        If another process holds the lock (the message names its pid and
        start time and the root), or the file was left by another host.
    OSError
        If the lock file cannot be created (read-only root ...).
    """
    root = Path(bids_root)
    path = root / LOCK_FILE
    info = _holder_info(command)
    deadline = None if timeout_s is None else time.monotonic() + float(timeout_s)
    fd = (_acquire_flock if fcntl is not None else _acquire_excl)(root, path, info, deadline)
    try:
        yield info
    finally:
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                path.unlink()  # while still locked: whoever opened it meanwhile sees another file and retries
        except OSError as err:
            logger.warning("%s: cannot remove the lock file (%s); the next conversion takes it over", root, err)
        finally:
            os.close(fd)  # releases the flock


# ----------------------------------------------------------------------------- manifest


def _json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def mark_in_progress(bids_root: str | os.PathLike, holder: Mapping[str, Any]) -> Path:
    """Mark the study's manifest as being rewritten by the conversion ``holder`` (:func:`study_lock`'s info).

    Called before the conversion changes anything: until :func:`write_manifest`,
    :func:`check_study` refuses the study.
    """
    path = Path(bids_root) / MANIFEST
    return atomic_write_text(path, _json_text({
        "manifest_version": _MANIFEST_VERSION, "status": "in_progress",
        "conversion": {k: holder.get(k) for k in ("pid", "host", "started", "version")},
    }))  # fmt: skip


def _record_path(root: Path, subject: str) -> Path:
    return root / DERIVATIVES / "conversion" / f"{subject}.json"


def _sha_or_none(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def write_manifest(
    bids_root: str | os.PathLike,
    *,
    task: str,
    coding_sha256: str,
    settings_hash: str,
    counts: Mapping[str, Any],
    accounting_ok: bool,
    subjects: Sequence[Mapping[str, Any]],
    stale: Sequence[str] = (),
) -> Path:
    """Write the complete manifest of a finished conversion (atomically; the conversion's last write).

    Parameters
    ----------
    bids_root : path-like
        The BIDS root.
    task : str
        BIDS task label.
    coding_sha256 : str
        SHA-256 of the coding file converted.
    settings_hash : str
        :func:`mmme_neuro.bids.conversion_settings_hash` of the configuration.
    counts : mapping
        The conversion's counts (``conversion_summary.json``).
    accounting_ok : bool
        Whether ``coding rows == expressions in events.tsv + exclusions of scope 'all'``.
    subjects : sequence of mapping
        Per subject of the conversion: ``participant_id``, ``status``
        (``converted``, ``skipped`` or ``failed``) and ``reason``.
    stale : sequence of str
        Subjects in the root that are not among the converted ones.

    Returns
    -------
    path : pathlib.Path
    """
    root = Path(bids_root)
    deriv = root / DERIVATIVES
    entries: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for s in sorted(subjects, key=lambda s: s["participant_id"]):
        sub = str(s["participant_id"])
        if s["status"] == "failed":
            failed[sub] = str(s.get("reason") or "")
            continue
        record = _record_path(root, sub)
        rec = json.loads(record.read_text(encoding="utf-8"))
        entries[sub] = {
            "record_sha256": sha256_file(record),
            "inputs": [{k: i.get(k) for k in ("role", "ext", "sha256")} for i in rec.get("inputs", [])],
            "n_expressions": int(rec.get("summary", {}).get("n_expressions", 0)),
        }
    keys = ("coding_rows", "coding_excluded", "expressions_in_events", "me", "mae", "exclusions_all",
            "exclusions_physio", "subjects_in_bids", "subjects_failed")  # fmt: skip
    manifest = {
        "manifest_version": _MANIFEST_VERSION,
        "status": "complete",
        "generated_by": {"name": "mmme-neuro", "version": __version__},
        "task": task,
        "coding_sha256": coding_sha256,
        "conversion_settings": settings_hash,
        "conversion_summary_sha256": _sha_or_none(deriv / "conversion_summary.json"),
        "exclusions_sha256": _sha_or_none(deriv / "exclusions.tsv"),
        "counts": {k: counts[k] for k in keys if k in counts},
        "accounting_ok": bool(accounting_ok),
        "subjects": entries,
        "failed": failed,
        "stale": sorted(stale),
    }
    return atomic_write_text(root / MANIFEST, _json_text(manifest))


def check_study(bids_root: str | os.PathLike) -> dict[str, Any]:
    """Check that the conversion of a BIDS study finished and that the study still matches it.

    Cheap (reads the manifest, the conversion records and two small tables;
    never the recordings): called before anything is analysed.

    Parameters
    ----------
    bids_root : path-like
        The BIDS root.

    Returns
    -------
    manifest : dict
        The study manifest (see the module docstring).

    Raises
    ------
    StudyStateError
        If the manifest is missing or unreadable, the conversion is in
        progress or did not finish, a subject of the root is not in the
        manifest or the reverse, or a subject's conversion record, the
        conversion summary or the exclusion table differs from what the
        manifest recorded. The message names the root and says what to do.
    """
    root = Path(bids_root)
    path = root / MANIFEST
    if not root.is_dir():
        raise StudyStateError(f"{root} is not a directory")
    if not path.is_file():
        raise StudyStateError(
            f"{root} has no conversion manifest ({MANIFEST.as_posix()}): its conversion did not finish, or was "
            f"made before conversions wrote one, or by another tool; {_RERUN} on it"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        status = manifest["status"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StudyStateError(f"{path}: unreadable conversion manifest ({err}); {_RERUN}") from err
    if manifest.get("manifest_version") != _MANIFEST_VERSION:
        raise StudyStateError(f"{path}: manifest version {manifest.get('manifest_version')!r} is not "
                              f"{_MANIFEST_VERSION}; {_RERUN}")  # fmt: skip
    if status != "complete":
        holder = manifest.get("conversion") or {}
        live = lock_holder(root)
        if live and live.get("host") == socket.gethostname() and _pid_alive(live.get("pid")):
            raise StudyStateError(f"a conversion of {root} is running ({_describe(live)}); wait for it to finish")
        raise StudyStateError(f"the conversion of {root} did not finish ({_describe(holder)}): {_RERUN}")
    problems: list[str] = []
    present = sorted(p.name for p in root.glob("sub-*") if p.is_dir())
    listed = sorted(manifest.get("subjects", {}))
    extra = [s for s in present if s not in listed]
    missing = [s for s in listed if s not in present]
    if extra:
        problems.append(f"{', '.join(extra)} in the root but not in its last conversion (no recording in the raw "
                        "directory?): remove it from the root or restore its recording")
    if missing:
        problems.append(f"{', '.join(missing)} converted but missing from the root")
    for sub in listed:
        if sub in missing:
            continue
        record = _record_path(root, sub)
        if _sha_or_none(record) != manifest["subjects"][sub].get("record_sha256"):
            problems.append(f"{sub}: its conversion record {'is missing' if not record.is_file() else 'changed'}")
    for name, key in (("conversion_summary.json", "conversion_summary_sha256"), ("exclusions.tsv", "exclusions_sha256")):
        if _sha_or_none(root / DERIVATIVES / name) != manifest.get(key):
            problems.append(f"{DERIVATIVES.as_posix()}/{name} does not match the manifest")
    if problems:
        raise StudyStateError(f"the BIDS study {root} does not match its conversion manifest: "
                              f"{'; '.join(problems)}; {_RERUN}")  # fmt: skip
    if not manifest.get("accounting_ok", False):
        logger.warning("%s: the accounting of its conversion did not hold (coding rows != expressions + "
                       "exclusions; conversion_summary.json)", root)  # fmt: skip
    return manifest
