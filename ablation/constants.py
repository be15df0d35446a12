"""Names shared by every layer of the suite, defined once (DESIGN.md, style rule 6)."""

SAMPLE_RATE = 44100
# The W&B project every run, evaluation and report logs to unless WANDB_PROJECT is set.
WANDB_PROJECT = "unet-ablation"
# The file that marks a folder as an evaluation of `ablation eval` (and says of what).
EVALUATION_MANIFEST = "evaluation.json"
SOURCES: tuple[str, ...] = ("drums", "bass", "other", "vocals")
# MUSDB18's derived target: everything but the vocals.
ACCOMPANIMENT: tuple[str, ...] = ("drums", "bass", "other")
# Target sets a user can ask for by name; any subset of SOURCES works too.
TARGET_SETS: dict[str, tuple[str, ...]] = {
    "4stems": SOURCES,
    "2stems": ("vocals", "accompaniment"),
}


def target_names(targets: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A target-set name (``"4stems"``, ``"2stems"``) or a list of names, as a tuple.

    Raises:
        ValueError: for a name that is not in ``TARGET_SETS``.
    """
    if isinstance(targets, str):
        if targets not in TARGET_SETS:
            raise ValueError(
                f"unknown target set {targets!r}: expected one of {sorted(TARGET_SETS)} or a "
                f"list of target names."
            )
        return TARGET_SETS[targets]
    return tuple(targets)


# Metric names: the checkpoint monitor and the sweep YAML metric use these constants.
TRAIN_LOSS = "train/loss"
VAL_LOSS = "val/loss"
VAL_MSE = "val/mse"
VAL_SDR = "val/sdr"  # mean over sources of the whole-segment SDR
MONITOR = VAL_SDR
MONITOR_MODE = "max"


def val_sdr(source: str) -> str:
    """Name of the per-source validation SDR, e.g. ``val/sdr/vocals``."""
    return f"{VAL_SDR}/{source}"
