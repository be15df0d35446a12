"""Names shared by every layer of the suite, defined once (DESIGN.md, style rule 6)."""

SAMPLE_RATE = 44100
# The W&B project every run, evaluation and report logs to unless WANDB_PROJECT is set.
WANDB_PROJECT = "unet-ablation"
# Evaluation choices, here so that `ablation eval --help` need not import torch.
EVALUATION_BACKENDS = ("torch", "museval")
EVALUATION_BASELINES = ("mixture", "gain", "oracle-irm")
# The file that marks a folder as an evaluation of `ablation eval` (and says of what).
EVALUATION_MANIFEST = "evaluation.json"
# MUSDB18's stems, in the order of its files; the default of every dataset and net.
SOURCES: tuple[str, ...] = ("drums", "bass", "other", "vocals")
# MUSDB18's derived target: everything but the vocals.
ACCOMPANIMENT: tuple[str, ...] = ("drums", "bass", "other")
# Target sets a user can ask for by name; any subset of a dataset's stems works too.
TARGET_SETS: dict[str, tuple[str, ...]] = {
    "4stems": SOURCES,
    "2stems": ("vocals", "accompaniment"),
}
# The target set of every stem a dataset has, whatever their names.
ALL_STEMS = "all"


def target_names(
    targets: str | tuple[str, ...] | list[str], stems: tuple[str, ...] = SOURCES
) -> tuple[str, ...]:
    """A target-set name (``"4stems"``, ``"2stems"``, ``"all"``) or a list of names, as a tuple.

    Args:
        targets: the name or the list.
        stems: the dataset's stem names, which ``"all"`` stands for.

    Raises:
        ValueError: for a name that is not in ``TARGET_SETS`` or ``"all"``.
    """
    if isinstance(targets, str):
        if targets == ALL_STEMS:
            return tuple(stems)
        if targets not in TARGET_SETS:
            raise ValueError(
                f"unknown target set {targets!r}: expected one of "
                f"{sorted([*TARGET_SETS, ALL_STEMS])} or a list of target names."
            )
        return TARGET_SETS[targets]
    return tuple(targets)


def target_members(target: str, stems: tuple[str, ...]) -> tuple[str, ...]:
    """The stems of a dataset that sum into ``target``: ``accompaniment`` is every stem but
    the vocals (MUSDB18's drums, bass and other) in a dataset with vocals; any other name
    is the stem itself."""
    if target == "accompaniment" and "vocals" in stems and target not in stems:
        return tuple(s for s in stems if s != "vocals")
    return (target,)


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
