"""`deskbot kb`: check a knowledge-base folder, ask it a question, evaluate it on labelled
questions, tune its answer/suggest thresholds and list the knowledge gaps (by default those the
CRM recorded, as the supervisors' /gaps shows them; or those of a file)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from bot.cli_db import add_database_url_option, resolve_database_url
from bot.settings import Settings, describe_validation_error
from crm_core import migrate
from crm_core.db import create_engine, create_session_factory, is_sqlite
from crm_core.errors import DomainError
from crm_core.periods import DEFAULT_PERIOD, InvalidPeriod, Period, parse_period
from crm_core.services.gaps import GapReport, knowledge_gaps
from knowledge_base import default_kb_dir, load_knowledge_base
from knowledge_base.base import KnowledgeBase
from knowledge_base.evaluation import (
    DEFINITIONS,
    EvalReport,
    QueryFileError,
    TuneTargets,
    read_queries,
    score_queries,
    summarize,
    tune_thresholds,
)
from knowledge_base.gaps import (
    DEFAULT_THRESHOLD,
    GapFileError,
    format_gaps,
    group_gaps,
    read_gap_file,
)
from knowledge_base.settings import write_settings

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def register(sub: Any) -> None:
    parser = sub.add_parser("kb", help="knowledge base: check, ask, eval, tune")
    kb_sub = parser.add_subparsers(dest="kb_command", metavar="ACTION", required=True)

    check = kb_sub.add_parser("check", help="report every broken article; exit 1 if any")
    check.add_argument("dir", type=Path, help="knowledge-base folder")
    check.set_defaults(func=_check)

    ask = kb_sub.add_parser("ask", help="show the verdict and candidates for one question")
    _kb_option(ask)
    ask.add_argument("question")
    ask.set_defaults(func=_ask)

    evaluate = kb_sub.add_parser("eval", help="accuracy, precision, coverage, latency")
    _kb_option(evaluate)
    evaluate.add_argument("--queries", type=Path, required=True, help="CSV text,expected")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(func=_eval)

    tune = kb_sub.add_parser("tune", help="set the thresholds from validation questions")
    _kb_option(tune)
    tune.add_argument("--queries", type=Path, required=True, help="CSV text,expected")
    tune.add_argument("--precision", type=float, default=TuneTargets.answer_precision)
    tune.add_argument("--oos-recall", type=float, default=TuneTargets.oos_recall)
    tune.add_argument("--dry-run", action="store_true", help="print, do not write kb.yaml")
    tune.set_defaults(func=_tune)

    gaps = kb_sub.add_parser(
        "gaps",
        help="unanswered questions grouped by similarity",
        description="The questions the knowledge base could not answer, grouped by "
        "similarity, largest group first, with examples. By default from the CRM "
        "(DESKBOT_DATABASE_URL), as the supervisors' /gaps shows them, with the agents' "
        "answers; with --from, from a file.",
    )
    add_database_url_option(gaps)
    gaps.add_argument(
        "--period",
        default=DEFAULT_PERIOD,
        help="today, 7d (default), 30d (any Nd), month or YYYY-MM-DD..YYYY-MM-DD, in "
        "DESKBOT_TIMEZONE",
    )
    gaps.add_argument("--limit", type=int, default=10, help="groups shown (database)")
    gaps.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="read the questions from a CSV with a text column (optional verdict, "
        "candidates) or one question a line, instead of the database",
    )
    gaps.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"0..1, with --from (default {DEFAULT_THRESHOLD})",
    )
    gaps.add_argument("--examples", type=int, default=3, help="questions shown per group")
    gaps.set_defaults(func=_gaps)


def _kb_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kb", type=Path, default=None, help="knowledge-base folder (default: bundled sample)"
    )


def _check(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if not directory.is_dir():
        print(f"error: not a folder: {directory}", file=sys.stderr)
        return EXIT_USAGE
    result = load_knowledge_base(directory)
    for problem in result.problems:
        print(problem)
    count = len(result.kb)
    if result.problems:
        print(f"{len(result.problems)} problem(s); {count} article(s) loaded")
        return EXIT_FAILURE
    settings = result.kb.settings
    print(
        f"ok: {count} article(s), {sum(len(a.phrasings) for a in result.kb.articles)} "
        f"phrasing(s); thresholds answer {settings.answer_threshold:g}, "
        f"suggest {settings.suggest_threshold:g}"
    )
    return EXIT_OK


def _load(args: argparse.Namespace) -> KnowledgeBase | None:
    directory: Path = args.kb or default_kb_dir()
    if not directory.is_dir():
        print(f"error: not a folder: {directory}", file=sys.stderr)
        return None
    result = load_knowledge_base(directory)
    if result.problems:
        print(
            f"warning: {len(result.problems)} problem(s) in {directory} "
            f"(see `deskbot kb check`); using the {len(result.kb)} article(s) that loaded",
            file=sys.stderr,
        )
    return result.kb


def _ask(args: argparse.Namespace) -> int:
    kb = _load(args)
    if kb is None:
        return EXIT_USAGE
    result = kb.search(args.question)
    print(f"verdict: {result.verdict.value} (language: {result.language})")
    for candidate in result.candidates:
        print(f"  {candidate.confidence:.3f}  {candidate.article.id}: {candidate.article.title}")
    return EXIT_OK


def _queries(args: argparse.Namespace, kb: KnowledgeBase) -> Any:
    path: Path = args.queries
    if not path.is_file():
        print(f"error: questions file not found: {path}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return read_queries(path, kb)
    except QueryFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE


def _eval(args: argparse.Namespace) -> int:
    kb = _load(args)
    if kb is None:
        return EXIT_USAGE
    queries = _queries(args, kb)
    if isinstance(queries, int):
        return queries
    scored = score_queries(kb, queries)
    report = summarize(scored, kb.settings.answer_threshold, kb.settings.suggest_threshold)
    if args.json:
        keys = ("top1", "top3", "answer_precision", "coverage", "oos_recall", "p50_ms", "p99_ms")
        print(json.dumps({key: report.as_dict()[key] for key in keys}))
    else:
        print(format_report(report))
    return EXIT_OK


def format_report(report: EvalReport) -> str:
    def figure(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    lines = [
        f"questions: {report.questions} ({report.in_scope} in scope, "
        f"{report.out_of_scope} out of scope); thresholds answer "
        f"{report.answer_threshold:g}, suggest {report.suggest_threshold:g}",
        f"top1              {figure(report.top1)}   {DEFINITIONS['top1']}",
        f"top3              {figure(report.top3)}   {DEFINITIONS['top3']}",
        f"answer_precision  {figure(report.answer_precision)}   {DEFINITIONS['answer_precision']}",
        f"coverage          {figure(report.coverage)}   {DEFINITIONS['coverage']}",
        f"oos_recall        {figure(report.oos_recall)}   {DEFINITIONS['oos_recall']}",
        f"latency           p50 {report.p50_ms:.2f} ms, p99 {report.p99_ms:.2f} ms "
        f"(p99 CPU time {report.p99_cpu_ms:.2f} ms)   {DEFINITIONS['p50_ms/p99_ms']}",
    ]
    return "\n".join(lines)


def _tune(args: argparse.Namespace) -> int:
    kb = _load(args)
    if kb is None:
        return EXIT_USAGE
    queries = _queries(args, kb)
    if isinstance(queries, int):
        return queries
    targets = TuneTargets(answer_precision=args.precision, oos_recall=args.oos_recall)
    settings, report = tune_thresholds(score_queries(kb, queries), targets)
    settings = type(settings)(
        settings.answer_threshold,
        settings.suggest_threshold,
        {"queries": args.queries.name, "questions": report.questions},
    )
    print(format_report(report))
    if args.dry_run:
        return EXIT_OK
    directory: Path = args.kb or default_kb_dir()
    try:
        path = write_settings(directory, settings)
    except OSError as error:
        print(f"error: cannot write settings: {error}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"wrote {path}")
    return EXIT_OK


def _gaps(args: argparse.Namespace) -> int:
    if args.source is None:
        return _gaps_from_database(args)
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if not 0.0 <= threshold <= 1.0:
        print(f"error: --threshold must be between 0 and 1, got {threshold}", file=sys.stderr)
        return EXIT_USAGE
    try:
        questions = read_gap_file(args.source)
        groups = group_gaps(questions, threshold)
    except (GapFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(format_gaps(groups, examples=max(1, args.examples)))
    return EXIT_OK


def _gaps_from_database(args: argparse.Namespace) -> int:
    """The supervisors' /gaps report (``crm_core.services.gaps``), printed."""
    if args.threshold is not None:
        print("error: --threshold applies to --from FILE only", file=sys.stderr)
        return EXIT_USAGE
    if args.limit < 1:
        print(f"error: --limit must be 1 or more, got {args.limit}", file=sys.stderr)
        return EXIT_USAGE
    try:
        time_zone = Settings().timezone
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        return EXIT_USAGE
    try:
        period = parse_period(args.period, time_zone=time_zone)
    except InvalidPeriod as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    url = resolve_database_url(args)
    if url is None:
        return EXIT_USAGE
    if is_sqlite(url) and not _sqlite_file_exists(url):
        print(f"error: no database at {url} (set DESKBOT_DATABASE_URL)", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = asyncio.run(_read_gaps(url, period, args.limit))
    except DomainError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    print(format_gap_report(report, period, examples=max(1, args.examples)))
    return EXIT_OK


def _sqlite_file_exists(url: str) -> bool:
    database = make_url(url).database
    return database is not None and database != ":memory:" and Path(database).is_file()


async def _read_gaps(url: str, period: Period, limit: int) -> GapReport:
    await migrate.ensure_database_current(url)
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:
            return await knowledge_gaps(session=session, window=period.current, limit=limit)
    finally:
        await engine.dispose()


def format_gap_report(report: GapReport, period: Period, *, examples: int = 3) -> str:
    zone = period.zone
    start = report.window.start.astimezone(zone)
    end = report.window.end.astimezone(zone)
    lines = [
        f"knowledge gaps, {period.label} ({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} "
        f"{period.time_zone}): {report.unanswered} question(s) without an answer"
    ]
    if not report.groups:
        lines.append("every question got an answer")
    for number, group in enumerate(report.groups, start=1):
        lines.append(f"{number}. {group.count}x {group.question!r}")
        lines.extend(f"   - {text}" for text in group.examples[1:examples])
        if group.agent_answers:
            lines.append("   agents answered: " + " / ".join(group.agent_answers))
    return "\n".join(lines)
