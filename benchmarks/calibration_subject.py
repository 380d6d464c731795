"""Null-calibration families of the subject-level tests: clusters, max-stat, FDR, NBS.

Every family here consumes what the group level of an analysis consumes:
one value per subject, condition and feature (channel x time ERPs, channel x
frequency x time ERSP, nodal efficiency per node, connectivity per edge,
global graph measures per band), and runs the library function the analysis
runs on it (:func:`mmme_neuro.stats.cluster_test`,
:func:`mmme_neuro.stats.node_permutation_test`,
:func:`mmme_neuro.netanalysis.network_based_statistic`,
:func:`mmme_neuro.netanalysis.global_contrasts`).

Data generation
---------------
Each data set has :data:`N_SUBJECTS` = 12 subjects (the default study's
size). Subject ``i`` has ``n_ME`` ~ U{3..9} and ``n_MaE`` ~ U{15..34}
epochs (the MMME range of counts), and its condition means are::

    ME_i  = offset_i + delta_i / 2 + sigma_i * noise_ME_i  / sqrt(n_ME)
    MaE_i = offset_i - delta_i / 2 + sigma_i * noise_MaE_i / sqrt(n_MaE)

* ``offset_i``: a subject-specific level shared by both conditions (SD
  :data:`OFFSET_SD` trial-noise SDs: people differ more from each other
  than their conditions do);
* ``noise``: the mean of the subject's trial noise, i.e. a unit-variance
  field divided by the square root of the count: ME means are ~2.3 times
  noisier than MaE means, as in the data;
* ``sigma_i`` ~ logNormal(0, 0.25): some subjects are noisier than others;
* ``delta_i``: the subject's own condition effect, ``s`` times a
  unit-variance field (``null(rng, s)``), so the population effect is
  exactly zero while subjects differ by SD ``s`` trial-noise SDs.

Every field is smooth the way EEG-derived quantities are: over channels
(Gaussian correlation of the 3-D Quik-Cap positions,
:func:`mmme_neuro.montage.quikcap64_positions`: Delaunay neighbours, a
median 3.8 cm apart, correlate at 0.70 in the trial noise, as volume
conduction makes them), over time (ERP at 50 Hz: 0.90 between neighbouring
samples; ERSP at 12.5 Hz: 0.75) and frequency (neighbouring wavelets of
the 8-bin grid: 0.70). Subject effects are smoother than trial noise
(neighbouring channels 0.82, samples 0.97 / 0.92: an effect is a
component, noise is partly local). Connectivity noise and effects are partly node-driven (an edge
shares the fluctuations of its two nodes, themselves smooth over the scalp)
and partly edge-specific; global graph measures are strongly correlated
(efficiency vs path length about -0.85) and correlated across bands.

Under the null the subject differences ``ME_i - MaE_i`` are independent
and symmetric about zero, so every sign-flip test here should be exact;
the families check that the library keeps this (thresholds, p-value
counting, FDR, NBS component logic) at every ``s``.

Power functions plant a realistic population effect (``mu``) that still
varies between subjects with SD ``s``: ``delta_i = mu + s * field_i``, with
``mu`` set so that the paired effect size is dz ~ 0.9-1.0 where it is
planted. They report whether the family rejects and whether a plain paired
t-test (:func:`scipy.stats.ttest_rel`) of the subject means averaged over
the planted region (channels x window, nodes, edges, or the planted global
measure) rejects at .05.

Permutation counts are below the analyses' default 1000 for speed and stated
in every ``title``; every test runs in one process (``n_jobs=1``), with a
seed drawn from the data set's generator.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats as sstats

from benchmarks.calibration import ALPHA, Family

#: Subjects per data set (the default study's size).
N_SUBJECTS = 12
#: Epochs per subject (inclusive ranges): ME 3-9, MaE 15-34.
ME_EPOCHS = (3, 9)
MAE_EPOCHS = (15, 34)
#: SD of the subject offsets shared by both conditions, in trial-noise SDs.
OFFSET_SD = 2.0
#: SD of log(sigma_i), the subject's trial-noise scale.
NOISE_SCALE_SD = 0.25
#: Permutations of each family (the analyses default to 1000).
N_PERM_ERP = 500
N_PERM_TFR = 256
N_PERM_NODE = 1000  # the default: BH on 64 permutation p needs p_min <= 0.05/64
N_PERM_NBS = 500
#: NBS primary threshold of the network analysis (``NBS_THRESHOLD``).
NBS_THRESHOLD = 3.0
#: Share of an edge's variance driven by its two nodes (the rest is edge-specific).
NODE_SHARE = 0.3

#: ERP grid: the 62 scalp channels x 0-0.78 s at 50 Hz (decimated ERPs).
ERP_TIMES = np.round(np.arange(40) * 0.02, 3)
#: TFR grid: 62 channels x 8 log-spaced wavelets 4-45 Hz x 0-0.96 s at 12.5 Hz.
TFR_FREQS = np.round(np.geomspace(4.0, 45.0, 8), 4)
TFR_TIMES = np.round(np.arange(13) * 0.08, 3)
#: Bands of the network analysis (config defaults).
BANDS = ("delta", "theta", "alpha", "beta", "gamma")
#: Global measures of :func:`mmme_neuro.netanalysis.global_contrasts`.
GLOBAL_MEASURES = ("global_efficiency_auc", "mean_clustering_auc", "characteristic_path_length_auc")

#: Planted regions of the power functions.
ERP_ROI = (
    "CP1",
    "CPZ",
    "CP2",
    "P1",
    "PZ",
    "P2",
)  # mmme_neuro.erp.DEFAULT_ROIS, P3 window 0.3-0.5 s
ERP_WINDOW = (0.3, 0.5)
TFR_ROI = ("C3", "C1", "CZ", "C2", "C4")  # mmme_neuro.tfr.DEFAULT_ROIS["central"]
TFR_BAND = (8.0, 16.0)
TFR_WINDOW = (0.2, 0.6)
NODE_ROI = ERP_ROI
#: 10 fronto-central and centro-parietal nodes: the 45 edges among them.
NBS_NODES = ("FC3", "FC1", "FCZ", "FC2", "FC4", "CP3", "CP1", "CPZ", "CP2", "CP4")


def _noise_var() -> float:
    """E[sigma^2 (1/n_ME + 1/n_MaE)]: variance of a subject's ME - MaE noise, trial-noise units."""
    inv = np.mean(1.0 / np.arange(ME_EPOCHS[0], ME_EPOCHS[1] + 1))
    inv += np.mean(1.0 / np.arange(MAE_EPOCHS[0], MAE_EPOCHS[1] + 1))
    return float(inv * math.exp(2 * NOISE_SCALE_SD**2))


