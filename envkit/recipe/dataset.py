"""What a recipe's dataset must hold, read before anything loads: the file formats datasets reads, the fields a
prompt template names, and a local file's first row (its columns)."""

from __future__ import annotations

import csv
import io
import json
import re
import string
from pathlib import Path

from envkit.files import read_regular_head
from envkit.recipe.paths import FileProblem, local_file
from envkit.recipe.schema import DatasetSpec

# A local dataset file's suffix -> the datasets builder that reads it.
DATA_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
MAX_FORMAT_WIDTH = 10_000  # a prompt_template's widths and precisions: a prompt is a few thousand characters
FIRST_ROW_BYTES = 2**20  # a dataset's first row (or CSV header), read to check its columns


def data_file(base: Path, value: str) -> str:
    """A local dataset file (envkit.recipe.paths.local_file) of a format datasets reads (DATA_FORMATS)."""
    if Path(value).suffix.lower() not in DATA_FORMATS:
        raise FileProblem(f"{Path(value).name}: not a dataset file datasets can read; use {', '.join(DATA_FORMATS)}")
    return local_file(base, value)


def template_fields(template: str) -> list[str]:
    """The row fields a ``str.format`` template reads (``{question}``, ``{meta[id]}`` -> meta); ValueError if malformed.

    A positional field (``{}``, ``{0}``) is returned as written: the row is passed by name, so it cannot be filled.
    What would only fail when the first prompt is formatted, at training start, is a ValueError here: an
    attribute (``{question.nope}``; the row's values are text and numbers), a conversion other than !r !s !a,
    a width or precision from the row (``{q:{w}}``) or above MAX_FORMAT_WIDTH (``{q:>2000000000}`` asks for
    gigabytes of padding).
    """
    fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
              if name is not None]
    for name, spec, conversion in fields:
        if "." in name.split("[")[0]:
            raise ValueError(f"{{{name}}}: an attribute of a field; name the field (or an item: {{field[key]}})")
        if conversion not in (None, "r", "s", "a"):
            raise ValueError(f"{{{name}!{conversion}}}: unknown conversion; use !r, !s or !a")
        if "{" in (spec or ""):
            raise ValueError(f"{{{name}:{spec}}}: a format taken from a field; write the width out")
        if any(int(number) > MAX_FORMAT_WIDTH for number in re.findall(r"\d+", spec or "")):
            raise ValueError(f"{{{name}:{spec}}}: a width or precision above {MAX_FORMAT_WIDTH}")
    return list(dict.fromkeys(name.split(".")[0].split("[")[0] or "{}" for name, _, _ in fields))


def _prompt_columns(data: DatasetSpec) -> list[tuple[str, str]]:
    """(recipe key, dataset column) pairs the prompt and answer read."""
    prompt = [("dataset.prompt_template", f) for f in template_fields(data.prompt_template)] if data.prompt_template \
        else [("dataset.prompt_field", data.prompt_field)]
    return prompt + [("dataset.answer_field", data.answer_field)]


def missing_columns(data: DatasetSpec, columns: list[str]) -> str | None:
    """Which key of the recipe names a column the dataset lacks, as an error message; None when all are there."""
    for key, column in _prompt_columns(data):
        if column not in columns:
            return f"{key}: dataset has no field {column!r} (fields: {', '.join(columns)})"
    return None


def first_row(path: str):
    """The first row of a JSONL file (its first non-blank line, parsed), or a CSV's header as a mapping of its
    column names; None if it cannot be read or parsed."""
    try:  # its head only: a first line of gigabytes, a FIFO or a device is no first row
        head = read_regular_head(path, FIRST_ROW_BYTES).decode("utf-8")
        if path.lower().endswith(".csv"):
            header = next(csv.reader(io.StringIO(head, newline="")), None)
            return dict.fromkeys(header) if header else None
        return json.loads(next((line for line in head.splitlines() if line.strip()), ""))
    except (OSError, UnicodeDecodeError, ValueError, csv.Error, RecursionError):
        return None
