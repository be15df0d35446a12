"""Test-set evaluation of a checkpoint or a baseline, the way SiSEC 2018 evaluated.

Protocol (museval v4, the SiSEC 2018 MUS task): BSS Eval *images* metrics (SDR,
SIR, ISR, SAR) on 1 s windows with a 1 s hop, the median over the frames of a
track, then the median over tracks. A window where a reference or an estimate
is silent has no score (museval gives NaN); such frames are left out of every
median and counted in the summary.

Targets are grouped the way museval's ``eval_mus_track`` groups them, with one
change. For a four-stem model museval would score ``vocals`` a second time
together with the derived ``accompaniment`` (drums + bass + other) and report
that pair score as the vocals score. Here the four stems are scored together
and keep their scores, and the (vocals, accompaniment) pair is scored in a
separate call of which only ``accompaniment`` is kept. ``summary.md`` states
the groups.

An output folder holds::

    evaluation.json        what was evaluated; a later run resumes only the same evaluation
    <subset>/<track>.json  museval's per-track format, plus "mse", "samples", "scored_together"
    results.csv            museval's frame table: track, target, metric, time, score
    tracks.csv             per track and target: the median over frames of each metric, and MSE
    summary.json           {target: {metric: median over tracks of the median over frames}}
    summary.md             the same, the mean over tracks, NaN frame counts, scoring groups
    sdr_boxplot.png        per-track SDR per target

Each track is written by one worker (write, then rename), and the summaries are
built from the per-track files only, so an interrupted evaluation resumes where
it stopped and a parallel run gives the files of a serial one.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simplejson
import soundfile as sf
import torch
import torchaudio
from tqdm.auto import tqdm

from ablation.children import die_with_parent, terminate_children_on_sigterm
from ablation.constants import (
    EVALUATION_MANIFEST,
    SAMPLE_RATE,
    SOURCES,
    WANDB_PROJECT,
    target_names,
)
from ablation.errors import AblationError
from ablation.files import read_json, write_text
from ablation.tables import markdown_table

BASELINES = ("mixture", "gain", "oracle-irm")
BACKENDS = ("torch", "museval")
METRICS = ("SDR", "SIR", "ISR", "SAR")
# SiSEC 2018 / museval v4 framing, in seconds.
WIN_SECONDS = 1.0
HOP_SECONDS = 1.0
# The 2-D family's STFT (Spleeter's): the oracle mask on it is the ceiling of a masking net.
IRM_N_FFT = 4096
IRM_HOP = 1024
# The order of musdb's targets, which museval's eval_mus_track follows.
MUSDB_TARGETS = ("vocals", "drums", "bass", "other", "accompaniment")
ACCOMPANIMENT = ("drums", "bass", "other")
MUSDB_CHANNELS = 2
# What a single-source model's estimate is scored against: everything else.
COMPLEMENT = "rest"

MANIFEST = EVALUATION_MANIFEST


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


def scoring_groups(sources: Sequence[str]) -> list[Group]:
    """How the targets of an estimator with ``sources`` are scored.

    Args:
        sources: the estimator's own targets, e.g. the four stems.

    Returns:
        One or two groups: four stems give the four stems together plus the
        (vocals, accompaniment) pair keeping accompaniment only; any other set
        of two or more is scored together; a single source is scored against
        its complement (``accompaniment`` for vocals, else ``rest``).
    """
    sources = tuple(sources)
    if len(set(sources)) != len(sources) or not set(sources) <= set(MUSDB_TARGETS):
        raise EvaluationError(
            f"cannot evaluate targets {list(sources)}: expected distinct names among "
            f"{list(MUSDB_TARGETS)} (the MUSDB18 targets). Train with a target set of those."
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


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs to score one track; picklable for worker processes."""

    root: str
    is_wav: bool
    subset: str
    out: str
    ckpt: str | None
    baseline: str | None
    sources: tuple[str, ...]
    groups: tuple[Group, ...]
    sample_rate: int  # of the dataset: scoring windows are 1 s of it
    net_rate: int  # where the estimator works; mixtures are resampled to it and back
    segment: int | None  # samples (at net_rate) per segment: the checkpoint's training segment
    metrics: str
    device: str

    def track_file(self, name: str) -> Path:
        """Per-track JSON, where museval's ``eval_mus_track`` puts it."""
        return Path(self.out) / self.subset / f"{name}.json"


# ---------------------------------------------------------------- audio and estimates


def _read_wav(path: str) -> np.ndarray:
    audio, _ = sf.read(path, always_2d=True, dtype="float64")
    return audio


