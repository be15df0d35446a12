"""Datasets the suite writes carry a marker: proof of what it wrote, so nothing else is
ever overwritten or deleted.

A generator writes its files inside one ``with``::

    with generated_dataset(out, "toy", recipe):
        ...  # write out/train/..., out/test/...

On entry the folder must be empty, missing, or hold only files an earlier generation
recorded (those are removed first: a generation replaces the last one); anything else
is refused before a byte is written. The marker (``out/.ablation-generated.json``) is
written before the first file, marked incomplete, and completed with the list of every
file written when the block ends. :func:`remove_generated` deletes exactly the files a
complete marker lists (and the folders they leave empty), never anything else.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ablation.errors import AblationError
from ablation.files import write_text

MARKER = ".ablation-generated.json"


class GeneratedDataError(AblationError):
    """A folder the suite was asked to write a dataset into, or to remove, holds files it
    did not write."""


def read_marker(root: str | Path) -> dict[str, Any] | None:
    """The marker of ``root``: ``{"generator", "recipe", "complete", "files", ...}``; None
    when the folder has none (user data, or a dataset of an older version)."""
    path = Path(root) / MARKER
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _files(root: Path) -> list[str]:
    """Every file and link under ``root`` (the marker aside), relative, sorted."""
    found = []
    for folder, dirs, names in os.walk(root):
        for name in names + [d for d in dirs if (Path(folder) / d).is_symlink()]:
            relative = (Path(folder) / name).relative_to(root).as_posix()
            if relative != MARKER:
                found.append(relative)
    return sorted(found)


def foreign_files(root: str | Path) -> list[str]:
    """Files under ``root`` that no complete marker of the suite lists (all of them when
    there is no marker); empty for a missing or empty folder."""
    root = Path(root)
    if not root.is_dir():
        return []
    marker = read_marker(root) or {}
    listed = set(marker.get("files", [])) if marker.get("complete") else set()
    return [f for f in _files(root) if f not in listed]


def _refusal(root: Path, foreign: list[str], doing: str) -> GeneratedDataError:
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    why = (
        "an interrupted generation left files it had not recorded yet"
        if (read_marker(root) or {}).get("complete") is False
        else "the suite did not write them"
    )
    return GeneratedDataError(
        f"{root} holds {len(foreign)} file(s) the suite did not record writing ({shown}; {why}), "
        f"so it will not {doing}: give an empty or new folder, or move those files away yourself."
    )


def remove_generated(root: str | Path) -> list[str]:
    """Delete the files a complete marker of ``root`` lists, then the folders left empty,
    then the marker; returns the removed files. Refuses (removing nothing) when ``root``
    holds any file the marker does not list."""
    root = Path(root)
    foreign = foreign_files(root)
    if foreign:
        raise _refusal(root, foreign, "remove anything there")
    marker = read_marker(root) or {}
    removed, parents = [], set()
    for relative in marker.get("files", []):
        path = root / relative
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(relative)
            parents.update(p for p in path.parents if root in p.parents)
    for folder in sorted(parents, key=lambda p: -len(p.parts)):  # deepest first
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    (root / MARKER).unlink(missing_ok=True)
    return removed


def _write_marker(root: Path, generator: str, recipe: dict, complete: bool, files: list) -> None:
    marker = {
        "generator": generator,
        "recipe": recipe,
        "complete": complete,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
    }
    write_text(root / MARKER, json.dumps(marker, indent=2))


@contextmanager
def generated_dataset(
    out: str | Path, generator: str, recipe: dict[str, Any], resume: bool = False
) -> Iterator[Path]:
    """Write a generated dataset into ``out`` (see the module docstring); yields ``out``.

    Args:
        out: the dataset folder (created when missing).
        generator: who writes it, e.g. ``"toy"``.
        recipe: the arguments that determine its files (JSON-serializable).
        resume: a generation of this very generator and recipe, finished or cut short,
            is continued in place (the generator keeps what it already wrote) instead
            of being removed first.

    Raises:
        GeneratedDataError: ``out`` holds files no earlier generation recorded.
    """
    out = Path(out)
    marker = read_marker(out)
    same = marker is not None and (marker.get("generator"), marker.get("recipe")) == (
        generator,
        json.loads(json.dumps(recipe)),
    )
    if not (resume and same):
        foreign = foreign_files(out)
        if foreign:
            raise _refusal(out, foreign, f"write the {generator} dataset there")
        if marker is not None:
            remove_generated(out)  # only files an earlier generation listed
    out.mkdir(parents=True, exist_ok=True)
    _write_marker(out, generator, recipe, complete=False, files=[])
    yield out
    _write_marker(out, generator, recipe, complete=True, files=_files(out))
