"""Logging a finished report to a W&B run ``report-<name>``, when W&B is online."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from ablation.constants import WANDB_PROJECT


def log_report(
    name: str, table: pd.DataFrame, pairs: pd.DataFrame, plots: list[Path], report: Path
) -> None:
    """Log the runs and significance tables and the plots; a failure only warns."""
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
            }
        )
        run.finish()
    except Exception as error:  # logging is optional: the files are complete
        warnings.warn(f"W&B logging of the report skipped ({error}); see {report}.", stacklevel=2)
