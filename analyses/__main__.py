"""Run every analysis on the embedded default study: ``python -m analyses`` (what ``make figures`` does).

Analyses run in data-flow order; each writes to ``figures/<name>/``. Extra
arguments are passed to every script (e.g. ``--scale ci``).
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Sequence

#: Analysis scripts in data-flow order (module names under ``analyses``).
ANALYSES: tuple[str, ...] = (
    "dataset_summary",
    "erp_me_vs_mae",
    "tfr_me_vs_mae",
    "network_nodal_efficiency",
    "physio_concordance",  # after the ERP: its brain-body coupling reads the ERP trial table
    "decoding_multimodal",  # last: the per-epoch features of every first-level analysis
)

logger = logging.getLogger("analyses")


def main(argv: Sequence[str] | None = None) -> int:
    """Run all analyses; return the number of failures as exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    failures = 0
    for name in ANALYSES:
        module = importlib.import_module(f"analyses.{name}")
        t0 = time.perf_counter()
        code = module.main(argv)
        sys.stderr.write(f"analyses.{name}: {'ok' if code == 0 else f'FAILED ({code})'} in {time.perf_counter() - t0:.1f} s\n")
        failures += int(code != 0)
    return failures


if __name__ == "__main__":
    sys.exit(main())
