"""museval's handling of BSS Eval inputs: conversion, padding, shape and silence checks."""

from __future__ import annotations

import numbers
import warnings

import museval
import numpy as np
from museval import metrics as museval_metrics


def check_sizes(**sizes: int | None) -> None:
    for name, value in sizes.items():
        integral = isinstance(value, numbers.Integral) or (
            isinstance(value, float) and value.is_integer()
        )
        if value is not None and not (integral and value >= 1):
            raise ValueError(
                f"{name} must be a positive whole number of samples, got {value!r}; "
                "to score the whole signal as one frame, pass win=hop=its length."
            )


def prepare(references, estimates, padding: bool) -> tuple[np.ndarray, np.ndarray]:
    """museval's input handling: array conversion, padding, shape and silence checks."""
    estimates = np.asarray(estimates)
    references = np.asarray(references)
    if padding:
        references, estimates = museval.pad_or_truncate(references, estimates)
    # museval computes in float64 whatever it is given.
    estimates = np.atleast_3d(_floating(estimates))
    references = np.atleast_3d(_floating(references))
    # museval's checks on shapes and sizes, on empty stand-ins: its silence
    # check scans the whole arrays slowly, _check_not_silent does it in blocks.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        museval_metrics.validate(
            np.empty(references.shape[:1] + (0,) + references.shape[2:]),
            np.empty(estimates.shape[:1] + (0,) + estimates.shape[2:]),
        )
    if references.shape != estimates.shape:
        raise ValueError(
            f"references and estimates must have the same shape (sources, samples, "
            f"channels), got {references.shape} and {estimates.shape}."
        )
    if references.size == 0:
        warnings.warn(
            "references and estimates are empty: expected (sources, samples, channels) "
            "audio; SDR, ISR, SIR and SAR are empty arrays.",
            stacklevel=3,
        )
        return references, estimates
    _check_not_silent(references, "reference")
    _check_not_silent(estimates, "estimated")
    return _positive_strides(references), _positive_strides(estimates)


def _positive_strides(array: np.ndarray) -> np.ndarray:
    """The array itself when torch can view it (it cannot view reversed arrays)."""
    return array if all(stride >= 0 for stride in array.strides) else array.copy()


def _floating(array: np.ndarray) -> np.ndarray:
    return array if array.dtype.kind == "f" else array.astype(np.float64)


def _check_not_silent(sources: np.ndarray, kind: str, block: int = 2**16) -> None:
    """museval's ``_any_source_silent`` check, stopping at each source's first sound."""
    silent = list(range(sources.shape[0]))
    for start in range(0, sources.shape[1], block):
        summed = sources[silent, start : start + block].sum(axis=2)
        silent = [j for j, row in zip(silent, summed, strict=True) if not row.any()]
        if not silent:
            return
    raise ValueError(
        f"{kind} source(s) {silent} are all zeros (their channels sum to zero everywhere): "
        "BSS Eval needs every reference and estimated source to be non-silent. "
        "Leave silent targets out of the evaluation."
    )
