"""Benchmark: null calibration of every inferential family, with power beside the subject-level test.

Run on demand (NOT a test): ``.venv/bin/python -m benchmarks.bench_calibration
[--n 200] [--n-power 100] [--families a,b] [--jobs 2]``.

For each family (``benchmarks/calibration_*.py``: trial-level models, cluster
tests, max-statistic and FDR node tests, NBS, global measures, decoding
permutation p-values and time clusters) and each between-subject SD of the
condition effect ``s`` in 0, 0.5 and 1 trial-noise SDs, ``--n`` null data sets
(population effect exactly zero) are generated at the level the test consumes
and tested at alpha = .05. The false-positive rate (family-wise for corrected
families) is printed with its exact binomial 95 % CI; the target is
[0.03, 0.07]. Beside it, the power at a realistic planted effect (``s`` = 0.5)
of the family and of the plain subject-level test of the same contrast.

Prints a Markdown table and writes ``benchmarks/results/calibration.json``.
A family's data sets are seeded by (family, s, index), so the numbers do not
depend on ``--jobs`` or on which families run together.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.calibration import TARGET

RESULTS = Path(__file__).parent / "results"


def all_families() -> list:
    """Every family of the three family modules, in data-flow order."""
    from benchmarks import calibration_decoding, calibration_subject, calibration_trial

    return [*calibration_trial.FAMILIES, *calibration_subject.FAMILIES, *calibration_decoding.FAMILIES]


def off_target(r: dict) -> bool:
    """Whether a null cell's rate is off target beyond chance: its exact 95 % CI lies outside the target."""
    return r["ci_high"] < TARGET[0] or r["ci_low"] > TARGET[1]


def _cell(r: dict) -> str:
    flag = " **!**" if off_target(r) else ""
    return f"{r['rate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]{flag}"


def _power_cell(p: dict | None, key: str) -> str:
    if p is None:
        return "n/a"
    return f"{p[key]['rate']:.2f}"


def markdown(rows: list[dict]) -> str:
    """The Markdown table of :func:`run`'s rows (each row's null data sets per cell in its own column)."""
    hs = sorted({r["s"] for row in rows for r in row["null"]})
    head = ("| family | error rate | null sets | " + " | ".join(f"s = {s:g}" for s in hs)
            + " | power | power, subject-level test | planted effect (power, s = 0.5) | s per data set |")
    lines = ["False-positive rate at alpha = .05 over the null data sets of each row and s (exact binomial 95 % CI; "
             f"target [{TARGET[0]}, {TARGET[1]}]; **!**: the CI lies outside the target, off target beyond chance). "
             "Rows marked (before) are the tests this project used before (random-intercept Wald models, "
             "within-subject label shuffles), kept to show that the test can fail.", "", head, "|" + "---|" * (len(hs) + 7)]
    for row in rows:
        by_s = {r["s"]: r for r in row["null"]}
        cells = " | ".join(_cell(by_s[s]) if s in by_s else "not run" for s in hs)
        n_sets = "/".join(sorted({str(r["n"]) for r in row["null"]}))
        lines.append(f"| {row['title']} | {row['error_rate']} | {n_sets} | {cells} | {_power_cell(row['power'], 'family')} | "
                     f"{_power_cell(row['power'], 'subject_level')} | {row['effect']} | {row['seconds_per_set']:.2f} |")
    return "\n".join(lines)


