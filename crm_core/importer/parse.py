"""Reading an import file: is it CSV text at all, its encoding and delimiter, the header row
matched to our fields, then the rows with their line numbers."""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from crm_core.errors import ImportFailed

Source = str | os.PathLike[str] | IO[str]

SNIFF_BYTES = 64 * 1024
# The csv module refuses a whole file over one field longer than 128 KiB; with room up to
# 1 MiB such a field is one rejected row ("name longer than 200 characters") instead.
MAX_FIELD_CHARS = 1 << 20
DELIMITERS = (",", ";", "\t")

CUSTOMER_COLUMNS: dict[str, tuple[str, ...]] = {
    "external_id": ("external_id", "id", "customer_id", "customer_external_id", "externalid"),
    "name": ("name", "full_name", "fullname", "customer_name"),
    "phone": ("phone", "mobile", "telephone", "phone_number", "tel"),
    "email": ("email", "e_mail", "email_address", "mail"),
    "language": ("language", "lang", "locale"),
    "tags": ("tags", "tag", "labels"),
}
PURCHASE_COLUMNS: dict[str, tuple[str, ...]] = {
    "customer_external_id": ("customer_external_id", "customer_id", "customer", "external_id"),
    "customer_email": ("customer_email", "email", "e_mail"),
    "customer_phone": ("customer_phone", "phone", "mobile", "telephone"),
    "amount": ("amount", "total", "price", "value"),
    "currency": ("currency", "currency_code"),
    "purchased_at": (
        "purchased_at",
        "date",
        "time",
        "datetime",
        "timestamp",
        "purchase_date",
        "order_date",
    ),
    "external_ref": ("external_ref", "order_id", "reference", "ref", "order", "order_number"),
}


@dataclass
class Header:
    index: dict[str, int]  # our field -> column position
    ignored: list[str]
    width: int

    def has(self, name: str) -> bool:
        return name in self.index


def source_name(source: Source) -> str:
    if isinstance(source, str | os.PathLike):
        return Path(source).name
    return str(getattr(source, "name", "input"))


@contextmanager
def open_text(source: Source) -> Iterator[IO[str]]:
    """A text stream positioned at the start, after the content passed the "is it CSV" checks."""
    name = source_name(source)
    if isinstance(source, str | os.PathLike):
        try:
            with open(source, "rb") as raw:
                _check_bytes(raw.read(SNIFF_BYTES), name)
                raw.seek(0)
                _check_utf8(raw, name)
            stream: IO[str] = open(source, encoding="utf-8-sig", newline="")  # noqa: SIM115
        except OSError as exc:
            raise ImportFailed(f"cannot read {source}: {exc.strerror or exc}") from None
        with stream:
            yield stream
        return
    if not source.seekable():
        source = io.StringIO(source.read())
    yield source


def _check_bytes(head: bytes, name: str) -> None:
    if not head.strip():
        raise ImportFailed(f"{name} is empty: expected a CSV file with a header row")
    if head.startswith(b"PK\x03\x04"):
        raise ImportFailed(
            f"{name} is an Excel workbook or a zip archive, not CSV: export it as “CSV UTF-8”"
        )
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ImportFailed(f"{name} is UTF-16 text: save it as “CSV UTF-8”")
    if b"\x00" in head:
        raise ImportFailed(f"{name} is a binary file, not CSV text")


def _check_utf8(raw: IO[bytes], name: str) -> None:
    """Refuse a file that is not UTF-8, naming the line of the first bad byte. (The text
    stream decodes in chunks, so its own error could only say roughly where.)"""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    while chunk := raw.read(1 << 20):
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise _not_utf8(name, line + chunk[: exc.start].count(b"\n")) from None
        line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise _not_utf8(name, line) from None


def _check_text(head: str, name: str) -> str:
    """Reject non-CSV text; return the delimiter read from the header line."""
    stripped = head.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise ImportFailed(f"{name} is empty: expected a CSV file with a header row")
    if stripped[0] in "{[":
        raise ImportFailed(f"{name} looks like JSON, not CSV: expected a header row, then rows")
    header_line = stripped.splitlines()[0]
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties: the first, ","
    return best if counts[best] else ","


