"""Logging a finished report to a W&B run ``report-<name>``, when W&B is online."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from ablation.constants import WANDB_PROJECT
from ablation.report.listening import Excerpt


def log_report(
    name: str,
    table: pd.DataFrame,
    pairs: pd.DataFrame,
    plots: list[Path],
    report: Path,
    excerpts: list[Excerpt] = (),
    out: Path | None = None,
) -> None:
    """Log the runs and significance tables, the plots and the listening excerpts (a
    table: one row per track and mixture, reference or configuration, audio per target);
    a failure only warns."""
    from ablation.wandb_mode import wandb_online

    if not wandb_online():
        return
    try:
        import wandb

        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
            name=f"report-{name}",
            job_type="report",
        )
        run.log(
            {
                "report/runs": wandb.Table(dataframe=table.astype(str)),
                "report/significance": wandb.Table(dataframe=pairs.astype(str)),
                **{f"report/{p.stem}": wandb.Image(str(p)) for p in plots},
                **(
                    {"report/listening": _listening_table(wandb, excerpts, out)} if excerpts else {}
                ),
            }
        )
        run.finish()
    except Exception as error:  # logging is optional: the files are complete
        warnings.warn(f"W&B logging of the report skipped ({error}); see {report}.", stacklevel=2)


def _listening_table(wandb, excerpts: list[Excerpt], out: Path):
    targets = list(dict.fromkeys(t for e in excerpts for t in e.targets))
    table = wandb.Table(columns=["track", "start (s)", "row", *targets])
    for e in excerpts:
        rows = {"mixture": dict.fromkeys(targets[:1], e.mixture), **e.rows}
        for label, clips in rows.items():
            audio = [clips.get(t) for t in targets]
            audio = [wandb.Audio(str(out / c.audio)) if c else None for c in audio]
            table.add_data(e.track, round(e.start_seconds, 2), label, *audio)
    return table
