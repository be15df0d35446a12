"""Reading W&B's offline run files (``run-*.wandb``) in tests: wandb ships no reader.

The file is a 7-byte header (``:W&B``, magic, version) and then LevelDB's log
format: 32 KiB blocks of records with a 7-byte header (checksum, length, type:
full 1, first 2, middle 3, last 4), each payload a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK, HEADER = 32 * 1024, 7
FULL, LAST = 1, 4


def records(path: Path) -> Iterator:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, pieces = HEADER, b""
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind = data[position + 6]
        if left < HEADER or (kind == 0 and length == 0):  # block trailer
            position += left
            continue
        pieces += data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            pieces = b""
            yield record


def history(path: Path) -> list[dict]:
    """The logged rows of a run file, in order."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            items = record.history.item
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
    return rows


def run_history(run_dir: Path) -> list[dict]:
    """A run's W&B history as W&B composes its offline segments when synced: each
    resumed segment that rewinds (``resume_from``) keeps the rows up to its branch
    point's ``_step`` and continues with its own rows."""
    rows: list[dict] = []
    for segment in sorted((Path(run_dir) / "wandb").glob("offline-run-*")):
        path = next(segment.glob("run-*.wandb"))
        runs = [r.run for r in records(path) if r.WhichOneof("record_type") == "run"]
        if runs and runs[0].branch_point.run:
            rows = [row for row in rows if row["_step"] <= runs[0].branch_point.value]
        rows += history(path)
    return rows