def read_rows(stream: IO[str], name: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and an iterator of (line number, cells); blank lines are skipped."""
    try:
        head = stream.read(SNIFF_BYTES)
    except UnicodeDecodeError:
        raise _not_utf8(name, 1) from None
    delimiter = _check_text(head, name)
    stream.seek(0)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    reader = csv.reader(stream, delimiter=delimiter, strict=True)
    line = 0

    def next_row() -> tuple[int, list[str]] | None:
        nonlocal line
        try:
            cells = next(reader)
        except StopIteration:
            return None
        except UnicodeDecodeError:
            raise _not_utf8(name, reader.line_num + 1) from None
        except csv.Error as exc:
            raise ImportFailed(
                f"{name}, line {reader.line_num}: not valid CSV ({exc}); check the quoting"
            ) from None
        start, line = line + 1, reader.line_num
        return start, cells

    first = next_row()
    while first is not None and not any(cell.strip() for cell in first[1]):
        first = next_row()
    if first is None:
        raise ImportFailed(f"{name} is empty: expected a CSV file with a header row")

    def body() -> Iterator[tuple[int, list[str]]]:
        while (item := next_row()) is not None:
            if any(cell.strip() for cell in item[1]):
                yield item

    return [cell.lstrip("\ufeff") for cell in first[1]], body()


def _not_utf8(name: str, line: int) -> ImportFailed:
    return ImportFailed(f"{name} is not UTF-8 text (near line {line}): save it as “CSV UTF-8”")


def _normalise_column_name(text: str) -> str:
    return re.sub(r"[\s\-.]+", "_", text.strip().lower()).strip("_")


def match_header(cells: Sequence[str], columns: dict[str, tuple[str, ...]], name: str) -> Header:
    alias_to_field = {alias: fld for fld, aliases in columns.items() for alias in aliases}
    index: dict[str, int] = {}
    ignored: list[str] = []
    for position, cell in enumerate(cells):
        fld = alias_to_field.get(_normalise_column_name(cell))
        if fld is None:
            ignored.append(cell.strip() or f"(column {position + 1})")
        elif fld in index:
            # Silently taking one of them could import the wrong value (e.g. an old e-mail).
            first = index[fld]
            raise ImportFailed(
                f"{name}: columns {first + 1} “{cells[first].strip()}” and {position + 1} "
                f"“{cell.strip()}” both give {fld}; keep one of them"
            )
        else:
            index[fld] = position
    if not index:
        expected = ", ".join(columns)
        # One column only: most likely another delimiter ("id|name|email").
        hint = "; separate columns with , ; or tab" if len(cells) == 1 else ""
        raise ImportFailed(
            f"{name} has no usable column (found: {', '.join(c.strip() for c in cells)}); "
            f"expected a header row naming some of: {expected}{hint}"
        )
    return Header(index=index, ignored=ignored, width=len(cells))


def surplus_cells(cells: list[str], width: int) -> str | None:
    """Why a row with values beyond the header's ``width`` columns is rejected, or ``None``
    (empty cells past the end, as spreadsheets write them, are fine)."""
    if len(cells) > width and any(c.strip() for c in cells[width:]):
        return (
            f"{len(cells)} values but the header has {width} columns "
            "(a value containing the delimiter must be quoted)"
        )
    return None


def cells_by_field(header: Header, cells: list[str]) -> dict[str, str] | str:
    """The row's values by field name (stripped), or the reason to reject it."""
    if (reason := surplus_cells(cells, header.width)) is not None:
        return reason
    return {
        fld: cells[pos].strip() if pos < len(cells) else "" for fld, pos in header.index.items()
    }


def count_lines(source: Source) -> int | None:
    """The number of rows of a file (for a progress bar's total), ``None`` for a stream."""
    if not isinstance(source, str | os.PathLike):
        return None
    count = 0
    with open(source, "rb") as raw:
        while chunk := raw.read(1 << 20):
            count += chunk.count(b"\n")
    return max(count - 1, 0)
