"""MAT-file writing with reproducible bytes."""

from __future__ import annotations

import os
from typing import Any

from scipy.io import savemat

_MAT_HEADER_BYTES = 116


def savemat_reproducible(path: str | os.PathLike, mdict: dict[str, Any], *, description: str, **kwargs: Any) -> None:
    """``scipy.io.savemat`` (v5) whose 116-byte header text is ``description``.

    scipy writes "Created on: <current time>" into the header, so two runs
    would differ; a fixed description makes the same data give the same bytes.
    """
    with open(path, "wb") as fh:
        savemat(fh, mdict, format="5", **kwargs)
        fh.seek(0)
        fh.write(description.ljust(_MAT_HEADER_BYTES)[:_MAT_HEADER_BYTES].encode("ascii"))
