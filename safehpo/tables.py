"""How numbers are written: CSV fields and files, Markdown tables (report.md) and plain-text
tables (the terminal). One place, so summary.csv, audit.csv, report.md and `safehpo audit`
write the same value the same way."""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Iterable, Sequence

import numpy as np

def field_text(value: Any) -> str:
    """A CSV field: '' for missing, integers as integers, floats with 6 significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{float(value):.6g}"
    return str(value)


def decimals_text(value: Any, decimals: int) -> str:
    """A CSV field with at most `decimals` decimals and no exponent: 133.333, 200, 0.5."""
    if isinstance(value, (float, np.floating)) and not math.isnan(value):
        text = f"{float(value):.{decimals}f}"
        text = text.rstrip("0").rstrip(".") if "." in text else text
        return "0" if text in ("-0", "") else text
    return field_text(value)


def csv_text(columns: Sequence[str], rows: Iterable[dict], fmt=field_text) -> str:
    """A CSV file's text: the header, then each row's `columns` written by `fmt`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([fmt(row.get(c)) for c in columns])
    return buf.getvalue()


def fixed_text(value: float | None, digits: int = 3) -> str:
    """A number with `digits` decimals ('-' if missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def significant_text(value: float | None, digits: int = 4) -> str:
    """A number with `digits` significant digits ('-' if missing): lambda and alpha span decades."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> str:
    """A Markdown table; columns from `right_from` on are right-aligned; a cell's `|` is escaped."""
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])
