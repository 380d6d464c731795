"""Electrode positions of the Neuroscan Quik-Cap 64 used in MMME."""

from __future__ import annotations

import warnings

import mne
import numpy as np

from .constants import EEG_CHANNELS

#: Quik-Cap sites that are not in MNE's ``standard_1005`` template, and the
#: template site whose position stands in for them. The cerebellar electrodes
#: CB1/CB2 sit one 10 % step below O1/O2 at the level of the inion, which is
#: the 10-05 position I1/I2 (Oostenveld & Praamstra 2001 naming).
POSITION_SURROGATES: dict[str, str] = {"CB1": "I1", "CB2": "I2"}


def _template_positions() -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # name deprecated in MNE 1.13
        template = mne.channels.make_standard_montage("standard_1005")
    return {name.upper(): pos for name, pos in template.get_positions()["ch_pos"].items()}


#: BIDS name of the template's coordinate system. MNE's ``standard_1005``
#: (``colin27_1005`` since MNE 1.13) is FieldTrip's ``standard_1005.elc``:
#: 10-05 positions fitted on the Colin27 head, in MNI coordinates, which
#: MNE takes unchanged as its head frame. The BIDS conversion declares the
#: positions in this space (they are a template, not digitised).
TEMPLATE_SPACE = "MNIColin27"


def quikcap64_positions() -> dict[str, np.ndarray]:
    """Return head-frame positions (m) of the 64 Quik-Cap electrodes.

    Returns
    -------
    positions : dict of str to ndarray, shape (3,)
        Channel name (Quik-Cap spelling, e.g. ``"FPZ"``) to position in
        metres, in the ``standard_1005`` template's frame.
    """
    template = _template_positions()
    out: dict[str, np.ndarray] = {}
    for name in EEG_CHANNELS:
        key = POSITION_SURROGATES.get(name, name).upper()
        out[name] = np.asarray(template[key], dtype=float).copy()
    return out


def make_quikcap64_montage() -> mne.channels.DigMontage:
    """Make the Quik-Cap 64 montage, CB1/CB2 included.

    Returns
    -------
    montage : mne.channels.DigMontage
        Montage with the 64 channel names in Quik-Cap spelling (``FP1``,
        ``FZ``, ``CB1`` ...), fiducials from the ``standard_1005`` template.

    Notes
    -----
    CB1 and CB2 are not in ``standard_1005``; they get the positions of I1
    and I2 (see :data:`POSITION_SURROGATES`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        template = mne.channels.make_standard_montage("standard_1005")
    pos = template.get_positions()
    return mne.channels.make_dig_montage(
        ch_pos=quikcap64_positions(),
        nasion=pos["nasion"],
        lpa=pos["lpa"],
        rpa=pos["rpa"],
        coord_frame="head",
    )
