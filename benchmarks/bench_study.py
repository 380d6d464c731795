"""Benchmark: the first-level pipeline at MMME scale, 1 vs 2 dask workers, next to the authors' way.

Run on demand (NOT a test)::

    .venv/bin/python -m benchmarks.bench_study [--subjects 4] [--workers 1,2] [--no-graph] [--repeat 3] [--work DIR --keep]

A subset of the ``full`` synthetic study (the MMME scale: ~73-min sessions,
64 EEG + HEO/VEO/EKG/EMG at 1000 Hz, BIOPAC physiology at 1000 Hz; 110
subjects in all) is generated and converted to BIDS, then every first-level
step of the analysis scripts runs on every subject with
:func:`mmme_neuro.pipeline.run_subjects` on a dask ``LocalCluster`` of 1 and
of 2 single-threaded worker processes, every stage computed afresh:

* ``clean`` - :func:`mmme_neuro.epochs.first_level` as
  :func:`mmme_neuro.steps.upstream` runs it: the one preprocessing pass the
  EEG steps share (epochs over the union of their windows, filters, bad
  channels, ocular ICA, EMG measures, rejection), cached as FIF;
* ``erp`` - :func:`mmme_neuro.erp.first_level` (evoked responses, component
  measures) on the cropped shared epochs;
* ``tfr`` - :func:`mmme_neuro.tfr.first_level` (Morlet power / induced power
  / ITC, band power per epoch) on the cropped shared epochs;
* ``network`` - :func:`mmme_neuro.netanalysis.first_level` (within-epoch
  PLV per band and epoch, condition networks) on the cropped shared epochs;
* ``physio`` - :func:`mmme_neuro.concordance.first_level` (5 signals,
  event time courses, per-epoch and window features).

Per stage: compute seconds per subject (mean, max), wall time with each worker
count (from dispatch until every subject's result is written: the results
are not read back into the client, ``load=[]``; reading them is the group
level's work, timed apart as ``read_back_s``, the same for any number of
workers), speed-up and scaling efficiency, peak resident memory per worker
(the largest ``peak_rss_mb`` of :class:`mmme_neuro.pipeline.RunReport`).
Then the same stages run once more as one task graph
(:func:`mmme_neuro.pipeline.run_steps`, what ``mmme-neuro run`` does before
the group levels; ``--repeat`` times per worker count, alternating, with
the median and the spread of the speed-up reported; ``--no-graph`` skips
it): no stage waits for the previous
one to end on every subject, so a worker runs the analyses of a
preprocessed subject, or the physiology, while the other preprocesses.
In the same run, :mod:`benchmarks.authors_way` extracts the authors' EEG
features from the first subject (fresh subprocess, wall time and peak RSS):
the ratio is theirs over our complete EEG first level (ERP + TFR + network)
of the same subject. The 110-subject time is extrapolated from the mean per
subject and the measured 2-worker speed-up (stated as such).

Prints a Markdown table and writes ``benchmarks/results/study.json``. Targets
(issue 9): complete first level < 10 s per full-length subject, 2-worker
speed-up >= 1.7x, peak memory per worker < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
STAGES = ("clean", "erp", "tfr", "network", "physio")
EEG_STAGES = ("clean", "erp", "tfr", "network")
MMME_SUBJECTS = 110


def _steps(config: Any) -> dict[str, tuple[Any, Any, dict[str, Any]]]:
    """Stage -> (first-level function, configuration, extra parameters, upstream), as the analysis scripts call them."""
    from mmme_neuro import concordance, erp, netanalysis, steps, tfr

    up = steps.upstream(config)
    clean = up["clean"]
    return {
        "clean": (clean.func, clean.config, dict(clean.params), None),
        "erp": (erp.first_level, config, {}, up),
        "tfr": (tfr.first_level, config, {"method": "morlet"}, up),
        "network": (netanalysis.first_level, config, {}, up),
        "physio": (concordance.first_level, config, {"clean_baseline_s": 8.0}, None),
    }


def _run_stages(bids: Path, config: Any, workers: int, stages: list[str]) -> dict[str, Any]:
    from mmme_neuro.pipeline import cache_dir, load_result, local_cluster, run_subjects
    from mmme_neuro.steps import CLEAN_STAGE

    out: dict[str, Any] = {}
    levels = bids / "derivatives" / "mmme-neuro" / "first-level"
    shutil.rmtree(levels, ignore_errors=True)  # a first run: nothing cached (input hashes from the conversion record)
    with local_cluster(workers) as cluster:
        for stage in stages:
            func, cfg, params, up = _steps(config)[stage]
            name = CLEAN_STAGE if stage == "clean" else f"bench-{stage}"
            # every stage computed afresh; the EEG steps read the shared pass the "clean" stage just cached
            shutil.rmtree(levels / name, ignore_errors=True)
            rep = run_subjects(func, bids, cfg, stage=name, scheduler=cluster.scheduler_address,
                               progress=False, params=params, upstream=up, load=[])  # fmt: skip
            if up and (rep.status["upstream_s"] > 5).any():
                raise RuntimeError(f"{stage}: the shared epochs were recomputed, not read from the cache")
            st = rep.status
            if (st["status"] == "failed").any():
                raise RuntimeError(f"{stage}: failed subjects {rep.failed}")
            t0 = time.perf_counter()
            for s in st["subject"]:
                load_result(cache_dir(bids, name, s))
            read_back = time.perf_counter() - t0
            out[stage] = {"wall_s": rep.wall_seconds, "subject_s": dict(zip(st["subject"], st["seconds"], strict=True)),
                          "read_back_s": read_back,
                          "peak_rss_mb": float(st["peak_rss_mb"].max()),
                          "reading_shared_epochs_s": float(st["upstream_s"].mean())}  # fmt: skip
    return out


def _run_graph(bids: Path, config: Any, workers: int, stages: list[str]) -> dict[str, Any]:
    """Every stage as one task graph (:func:`mmme_neuro.pipeline.run_steps`, as ``mmme-neuro run`` runs them)."""
    from mmme_neuro.pipeline import Step, local_cluster, run_steps
    from mmme_neuro.steps import CLEAN_STAGE

    levels = bids / "derivatives" / "mmme-neuro" / "first-level"
    shutil.rmtree(levels, ignore_errors=True)  # a first run: nothing cached (input hashes from the conversion record)
    steps = []
    for stage in stages:
        func, cfg, params, up = _steps(config)[stage]
        steps.append(Step(func, CLEAN_STAGE if stage == "clean" else f"bench-{stage}", cfg, params, up or {}, load=[]))
    with local_cluster(workers) as cluster:
        reps = run_steps(steps, bids, scheduler=cluster.scheduler_address, progress=False)
    out: dict[str, Any] = {"wall_s": next(iter(reps.values())).wall_seconds, "stages": {}}
    for stage, rep in zip(stages, reps.values(), strict=True):
        st = rep.status
        if (st["status"] == "failed").any():
            raise RuntimeError(f"{stage}: failed subjects {rep.failed}")
        if "clean" in stages and stage != "clean" and (st["upstream_s"] > 5).any():
            raise RuntimeError(f"{stage}: the shared epochs were recomputed, not read from the cache")
        out["stages"][stage] = {"subject_s": dict(zip(st["subject"], st["seconds"], strict=True)),
                                "peak_rss_mb": float(st["peak_rss_mb"].max())}  # fmt: skip
    return out


def _warm(paths: list[Path]) -> float:
    """Read ``paths`` once (16 MB at a time); return the GB read.

    Every timed run then finds its inputs in the page cache, as all but the
    first would anyway: without it, the first run (one worker, stage by
    stage) also paid for reading the study from the disk (72 s instead of
    ~40 s for its preprocessing pass in one run of stop 18).
    """
    n = 0
    for f in paths:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 24):
                n += len(chunk)
    return n / 1e9


def _authors(study: Path) -> dict[str, Any]:
    from benchmarks.bench_erp import _run
    from mmme_neuro.config import Config
    from mmme_neuro.ingest import find_sessions
    from mmme_neuro.io.coding import read_coding

    raw = study / "raw"
    eeg = find_sessions(raw, read_coding(raw / "coding_file.xlsx", Config().coding))[0].eeg  # the file they read
    _warm([eeg, *(p for p in [eeg.with_suffix(".fdt")] if p.is_file())])
    res = _run(study, "authors")
    return {"wall_s": res["wall_s"], "peak_rss_mb": res["peak_rss_mb"], "n_expressions": res["n_expressions"]}


def _table(res: dict[str, Any]) -> str:
    ws = res["workers"]
    lines = ["| stage | s per subject (mean, max) | " + " | ".join(f"wall, {w} worker{'s' * (w > 1)}" for w in ws)
             + " | speed-up | efficiency | peak RSS per worker |",
             "| --- | ---: | " + " | ".join("---:" for _ in ws) + " | ---: | ---: | ---: |"]  # fmt: skip
    for stage in res["stages"]:
        runs = [res["runs"][str(w)][stage] for w in ws]
        per = list(runs[0]["subject_s"].values())
        sp = runs[0]["wall_s"] / runs[-1]["wall_s"]
        lines.append(f"| {stage} | {sum(per) / len(per):.1f}, {max(per):.1f} | "
                     + " | ".join(f"{r['wall_s']:.1f} s" for r in runs)
                     + f" | {sp:.2f}x | {sp / (ws[-1] / ws[0]):.0%} | {max(r['peak_rss_mb'] for r in runs):.0f} MB |")  # fmt: skip
    t = res["totals"]
    lines.append(f"| **all** | {t['per_subject_s']:.1f} | " + " | ".join(f"{t['wall_s'][str(w)]:.1f} s" for w in ws)
                 + f" | {t['speedup']:.2f}x | {t['efficiency']:.0%} | {t['peak_rss_mb']:.0f} MB |")  # fmt: skip
    if res.get("graph"):
        g = res["graph"]
        lines.append(f"| **all, one task graph** (median of {len(g['speedup_runs'])}) | {g['per_subject_s']:.1f} | "
                     + " | ".join(f"{g['wall_s'][str(w)]:.1f} s" for w in ws)
                     + f" | {g['speedup']:.2f}x ({min(g['speedup_runs']):.2f}-{max(g['speedup_runs']):.2f}) "
                     + f"| {g['efficiency']:.0%} | {g['peak_rss_mb']:.0f} MB |")  # fmt: skip
    back = sum(res["runs"][str(ws[0])][st].get("read_back_s", 0.0) for st in res["stages"])
    lines.append(f"\nWall times run from dispatch until every result is written; reading all results back into "
                 f"the client (the group level's first step) took {back:.1f} s more, the same with any number of "
                 f"workers.")  # fmt: skip
    a = res["authors"]
    if res["ratio_authors_over_ours_eeg"] is None:
        return "\n".join(lines) + f"\n\nAuthors' way: {a['wall_s']:.1f} s (no EEG stage run here).\n"
    lines += ["", f"Authors' way (EEG band-PSD features of subject 1, fresh process): {a['wall_s']:.1f} s, "
              f"{a['peak_rss_mb']:.0f} MB peak; our complete EEG first level (ERP + TFR + network) of the same subject: "
              f"{res['ours_eeg_subject1_s']:.1f} s -> authors / ours = {res['ratio_authors_over_ours_eeg']:.2f}.",
              f"Extrapolated to {MMME_SUBJECTS} subjects with {ws[-1]} workers: {res['extrapolated_mmme_h']:.1f} h "
              f"(mean per subject x {MMME_SUBJECTS} / measured speed-up)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _graph_totals(graphs: list[dict[str, Any]], workers: list[int], stages: list[str]) -> dict[str, Any]:
    """Medians over the repeats (each repeat: one run per worker count, side by side) and the spread of the speed-up."""
    lo, hi = str(workers[0]), str(workers[-1])
    per = [statistics.mean(sum(r[lo]["stages"][st]["subject_s"][s] for st in stages) for s in r[lo]["stages"][stages[0]]["subject_s"])
           for r in graphs]  # fmt: skip
    speedups = [r[lo]["wall_s"] / r[hi]["wall_s"] for r in graphs]
    wall = {w: statistics.median(r[w]["wall_s"] for r in graphs) for w in graphs[0]}
    sp = statistics.median(speedups)
    return {"per_subject_s": statistics.median(per), "per_subject_s_runs": per, "wall_s": wall,
            "wall_s_runs": {w: [r[w]["wall_s"] for r in graphs] for w in graphs[0]}, "speedup": sp,
            "speedup_runs": speedups, "efficiency": sp / (workers[-1] / workers[0]),
            "peak_rss_mb": max(st["peak_rss_mb"] for r in graphs for g in r.values() for st in g["stages"].values()),
            "runs": graphs}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table; write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=4, help="full-scale subjects to generate (a subset of 110)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated stages of {STAGES}")
    parser.add_argument("--no-graph", dest="graph", action="store_false",
                        help="skip the run of all stages as one task graph (run_steps)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="runs of the task graph per worker count (alternating; medians and spread reported)")  # fmt: skip
    parser.add_argument("--work", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated study in --work")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    stages = [s for s in args.stages.split(",") if s]
    if not set(stages) <= set(STAGES):
        parser.error(f"unknown stages {sorted(set(stages) - set(STAGES))}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # single-threaded workers: the parallelism is dask's

    from mmme_neuro.bids import convert_study
    from mmme_neuro.config import Config
    from mmme_neuro.simulate.study import simulate_study

    work = args.work or Path(tempfile.mkdtemp(prefix="mmme-bench-study-"))
    try:
        study_dir, bids = work / "study", work / "bids"
        t0 = time.perf_counter()
        study = simulate_study(study_dir, scale="full", seed=1, n_subjects=args.subjects, progress=False) \
            if not (study_dir / "raw").is_dir() else None  # fmt: skip
        t_sim = time.perf_counter() - t0
        t0 = time.perf_counter()
        convert_study((study.raw_dir if study else study_dir / "raw"), bids, progress=False)
        t_conv = time.perf_counter() - t0
        config = Config()
        warmed = _warm(sorted(p for p in bids.glob("sub-*/**/*") if p.is_file()))
        runs = {str(w): _run_stages(bids, config, w, stages) for w in workers}
        graphs = [{str(w): _run_graph(bids, config, w, stages) for w in workers} for _ in range(args.repeat)] \
            if args.graph else []  # fmt: skip
        authors = _authors(study_dir)
    finally:
        if args.work is None or not args.keep:
            shutil.rmtree(work / "bids" / "derivatives" / "mmme-neuro" / "first-level", ignore_errors=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    first = runs[str(workers[0])]
    subjects = list(first[stages[0]]["subject_s"])
    per_subject = {s: sum(first[st]["subject_s"][s] for st in stages) for s in subjects}
    mean_per_subject = sum(per_subject.values()) / len(per_subject)
    wall = {str(w): sum(runs[str(w)][st]["wall_s"] for st in stages) for w in workers}
    speedup = wall[str(workers[0])] / wall[str(workers[-1])]
    eeg1 = sum(first[st]["subject_s"][subjects[0]] for st in stages if st in EEG_STAGES)
    res = {
        "subjects": subjects, "n_subjects": len(subjects), "scale": "full", "workers": workers, "stages": stages,
        "simulate_s": t_sim if study is not None else None, "convert_s": t_conv, "warmed_gb": warmed, "runs": runs,
        "totals": {"per_subject_s": mean_per_subject, "wall_s": wall, "speedup": speedup,
                   "efficiency": speedup / (workers[-1] / workers[0]),
                   "peak_rss_mb": max(r["peak_rss_mb"] for w in runs.values() for r in w.values())},
        "authors": authors, "ours_eeg_subject1_s": eeg1, "ratio_authors_over_ours_eeg": authors["wall_s"] / eeg1 if eeg1 else None,
        "graph": _graph_totals(graphs, workers, stages) if graphs else None,
        "extrapolated_mmme_h": mean_per_subject * MMME_SUBJECTS / speedup / 3600,
        "targets": {"per_subject_s": 10.0, "speedup": 1.7, "peak_rss_mb_per_worker": 2048},
        "machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "study.json").write_text(json.dumps(res, indent=2, sort_keys=True, default=float) + "\n")
    made = f"simulated in {t_sim:.0f} s" if study is not None else f"reused from {work}"
    sys.stdout.write(f"First level of {len(subjects)} full-length subjects ({made}, BIDS conversion {t_conv:.0f} s)\n\n"
                     + _table(res))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