def load_track(track: Any, is_wav: bool) -> np.ndarray:
    """Decode a musdb track once and return its mixture ``(samples, channels)``.

    The sources are decoded once and cached on the track, so every
    ``track.targets[name].audio`` afterwards is the sum musdb (and museval) use.
    HQ folders are read with soundfile (the same samples stempeg gives) because
    they may lack ``mixture.wav``; the mixture is then the sum of the stems.
    """
    missing = sorted(set(SOURCES) - set(track.sources))
    if missing:
        raise EvaluationError(
            f"track {track.name!r} has no {', '.join(missing)} stem: expected all of "
            f"{list(SOURCES)}. Complete the track folder or remove it from the subset."
        )
    for source in track.sources.values():
        source.audio = _read_wav(source.path) if is_wav else source.audio
    if is_wav and not os.path.exists(track.path):
        return track.targets["linear_mixture"].audio
    return _read_wav(track.path) if is_wav else track.audio


def references(track: Any, names: Sequence[str], single: str | None) -> dict[str, np.ndarray]:
    """References ``(samples, channels)`` of ``names`` from a track read by load_track:
    musdb's targets, and for ``rest`` the sum of the sources other than ``single``."""
    return {
        name: sum(track.targets[s].audio for s in SOURCES if s != single)
        if name == COMPLEMENT
        else track.targets[name].audio
        for name in names
    }


