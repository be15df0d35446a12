"""Scoring groups: which targets share a BSS Eval call and which scores are kept."""

from __future__ import annotations

import pytest
from evaluation_helpers import FOUR

from ablation.constants import SOURCES
from ablation.evaluation import EvaluationError, scoring_groups


def test_four_stems_keep_their_vocals_and_score_accompaniment_apart():
    groups = scoring_groups(SOURCES)
    assert groups[0].together == FOUR and groups[0].kept == FOUR
    assert groups[1].together == ("vocals", "accompaniment")
    assert groups[1].kept == ("accompaniment",)


@pytest.mark.parametrize(
    ("sources", "together", "kept"),
    [
        (("vocals", "accompaniment"), ("vocals", "accompaniment"), ("vocals", "accompaniment")),
        (("vocals",), ("vocals", "accompaniment"), ("vocals", "accompaniment")),
        (("bass",), ("bass", "rest"), ("bass",)),
        (("bass", "vocals"), ("vocals", "bass"), ("vocals", "bass")),
    ],
)
def test_other_target_sets_are_scored_in_one_group(sources, together, kept):
    (group,) = scoring_groups(sources)
    assert (group.together, group.kept) == (together, kept)


def test_unknown_targets_are_refused():
    with pytest.raises(EvaluationError, match="piano"):
        scoring_groups(("vocals", "piano"))