def _planted_mean(s: float, dz: float) -> float:
    """Population mean difference giving paired effect size ``dz`` at heterogeneity ``s``."""
    return dz * math.sqrt(s**2 + _noise_var())


# ----------------------------------------------------------------------------- smooth fields


def _sqrt_psd(r: np.ndarray) -> np.ndarray:
    """Symmetric square root of a correlation matrix (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh(r)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


@functools.cache
def _positions(names: tuple[str, ...]) -> np.ndarray:
    from mmme_neuro.montage import quikcap64_positions

    pos = quikcap64_positions()
    return np.array([pos[c] for c in names])


@functools.cache
def _spatial_root(names: tuple[str, ...], width_m: float) -> np.ndarray:
    """Root of the Gaussian spatial correlation ``exp(-d^2 / (2 w^2))`` of the channels."""
    xyz = _positions(names)
    d2 = ((xyz[:, None, :] - xyz[None, :, :]) ** 2).sum(-1)
    return _sqrt_psd(np.exp(-d2 / (2 * width_m**2)))


@functools.cache
def _lattice_root(n: int, width: float) -> np.ndarray:
    """Root of the Gaussian correlation along a lattice (``width`` in samples)."""
    k = np.arange(n)
    return _sqrt_psd(np.exp(-((k[:, None] - k[None, :]) ** 2) / (2 * width**2)))


@functools.cache
def _adjacency(names: tuple[str, ...]):
    """Quik-Cap Delaunay adjacency: what ``cluster_test(adjacency='auto')`` computes."""
    from mmme_neuro.stats import channel_adjacency

    return channel_adjacency(list(names))


def _field(rng: np.random.Generator, roots: tuple[np.ndarray, ...], n: int) -> np.ndarray:
    """``n`` unit-variance fields ``(n, *grid)`` with the separable correlation of ``roots``."""
    z = rng.standard_normal((n, *(r.shape[0] for r in roots)))
    for ax, r in enumerate(roots, start=1):
        z = np.moveaxis(np.tensordot(r, z, axes=(1, ax)), 0, ax)
    return z


def _subject_means(
    rng: np.random.Generator,
    s: float,
    noise_roots: tuple[np.ndarray, ...],
    effect_roots: tuple[np.ndarray, ...],
    mu: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Subject condition means ``(subject, condition[ME, MaE], *grid)`` in trial-noise SDs."""
    n = N_SUBJECTS
    n_me = rng.integers(ME_EPOCHS[0], ME_EPOCHS[1] + 1, n)
    n_mae = rng.integers(MAE_EPOCHS[0], MAE_EPOCHS[1] + 1, n)
    sigma = np.exp(NOISE_SCALE_SD * rng.standard_normal(n))
    grid = (n,) + (1,) * len(noise_roots)
    offset = OFFSET_SD * _field(rng, effect_roots, n)
    delta = mu + s * _field(rng, effect_roots, n)
    noise_me = _field(rng, noise_roots, n) * (sigma / np.sqrt(n_me)).reshape(grid)
    noise_mae = _field(rng, noise_roots, n) * (sigma / np.sqrt(n_mae)).reshape(grid)
    return np.stack([offset + delta / 2 + noise_me, offset - delta / 2 + noise_mae], axis=1)


