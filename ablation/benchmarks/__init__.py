"""Benchmarks behind ``make bench`` / ``ablation bench [NAME ...]``.

Each module here defines ``main(quick: bool = False) -> None`` that measures two
things side by side in one run and prints their ratio; speed targets are shown
this way, never with timed tests, because the machines are shared and noisy.
"""

import importlib
import inspect

# name -> module under ablation.benchmarks; modules are imported lazily so one
# benchmark's heavy imports never slow another.
BENCHMARKS: dict[str, str] = {
    "data": "data",
    "bsseval": "bsseval",
    "train": "train",
    "ema": "ema",
    "scale": "scale",
}
# Run only when named: the scale rehearsal renders and processes hours of audio.
ON_REQUEST = ("scale",)


def run(names: list[str] | None = None, quick: bool = False, **options: object) -> None:
    """Run the named benchmarks (all but :data:`ON_REQUEST` when ``names`` is empty); each takes the
    ``options`` its ``main`` names (``f90`` for ``train``) and ignores the others."""
    names = names or [name for name in BENCHMARKS if name not in ON_REQUEST]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}: expected one of {sorted(BENCHMARKS)}.")
    for name in names:
        module = importlib.import_module(f"ablation.benchmarks.{BENCHMARKS[name]}")
        print(f"\n=== bench {name} ===", flush=True)
        accepted = inspect.signature(module.main).parameters
        module.main(quick=quick, **{k: v for k, v in options.items() if k in accepted})
