"""FluidSynth's library (libfluidsynth) playing one part in this process, on this thread.

The ``fluidsynth`` program, which rendered before, plays a MIDI file through FluidSynth's
MIDI player and its timer. Here no player and no clock take part: every message of a
part (:func:`datamodules.compose.messages`) is sent at its sample, computed from its
tick and the tempo, between stretches of float audio written by
``fluid_synth_write_float``; so the audio depends on the part alone, whatever the load.
FluidSynth synthesises in blocks of :data:`BLOCK` samples: a message takes effect at the
first block that starts at or after its sample.

Each part gets a synth of its own: a reset synth still carried state from part to part
(a voice starts by ramping from the level its slot last played at), so the bytes of a
part depended on what the process had rendered before. A new synth and its SoundFont
take 20 ms, as only the samples of the presets a part selects are loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ablation.errors import AblationError
from datamodules.compose import TICKS_PER_BEAT, Part, messages

BLOCK = 64  # FluidSynth's FLUID_BUFSIZE
# The settings of the program's former command line (-g 0.5 -R 0 -C 0, synth.cpu-cores=1):
# the same levels, no effects (the mix pans and levels the stems itself), no worker
# threads; the API unlocked (one thread uses the synth), only the samples a part plays
# loaded, and those not locked in memory (mlock needs a privilege).
SETTINGS = {
    "synth.gain": 0.5,
    "synth.reverb.active": 0,
    "synth.chorus.active": 0,
    "synth.cpu-cores": 1,
    "synth.threadsafe-api": 0,
    "synth.lock-memory": 0,
    "synth.dynamic-sample-loading": 1,
}
LOG_LEVELS = (2, 3, 4)  # FLUID_WARN, FLUID_INFO, FLUID_DBG: silent, as the program under -q
# Per MIDI status byte, the fluid_synth_* function that plays it, called with the synth,
# the channel and the message's first data bytes (a note-off's velocity is not taken).
CHANNEL_MESSAGES = {0x80: ("noteoff", 1), 0x90: ("noteon", 2), 0xB0: ("cc", 2),
                    0xC0: ("program_change", 1)}  # fmt: skip


class RendererMissing(AblationError):
    """FluidSynth or the General MIDI SoundFont is not installed."""


@functools.cache
def library() -> ctypes.CDLL:
    """libfluidsynth with the prototypes used here, its warnings silent; raises
    :class:`RendererMissing` in one line when it is not installed."""
    name = ctypes.util.find_library("fluidsynth")
    if name is None:
        raise RendererMissing(
            "libfluidsynth is not installed: the rendered dataset needs it (make install "
            "installs Debian's fluidsynth, which brings it, as root; or sudo apt-get install "
            "fluidsynth, conda/brew install fluidsynth)."
        )
    lib = ctypes.CDLL(name)
    pointer, text, integer = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    lib.new_fluid_settings.restype = lib.new_fluid_synth.restype = pointer
    lib.new_fluid_synth.argtypes = [pointer]
    lib.fluid_settings_setnum.argtypes = [pointer, text, ctypes.c_double]
    lib.fluid_settings_setint.argtypes = [pointer, text, integer]
    lib.fluid_synth_sfload.argtypes = [pointer, text, integer]
    lib.delete_fluid_synth.argtypes = lib.delete_fluid_settings.argtypes = [pointer]
    lib.fluid_synth_write_float.argtypes = [pointer, integer, pointer, integer, integer,
                                            pointer, integer, integer]  # fmt: skip
    lib.fluid_set_log_function.argtypes = [integer, pointer, pointer]
    lib.fluid_set_log_function.restype = pointer
    for function, data in CHANNEL_MESSAGES.values():
        getattr(lib, f"fluid_synth_{function}").argtypes = [pointer] + [integer] * (1 + data)
    for level in LOG_LEVELS:
        lib.fluid_set_log_function(level, None, None)
    return lib


@contextmanager
def _synth(font: Path, sample_rate: int) -> Iterator[tuple[ctypes.CDLL, int]]:
    """A new synth with :data:`SETTINGS` and ``font``, deleted on leaving."""
    lib = library()
    settings, synth = lib.new_fluid_settings(), None
    try:
        for name, value in ({"synth.sample-rate": float(sample_rate)} | SETTINGS).items():
            setter = (
                lib.fluid_settings_setnum if isinstance(value, float) else lib.fluid_settings_setint
            )
            if setter(settings, name.encode(), value) != 0:
                raise AblationError(f"FluidSynth refused the setting {name}={value}: is it 2.x?")
        synth = lib.new_fluid_synth(settings)
        if not synth:
            raise AblationError("FluidSynth could not make a synth of these settings: see stderr.")
        if lib.fluid_synth_sfload(synth, str(font).encode(), 1) < 0:
            raise AblationError(f"FluidSynth could not load {font}: give a SoundFont 2 file.")
        yield lib, synth
    finally:
        if synth:
            lib.delete_fluid_synth(synth)
        lib.delete_fluid_settings(settings)


def render_part(
    part: Part, tempo_bpm: float, end_beats: float, frames: int, sample_rate: int, font: Path
) -> np.ndarray:
    """The first ``frames`` samples of ``part`` played at ``tempo_bpm`` with the SoundFont
    ``font``: ``(frames, 2)`` float32."""
    audio = np.zeros((frames, 2), np.float32)
    samples_per_tick = 60 * sample_rate / (tempo_bpm * TICKS_PER_BEAT)
    with _synth(font, sample_rate) as (lib, synth):
        _play(lib, synth, messages(part, end_beats), samples_per_tick, audio)
    return audio


def _play(
    lib: ctypes.CDLL, synth: int, timed: list, samples_per_tick: float, audio: np.ndarray
) -> None:
    """Fill ``audio`` with the synth's output, each ``(tick, message)`` of ``timed`` sent
    at its sample."""
    play = {status: (getattr(lib, f"fluid_synth_{function}"), data)
            for status, (function, data) in CHANNEL_MESSAGES.items()}  # fmt: skip
    now = 0
    for tick, message in timed:
        at = round(tick * samples_per_tick)
        if at >= len(audio):
            break  # the messages come in time order
        _write(lib, synth, audio, now, at)
        function, data = play[message[0] & 0xF0]
        function(synth, message[0] & 0x0F, *message[1 : 1 + data])
        now = at
    _write(lib, synth, audio, now, len(audio))


def _write(lib: ctypes.CDLL, synth: int, audio: np.ndarray, start: int, stop: int) -> None:
    """Synthesise ``audio[start:stop]`` (interleaved stereo, C order) in place."""
    if stop > start:
        base = audio.ctypes.data
        lib.fluid_synth_write_float(synth, stop - start, base, 2 * start, 2, base, 2 * start + 1, 2)