def _subjects() -> list[str]:
    return [f"sub-{i + 1:02d}" for i in range(N_SUBJECTS)]


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


@functools.cache
def _config():
    from mmme_neuro.config import Config

    return Config()


def _paired_rejects(x: np.ndarray) -> bool:
    """Paired t-test of ``x`` = (subject, condition[ME, MaE]) at alpha."""
    return bool(sstats.ttest_rel(x[:, 0], x[:, 1]).pvalue < ALPHA)


# ----------------------------------------------------------------------------- ERP cluster


def _scalp() -> tuple[str, ...]:
    from mmme_neuro.constants import SCALP_CHANNELS

    return tuple(SCALP_CHANNELS)


def _erp_data(rng: np.random.Generator, s: float, mu: np.ndarray | float = 0.0) -> xr.DataArray:
    ch = _scalp()
    noise = (_spatial_root(ch, 0.045), _lattice_root(ERP_TIMES.size, 2.2))
    effect = (_spatial_root(ch, 0.06), _lattice_root(ERP_TIMES.size, 4.0))
    x = 10.0 * _subject_means(rng, s, noise, effect, mu)  # trial noise SD 10 µV
    return xr.DataArray(
        x,
        dims=("subject", "condition", "channel", "time"),
        coords={
            "subject": _subjects(),
            "condition": ["ME", "MaE"],
            "channel": list(ch),
            "time": ERP_TIMES,
        },
        name="erp",
        attrs={"units": "µV"},
    )


def _cluster_rejects(da: xr.DataArray, rng: np.random.Generator, n_permutations: int) -> bool:
    from mmme_neuro.stats import cluster_test

    res = cluster_test(
        da,
        contrast=("ME", "MaE"),
        adjacency={"channel": _adjacency(tuple(da["channel"].values))},
        n_permutations=n_permutations,
        seed=_seed(rng),
        n_jobs=1,
    )
    return bool(len(res.clusters) and (res.clusters["p"] < ALPHA).any())


def erp_null(rng: np.random.Generator, s: float) -> bool:
    """ERP cluster test on null subject means."""
    return _cluster_rejects(_erp_data(rng, s), rng, N_PERM_ERP)


