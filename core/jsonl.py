"""The one reader of JSON-lines files: every bad line is reported with its number, never fatal.

    records = read_jsonl(path)            # Records(rows=[(lineno, obj), ...], bad=[(lineno, why)])
    for lineno, row in records.rows: ...
    records.report(print_to_stderr)       # "path:12: skipped (not valid JSON: ...)"

Line numbers are 1-based physical lines of the file, so a user can open the file at the line.
A line that is not UTF-8, not JSON, nested past any sane depth, or (with `objects=True`) not a
JSON object is a bad line; blank lines are skipped silently. Only a missing or unreadable file
raises (`OSError` with the path), because then there is nothing to skip.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass
class Records:
    path: str
    rows: list[tuple[int, Any]] = field(default_factory=list)  # (line number, parsed value)
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)

    def add_bad(self, lineno: int, why: str) -> None:
        """A row that parsed but that the caller cannot use (missing field, wrong type)."""
        self.bad.append((lineno, why))

    def report(self, emit: Callable[[str], None], limit: int | None = None) -> None:
        """One line per bad row (`path:LINE: skipped (why)`), at most `limit` of them."""
        shown = self.bad if limit is None else self.bad[:limit]
        for lineno, why in shown:
            emit(f"{self.path}:{lineno}: skipped ({why})")
        if len(shown) < len(self.bad):
            emit(f"{self.path}: ... and {len(self.bad) - len(shown)} more bad rows")


def parse_line(raw: bytes | str, objects: bool = True) -> tuple[Any, str | None]:
    """(value, None) for a good line, (None, why) for a bad one."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, f"not UTF-8 text (byte {e.start})"
    if "\x00" in raw:
        return None, "binary data (NUL byte), not JSON text"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        return None, f"not valid JSON: {e.msg} at column {e.colno}"
    except RecursionError:  # "[[[[...]]]]": json recurses per level; it costs this line only
        return None, "JSON nested too deeply"
    except ValueError as e:  # a number of more digits than Python converts to int
        return None, f"not usable JSON: {str(e).split(';')[0][:120]}"
    if objects and not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__}, not an object"
    return value, None


def read_jsonl(path: str | Path, objects: bool = True) -> Records:
    """Every non-blank line of `path` parsed; bad lines collected in `.bad`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, not a JSON-lines file")
    records = Records(str(path))
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            value, why = parse_line(raw, objects)
            if why is None:
                records.rows.append((lineno, value))
            else:
                records.bad.append((lineno, why))
    return records
