"""Prompt data: the synthetic task or a GSM8K / MATH-style jsonl/parquet file, and a resumable stream.

Every source ends up as rows {prompt_id, problem, answer, solution}. A bad row in a file
(unparsable, missing or empty field, wrong type) is reported with its row number and skipped;
it never stops a run. A missing column or an unreadable file is a configuration error and is
raised at once, naming the field or path.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Tag

from core import arith_task, shortcut_task
from core.arith_task import ArithTaskConfig

SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class SyntheticTask:
    config: type[BaseModel]
    make_split: Callable[[Any, str], list[dict]]  # (config, split) -> rows
    # (config, rows, rate, seed) -> the rows of the warm start's second stage, which gives the
    # policy its habit; None: `rate` of the solutions cut to the answer (learner.sft.answer_only)
    habit_rows: Callable[[Any, list[dict], float, int], list[dict]] | None = None


# The generated tasks, by the name `data.synthetic.task` gives (none: the arithmetic task).
SYNTHETIC_TASKS: dict[str, SyntheticTask] = {
    "arith": SyntheticTask(ArithTaskConfig, arith_task.make_split),
    "shortcut": SyntheticTask(shortcut_task.ShortcutTaskConfig, shortcut_task.make_split, shortcut_task.habit_rows),
}
_FINAL_MARK = "####"
_NUMBER_WITH_COMMAS = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")


class FieldMap(BaseModel):
    """Which column holds what; None means: try the usual names in order."""
    model_config = ConfigDict(extra="forbid")
    problem: str | None = None
    answer: str | None = None
    solution: str | None = None


_DEFAULT_COLUMNS = {
    "problem": ("problem", "question", "query"),
    "answer": ("answer", "final_answer", "ground_truth"),
    "solution": ("solution",),
}


@dataclass
class LoadedData:
    rows: list[dict]
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row index, reason)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)


def final_answer(answer_text: str) -> str:
    """GSM8K's '...#### 1,000' -> '1000'; an answer without the mark is returned stripped."""
    final = answer_text.rsplit(_FINAL_MARK, 1)[-1].strip()
    if _NUMBER_WITH_COMMAS.fullmatch(final):
        final = final.replace(",", "")
    return final


# ---- reading files ------------------------------------------------------------------------

def _read_jsonl(path: Path) -> tuple[list[Any], list[tuple[int, str]]]:
    """Whole-file Arrow parse first (fast); a file Arrow rejects is re-read line by line so one
    bad line costs that line only."""
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        return pj.read_json(str(path)).to_pylist(), []
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    records: list[Any] = []
    bad: list[tuple[int, str]] = []
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            records.append(None)
            bad.append((i, f"not valid JSON: {e.msg} at column {e.colno}"))
    return records, bad


def _read_parquet(path: Path) -> tuple[list[Any], list[tuple[int, str]]]:
    import pyarrow.parquet as pq
    return pq.read_table(str(path)).to_pylist(), []


_READERS: dict[str, Callable[[Path], tuple[list[Any], list[tuple[int, str]]]]] = {
    ".jsonl": _read_jsonl,
    ".json": _read_jsonl,
    ".parquet": _read_parquet,
}


def _resolve_columns(records: list[Any], fields: FieldMap, path: Path) -> dict[str, str | None]:
    present: set[str] = set()
    for r in records:
        if isinstance(r, dict):
            present.update(r)
    chosen: dict[str, str | None] = {}
    for role, defaults in _DEFAULT_COLUMNS.items():
        configured = getattr(fields, role)
        if configured is not None:
            if configured not in present:
                raise ValueError(f"{path}: column {configured!r} (fields.{role}) not found; "
                                 f"columns are {sorted(present)}")
            chosen[role] = configured
        else:
            chosen[role] = next((c for c in defaults if c in present), None)
    for role in ("problem", "answer"):
        if chosen[role] is None:
            raise ValueError(f"{path}: no {role} column among {list(_DEFAULT_COLUMNS[role])}; "
                             f"set fields.{role} (columns are {sorted(present)})")
    return chosen


def _text_field(record: dict, column: str, allow_number: bool) -> tuple[str | None, str]:
    value = record.get(column)
    if value is None:
        return None, f"missing {column!r}"
    if allow_number and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None, f"{column!r} is {type(value).__name__}, not a string"
    if not value.strip():
        return None, f"empty {column!r}"
    return value, ""


