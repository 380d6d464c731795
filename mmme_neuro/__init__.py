"""mmme-neuro: neural mechanisms of facial micro-expressions in multimodal recordings.

The package layout follows the data flow, one direction only::

    io (coding file, EEG, physiology) -> sync -> bids -> epochs -> erp/tfr/
    connectivity/network/physio -> stats -> viz

``simulate`` writes synthetic MMME-like studies in the raw formats, so the
whole flow can run without the (application-only) MMME data.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mmme-neuro")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
