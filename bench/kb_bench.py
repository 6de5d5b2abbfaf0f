"""Knowledge-base search benchmark: builds knowledge bases from BANKING77 and CLINC150 (one
article per intent, its training utterances as the phrasings), tunes thresholds on validation
data only, reports on test; plus load time, memory and latency at 10,000 and 100,000 phrasings.

    python bench/kb_bench.py            # everything (a few minutes on 2 cores)
    python bench/kb_bench.py --only clinc150

Datasets are read from ../shared/datasets (override with --datasets). Knowledge-base folders
and query CSVs are written to bench/.cache/kb/; results to bench/results/kb_bench.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import yaml
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from knowledge_base import KnowledgeBase, load_knowledge_base, search  # noqa: E402
from knowledge_base.evaluation import (  # noqa: E402
    EvalReport,
    TuneTargets,
    read_queries,
    score_queries,
    summarize,
    tune_thresholds,
)

CACHE = ROOT / "bench" / ".cache" / "kb"
RESULTS = ROOT / "bench" / "results"
Pairs = list[tuple[str, str]]


def write_kb(directory: Path, pairs: Pairs) -> Path:
    """One Markdown article per intent: first utterance as title, the others as questions."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in pairs:
        by_intent[intent].append(text)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.md"):
        old.unlink()
    (directory / "kb.yaml").unlink(missing_ok=True)
    for intent, texts in by_intent.items():
        header = {"id": intent, "title": texts[0], "questions": texts[1:], "tags": ["bench"]}
        body = f"Answer for {intent.replace('_', ' ')}."
        front = yaml.safe_dump(header, sort_keys=False, allow_unicode=True)
        (directory / f"{intent}.md").write_text(f"---\n{front}---\n\n{body}\n", encoding="utf-8")
    return directory


def write_queries(path: Path, pairs: list[tuple[str, str | None]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "expected"])
        writer.writerows((text, expected or "") for text, expected in pairs)
    return path


class _Targets:
    """Tuning targets for every case (``--precision`` / ``--oos-recall``)."""

    value = TuneTargets()


TARGETS = _Targets()


def run_case(
    name: str,
    train: Pairs,
    val: list[tuple[str, str | None]],
    test: list[tuple[str, str | None]],
    final_train: Pairs | None = None,
) -> dict[str, object]:
    """Tune on ``val`` with a KB of ``train``; report ``test`` on a KB of ``final_train``
    (default: ``train``) using the tuned thresholds."""
    if not MODE.semantic:
        name += "_lexical"
    kb_dir = write_kb(CACHE / name, train)
    kb = _load(kb_dir)
    val_queries = read_queries(write_queries(CACHE / f"{name}_val.csv", val), kb)
    settings, val_report = tune_thresholds(score_queries(kb, val_queries), TARGETS.value)
    if final_train is not None:
        kb_dir = write_kb(CACHE / name, final_train)
    started = time.perf_counter()
    kb = _load(kb_dir).prepare()
    load_s = time.perf_counter() - started
    test_queries = read_queries(write_queries(CACHE / f"{name}_test.csv", test), kb)
    report = summarize(
        score_queries(kb, test_queries), settings.answer_threshold, settings.suggest_threshold
    )
    phrasings = sum(len(a.phrasings) for a in kb.articles)
    return {
        "case": name,
        "articles": len(kb),
        "phrasings": phrasings,
        "load_s": round(load_s, 2),
        "val": _figures(val_report),
        "test": _figures(report),
    }


class _Mode:
    """--lexical: the lexical signals only (kb.yaml ``semantic: false``), for comparison."""

    semantic = True


MODE = _Mode()
EMBEDDING_CACHE = CACHE / "embeddings"


def _load(kb_dir: Path) -> KnowledgeBase:
    return load_knowledge_base(kb_dir, semantic=MODE.semantic, cache_dir=EMBEDDING_CACHE).kb


def _figures(report: EvalReport) -> dict[str, object]:
    data = report.as_dict()
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in data.items()}


