"""Published error rates of ``provenance compare`` (issue 12 point 4; docs/descent.md, "Error rates").

Prints two tables (markdown, pasted into docs/descent.md as they come):

* **power**: per derivation class and strength (:data:`bench.evidence_models.CELLS`), the
  fraction of N trials, each on its own base model and derivation seed, that ``compare`` calls
  ``related`` (or ``identical``) at alpha = 0.01, with one-sided 95% Clopper-Pearson bounds;
* **false related**: per null family (:data:`bench.evidence_models.NULLS`), the fraction of pairs
  of independent models called ``related`` or ``identical``, every pair two models of their own
  (no model is reused across pairs), with its 95% Clopper-Pearson upper bound, the limit
  alpha + 3 binomial standard errors, and the p-value super-uniformity check (fraction of null
  p-values at or below 0.001, 0.01, 0.05). A family above the limit is printed as a FINDING with
  the seeds of its false pairs (``bench.evidence_models.null_pair(family, index)`` rebuilds them).

Fingerprints are built and compared in-process (``client.core.descent.fingerprint.build``,
``client.core.descent.compare.compare``) on at most two worker processes. Full run: N = 50
trials per cell and 500 pairs per null family; ``--quick``: 3 trials and 10 pairs (a smoke run,
its rates mean nothing).
"""

from __future__ import annotations

import os

# One BLAS thread per worker: on a shared 2-core machine, threaded BLAS in two workers costs ~3x the CPU.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Iterable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from bench.evidence_models import (  # noqa: E402
    CELLS,
    NULLS,
    TRAINED_FAMILY,
    base_of,
    cell_pair,
    null_pair,
    null_seeds,
    pool_member,
    pool_pairs,
)
from bench.evidence_stats import alpha_limit, clopper_pearson_lower, clopper_pearson_upper  # noqa: E402
from client.core.descent.compare import compare  # noqa: E402
from client.core.descent.fingerprint import Fingerprint, build  # noqa: E402

ALPHA = 0.01
LEVELS = (0.001, 0.01, 0.05)
CHUNK = 20  # null pairs per worker task


@dataclass(frozen=True)
class Config:
    """What to run. ``cells`` / ``nulls`` are indexes into CELLS / NULLS (None: all)."""

    trials: int
    null_pairs: int
    workers: int = 2
    cells: tuple[int, ...] | None = None
    nulls: tuple[int, ...] | None = None
    jsonl: str | None = None  # if set, every outcome is appended to this file as it arrives


FULL = Config(trials=50, null_pairs=500)
QUICK = Config(trials=3, null_pairs=10)


@dataclass(frozen=True)
class Outcome:
    """One comparison: which row and trial, what compare said, and how long build + compare took."""

    kind: str  # "power" or "null"
    row: int  # index into CELLS or NULLS
    trial: int
    verdict: str
    basis: str
    log10_p: float
    statistical_log10_p: float
    seconds: float

    @property
    def positive(self) -> bool:
        return self.verdict in ("related", "identical")


def _fp(model: dict[str, object]) -> Fingerprint:
    return build(model.items())  # type: ignore[arg-type]


def _power_task(task: tuple[str, int, tuple[int, ...]]) -> list[Outcome]:
    """Every selected cell on base ``kind`` for one trial (the base fingerprint built once)."""
    kind, trial, rows = task
    t0 = time.perf_counter()
    bases = base_of(kind, trial)
    base_fp = _fp(bases[0])  # type: ignore[arg-type]
    share = (time.perf_counter() - t0) / max(1, len(rows))
    out = []
    for row in rows:
        t = time.perf_counter()
        a, b = cell_pair(row, trial, bases)
        fa = base_fp if a is bases[0] else _fp(a)  # type: ignore[arg-type]
        r = compare(fa, _fp(b), alpha=ALPHA)  # type: ignore[arg-type]
        out.append(Outcome("power", row, trial, r.verdict, r.basis, r.log10_p, r.statistical_log10_p,
                           time.perf_counter() - t + share))
    return out


def _null_task(task: tuple[int, int, int]) -> list[Outcome]:
    family, start, count = task
    out = []
    for i in range(start, start + count):
        t = time.perf_counter()
        a, b = null_pair(family, i)
        r = compare(_fp(a), _fp(b), alpha=ALPHA)  # type: ignore[arg-type]
        out.append(Outcome("null", family, i, r.verdict, r.basis, r.log10_p, r.statistical_log10_p,
                           time.perf_counter() - t))
    return out