def _to_row(record: Any, columns: dict[str, str | None], prompt_id: str) -> tuple[dict | None, str]:
    if not isinstance(record, dict):
        return None, f"row is {type(record).__name__}, not an object"
    problem, why = _text_field(record, columns["problem"], allow_number=False)
    if problem is None:
        return None, why
    answer_text, why = _text_field(record, columns["answer"], allow_number=True)
    if answer_text is None:
        return None, why
    solution = answer_text  # GSM8K: the answer column is the worked solution
    if columns["solution"] is not None and isinstance(record.get(columns["solution"]), str):
        solution = record[columns["solution"]]
    answer = final_answer(answer_text)
    if not answer:
        return None, f"empty final answer in {columns['answer']!r}"
    return {"prompt_id": prompt_id, "problem": problem, "answer": answer, "solution": solution}, ""


def load_file(path: str | Path, fields: FieldMap | None = None) -> LoadedData:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unsupported dataset format {path.suffix!r}; use one of {sorted(_READERS)}")
    records, skipped = reader(path)
    columns = _resolve_columns(records, fields or FieldMap(), path)
    already_bad = {i for i, _ in skipped}
    rows = []
    for i, record in enumerate(records):
        if i in already_bad:
            continue
        row, why = _to_row(record, columns, prompt_id=f"{path.stem}-{i}")
        if row is None:
            skipped.append((i, why))
        else:
            rows.append(row)
    skipped.sort()
    if not rows:
        first = "; ".join(f"row {i}: {why}" for i, why in skipped[:3])
        raise ValueError(f"{path}: no usable rows ({len(skipped)} skipped: {first})")
    return LoadedData(rows=rows, skipped=skipped)


def synthetic_task(config: Any) -> str:
    """The name of the task a `data.synthetic` section (a dict or a task config) asks for."""
    found = config.get("task", "arith") if isinstance(config, dict) else getattr(config, "task", "arith")
    return found if isinstance(found, str) else repr(found)


def _without_arith_tag(config: Any) -> Any:
    # The arithmetic task's config has no `task` field; `task: arith` only says it is meant.
    if isinstance(config, dict) and config.get("task") == "arith":
        return {k: v for k, v in config.items() if k != "task"}
    return config


# The type of `data.synthetic`: the task config that `task` names.
SyntheticTaskConfig = Annotated[
    Union[tuple(Annotated[task.config, Tag(name)] for name, task in SYNTHETIC_TASKS.items())],
    Discriminator(synthetic_task), BeforeValidator(_without_arith_tag)]


def load_dataset(spec: str, fields: FieldMap | None = None, synthetic: BaseModel | None = None,
                 split: str = "train") -> LoadedData:
    """`spec` is "synthetic" (the task `synthetic` configures, the arithmetic one by default;
    `split` train/eval) or a jsonl/parquet path."""
    if spec == SYNTHETIC:
        config = synthetic or ArithTaskConfig()
        return LoadedData(rows=SYNTHETIC_TASKS[synthetic_task(config)].make_split(config, split))
    return load_file(spec, fields)


# ---- the resumable prompt stream ----------------------------------------------------------

class PromptStream:
    """Endless batches of rows, reshuffled each epoch by (seed, epoch).

    The state is three integers, so a resumed run continues at exactly the same data position.
    A batch that crosses an epoch boundary takes the rest of one epoch and the start of the next.
    """

    def __init__(self, rows: list[dict], batch_size: int, seed: int = 0, shuffle: bool = True):
        if not rows:
            raise ValueError("PromptStream needs at least one row")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.rows, self.batch_size, self.seed, self.shuffle = rows, batch_size, seed, shuffle
        self.epoch, self.position = 0, 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.rows)))
        if self.shuffle:
            random.Random(f"{self.seed}-{epoch}").shuffle(order)
        return order

    def next_batch(self) -> list[dict]:
        batch = []
        while len(batch) < self.batch_size:
            if self.position == len(self._order):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._epoch_order(self.epoch)
            batch.append(self.rows[self._order[self.position]])
            self.position += 1
        return batch

    def __iter__(self) -> Iterator[list[dict]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position,
                "num_rows": len(self.rows)}

    def load_state_dict(self, state: dict) -> None:
        if state["num_rows"] != len(self.rows):
            raise ValueError(f"stream state is for {state['num_rows']} rows, this stream has {len(self.rows)}")
        if not 0 <= state["position"] <= len(self.rows):
            raise ValueError(f"stream position {state['position']} is out of range")
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._order = self._epoch_order(self.epoch)
