"""What an import tells its user: the report of what it did, and progress bars meanwhile."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm


@dataclass
class ImportReport:
    """What an import did (or, when ``written`` is false, would have done)."""

    kind: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    dry_run: bool = False
    strict: bool = False
    written: bool = False

    def summary(self) -> str:
        counts = (
            f"{self.rows} rows: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {len(self.rejected)} rejected"
        )
        if self.dry_run:
            return f"{self.kind} (dry run, nothing written): {counts}"
        if not self.written:
            return f"{self.kind} NOT imported (--strict and rows were rejected): {counts}"
        return f"{self.kind} imported: {counts}"


def progress_bar(enabled: bool, description: str, total: int | None) -> tqdm[Any]:
    """A progress bar on stderr (a no-op when not ``enabled``)."""
    return tqdm(
        total=total,
        desc=description,
        unit=" rows",
        file=sys.stderr,
        disable=not enabled,
        mininterval=0.5,
        leave=False,
    )