def oracle_irm(mixture: np.ndarray, refs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ideal ratio mask estimates: ``|S_j| / sum_k |S_k|`` applied to the mixture STFT.

    Args:
        mixture: ``(samples, channels)``.
        refs: target name -> ``(samples, channels)``; the targets should add up
            to the mixture.

    Returns:
        target name -> ``(samples, channels)`` float64.
    """
    from ablation.spectral import ISTFT, STFT

    stft, istft = STFT(IRM_N_FFT, IRM_HOP), ISTFT(IRM_N_FFT, IRM_HOP)

    def spectrum(audio: np.ndarray) -> torch.Tensor:
        return stft(torch.as_tensor(audio.T, dtype=torch.float32))  # (channels, bins, frames)

    with torch.inference_mode():
        mix = spectrum(mixture)
        magnitudes = {name: spectrum(audio).abs() for name, audio in refs.items()}
        # Bins where every source is silent get a zero mask instead of 0 / 0.
        total = sum(magnitudes.values()).clamp_min(torch.finfo(torch.float32).tiny)
        return {
            name: istft(mix * (mag / total), length=len(mixture)).T.double().numpy()
            for name, mag in magnitudes.items()
        }


def oracle_gain(mixture: np.ndarray, refs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Best constant gain per target: ``(<s_j, x> / <x, x>) x``, the least-squares scaling
    of the mixture ``x``. SDR is not scale-invariant, so a net that only turns the volume
    down reaches this floor without separating anything.

    Args:
        mixture: ``(samples, channels)``.
        refs: target name -> ``(samples, channels)``.

    Returns:
        target name -> ``(samples, channels)``.
    """
    energy = max(float(np.sum(mixture * mixture)), np.finfo(float).tiny)
    return {name: float(np.sum(ref * mixture)) / energy * mixture for name, ref in refs.items()}


_WORKER_CACHE: dict[tuple, Any] = {}


def _separator(ckpt: str, device: str) -> tuple[torch.nn.Module, Any]:
    # One load per process: a worker scores many tracks with the same net.
    key = ("separator", ckpt, device)
    if key not in _WORKER_CACHE:
        from ablation.separate import load_separator

        _WORKER_CACHE[key] = load_separator(ckpt, device=device)
    return _WORKER_CACHE[key]


def _separate(plan: Plan, mixture: np.ndarray) -> dict[str, np.ndarray]:
    from ablation.separate import separate

    net, _ = _separator(plan.ckpt, plan.device)
    with torch.inference_mode():
        mix = torch.as_tensor(mixture.T, dtype=torch.float32)
        resampled = _resample(mix, plan.sample_rate, plan.net_rate, None)
        estimates = separate(net, resampled, segment=plan.segment, device=plan.device)
        estimates = _resample(estimates, plan.net_rate, plan.sample_rate, mix.shape[-1])
    assert estimates.shape == (len(plan.sources), *mix.shape), (estimates.shape, mix.shape)
    return {name: estimates[i].T.double().cpu().numpy() for i, name in enumerate(plan.sources)}


def estimate(plan: Plan, track: Any, mixture: np.ndarray) -> dict[str, np.ndarray]:
    """The estimator's output ``{target: (samples, channels)}`` for every target a
    scoring group needs.

    The mixture baseline gives the mixture for every target, accompaniment
    included. The oracles (gain, ratio mask) estimate the targets of the first
    group from the references; the checkpoint separates the mixture. A target
    they do not give is derived: a four-stem accompaniment is drums + bass +
    other, a single source's complement is the mixture minus its estimate.
    """
    needed = [name for group in plan.groups for name in group.together]
    if plan.baseline == "mixture":
        return dict.fromkeys(needed, mixture)
    if plan.baseline in ("gain", "oracle-irm"):
        partition = plan.groups[0].together
        single = plan.sources[0] if len(plan.sources) == 1 else None
        refs = references(track, partition, single)
        oracle = oracle_gain if plan.baseline == "gain" else oracle_irm
        estimates = oracle(mixture, refs)
    else:
        estimates = _separate(plan, mixture)
    for name in dict.fromkeys(needed):
        if name in estimates:
            continue
        if name == "accompaniment" and all(s in estimates for s in ACCOMPANIMENT):
            estimates[name] = sum(estimates[s] for s in ACCOMPANIMENT)
        else:
            estimates[name] = mixture - estimates[plan.sources[0]]
    return estimates


# ---------------------------------------------------------------- scoring one track


def _fit_length(audio: np.ndarray, samples: int) -> np.ndarray:
    # museval's pad_or_truncate: estimates take the reference length.
    if len(audio) >= samples:
        return audio[:samples]
    return np.pad(audio, [(0, samples - len(audio)), (0, 0)])


def _nan_store(track_name: str, names: Sequence[str], samples: int, rate: int):
    from museval import TrackStore
    from museval.metrics import Framing

    frames = Framing(int(WIN_SECONDS * rate), int(HOP_SECONDS * rate), samples).nwin
    store = TrackStore(track_name, win=WIN_SECONDS, hop=HOP_SECONDS)
    for name in names:
        store.add_target(name, {metric: [math.nan] * frames for metric in METRICS})
    return store


def score_group(
    plan: Plan,
    track_name: str,
    group: Group,
    refs: dict[str, np.ndarray],
    estimates: dict[str, np.ndarray],
) -> tuple[list[dict], list[str]]:
    """Score one group; return the kept targets' museval entries and the silent targets.

    museval refuses a reference or estimate that is silent throughout; a window
    with any silent signal has no score anyway, so such a group gets NaN frames
    (counted in the summary) instead of an error.
    """
    from ablation.bsseval import score_track

    samples = len(refs[group.together[0]])
    refs = {n: refs[n] for n in group.together}
    ests = {n: _fit_length(estimates[n], samples) for n in group.together}
    silent = [n for n in group.together if not np.any(refs[n]) or not np.any(ests[n])]
    if silent:
        store = _nan_store(track_name, group.together, samples, plan.sample_rate)
    else:
        store = score_track(
            refs,
            ests,
            track_name,
            win=int(WIN_SECONDS * plan.sample_rate),
            hop=int(HOP_SECONDS * plan.sample_rate),
            rate=plan.sample_rate,
            backend=plan.metrics,
            device=plan.device,
        )
    kept = [t for t in store.scores["targets"] if t["name"] in group.kept]
    return kept, silent


def _track(plan: Plan, name: str) -> Any:
    key = ("db", plan.root, plan.is_wav, plan.subset)
    if key not in _WORKER_CACHE:
        import musdb

        _WORKER_CACHE[key] = musdb.DB(root=plan.root, is_wav=plan.is_wav, subsets=plan.subset)
    tracks = {t.name: t for t in _WORKER_CACHE[key].tracks}
    return tracks[name]


def _resample(audio: torch.Tensor, rate: int, target: int, length: int | None) -> torch.Tensor:
    """Resample the time axis (torchaudio), cropped or padded to ``length`` when given."""
    if rate != target:
        audio = torchaudio.functional.resample(audio.contiguous(), rate, target)
    if length is not None:
        audio = torch.nn.functional.pad(audio, (0, max(0, length - audio.shape[-1])))
        audio = audio[..., :length]
    return audio


def _track_rate(track: Any, is_wav: bool) -> int:
    path = next(iter(track.sources.values())).path if is_wav else track.path
    return sf.info(path).samplerate if is_wav else int(track.rate)


def _check_rate(plan: Plan, track: Any) -> None:
    rate = _track_rate(track, plan.is_wav)
    if rate != plan.sample_rate:
        raise EvaluationError(
            f"track {track.name!r} is sampled at {rate} Hz, the first track of the subset at "
            f"{plan.sample_rate} Hz: expected one rate for the whole subset (1 s scoring "
            f"windows). Resample the odd tracks."
        )


def score_track_file(plan: Plan, name: str) -> dict[str, Any]:
    """Separate (or build the baseline of) one track, score it, write its JSON atomically.

    Returns:
        ``{"track", "seconds" (of audio), "wall" (seconds spent), "silent"}``.
    """
    start = time.perf_counter()
    track = _track(plan, name)
    _check_rate(plan, track)
    try:
        store, mixture, silent = _score(plan, track)
    finally:
        for source in track.sources.values():
            source.audio = None  # drop the decoded audio: the track object stays cached
    write_text(plan.track_file(name), store.json)
    return {
        "track": name,
        "seconds": len(mixture) / plan.sample_rate,
        "wall": time.perf_counter() - start,
        "silent": silent,
    }


def _score(plan: Plan, track: Any) -> tuple[Any, np.ndarray, list[str]]:
    from museval import TrackStore

    name = track.name
    mixture = load_track(track, plan.is_wav)
    estimates = estimate(plan, track, mixture)
    single = plan.sources[0] if len(plan.sources) == 1 else None
    store = TrackStore(name, win=WIN_SECONDS, hop=HOP_SECONDS)
    silent, mse = [], {}
    for group in plan.groups:
        refs = references(track, group.together, single)
        kept, group_silent = score_group(plan, name, group, refs, estimates)
        store.scores["targets"] += kept
        silent += [n for n in group_silent if n not in silent]
        for target in group.kept:
            error = _fit_length(estimates[target], len(refs[target])) - refs[target]
            mse[target] = float(np.mean(error**2))
    store.scores.update(
        mse=mse,
        samples=len(mixture),
        scored_together=[list(g.together) for g in plan.groups],
        silent=silent,
    )
    store.validate()
    return store, mixture, silent


def read_track_file(path: Path, targets: Sequence[str]) -> dict | None:
    """A finished per-track JSON with all ``targets``, or None when absent or unusable."""
    if not path.exists():
        return None
    try:
        data = simplejson.loads(path.read_text(), allow_nan=True)
    except ValueError:
        warnings.warn(f"{path} is not valid JSON; the track is scored again.", stacklevel=2)
        return None
    names = {t.get("name") for t in data.get("targets", [])}
    if names != set(targets) or set(data.get("mse", {})) != set(targets):
        warnings.warn(
            f"{path} holds targets {sorted(names)}, expected {sorted(targets)}; "
            f"the track is scored again.",
            stacklevel=2,
        )
        return None
    return data


# ---------------------------------------------------------------- running all tracks


def _limit_blas_threads() -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its own thread count
        return None
    return threadpool_limits(1)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Compute with one torch and one BLAS thread, then restore the counts.

    Every track is computed the same way in any process, so a parallel run
    writes exactly the files of a serial one; parallelism is across tracks.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    limit = _limit_blas_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if limit is not None:
            limit.restore_original_limits()


def _init_worker(parent_pid: int) -> None:
    # An idle worker blocks on its task queue forever once the evaluator is killed.
    die_with_parent(parent_pid)
    torch.set_num_threads(1)
    # Kept referenced for the life of the worker: the BLAS limit lasts as long as the object.
    _WORKER_CACHE["blas_limit"] = _limit_blas_threads()


def run_tracks(plan: Plan, names: Sequence[str], jobs: int, progress: bool) -> list[str]:
    """Score ``names`` with ``jobs`` worker processes (in this process when 1).

    Returns:
        Messages of the tracks that failed; the others are written.
    """
    failures: list[str] = []
    bar = tqdm(
        total=len(names), desc=f"evaluating {plan.subset}", unit="track", disable=not progress
    )

    def done(name: str, result: dict | None, error: BaseException | None) -> None:
        if error is not None:
            failures.append(f"{name}: {type(error).__name__}: {error}")
        elif result["silent"]:
            warnings.warn(
                f"track {name!r}: the reference or estimate of {', '.join(result['silent'])} "
                f"is silent throughout, so BSS Eval is undefined for its scoring group; those "
                f"frames are NaN, left out of the medians and counted in summary.md.",
                stacklevel=2,
            )
        bar.set_postfix_str(name[:40])
        bar.update()

    if jobs == 1:
        with single_threaded():
            for name in names:
                try:
                    done(name, score_track_file(plan, name), None)
                except (EvaluationError, ValueError, RuntimeError, OSError) as error:
                    done(name, None, error)
    else:
        # spawn, not fork: CUDA and OpenMP state do not survive a fork.
        # The pool starts its workers from this thread, which outlives them (die_with_parent).
        context = multiprocessing.get_context("spawn")
        with (
            ProcessPoolExecutor(jobs, context, _init_worker, (os.getpid(),)) as pool,
            terminate_children_on_sigterm(multiprocessing.active_children),
        ):
            futures = {pool.submit(score_track_file, plan, n): n for n in names}
            for future in as_completed(futures):
                error = future.exception()
                done(futures[future], None if error else future.result(), error)
    bar.close()
    return failures


# ---------------------------------------------------------------- preparing


def _file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def _checkpoint_targets(ckpt: Path, device: str) -> tuple[tuple[str, ...], int, int | None]:
    if not ckpt.is_file():
        raise EvaluationError(
            f"checkpoint {ckpt} does not exist: expected a .ckpt file written by `ablation "
            f"fit` (e.g. runs/<sweep>/<run>/checkpoints/last.ckpt)."
        )
    from ablation.separate import SeparationError

    try:
        _, info = _separator(str(ckpt), device)
    except SeparationError as error:
        raise EvaluationError(f"{error} (or pass BASELINE={'|'.join(BASELINES)})") from error
    if info.channels != MUSDB_CHANNELS:
        raise EvaluationError(
            f"{ckpt} separates {info.channels}-channel audio, MUSDB18 is stereo: BSS Eval "
            f"compares stereo images, so evaluate a stereo ({MUSDB_CHANNELS}-channel) model."
        )
    return info.sources, info.sample_rate, round(info.segment * info.sample_rate)


def default_out(
    ckpt: str | None, baseline: str | None, subset: str, targets: Sequence[str] | None = None
) -> Path:
    """Beside the checkpoint (``<stem>-eval-<subset>``, ``<baseline>-eval-<subset>`` for
    a baseline on a checkpoint's targets), or ``results/baselines/<baseline>-<subset>``
    (``<baseline>-<targets>-<subset>`` for chosen targets)."""
    if ckpt is not None:
        path = Path(ckpt)
        return path.with_name(f"{baseline or path.stem}-eval-{subset}")
    chosen = "".join(f"-{t}" for t in targets or ())
    return Path("results") / "baselines" / f"{baseline}{chosen}-{subset}"


def _baseline_targets(
    targets: str | Sequence[str] | None, baseline: str | None
) -> tuple[str, ...] | None:
    if targets is None:
        return None
    if baseline is None:
        raise EvaluationError(
            "targets choose what a baseline estimates; a checkpoint is evaluated on its own "
            "sources. Drop the targets, or pass a baseline."
        )
    try:
        return target_names(targets)
    except ValueError as err:
        raise EvaluationError(str(err)) from err


def _manifest(plan: Plan, ckpt_digest: str | None, tracks: Sequence[str]) -> dict:
    return {
        "checkpoint": plan.ckpt,
        "checkpoint_sha1": ckpt_digest,
        "baseline": plan.baseline,
        "root": plan.root,
        "is_wav": plan.is_wav,
        "subset": plan.subset,
        "targets": list(scored_targets(plan.groups)),
        "scored_together": [asdict(g) for g in plan.groups],
        "metrics": plan.metrics,
        "sample_rate": plan.sample_rate,
        "win_seconds": WIN_SECONDS,
        "hop_seconds": HOP_SECONDS,
        "tracks": list(tracks),
    }


# Manifest fields that make two evaluations different; tracks may grow between runs.
_IDENTITY = ("checkpoint_sha1", "baseline", "root", "subset", "targets", "metrics", "sample_rate")


def _claim_out(out: Path, manifest: dict) -> None:
    path = out / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        differs = [k for k in _IDENTITY if old.get(k) != manifest[k]]
        if differs:
            found = ", ".join(f"{k}={old.get(k)!r}" for k in differs)
            raise EvaluationError(
                f"{out} holds the results of another evaluation ({found}; now "
                f"{', '.join(f'{k}={manifest[k]!r}' for k in differs)}): nothing was changed. "
                f"Pass another OUT, or delete {out} to evaluate again."
            )
    write_text(path, json.dumps(manifest, indent=2))


def _default_device(device: str | None) -> str:
    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def prepare(
    ckpt: str | None,
    root: str,
    subset: str,
    out: str | None,
    baseline: str | None,
    metrics: str,
    device: str,
    targets: str | Sequence[str] | None = None,
) -> tuple[Plan, list[str]]:
    """Check the request and the data, claim the output folder, return the plan and tracks."""
    from datamodules.layout import detect_is_wav, list_tracks, require_ffmpeg

    if baseline is not None and baseline not in BASELINES:
        raise EvaluationError(f"unknown baseline {baseline!r}: expected one of {BASELINES}.")
    if metrics not in BACKENDS:
        raise EvaluationError(f"unknown metrics backend {metrics!r}: expected one of {BACKENDS}.")
    if ckpt is None and baseline is None:
        raise EvaluationError(
            "nothing to evaluate: pass a checkpoint (CKPT=path) or a baseline "
            f"(BASELINE={'|'.join(BASELINES)})."
        )
    chosen = _baseline_targets(targets, baseline)
    is_wav = detect_is_wav(root)
    tracks = list_tracks(root, subset, is_wav)
    require_ffmpeg(tracks)
    digest, segment, rate, sources = None, None, SAMPLE_RATE, SOURCES
    if ckpt is not None:
        ckpt = str(Path(ckpt).resolve())
        sources, rate, segment = _checkpoint_targets(Path(ckpt), device)
        digest = _file_digest(Path(ckpt))
    sources = chosen or sources
    plan = Plan(
        root=str(Path(root).resolve()),
        is_wav=is_wav,
        subset=subset,
        out=str(Path(out or default_out(ckpt, baseline, subset, chosen)).resolve()),
        ckpt=ckpt,
        baseline=baseline,
        sources=tuple(sources),
        groups=tuple(scoring_groups(sources)),
        sample_rate=_dataset_rate(root, subset, is_wav),
        net_rate=rate,
        segment=segment,
        metrics=metrics,
        device=device,
    )
    names = [t.name for t in tracks]
    _claim_out(Path(plan.out), _manifest(plan, digest, names))
    return plan, names


def _dataset_rate(root: str, subset: str, is_wav: bool) -> int:
    """Sample rate of the subset's first track (MUSDB18 itself: 44.1 kHz)."""
    import musdb

    first = musdb.DB(root=root, is_wav=is_wav, subsets=subset).tracks[0]
    return _track_rate(first, is_wav)


# ---------------------------------------------------------------- aggregating


@dataclass
class Results:
    """Everything aggregated from the per-track files of one evaluation.

    Attributes:
        frames: museval's frame table (track, target, metric, time, score).
        tracks: per (track, target): the median over frames of each metric, and MSE.
        median: per target: median over tracks of ``tracks`` (MSE: over all samples).
        mean: per target: mean over tracks of ``tracks`` (MSE: over all samples).
        nan_frames: per target: frames without a score, and all frames.
        seconds: audio evaluated, in seconds.
    """

    frames: pd.DataFrame
    tracks: pd.DataFrame
    median: pd.DataFrame
    mean: pd.DataFrame
    nan_frames: dict[str, tuple[int, int]]
    seconds: float


def aggregate(plan: Plan, names: Sequence[str]) -> Results:
    """Build the tables of an evaluation from its per-track JSON files."""
    from museval import EvalStore
    from museval.aggregate import json2df

    targets = scored_targets(plan.groups)
    store, mse_rows, samples = EvalStore(), [], 0
    for name in names:
        data = simplejson.loads(plan.track_file(name).read_text(), allow_nan=True)
        store.add_track(json2df(data, name))
        mse_rows += [(name, t, data["mse"][t], data["samples"]) for t in targets]
        samples += data["samples"]
    frames = store.df[["track", "target", "metric", "time", "score"]]
    per_track = store.agg_frames_scores().unstack("metric")[list(METRICS)]
    mse = pd.DataFrame(mse_rows, columns=["track", "target", "MSE", "samples"])
    tracks = per_track.reset_index().merge(mse, on=["track", "target"])
    # The MSE of the whole subset weighs each track by its length.
    pooled = mse.assign(se=mse.MSE * mse.samples).groupby("target")[["se", "samples"]].sum()
    pooled_mse = pooled.se / pooled.samples
    summary = {}
    for how in ("median", "mean"):
        table = tracks.groupby("target")[list(METRICS)].agg(how)
        summary[how] = table.assign(MSE=pooled_mse).reindex(list(targets))
    sdr = frames[frames.metric == "SDR"]
    nan_frames = {
        t: (int(sdr[sdr.target == t].score.isna().sum()), int((sdr.target == t).sum()))
        for t in targets
    }
    order = {t: i for i, t in enumerate(targets)}
    tracks = tracks.sort_values(
        ["track", "target"], key=lambda c: c.map(order) if c.name == "target" else c
    )
    return Results(
        frames=frames,
        tracks=tracks.drop(columns="samples").reset_index(drop=True),
        median=summary["median"],
        mean=summary["mean"],
        nan_frames=nan_frames,
        seconds=samples / plan.sample_rate,
    )


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _what(plan: Plan) -> str:
    if plan.baseline and plan.ckpt:
        return f"baseline `{plan.baseline}` on the targets of `{plan.ckpt}`"
    return f"baseline `{plan.baseline}`" if plan.baseline else f"checkpoint `{plan.ckpt}`"


def summary_markdown(plan: Plan, results: Results, names: Sequence[str]) -> str:
    """The human-readable summary: tables, scoring groups, NaN frames, protocol."""
    form = "MUSDB18-HQ (wav)" if plan.is_wav else "MUSDB18 (compressed stems)"
    nan = "; ".join(f"{t}: {n} of {total}" for t, (n, total) in results.nan_frames.items())
    fmt = {"SDR": 2, "MSE": 6}
    median = results.median.copy()
    median.index.name = "target"
    mean = results.mean.copy()
    mean.index.name = "target"
    lines = [
        f"# Evaluation of {_what(plan)}",
        "",
        f"- data: `{plan.root}`, {form}, subset `{plan.subset}`: {len(names)} tracks, "
        f"{results.seconds / 60:.2f} min of audio",
        f"- protocol: museval v4 (BSS Eval images), {WIN_SECONDS:g} s windows, "
        f"{HOP_SECONDS:g} s hop; median over frames per track; backend `{plan.metrics}`",
        "- scored together: " + "; ".join(g.describe() for g in plan.groups),
        f"- frames without a score (silent reference or estimate in the window; left out "
        f"of all medians): {nan}",
        "- MSE: mean squared error over all samples and channels of the subset",
        "",
        "## Median over tracks of the median over frames",
        "",
        markdown_table(median.drop(columns="MSE"), digits=fmt["SDR"]),
        "",
        "## Mean over tracks of the median over frames",
        "",
        markdown_table(mean.drop(columns="MSE"), digits=fmt["SDR"]),
        "",
        "## MSE per target (the study's metric)",
        "",
        markdown_table(median[["MSE"]], digits=fmt["MSE"]),
        "",
    ]
    return "\n".join(lines)


def boxplot(results: Results, path: Path, title: str) -> Path:
    """Box plot of per-track SDR per target, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(results.median.index)
    data = [results.tracks[results.tracks.target == t].SDR.dropna().to_numpy() for t in targets]
    fig, ax = plt.subplots(figsize=(1.2 * len(targets) + 2, 4))
    ax.boxplot(data, tick_labels=targets)
    ax.set_ylabel("SDR (dB), median over frames")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_results(plan: Plan, results: Results, names: Sequence[str]) -> None:
    """Write results.csv, tracks.csv, summary.json, summary.md and the box plot."""
    out = Path(plan.out)
    write_text(out / "results.csv", results.frames.to_csv(index=False))
    write_text(out / "tracks.csv", results.tracks.to_csv(index=False))
    summary = {
        target: {metric: _number(row[metric]) for metric in (*METRICS, "MSE")}
        for target, row in results.median.iterrows()
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    write_text(out / "summary.md", summary_markdown(plan, results, names))
    boxplot(results, out / "sdr_boxplot.png", f"{_what(plan)}".replace("`", "")[-60:])


# ---------------------------------------------------------------- W&B


@dataclass(frozen=True)
class WandbRun:
    """Where a checkpoint's training run logged: its id, project, entity and folder."""

    id: str | None
    project: str
    entity: str | None
    folder: Path | None


def find_wandb_run(ckpt: str | None) -> WandbRun:
    """Find the W&B run that produced ``ckpt``.

    Looks in the checkpoint's folder and up to two folders above it for the
    run folder's ``wandb_run.json`` (``{"id", "project", "entity"}``, written at
    the start of training), else for a ``wandb/`` folder of (offline) run
    directories, whose names end in the run id.
    """
    from ablation.runs import WANDB_RUN

    project = os.environ.get("WANDB_PROJECT", WANDB_PROJECT)
    if ckpt is None:
        return WandbRun(None, project, None, None)
    for folder in list(Path(ckpt).resolve().parents)[:3]:
        stored = read_json(folder / WANDB_RUN)
        if stored.get("id"):
            return WandbRun(
                stored["id"], stored.get("project") or project, stored.get("entity"), folder
            )
        runs = sorted((folder / "wandb").glob("*run-*-*")) if (folder / "wandb").is_dir() else []
        runs = [r for r in runs if r.is_dir() and not r.is_symlink()]
        if runs:
            return WandbRun(runs[-1].name.rsplit("-", 1)[-1], project, None, folder)
    return WandbRun(None, project, None, None)


def _run_name(plan: Plan) -> str:
    if plan.baseline:
        return f"baseline-{plan.baseline}-{plan.subset}"
    ckpt = Path(plan.ckpt)
    return f"eval-{ckpt.parent.parent.name}-{ckpt.stem}"


def log_to_wandb(plan: Plan, results: Results) -> str | None:
    """Log summary metrics, the per-track table and the box plot to W&B.

    Into the run that produced the checkpoint when it is found (offline runs
    too), else into a new run named after the checkpoint or baseline. A
    baseline always gets its own run, so it never overwrites a model's scores.

    Returns:
        The W&B run id.
    """
    import wandb

    from ablation.wandb_mode import wandb_online

    found = find_wandb_run(None if plan.baseline else plan.ckpt)
    prefix = "test" if plan.subset == "test" else f"eval_{plan.subset}"
    # Without credentials the run is written offline, to be synced later (`wandb sync`).
    mode = "disabled" if os.environ.get("WANDB_MODE") == "disabled" else "offline"
    init: dict[str, Any] = {
        "project": found.project,
        "entity": found.entity,
        "job_type": "eval",
        "dir": os.environ.get("WANDB_DIR") or str(found.folder or plan.out),
        "mode": None if wandb_online() else mode,
    }
    if found.id:
        init.update(id=found.id, resume="allow")
    else:
        init.update(
            name=_run_name(plan), config={"checkpoint": plan.ckpt, "baseline": plan.baseline}
        )
    run = wandb.init(**init)
    metrics = {}
    for target, row in results.median.iterrows():
        for metric in (*METRICS, "MSE"):
            metrics[f"{prefix}/{metric.lower()}/{target}"] = _number(row[metric])
    own = results.median.loc[[s for s in plan.sources if s in results.median.index], "SDR"]
    metrics[f"{prefix}/sdr/mean"] = _number(own.mean())
    run.summary.update(metrics)
    run.log(
        {
            f"{prefix}/tracks": wandb.Table(dataframe=results.tracks),
            f"{prefix}/sdr_boxplot": wandb.Image(str(Path(plan.out) / "sdr_boxplot.png")),
        }
    )
    run.finish()
    return run.id


# ---------------------------------------------------------------- entry point


def evaluate_checkpoint(
    ckpt: str | None,
    root: str,
    subset: str = "test",
    out: str | None = None,
    baseline: str | None = None,
    jobs: int | None = None,
    metrics: str = "torch",
    device: str | None = None,
    wandb_log: bool = True,
    progress: bool = True,
    targets: str | Sequence[str] | None = None,
) -> Path:
    """Evaluate a checkpoint or a baseline on a MUSDB18 subset with museval's v4 protocol.

    Args:
        ckpt: Lightning checkpoint of this suite; None with a baseline.
        root: MUSDB18 root in either form (detected).
        subset: ``test`` (SiSEC) or ``train``.
        out: output folder; default :func:`default_out`.
        baseline: ``mixture`` (every estimate is the mixture: the floor), ``gain``
            (the best constant gain of the mixture per target and track, the floor
            of a net that does not separate) or ``oracle-irm`` (ideal ratio mask on
            the 2-D family's STFT: the ceiling of a masking net); with ``ckpt`` too,
            on the checkpoint's targets.
        jobs: worker processes, one track each at a time; default all cores. Each
            track is computed with one thread, so any ``jobs`` gives the same files.
            Workers are spawned: a script calling this with ``jobs > 1`` needs the
            ``if __name__ == "__main__":`` guard.
        metrics: BSS Eval backend, ``torch`` (ablation.bsseval) or ``museval``.
        device: ``cuda`` when available, else ``cpu``; used to separate and score.
        wandb_log: log to W&B (a failure there only warns: the files are complete).
        progress: show a progress bar over tracks.
        targets: a baseline's targets, a name of ``TARGET_SETS`` (``"2stems"``) or
            names; default the checkpoint's sources, else the four stems.

    Returns:
        The output folder.

    Raises:
        EvaluationError: on a bad request, checkpoint, folder, or failed tracks
            (the scored tracks are kept; running again resumes).
        DataError: on a root without the subset or in neither MUSDB18 layout.
    """
    device = _default_device(device)
    _WORKER_CACHE.clear()  # a serial run reuses this process: forget earlier datasets
    plan, names = prepare(ckpt, root, subset, out, baseline, metrics, device, targets)
    targets = scored_targets(plan.groups)
    pending = [n for n in names if read_track_file(plan.track_file(n), targets) is None]
    if pending:
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(pending)))
        failures = run_tracks(plan, pending, jobs, progress)
        if failures:
            raise EvaluationError(
                f"{len(failures)} of {len(pending)} tracks failed ({failures[0]}"
                f"{'; ...' if len(failures) > 1 else ''}). The {len(names) - len(failures)} "
                f"scored tracks are kept in {plan.out}; fix the cause and run the same "
                f"command again to score only the missing ones."
            )
    results = aggregate(plan, names)
    write_results(plan, results, names)
    if wandb_log:
        try:
            log_to_wandb(plan, results)
        except Exception as error:  # logging is optional: the files are complete
            warnings.warn(
                f"W&B logging skipped ({type(error).__name__}: {error}); the results in "
                f"{plan.out} are complete. Log in (`wandb login`), set WANDB_MODE=offline, or "
                f"turn W&B logging off.",
                stacklevel=2,
            )
    return Path(plan.out)
