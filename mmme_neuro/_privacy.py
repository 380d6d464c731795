"""Keeping participant names out of logs.

Raw MMME files are named ``<name>_<yyyymmdd>.<ext>``; every library that
reads them (MNE, mne-bids, our readers) may log the file name. While a
session is processed, :func:`redact_names` rewrites every log record so that
names appear as pseudonyms.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping

_lock = threading.RLock()


@contextlib.contextmanager
def redact_names(replacements: Mapping[str, str]) -> Iterator[None]:
    """Replace each key by its value in every log record created inside the block.

    Parameters
    ----------
    replacements : mapping of str to str
        Text to hide (file stems, names) -> what to show (pseudonyms).
        Longer keys are replaced first, so a stem ``name_20230718`` wins over
        the bare ``name``.
    """
    pairs = sorted(((k, v) for k, v in replacements.items() if k), key=lambda kv: -len(kv[0]))
    with _lock:
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs):  # noqa: ANN002, ANN003
            record = previous(*args, **kwargs)
            try:
                msg = record.getMessage()
            except Exception:  # noqa: BLE001 - a malformed record is left to logging itself
                return record
            for hide, show in pairs:
                msg = msg.replace(hide, show)
            record.msg, record.args = msg, ()
            return record

        logging.setLogRecordFactory(factory)
        try:
            yield
        finally:
            logging.setLogRecordFactory(previous)