def _pool_task(members: tuple[int, ...]) -> list[tuple[int, Fingerprint, float]]:
    """Train and fingerprint the given members of the trained pool."""
    out = []
    for m in members:
        t = time.perf_counter()
        out.append((m, _fp(pool_member(m)), time.perf_counter() - t))  # type: ignore[arg-type]
    return out


def _run_task(task: tuple[str, tuple[object, ...]]) -> list[object]:
    kind, args = task
    if kind == "pool":
        return list(_pool_task(args))  # type: ignore[arg-type]
    return list(_power_task(args) if kind == "power" else _null_task(args))  # type: ignore[arg-type]


def tasks(config: Config) -> list[tuple[str, tuple[object, ...]]]:
    """The work: the trained pool, then the null chunks, then the power trials."""
    cells = config.cells if config.cells is not None else tuple(range(len(CELLS)))
    nulls = config.nulls if config.nulls is not None else tuple(range(len(NULLS)))
    out: list[tuple[str, tuple[object, ...]]] = []
    if TRAINED_FAMILY in nulls:
        members = sorted({m for pair in pool_pairs(config.null_pairs) for m in pair})
        out += [("pool", tuple(members[s:s + 5])) for s in range(0, len(members), 5)]
    for family in (f for f in nulls if f != TRAINED_FAMILY):
        out += [("null", (family, s, min(CHUNK, config.null_pairs - s))) for s in range(0, config.null_pairs, CHUNK)]
    by_base: dict[str, list[int]] = defaultdict(list)
    for i in cells:
        by_base[CELLS[i].base].append(i)
    for trial in range(config.trials):
        out += [("power", (kind, trial, tuple(rows))) for kind, rows in by_base.items()]
    return out


def _trained_pairs(config: Config, pool: dict[int, tuple[Fingerprint, float]]) -> list[Outcome]:
    """The trained family's pairs, compared in this process once the pool is built (a pair's
    seconds: its comparison plus the pool's training and fingerprinting shared over the pairs)."""
    share = sum(sec for _fp_, sec in pool.values()) / max(1, config.null_pairs)
    out = []
    for i, (ma, mb) in enumerate(pool_pairs(config.null_pairs)):
        t = time.perf_counter()
        r = compare(pool[ma][0], pool[mb][0], alpha=ALPHA)
        out.append(Outcome("null", TRAINED_FAMILY, i, r.verdict, r.basis, r.log10_p, r.statistical_log10_p,
                           time.perf_counter() - t + share))
    return out


def outcomes(config: Config) -> Iterator[Outcome]:
    """Run every task of ``config`` (on ``config.workers`` processes when more than one)."""
    work = tasks(config)
    pool: dict[int, tuple[Fingerprint, float]] = {}
    members = sum(len(args) for kind, args in work if kind == "pool")

    def take(batch: list[object]) -> Iterator[Outcome]:
        for item in batch:
            if isinstance(item, Outcome):
                yield item
            else:
                m, fp, sec = item  # type: ignore[misc]
                pool[m] = (fp, sec)
                if len(pool) == members:
                    yield from _trained_pairs(config, pool)

    if config.workers <= 1:
        for task in work:
            yield from take(_run_task(task))
        return
    with multiprocessing.get_context("fork").Pool(config.workers) as pool_:
        for batch in pool_.imap_unordered(_run_task, work):
            yield from take(batch)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _median_log10(values: list[float]) -> str:
    m = statistics.median(values)
    return "—" if not math.isfinite(m) else f"{m:.1f}"


def _by_row(results: Iterable[Outcome]) -> dict[int, list[Outcome]]:
    rows: dict[int, list[Outcome]] = defaultdict(list)
    for o in results:
        rows[o.row].append(o)
    return rows