def banking(datasets: Path, shots: int | None) -> dict[str, object]:
    def read(name: str) -> Pairs:
        with (datasets / "banking77" / name).open(encoding="utf-8") as handle:
            return [(row["text"], row["category"]) for row in csv.DictReader(handle)]

    rng = random.Random(0)
    train_all, test = read("train.csv"), read("test.csv")
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in train_all:
        by_intent[intent].append(text)
    train: Pairs = []
    val: list[tuple[str, str | None]] = []
    final: Pairs = []
    for intent, texts in sorted(by_intent.items()):
        texts = texts[:]
        rng.shuffle(texts)
        if shots is None:  # 10% of train for validation, then all of train for the test KB
            cut = max(1, len(texts) // 10)
            val += [(t, intent) for t in texts[:cut]]
            train += [(t, intent) for t in texts[cut:]]
            final += [(t, intent) for t in texts]
        else:  # k shots; validation from other training utterances of the same intent
            train += [(t, intent) for t in texts[:shots]]
            val += [(t, intent) for t in texts[shots : shots + 10]]
    name = "banking77_full" if shots is None else f"banking77_{shots}shot"
    return run_case(name, train, val, list(test), final or None)


def clinc(datasets: Path) -> dict[str, object]:
    data = json.loads((datasets / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    train = [(t, i) for t, i in data["train"]]
    # out-of-scope questions for tuning: the training and validation ones (100 + 100)
    oos_tuning = data["oos_train"] + data["oos_val"]
    val = [(t, i) for t, i in data["val"]] + [(t, None) for t, _ in oos_tuning]
    test = [(t, i) for t, i in data["test"]] + [(t, None) for t, _ in data["oos_test"]]
    return run_case("clinc150", train, val, test)


def scale(datasets: Path, phrasings: int) -> dict[str, object]:
    """Load time, memory and latency with ``phrasings`` phrasings (50 per article), made from
    real utterances of both datasets recombined; measured in a fresh process."""
    data = json.loads((datasets / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    utterances = [t for t, _ in data["train"] + data["val"] + data["test"]]
    with (datasets / "banking77" / "train.csv").open(encoding="utf-8") as handle:
        utterances += [row["text"] for row in csv.DictReader(handle)]
    rng = random.Random(1)
    pairs: Pairs = []
    per_article = 50
    for index in range(phrasings):
        extra = " ".join(rng.choice(utterances).split()[:3])
        pairs.append((f"{rng.choice(utterances)} {extra}", f"a{index // per_article:05d}"))
    kb_dir = write_kb(CACHE / f"scale_{phrasings}", pairs)
    queries: list[tuple[str, str | None]] = [(text, None) for text, _ in rng.sample(pairs, 300)]
    queries += [(rng.choice(utterances), None) for _ in range(200)]
    query_file = write_queries(CACHE / f"scale_{phrasings}_q.csv", queries)
    cache = CACHE / f"scale_{phrasings}_embeddings"
    shutil.rmtree(cache, ignore_errors=True)

    def measure() -> dict[str, object]:
        command = [sys.executable, __file__, "--measure-load", str(kb_dir), str(query_file)]
        if not MODE.semantic:
            command.append("--lexical")
        environment = {**os.environ, "DESKBOT_KB_CACHE_DIR": str(cache)}
        output = subprocess.run(
            command, check=True, capture_output=True, text=True, env=environment
        ).stdout
        result: dict[str, object] = json.loads(output)
        return result

    cold = measure()  # embeds every phrasing and writes the cache
    warm = measure()  # a restart: embeddings read from the cache
    name = f"scale_{phrasings}" + ("" if MODE.semantic else "_lexical")
    return {
        "case": name,
        **warm,
        "cold_load_s": cold["load_s"],
        "cold_load_cpu_s": cold["load_cpu_s"],
    }


def measure_load(kb_dir: Path, query_file: Path) -> None:
    import sklearn.svm  # noqa: F401  (library import cost is not the knowledge base's memory)

    before = _rss_kb()
    started, cpu_started = time.perf_counter(), time.process_time()
    kb = load_knowledge_base(kb_dir, semantic=MODE.semantic).kb.prepare()
    load_s = time.perf_counter() - started
    load_cpu_s = time.process_time() - cpu_started  # unaffected by other processes
    after = _rss_kb()
    scored = score_queries(kb, [q for q in read_queries(query_file)])
    report = summarize(scored, 1.0, 1.0)
    print(
        json.dumps(
            {
                "articles": len(kb),
                "phrasings": kb.index.phrasing_count,
                "classifier": kb.index.has_classifier,
                "load_s": round(load_s, 2),
                "load_cpu_s": round(load_cpu_s, 2),
                "memory_mb": round((after - before) / 1024, 1),
                "p50_ms": round(report.p50_ms, 2),
                "p99_ms": round(report.p99_ms, 2),
                "p99_cpu_ms": round(report.p99_cpu_ms, 2),
            }
        )
    )


def _rss_kb() -> int:
    """Resident memory now (kB); ru_maxrss would be inherited from the parent process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def table(results: list[dict[str, object]]) -> str:
    lines = [
        "| case | articles | phrasings | top-1 | top-3 | answer precision | coverage | "
        "oos recall | p50 ms | p99 ms | p99 CPU ms | load s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        if "test" in result:
            t = result["test"]
            assert isinstance(t, dict)
            cells = [
                t["top1"],
                t["top3"],
                t["answer_precision"],
                t["coverage"],
                t["oos_recall"],
                t["p50_ms"],
                t["p99_ms"],
                t["p99_cpu_ms"],
            ]
        else:
            cells = ["", "", "", "", "", result["p50_ms"], result["p99_ms"], result["p99_cpu_ms"]]
        row = [result["case"], result["articles"], result["phrasings"], *cells, result["load_s"]]
        lines.append("| " + " | ".join("n/a" if c is None else str(c) for c in row) + " |")
    for result in results:
        if "memory_mb" in result:
            lines.append(
                f"\n{result['case']}: load {result['load_s']} s ({result['load_cpu_s']} s CPU) "
                f"from a warm embedding cache, {result['cold_load_s']} s "
                f"({result['cold_load_cpu_s']} s CPU) cold, memory +{result['memory_mb']} MB "
                f"(resident, after load), classifier {'on' if result['classifier'] else 'off'}"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument(
        "--only", choices=["banking77", "banking77_10shot", "clinc150", "scale"], default=None
    )
    parser.add_argument(
        "--lexical", action="store_true", help="lexical signals only (no embeddings), to compare"
    )
    parser.add_argument(
        "--scale-sizes",
        default="10000,100000",
        help="phrasing counts for the scale cases, comma-separated",
    )
    parser.add_argument(
        "--precision",
        type=float,
        default=TuneTargets.answer_precision,
        help="answer precision the thresholds are tuned to reach on validation",
    )
    parser.add_argument(
        "--oos-recall",
        type=float,
        default=TuneTargets.oos_recall,
        help="out-of-scope recall the thresholds are tuned to reach on validation",
    )
    parser.add_argument(
        "--oos-power",
        type=float,
        default=None,
        help="override the out-of-scope damping exponent (exploration, on validation)",
    )
    parser.add_argument("--measure-load", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    MODE.semantic = not args.lexical
    # The latency target is per question on one core: BLAS threads woken per mat-vec only add
    # jitter on a shared machine (the desk process should do the same, see NOTES_FOR_README).
    threadpool_limits(1)
    if args.oos_power is not None:
        search.SEMANTIC_WEIGHTS = replace(search.SEMANTIC_WEIGHTS, oos_power=args.oos_power)
    TARGETS.value = TuneTargets(answer_precision=args.precision, oos_recall=args.oos_recall)
    if args.measure_load:
        measure_load(*args.measure_load)
        return 0
    if not args.datasets.is_dir():
        print(f"datasets not found: {args.datasets}", file=sys.stderr)
        return 2
    jobs = {
        "banking77": lambda: [banking(args.datasets, None)],
        "banking77_10shot": lambda: [banking(args.datasets, 10)],
        "clinc150": lambda: [clinc(args.datasets)],
        "scale": lambda: [scale(args.datasets, int(n)) for n in args.scale_sizes.split(",")],
    }
    results: list[dict[str, object]] = []
    for name, job in jobs.items():
        if args.only in (None, name):
            started = time.perf_counter()
            results += job()
            print(f"[{name}: {time.perf_counter() - started:.0f} s]", file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_lexical" if args.lexical else ""
    (RESULTS / f"kb_bench{suffix}.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
