"""Synthetic MMME-like studies written in the real raw formats (the embedded default)."""
