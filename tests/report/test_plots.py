"""The report's plots: one colour per configuration and per dimension in every plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex

from ablation.report import plots
from ablation.report.runs import Run


def _sweep(folder):
    """Two seeds of 1-D and 2-D cells at depths 2 and 3: runs, runs table, per-track SDR."""
    runs, rows, scores = [], [], []
    for dimension in ("1d", "2d"):
        for depth in (2, 3):
            for seed in (0, 1):
                name = f"{dimension}-depth{depth}-seed{seed}"
                run = Run(name, folder, seed=seed, dimension=dimension, depth=depth, steps=100)
                run.configuration, run.wall_time_s = f"{dimension} depth{depth}", 60.0
                loss = np.array([0.3, 0.2, 0.1]) * (depth + seed)
                run.val_curve = pd.DataFrame({"step": [10, 50, 100], "val_loss": loss})
                runs.append(run)
                rows.append((name, run.configuration, dimension, depth, 1e12 * depth, depth))
                scores += [
                    (run.configuration, name, f"t{k}", "vocals", depth + k) for k in range(6)
                ]
    table = pd.DataFrame(
        rows, columns=["run", "configuration", "dimension", "depth", "training FLOPs",
                       "test SDR mean"],
    )  # fmt: skip
    tracks = pd.DataFrame(scores, columns=["configuration", "run", "track", "target", "SDR"])
    return runs, table, tracks


def test_one_colour_per_configuration_and_per_dimension_in_every_plot(tmp_path, monkeypatch):
    figures = {}
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.setdefault(path.stem, fig))
    runs, table, tracks = _sweep(tmp_path)
    configurations = list(dict.fromkeys(table.configuration))
    plots.plot_all(runs, table, tracks, configurations, tmp_path)
    lines = figures["val_loss"].axes[0].get_lines()
    in_val_loss = {}
    for run, line in zip(runs, lines, strict=True):
        in_val_loss.setdefault(run.configuration, set()).add(to_hex(line.get_color()))
    boxes = figures["sdr_boxplot"].axes[0].patches
    in_boxes = {
        c: {to_hex(box.get_facecolor(), keep_alpha=False)}
        for c, box in zip(configurations, boxes, strict=True)
    }
    assert in_val_loss == in_boxes  # seeds share their configuration's colour
    assert len({min(c) for c in in_boxes.values()}) == len(configurations)
    dimensions = {
        bars.get_label(): to_hex(bars.lines[0].get_color())
        for bars in figures["sdr_vs_depth"].axes[0].containers
    }
    scatter = figures["sdr_vs_compute"].axes[0].collections
    assert [to_hex(s.get_facecolor()[0]) for s in scatter] == [dimensions["1d"], dimensions["2d"]]
    # no configuration of one dimension wears the other dimension's colour
    assert dimensions["2d"] not in in_val_loss["1d depth3"] | in_val_loss["1d depth2"]
    assert dimensions["1d"] not in in_val_loss["2d depth3"] | in_val_loss["2d depth2"]
    for fig in figures.values():
        save(fig, tmp_path / "x.png")  # closes them
