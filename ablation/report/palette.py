"""The report's colours, defined once: one per dimension and one per configuration, the
same in every plot (and in the page's legend of them).

A configuration takes a shade of its dimension's colour (lighter for shallower nets), so
no colour means a 1-D cell in one plot and the 2-D family in another; baselines are grey.
"""

from __future__ import annotations

import pandas as pd

# Dimension -> (colour of the family, colour map of its configurations' shades).
DIMENSIONS = {"1d": ("#1f77b4", "Blues"), "2d": ("#ff7f0e", "Oranges")}
OTHER = ("#7f7f7f", "Greys")  # baselines and dimensions the suite does not know
# Shades from this far into the colour map to its end: lighter ones vanish on white.
_LIGHTEST, _DARKEST = 0.45, 0.95


def dimension_colour(dimension) -> str:
    """The colour of a dimension's family (its lines and dots in the depth and compute
    plots)."""
    return DIMENSIONS.get(str(dimension), OTHER)[0]


def configuration_colours(table: pd.DataFrame) -> dict[str, str]:
    """Per configuration of the runs table (``configuration``, ``dimension``, ``depth``
    columns): a shade of its dimension's colour map, ordered by depth then name."""
    import matplotlib
    from matplotlib.colors import to_hex

    rows = table.drop_duplicates("configuration")
    colours = {}
    for dimension, part in rows.groupby(rows.dimension.fillna(""), sort=False):
        cmap = matplotlib.colormaps[DIMENSIONS.get(str(dimension), OTHER)[1]]
        names = list(part.sort_values(["depth", "configuration"]).configuration)
        for i, name in enumerate(names):
            share = i / (len(names) - 1) if len(names) > 1 else 1.0
            colours[name] = to_hex(cmap(_LIGHTEST + share * (_DARKEST - _LIGHTEST)))
    return colours