def _bump(names: tuple[str, ...], roi: tuple[str, ...], width_m: float) -> np.ndarray:
    """Spatial weights (max 1) of a Gaussian bump centred on the ROI's mean position."""
    xyz = _positions(names)
    centre = _positions(roi).mean(axis=0)
    w = np.exp(-((xyz - centre) ** 2).sum(-1) / (2 * width_m**2))
    return w / w.max()


def _window(times: np.ndarray, lo: float, hi: float, taper: float) -> np.ndarray:
    """1 inside [lo, hi], Gaussian flanks of SD ``taper`` s outside."""
    d = np.maximum(np.maximum(lo - times, times - hi), 0.0)
    return np.exp(-(d**2) / (2 * taper**2))


def erp_power(rng: np.random.Generator, s: float) -> dict[str, bool]:
    """P3-like ME > MaE effect, dz 0.9 at its centre, centro-parietal, 0.3-0.5 s."""
    ch = _scalp()
    mu = _planted_mean(s, 0.9) * np.outer(
        _bump(ch, ERP_ROI, 0.04), _window(ERP_TIMES, *ERP_WINDOW, 0.04)
    )
    da = _erp_data(rng, s, mu)
    roi = da.sel(channel=list(ERP_ROI), time=slice(*ERP_WINDOW)).mean(("channel", "time")).values
    return {"family": _cluster_rejects(da, rng, N_PERM_ERP), "subject_level": _paired_rejects(roi)}


# ----------------------------------------------------------------------------- TFR cluster


def _tfr_data(rng: np.random.Generator, s: float, mu: np.ndarray | float = 0.0) -> xr.DataArray:
    ch = _scalp()
    noise = (
        _spatial_root(ch, 0.045),
        _lattice_root(TFR_FREQS.size, 1.2),
        _lattice_root(TFR_TIMES.size, 1.3),
    )
    effect = (
        _spatial_root(ch, 0.06),
        _lattice_root(TFR_FREQS.size, 2.0),
        _lattice_root(TFR_TIMES.size, 2.5),
    )
    x = 4.0 * _subject_means(rng, s, noise, effect, mu)  # single-trial ERSP noise SD 4 dB
    return xr.DataArray(
        x,
        dims=("subject", "condition", "channel", "freq", "time"),
        coords={
            "subject": _subjects(),
            "condition": ["ME", "MaE"],
            "channel": list(ch),
            "freq": TFR_FREQS,
            "time": TFR_TIMES,
        },
        name="ersp",
        attrs={"units": "dB"},
    )


def tfr_null(rng: np.random.Generator, s: float) -> bool:
    """TFR (ERSP) cluster test on null subject means."""
    return _cluster_rejects(_tfr_data(rng, s), rng, N_PERM_TFR)


def tfr_power(rng: np.random.Generator, s: float) -> dict[str, bool]:
    """Alpha/low-beta (8-16 Hz) ME > MaE at central sites, 0.2-0.6 s, dz 0.9 at its centre."""
    ch = _scalp()
    f_w = ((TFR_FREQS >= TFR_BAND[0]) & (TFR_FREQS <= TFR_BAND[1])).astype(float)
    mu = _planted_mean(s, 0.9) * np.einsum(
        "c,f,t->cft", _bump(ch, TFR_ROI, 0.05), f_w, _window(TFR_TIMES, *TFR_WINDOW, 0.06)
    )
    da = _tfr_data(rng, s, mu)
    roi = da.sel(channel=list(TFR_ROI), freq=slice(*TFR_BAND), time=slice(*TFR_WINDOW))
    return {
        "family": _cluster_rejects(da, rng, N_PERM_TFR),
        "subject_level": _paired_rejects(roi.mean(("channel", "freq", "time")).values),
    }


# ----------------------------------------------------------------------------- nodes


def _nodes() -> tuple[str, ...]:
    from mmme_neuro.constants import EEG_CHANNELS

    return tuple(EEG_CHANNELS)


@functools.cache
def _node_root(nodes: tuple[str, ...]) -> np.ndarray:
    """Root of 0.3 (one global factor) + 0.7 (Gaussian spatial correlation, 4.5 cm)."""
    r = _spatial_root(nodes, 0.045)
    return _sqrt_psd(0.3 + 0.7 * (r @ r.T))