def power_table(results: Iterable[Outcome]) -> list[str]:
    rows = _by_row(results)
    lines = ["| class | strength | base | related k/n | power | 95% lower (CP) | 95% upper (CP) | exact | "
             "median log10 p (stat.) | s/pair |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in sorted(rows):
        got, cell = rows[row], CELLS[row]
        n, k = len(got), sum(o.positive for o in got)
        exact = sum(o.positive and o.basis == "exact" for o in got)
        lines.append(f"| {cell.group} | {cell.strength} | {cell.base} | {k}/{n} | {_pct(k / n)} | "
                     f"{_pct(clopper_pearson_lower(k, n))} | {_pct(clopper_pearson_upper(k, n))} | {exact} | "
                     f"{_median_log10([o.statistical_log10_p for o in got])} | "
                     f"{statistics.median(o.seconds for o in got):.2f} |")
    return lines


def _p(o: Outcome) -> float:
    return 10 ** o.log10_p


def null_table(results: Iterable[Outcome]) -> tuple[list[str], list[str]]:
    """The false-related table and the findings (families above alpha + 3 SE, with seeds)."""
    rows = _by_row(results)
    lines = ["| null family | pairs | false related k/n | rate | 95% upper (CP) | α + 3 SE | p ≤ 0.001 | "
             "p ≤ 0.01 | p ≤ 0.05 | s/pair |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    findings = []
    pooled: list[Outcome] = []
    for family in sorted(rows):
        got = sorted(rows[family], key=lambda o: o.trial)
        pooled += got
        n, k = len(got), sum(o.positive for o in got)
        limit = alpha_limit(ALPHA, n)
        levels = " | ".join(f"{sum(_p(o) <= lv for o in got) / n:.3f}" for lv in LEVELS)
        lines.append(f"| {NULLS[family][0]} | {n} | {k}/{n} | {_pct(k / n)} | "
                     f"{_pct(clopper_pearson_upper(k, n))} | {_pct(limit)} | {levels} | "
                     f"{statistics.median(o.seconds for o in got):.2f} |")
        false = [o for o in got if o.positive]
        if false:
            seeds = ", ".join(f"pair {o.trial} seeds {null_seeds(family, o.trial)} ({o.verdict}/{o.basis}, "
                              f"log10 p {o.statistical_log10_p:.2f})" for o in false)
            tag = "FINDING: above alpha + 3 SE" if k / n > limit else "within alpha + 3 SE"
            findings.append(f"{tag}: {NULLS[family][0]}: {k}/{n} false related: {seeds}")
    if pooled:
        n = len(pooled)
        levels = ", ".join(f"p ≤ {lv}: {sum(_p(o) <= lv for o in pooled) / n:.4f}" for lv in LEVELS)
        lines.append(f"\nall null pairs pooled ({n}): {levels}")
    return lines, findings


def _expected_nulls(config: Config) -> int:
    families = config.nulls if config.nulls is not None else tuple(range(len(NULLS)))
    return len(families) * config.null_pairs


def report(config: Config, emit: Callable[[str], None] = print) -> list[Outcome]:
    """Run ``config``, emitting the report's lines (the null table as soon as the nulls are done,
    then the power table, then the wall time); return every outcome."""
    t0 = time.perf_counter()
    emit(f"alpha = {ALPHA}; {config.trials} trials per cell (distinct base and derivation seeds); "
         f"{config.null_pairs} pairs per null family; {config.workers} worker process(es)")
    got: list[Outcome] = []
    expected = _expected_nulls(config)
    done_nulls = expected == 0
    log = open(config.jsonl, "a", encoding="utf-8") if config.jsonl else None  # noqa: SIM115
    for o in outcomes(config):
        got.append(o)
        if log is not None:
            log.write(json.dumps(dataclasses.asdict(o)) + "\n")
            log.flush()
        if not done_nulls and sum(x.kind == "null" for x in got) == expected:
            done_nulls = True
            table, findings = null_table(x for x in got if x.kind == "null")
            emit(f"\nfalse related (independent pairs), after {time.perf_counter() - t0:.0f} s\n")
            for line in [*table, "", *(findings or ["no false related pair in any null family"])]:
                emit(line)
    if log is not None:
        log.close()
    power = [o for o in got if o.kind == "power"]
    if power:
        emit("\npower (derivations: related or identical)\n")
        for line in power_table(power):
            emit(line)
    wall = time.perf_counter() - t0
    emit(f"\nwall time {wall:.0f} s ({wall / 60:.1f} min); {len(got)} comparisons; "
         f"{sum(o.seconds for o in got):.0f} s of build + compare summed over workers")
    return got


def tables_from_jsonl(path: str) -> list[str]:
    """The tables of a (possibly interrupted) run whose outcomes were logged to ``path``."""
    with open(path, encoding="utf-8") as f:
        got = [Outcome(**json.loads(line)) for line in f if line.strip()]
    table, findings = null_table(o for o in got if o.kind == "null")
    return [*table, "", *findings, "", *power_table(o for o in got if o.kind == "power")]


def run(quick: bool) -> None:
    config = dataclasses.replace(QUICK if quick else FULL, jsonl=os.environ.get("EVIDENCE_JSONL") or None)
    report(config, lambda line: print(line, flush=True))
