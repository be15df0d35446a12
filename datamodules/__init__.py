"""MUSDB18 data for every model of the suite: one DataModule, one cache, the generated
datasets (toy and rendered).

Names are imported lazily so that pure-torch code (benchmarks, evaluation) can use
the cache and the toy generator without importing Lightning.
"""

import importlib

_EXPORTS = {
    "DataError": "ablation.tracks",
    "MUSDBDataModule": "datamodules.musdb",
    "make_toy_dataset": "datamodules.toy",
    "make_rendered_dataset": "datamodules.rendered",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