def _node_data(rng: np.random.Generator, s: float, mu: np.ndarray | float = 0.0) -> xr.DataArray:
    """Nodal-efficiency AUC per subject, condition and node (64 Quik-Cap nodes).

    Per-epoch nodal efficiency fluctuates with a global factor (the whole
    network's coupling, 30 % of the variance) and a smooth local one.
    """
    nodes = _nodes()
    root = _node_root(nodes)
    x = 0.35 + 0.04 * _subject_means(rng, s, (root,), (root,), mu)
    return xr.DataArray(
        x,
        dims=("subject", "condition", "node"),
        coords={"subject": _subjects(), "condition": ["ME", "MaE"], "node": list(nodes)},
        name="nodal_efficiency_auc",
    )


def _node_table(da: xr.DataArray, rng: np.random.Generator) -> pd.DataFrame:
    from mmme_neuro.stats import node_permutation_test

    return node_permutation_test(
        da,
        ("ME", "MaE"),
        n_permutations=N_PERM_NODE,
        seed=_seed(rng),
        correction="maxstat",
        config=_config(),
    )


def node_maxstat_null(rng: np.random.Generator, s: float) -> bool:
    """Max-stat (FWER) node test on null nodal efficiency."""
    return bool((_node_table(_node_data(rng, s), rng)["p_maxstat"] < ALPHA).any())


def node_fdr_null(rng: np.random.Generator, s: float) -> bool:
    """FDR column of the node test on null nodal efficiency (global null: FDR = FWER)."""
    return bool((_node_table(_node_data(rng, s), rng)["p_fdr"] < ALPHA).any())


def _node_mu(s: float, dz: float) -> np.ndarray:
    nodes = _nodes()
    return _planted_mean(s, dz) * np.isin(nodes, NODE_ROI).astype(float)


def _node_power(rng: np.random.Generator, s: float, column: str) -> dict[str, bool]:
    da = _node_data(rng, s, _node_mu(s, 1.0))
    table = _node_table(da, rng)
    roi = da.sel(node=list(NODE_ROI)).mean("node").values
    return {"family": bool((table[column] < ALPHA).any()), "subject_level": _paired_rejects(roi)}


def node_maxstat_power(rng: np.random.Generator, s: float) -> dict[str, bool]:
    """ME > MaE nodal efficiency on the 6 centro-parietal nodes, dz 1.0 each."""
    return _node_power(rng, s, "p_maxstat")


def node_fdr_power(rng: np.random.Generator, s: float) -> dict[str, bool]:
    """As :func:`node_maxstat_power`, FDR column."""
    return _node_power(rng, s, "p_fdr")


# ----------------------------------------------------------------------------- NBS


