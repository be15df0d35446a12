"""The SiSEC 2018 protocol (museval v4): metrics, framing, targets and how they are
grouped into BSS Eval calls.

Targets are grouped the way museval's ``eval_mus_track`` groups them (all targets of a
track jointly, whatever the stem names of the data), with one change. For a four-stem
model museval would score ``vocals`` a second time together with the derived
``accompaniment`` (drums + bass + other) and report that pair score as the vocals
score. Here the four stems are scored together and keep their scores, and the
(vocals, accompaniment) pair is scored in a separate call of which only
``accompaniment`` is kept. ``summary.md`` states the groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ablation.constants import EVALUATION_BACKENDS, SOURCES
from ablation.errors import AblationError

BACKENDS = EVALUATION_BACKENDS
METRICS = ("SDR", "SIR", "ISR", "SAR")
# SiSEC 2018 / museval v4 framing, in seconds.
WIN_SECONDS = 1.0
HOP_SECONDS = 1.0
# The order of musdb's targets, which museval's eval_mus_track follows.
MUSDB_TARGETS = ("vocals", "drums", "bass", "other", "accompaniment")
MUSDB_CHANNELS = 2
# What a single-source model's estimate is scored against: everything else.
COMPLEMENT = "rest"


class EvaluationError(AblationError):
    """A problem with an evaluation request, phrased for the user: what, found, remedy."""


@dataclass(frozen=True)
class Group:
    """Targets scored in one BSS Eval call, and those of them whose scores are kept.

    BSS Eval projects each estimate on all references of its call, so the scores
    of a target depend on which targets share its call.
    """

    together: tuple[str, ...]
    kept: tuple[str, ...]

    def describe(self) -> str:
        """E.g. ``{vocals, accompaniment} (kept: accompaniment)``."""
        kept = "all kept" if self.kept == self.together else f"kept: {', '.join(self.kept)}"
        return f"{{{', '.join(self.together)}}} ({kept})"


def _musdb_order(names: Sequence[str]) -> tuple[str, ...]:
    rank = {name: i for i, name in enumerate(MUSDB_TARGETS)}
    return tuple(sorted(names, key=lambda n: rank.get(n, len(rank))))


def scoring_groups(sources: Sequence[str], stems: Sequence[str] = SOURCES) -> list[Group]:
    """How the targets of an estimator with ``sources`` are scored.

    Args:
        sources: the estimator's own targets, e.g. the four stems.
        stems: the stems of the data it is scored on (MUSDB18's four by default).

    Returns:
        One or two groups: MUSDB18's four stems give the four stems together plus the
        (vocals, accompaniment) pair keeping accompaniment only; any other set of two
        or more (any stem names, as SiSEC scored all targets of a track jointly) is
        scored together; a single source is scored against its complement
        (``accompaniment`` for vocals, else ``rest``).
    """
    sources = tuple(sources)
    known = [*_musdb_order(stems), *(["accompaniment"] if "vocals" in stems else []), COMPLEMENT]
    if len(set(sources)) != len(sources) or not set(sources) <= set(known):
        raise EvaluationError(
            f"cannot evaluate targets {list(sources)}: expected distinct names among "
            f"{list(dict.fromkeys(known))} (the stems of the data and what derives from them). "
            f"Evaluate on data with the stems the model was trained on."
        )
    if sorted(sources) == sorted(SOURCES):
        four = _musdb_order(sources)
        return [Group(four, four), Group(("vocals", "accompaniment"), ("accompaniment",))]
    if len(sources) >= 2:
        ordered = _musdb_order(sources)
        return [Group(ordered, ordered)]
    (source,) = sources
    if source == "vocals":
        return [Group(("vocals", "accompaniment"), ("vocals", "accompaniment"))]
    return [Group((source, COMPLEMENT), (source,))]


def scored_targets(groups: Sequence[Group]) -> tuple[str, ...]:
    """All kept targets of ``groups`` in order, each once."""
    return tuple(dict.fromkeys(name for group in groups for name in group.kept))