def run(families: list, n: int, n_power: int, hs: tuple[float, ...], jobs: int, seed: int,
        save: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Rates and power of every family (``save(rows)`` after each family, so a long run keeps its results)."""
    from benchmarks.calibration import false_positive_rate, power

    rows = []
    for fam in families:
        t0 = time.perf_counter()
        null = [false_positive_rate(fam, s, n, seed=seed, n_jobs=jobs) for s in hs]
        dt = time.perf_counter() - t0
        pw = power(fam, n_power, seed=seed, n_jobs=jobs) if n_power else None
        rows.append({"family": fam.name, "title": fam.title, "level": fam.level, "error_rate": fam.error_rate,
                     "null": null, "power": pw, "effect": fam.effect,
                     "seconds_per_set": dt * jobs / (n * len(hs))})
        print(f"{fam.name}: " + ", ".join(f"s={r['s']:g} {r['rate']:.3f}" for r in null)
              + (f"; power {pw['family']['rate']:.2f} vs {pw['subject_level']['rate']:.2f}" if pw else ""),
              file=sys.stderr, flush=True)
        if save is not None:
            save(rows)
    return rows


README = Path(__file__).parent / "README.md"
_BEGIN, _END = "<!-- calibration:begin (bench_calibration.py writes this block) -->", "<!-- calibration:end -->"


def update_readme(text: str, readme: Path = README) -> None:
    """Put the calibration tables between the calibration markers of ``benchmarks/README.md`` (atomic write)."""
    old = readme.read_text(encoding="utf-8")
    start, stop = old.index(_BEGIN) + len(_BEGIN), old.index(_END)
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(old[:start] + "\n" + text + "\n" + old[stop:], encoding="utf-8")
    tmp.replace(readme)


def end_to_end(seeds: list[int], work: Path, scale: str = "ci") -> list[dict]:
    """Null studies from the synthetic generator, every analysis run: significant records per kind.

    Each seed's null study (``--null``: every planted population ME - MaE difference removed;
    subjects keep their drawn deviations, and MaE keep their larger facial EMG, a property of
    the movement, not a planted effect) is simulated, converted and analysed with
    ``mmme-neuro run``; the records are then counted by :func:`tally_null_studies`.
    """
    import subprocess

    outs = []
    for seed in seeds:
        out = work / f"null-{scale}-{seed}"
        cmd = [sys.executable, "-m", "mmme_neuro.cli", "run", "--scale", scale, "--null", "--seed", str(seed),
               "--workers", "1", "--out", str(out)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        print(f"end-to-end null study seed {seed}: exit {done.returncode} in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
        outs.append(out)
    return tally_null_studies(outs)


def _contrast_group(rec: dict) -> str:
    """``ME-MaE`` (null in a null study) or ``ME-NE`` (expression vs none: differs by the movement itself)."""
    c = str(rec.get("contrast") or rec.get("task") or "")
    return "ME-MaE" if c.replace("_vs_", "-").lower() == "me-mae" else ("ME-NE" if c else "other")


def tally_null_studies(outs: list[Path]) -> list[dict]:
    """Every ``contrasts`` record of every ``summary.json`` of the null-study outputs ``outs``, by
    analysis, kind and contrast: significant when its p is below .05 (the corrected one where the
    record has one: ``p`` is corrected unless ``correction`` is ``none``, then ``p_fdr`` when present).
    Records of kind ``emg`` are left out (ME and MaE move differently by design)."""
    rows: dict[tuple[str, str, str], dict] = {}
    for out in outs:
        for path in sorted(out.glob("*/summary.json")):
            summary = json.loads(path.read_text())
            kinds: dict[tuple[str, str], list[bool]] = {}
            for rec in summary.get("contrasts", []):
                if rec.get("kind") in ("emg",):
                    continue
                p = rec.get("p")
                if rec.get("correction") == "none" and rec.get("p_fdr") is not None:  # e.g. global measures
                    p = rec["p_fdr"]
                kinds.setdefault((rec["kind"], _contrast_group(rec)), []).append(p is not None and p < 0.05)
            for (kind, group), sig in kinds.items():
                row = rows.setdefault((path.parent.name, kind, group), {
                    "analysis": path.parent.name, "kind": kind, "contrast": group, "studies": 0, "records": 0,
                    "significant": 0, "studies_with_any": 0})  # fmt: skip
                row["studies"] += 1
                row["records"] += len(sig)
                row["significant"] += int(sum(sig))
                row["studies_with_any"] += int(any(sig))
    return sorted(rows.values(), key=lambda r: (r["contrast"], r["analysis"], r["kind"]))


def end_to_end_markdown(rows: list[dict], seeds: list[int]) -> str:
    """The table of :func:`end_to_end`."""
    lines = [f"End-to-end null studies (seeds {', '.join(map(str, seeds))}): significant records (p < .05, "
             "corrected where the record is) by analysis, kind and contrast. Some kinds have records only when "
             "something is significant (nodes, NBS components, time-decoding clusters). ME-NE is not null: an "
             "expression differs from no expression by its movement (EMG).", "",
             "| contrast | analysis | kind | studies | records | significant | studies with any |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.get('contrast', '')} | {r['analysis']} | {r['kind']} | {r['studies']} | {r['records']} | "
              f"{r['significant']} | {r['studies_with_any']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.calibration import HETEROGENEITY, select

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="null data sets per family and s (default 200)")
    ap.add_argument("--n-power", type=int, default=100, help="data sets for power (0: skip)")
    ap.add_argument("--s", type=float, nargs="+", default=list(HETEROGENEITY), help="between-subject SDs")
    ap.add_argument("--families", default="", help="comma-separated family names (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="processes (results do not depend on it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "calibration.json")
    ap.add_argument("--end-to-end", type=int, nargs="*", default=None, metavar="SEED",
                    help="also run the null ci study of each seed end to end (mmme-neuro run --null)")
    ap.add_argument("--work", type=Path, default=Path("build/calibration"), help="where the end-to-end runs go")
    ap.add_argument("--print", dest="print_only", action="store_true",
                    help="print the tables of the saved results (--out) and run nothing")
    args = ap.parse_args(argv)
    if args.print_only:
        saved = json.loads(args.out.read_text())
        print(markdown(saved["families"]))
        if saved.get("end_to_end"):
            print("\n" + end_to_end_markdown(saved["end_to_end"], saved["end_to_end_seeds"]))
        return 0
    names = [f for f in args.families.split(",") if f]
    fams = [] if names == ["none"] else select(all_families(), names)
    t0 = time.perf_counter()
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    e2e_box: dict = {}

    def save(rows: list[dict]) -> None:
        # a run updates its families in the results and keeps the others
        old = {r["family"]: r for r in previous.get("families", [])}
        old.update({r["family"]: r for r in rows})
        order = [f.name for f in all_families()]
        merged = sorted(old.values(), key=lambda r: order.index(r["family"]) if r["family"] in order else len(order))
        e2e = e2e_box.get("rows")
        payload = {"benchmark": "calibration", "alpha": 0.05, "target": [0.03, 0.07], "n_null": args.n,
                   "n_power": args.n_power, "seed": args.seed, "seconds": time.perf_counter() - t0,
                   "machine": {"python": platform.python_version(), "platform": platform.platform()},
                   "families": merged,
                   "end_to_end": e2e if e2e is not None else previous.get("end_to_end"),
                   "end_to_end_seeds": args.end_to_end if e2e is not None else previous.get("end_to_end_seeds")}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
        tmp.replace(args.out)
        # the tables as Markdown next to the JSON (docs/statistics.md includes them)
        text = markdown(merged)
        if payload["end_to_end"]:
            text += "\n\n" + end_to_end_markdown(payload["end_to_end"], payload["end_to_end_seeds"])
        md = args.out.with_suffix(".md")
        md.with_suffix(".md.tmp").write_text(text + "\n")
        md.with_suffix(".md.tmp").replace(md)
        if args.out == RESULTS / "calibration.json":  # the committed results: also into benchmarks/README.md
            update_readme(text)

    rows = run(fams, args.n, args.n_power, tuple(args.s), args.jobs, args.seed, save=save)
    if rows:
        print(markdown(rows))
    if args.end_to_end:
        e2e_box["rows"] = end_to_end(args.end_to_end, args.work)
        print("\n" + end_to_end_markdown(e2e_box["rows"], args.end_to_end))
    save(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
