"""Markdown tables for the summaries of evaluations and reports."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def markdown_table(df: pd.DataFrame, digits: int = 2) -> str:
    """A pipe table of ``df`` (index included), numbers rounded to ``digits``."""

    def cell(value: Any) -> str:
        if isinstance(value, float | np.floating):
            return "–" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    header = [str(df.index.name or ""), *map(str, df.columns)]
    rows = [
        [cell(i), *map(cell, row)]
        for i, row in zip(df.index, df.itertuples(index=False), strict=True)
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