@functools.cache
def _edge_mixing(nodes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle indices and the node->edge map of unit-variance node-driven edge noise."""
    n = len(nodes)
    iu, ju = np.triu_indices(n, k=1)
    root = _spatial_root(nodes, 0.045)
    r = root @ root.T
    scale = 1.0 / np.sqrt(2 + 2 * r[iu, ju])
    return iu, ju, root, scale


def _edge_field(rng: np.random.Generator, nodes: tuple[str, ...], n: int) -> np.ndarray:
    """``n`` unit-variance edge fields.

    :data:`NODE_SHARE` of the variance is node-driven (``u_i + u_j``, ``u``
    smooth over the scalp), the rest edge-specific.
    """
    iu, ju, root, scale = _edge_mixing(nodes)
    u = rng.standard_normal((n, len(nodes))) @ root.T
    node_part = (u[:, iu] + u[:, ju]) * scale
    return math.sqrt(NODE_SHARE) * node_part + math.sqrt(1 - NODE_SHARE) * rng.standard_normal(
        (n, iu.size)
    )


def _conn_data(rng: np.random.Generator, s: float, mu: np.ndarray | float = 0.0) -> xr.DataArray:
    """Band connectivity (PLV-like) per subject, condition and node pair (64 nodes)."""
    nodes = _nodes()
    n = N_SUBJECTS
    n_me = rng.integers(ME_EPOCHS[0], ME_EPOCHS[1] + 1, n)
    n_mae = rng.integers(MAE_EPOCHS[0], MAE_EPOCHS[1] + 1, n)
    sigma = np.exp(NOISE_SCALE_SD * rng.standard_normal(n))[:, None]
    offset = OFFSET_SD * _edge_field(rng, nodes, n)
    delta = mu + s * _edge_field(rng, nodes, n)
    me = offset + delta / 2 + _edge_field(rng, nodes, n) * sigma / np.sqrt(n_me)[:, None]
    mae = offset - delta / 2 + _edge_field(rng, nodes, n) * sigma / np.sqrt(n_mae)[:, None]
    iu, ju, _, _ = _edge_mixing(nodes)
    x = np.zeros((n, 2, len(nodes), len(nodes)))
    for c, e in enumerate((me, mae)):
        x[:, c, iu, ju] = x[:, c, ju, iu] = 0.4 + 0.05 * e
    return xr.DataArray(
        x,
        dims=("subject", "condition", "node", "node_other"),
        coords={
            "subject": _subjects(),
            "condition": ["ME", "MaE"],
            "node": list(nodes),
            "node_other": list(nodes),
        },
        name="plv",
    )


def _nbs_rejects(da: xr.DataArray, rng: np.random.Generator) -> bool:
    from mmme_neuro.netanalysis import network_based_statistic

    res = network_based_statistic(
        da,
        ("ME", "MaE"),
        _config(),
        threshold=NBS_THRESHOLD,
        n_permutations=N_PERM_NBS,
        seed=_seed(rng),
    )
    return bool(len(res.components) and (res.components["p"] < ALPHA).any())


def nbs_null(rng: np.random.Generator, s: float) -> bool:
    """Network-based statistic on null connectivity."""
    return _nbs_rejects(_conn_data(rng, s), rng)


def nbs_power(rng: np.random.Generator, s: float) -> dict[str, bool]:
    """ME > MaE coupling on the 45 edges among 10 fronto-/centro-parietal nodes, dz 0.9 each."""
    nodes = _nodes()
    iu, ju, _, _ = _edge_mixing(nodes)
    planted = np.isin(np.asarray(nodes)[iu], NBS_NODES) & np.isin(np.asarray(nodes)[ju], NBS_NODES)
    da = _conn_data(rng, s, _planted_mean(s, 0.9) * planted)
    x = da.values[:, :, iu[planted], ju[planted]].mean(axis=-1)
    return {"family": _nbs_rejects(da, rng), "subject_level": _paired_rejects(x)}


# ----------------------------------------------------------------------------- global measures

#: Correlation of the global measures (efficiency, clustering, path length) of one band.
_MEASURE_CORR = np.array([[1.0, 0.6, -0.85], [0.6, 1.0, -0.5], [-0.85, -0.5, 1.0]])
#: Level and scale (trial-noise SD) of each measure.
_MEASURE_LEVEL = np.array([0.25, 0.30, 4.0])
_MEASURE_SCALE = np.array([0.02, 0.03, 0.30])


@functools.cache
def _global_root() -> np.ndarray:
    """Root of the (band x measure) correlation: measures as above, bands 0.5^|i-j|."""
    k = np.arange(len(BANDS))
    band_corr = 0.5 ** np.abs(k[:, None] - k[None, :])
    return np.linalg.cholesky(np.kron(band_corr, _MEASURE_CORR))


def _global_data(rng: np.random.Generator, s: float, mu: np.ndarray | float = 0.0) -> xr.Dataset:
    n = N_SUBJECTS
    root = _global_root()
    x = _subject_means(rng, s, (root,), (root,), mu)  # (subject, condition, band*measure)
    x = x.reshape(n, 2, len(BANDS), len(GLOBAL_MEASURES))
    x = _MEASURE_LEVEL + _MEASURE_SCALE * x
    coords = {"subject": _subjects(), "condition": ["ME", "MaE"], "band": list(BANDS)}
    return xr.Dataset(
        {m: (("subject", "condition", "band"), x[..., k]) for k, m in enumerate(GLOBAL_MEASURES)},
        coords=coords,
    )


def _global_rejects(ds: xr.Dataset) -> bool:
    from mmme_neuro.netanalysis import global_contrasts

    table = global_contrasts(ds, ("ME", "MaE"), _config(), measures=GLOBAL_MEASURES)
    return bool((table["p_fdr_all"] < ALPHA).any())


def global_null(rng: np.random.Generator, s: float) -> bool:
    """Global measures x bands, paired t-tests, FDR across all 15 (``p_fdr_all``)."""
    return _global_rejects(_global_data(rng, s))


def global_power(rng: np.random.Generator, s: float) -> dict[str, bool]:
    """Alpha band: ME more integrated (efficiency, clustering up, path length down), dz 0.9."""
    mu = np.zeros((len(BANDS), len(GLOBAL_MEASURES)))
    mu[BANDS.index("alpha")] = _planted_mean(s, 0.9) * np.array([1.0, 1.0, -1.0])
    ds = _global_data(rng, s, mu.ravel())
    x = ds["global_efficiency_auc"].sel(band="alpha").transpose("subject", "condition").values
    return {"family": _global_rejects(ds), "subject_level": _paired_rejects(x)}


FAMILIES: list[Family] = [
    Family(
        name="erp_cluster",
        title=f"ERP cluster test, 62 channels x 40 times (0-0.78 s, 50 Hz), "
        f"{N_PERM_ERP} sign flips",
        level="subject",
        error_rate="FWER",
        null=erp_null,
        power=erp_power,
        effect="ME - MaE P3-like bump centred on CP1/CPZ/CP2/P1/PZ/P2 (4 cm), 0.3-0.5 s, "
        "dz 0.9 at the centre; "
        "subject-level: ROI x window mean",
    ),
    Family(
        name="tfr_cluster",
        title=f"TFR (ERSP) cluster test, 62 channels x 8 freqs (4-45 Hz) x 13 times (12.5 Hz), "
        f"{N_PERM_TFR} sign flips",
        level="subject",
        error_rate="FWER",
        null=tfr_null,
        power=tfr_power,
        effect="ME - MaE 8-16 Hz power at central sites (C3..C4, 5 cm bump), 0.2-0.6 s, "
        "dz 0.9 at the centre; "
        "subject-level: ROI x band x window mean",
    ),
    Family(
        name="node_maxstat",
        title=f"nodal efficiency, 64 nodes, sign-flip max-stat (FWER), {N_PERM_NODE} flips",
        level="subject",
        error_rate="FWER",
        null=node_maxstat_null,
        power=node_maxstat_power,
        effect="ME - MaE on 6 centro-parietal nodes (CP1/CPZ/CP2/P1/PZ/P2), dz 1.0 each; "
        "subject-level: their mean",
    ),
    Family(
        name="node_fdr",
        title=f"nodal efficiency, 64 nodes, sign-flip p + BH-FDR, {N_PERM_NODE} flips",
        level="subject",
        error_rate="FWER",
        null=node_fdr_null,
        power=node_fdr_power,
        effect="as node_maxstat",
    ),
    Family(
        name="nbs",
        title=f"network-based statistic, 64 nodes (2016 edges), |t| > {NBS_THRESHOLD}, "
        f"{N_PERM_NBS} flips",
        level="subject",
        error_rate="FWER",
        null=nbs_null,
        power=nbs_power,
        effect="ME - MaE on the 45 edges among FC3..FC4 and CP3..CP4 (10 nodes), dz 0.9 each; "
        "subject-level: their mean",
    ),
    Family(
        name="global_fdr",
        title="global graph measures (3 measures x 5 bands), paired t, BH-FDR over all 15",
        level="subject",
        error_rate="FWER",
        null=global_null,
        power=global_power,
        effect="alpha band: efficiency and clustering up, path length down, dz 0.9 each; "
        "subject-level: alpha global efficiency",
    ),
]
