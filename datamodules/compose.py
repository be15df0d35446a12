"""Seeded songs as General MIDI, one Standard MIDI File per stem.

A song has a tempo, a key and mode, a form of sections (intro, verses, choruses, a
bridge, an outro), and per section a chord progression, a drum pattern, a bass line,
harmony (a comping instrument and a sustained one) and a lead melody sung in phrases
with rests. Every choice comes from the song's own random generator, so one seed is
one song. The parts are General MIDI: drums on the percussion channel (10), bass,
``other`` and ``vocals`` as GM programs (:data:`PROGRAMS`), rendered by
:mod:`datamodules.rendered`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9  # MIDI channel 10, counted from 0
# General MIDI programs (counted from 0) that each stem draws from.
PROGRAMS = {
    "bass": {32: "Acoustic Bass", 33: "Electric Bass (finger)", 34: "Electric Bass (pick)",
             35: "Fretless Bass", 38: "Synth Bass 1"},
    "comp": {0: "Acoustic Grand Piano", 1: "Bright Acoustic Piano", 4: "Electric Piano 1",
             24: "Acoustic Guitar (nylon)", 25: "Acoustic Guitar (steel)",
             27: "Electric Guitar (clean)", 16: "Drawbar Organ"},
    "sustain": {48: "String Ensemble 1", 49: "String Ensemble 2", 88: "Pad 1 (new age)",
                89: "Pad 2 (warm)", 50: "Synth Strings 1", 61: "Brass Section"},
    "vocals": {52: "Choir Aahs", 53: "Voice Oohs"},
}  # fmt: skip
# GM percussion keys.
KICK, SNARE, CLAP, CLOSED_HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 39, 42, 46, 49, 51
TOMS = (50, 47, 45, 43)
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
# Progressions as scale degrees (0 = tonic), one chord per bar.
PROGRESSIONS = {
    "major": [(0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 4), (3, 4, 0, 0)],
    "minor": [(0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4), (5, 6, 0, 0), (0, 3, 6, 2)],
}
KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Sections in the order a song cycles through them (the form repeats until the song
# is long enough), with their length in bars.
FORM = (("intro", 2), ("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 8),
        ("bridge", 8), ("chorus", 8))  # fmt: skip


@dataclass
class Part:
    """The notes of one stem: ``(start_tick, length_ticks, channel, key, velocity)``, the
    program of each channel, and controller settings at tick 0."""

    notes: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    programs: dict[int, int] = field(default_factory=dict)
    controls: list[tuple[int, int, int, int]] = field(default_factory=list)  # tick, ch, cc, v

    def add(self, start: float, length: float, channel: int, key: int, velocity: int) -> None:
        """Add a note; ``start`` and ``length`` in beats."""
        tick = round(start * TICKS_PER_BEAT)
        ticks = max(1, round(length * TICKS_PER_BEAT))
        self.notes.append((tick, ticks, channel, int(key), int(np.clip(velocity, 1, 127))))


@dataclass
class Song:
    """A composed song: its parts per stem and what it was made of."""

    tempo_bpm: float
    key: int
    mode: str
    bars: int
    parts: dict[str, Part]
    instruments: dict[str, list[str]]

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.tempo_bpm

    @property
    def title(self) -> str:
        return f"{KEY_NAMES[self.key]} {self.mode}, {self.tempo_bpm:.0f} bpm"


def compose(rng: np.random.Generator, seconds: float) -> Song:
    """A song of at least ``seconds``: tempo, key, form, and the four stems' parts."""
    tempo = float(rng.integers(80, 141))
    key = int(rng.integers(12))
    mode = "major" if rng.random() < 0.5 else "minor"
    scale = np.array(MAJOR if mode == "major" else MINOR)
    bars = int(np.ceil(seconds * tempo / 60 / 4)) + 1  # one bar more: the last one rings
    sections = _sections(bars, intro=seconds >= 60)  # a short song starts singing at once
    # drawn in the form's order: a set's order of strings changes with PYTHONHASHSEED
    progressions = {
        name: PROGRESSIONS[mode][int(rng.integers(len(PROGRESSIONS[mode])))]
        for name in dict.fromkeys(s for s, _ in FORM)
    }
    chords = [progressions[name][i % 4] for name, _, i in sections]
    bass_program = _pick(rng, "bass")
    comp_program, sustain_program = _pick(rng, "comp"), _pick(rng, "sustain")
    vocal_program = _pick(rng, "vocals")
    parts = {
        "drums": _drums(rng, sections),
        "bass": _bass(rng, sections, chords, key, scale, bass_program),
        "other": _harmony(rng, sections, chords, key, scale, comp_program, sustain_program),
        "vocals": _melody(rng, sections, chords, key, scale, vocal_program),
    }
    instruments = {
        "drums": ["Standard Kit"],
        "bass": [PROGRAMS["bass"][bass_program]],
        "other": [PROGRAMS["comp"][comp_program], PROGRAMS["sustain"][sustain_program]],
        "vocals": [PROGRAMS["vocals"][vocal_program]],
    }
    return Song(tempo, key, mode, bars, parts, instruments)


def _pick(rng: np.random.Generator, group: str) -> int:
    programs = sorted(PROGRAMS[group])
    return programs[int(rng.integers(len(programs)))]


def _sections(bars: int, intro: bool = True) -> list[tuple[str, int, int]]:
    """``(section, bar, bar within section)`` for every bar: the form (without its intro
    when ``intro`` is False), repeated without the intro."""
    out: list[tuple[str, int, int]] = []
    while len(out) < bars:
        for name, length in FORM if intro and not out else FORM[1:]:
            out += [(name, len(out) + i, i) for i in range(length)]
    return out[:bars]


def _chord_keys(key: int, scale: np.ndarray, degree: int, octave: int, size: int = 3):
    """MIDI keys of the chord on ``degree`` (stacked thirds of the scale)."""
    steps = degree + 2 * np.arange(size)
    return [12 * (octave + 1) + key + scale[s % 7] + 12 * (s // 7) for s in steps]


def _drums(rng: np.random.Generator, sections) -> Part:
    part = Part()
    # One groove per song: kicks on 1 and 3 plus seeded extras, snare on 2 and 4.
    kicks = {0, 8} | {s for s in (3, 6, 10, 11, 14) if rng.random() < 0.35}
    hats = 16 if rng.random() < 0.4 else 8  # 16ths or 8ths
    backbeat = CLAP if rng.random() < 0.2 else SNARE
    for name, bar, within in sections:
        start = 4.0 * bar
        last_of_section = within == dict(FORM)[name] - 1
        if name == "intro":  # hats and a kick on one
            for step in range(0, 16, 16 // hats):
                part.add(start + step / 4, 0.25, DRUM_CHANNEL, CLOSED_HAT, 50 + 20 * rng.random())
            part.add(start, 0.5, DRUM_CHANNEL, KICK, 90)
            continue
        cymbal = RIDE if name == "bridge" else CLOSED_HAT
        for step in range(16):
            beat = start + step / 4
            if last_of_section and step >= 12:  # a fill of toms on the last beat
                part.add(beat, 0.25, DRUM_CHANNEL, TOMS[step - 12], 85 + 25 * rng.random())
                continue
            if step in kicks:
                part.add(beat, 0.5, DRUM_CHANNEL, KICK, 100 + 20 * rng.random())
            if step in (4, 12):
                part.add(beat, 0.5, DRUM_CHANNEL, backbeat, 95 + 25 * rng.random())
            if step % (16 // hats) == 0:
                accent = 25 if step % 4 == 0 else 0
                open_hat = name == "chorus" and step == 14
                part.add(beat, 0.25, DRUM_CHANNEL, OPEN_HAT if open_hat else cymbal,
                         55 + accent + 20 * rng.random())  # fmt: skip
        if within == 0 and name in ("chorus", "bridge"):
            part.add(start, 2.0, DRUM_CHANNEL, CRASH, 100)
    return part


def _bass(rng, sections, chords, key, scale, program) -> Part:
    part = Part(programs={0: program})
    # One rhythm per song, in beats: (onset, length) within a bar.
    rhythms = [
        [(b, 0.9) for b in range(4)],
        [(b / 2, 0.45) for b in range(8)],
        [(0, 1.4), (1.5, 0.45), (2, 1.4), (3.5, 0.45)],
        [(0, 0.7), (0.75, 0.7), (2, 0.7), (2.75, 0.7), (3.5, 0.45)],
    ]
    rhythm = rhythms[int(rng.integers(len(rhythms)))]
    for (name, bar, _), degree in zip(sections, chords, strict=True):
        root = _chord_keys(key, scale, degree, octave=1)[0]
        root += 12 if root < 28 else 0  # E1, the lowest string of a bass
        fifth = _chord_keys(key, scale, degree, octave=1)[2]
        fifth -= 12 if fifth - root > 7 else 0
        notes = rhythm if name != "intro" else [(0, 3.8)]
        for i, (onset, length) in enumerate(notes):
            pitch = root
            if i and rng.random() < 0.25:
                pitch = fifth if rng.random() < 0.6 else root + 12
            part.add(4 * bar + onset, length, 0, pitch, 90 + 25 * rng.random())
    return part


def _harmony(rng, sections, chords, key, scale, comp, sustain) -> Part:
    part = Part(programs={1: comp, 2: sustain})
    arpeggio = rng.random() < 0.4
    comp_onsets = [0, 1.5, 2.5] if rng.random() < 0.5 else [0, 1, 2, 3]
    for (name, bar, _), degree in zip(sections, chords, strict=True):
        start = 4.0 * bar
        voicing = _chord_keys(key, scale, degree, octave=4, size=3 + int(rng.random() < 0.3))
        if arpeggio:
            for i in range(8):
                part.add(start + i / 2, 0.6, 1, voicing[i % len(voicing)], 60 + 25 * rng.random())
        else:
            for onset in comp_onsets:
                for note in voicing:
                    part.add(start + onset, 0.8, 1, note, 60 + 20 * rng.random())
        if name in ("verse", "chorus", "bridge"):  # the sustained layer enters after the intro
            for note in _chord_keys(key, scale, degree, octave=3):
                part.add(start, 3.95, 2, note, 55 + 15 * rng.random())
    return part


def _melody(rng, sections, chords, key, scale, program) -> Part:
    """A sung line: two-bar phrases of chord and scale tones, mostly stepwise, each
    ending on a held note and a breath; silent in the intro and half the bridge."""
    part = Part(programs={3: program}, controls=[(0, 3, 1, 20)])  # a little vibrato
    low, high = 12 * 5 + key, 12 * 6 + key + 7  # about two octaves around C4..G5
    lengths = np.array([0.5, 1.0, 1.0, 1.5, 2.0])
    pitch = low + 7
    for name, bar, within in sections:
        if name == "intro" or (name == "bridge" and within % 4 >= 2) or within % 2:
            continue  # phrases start on even bars
        start, end = 4.0 * bar + rng.choice([0.0, 0.5, 1.0]), 4.0 * bar + 6.5
        lift = 5 if name == "chorus" else 0
        chord = set(np.array(_chord_keys(key, scale, chords[bar], 0)) % 12)
        time = start
        while time < end:
            length = float(min(rng.choice(lengths), end - time))
            candidates = [p for p in range(pitch - 4, pitch + 5) if low <= p <= high]
            in_key = [p for p in candidates if (p - key) % 12 in scale]
            weights = np.array([3.0 if p % 12 in chord else 1.0 for p in in_key])
            weights /= 1 + np.abs(np.array(in_key) - pitch)  # prefer steps to leaps
            pitch = int(rng.choice(in_key, p=weights / weights.sum()))
            part.add(time, length * 0.95, 3, pitch + lift, 80 + 30 * rng.random())
            time += length
            if rng.random() < 0.12:  # a short rest inside the phrase
                time += 0.5
    return part


def messages(part: Part, end_beats: float) -> list[tuple[int, bytes]]:
    """The channel messages of ``part`` as ``(tick, message)`` in the order they are played:
    at tick 0 every channel is centred (CC 10), at full expression and volume, with reverb
    and chorus sends at 0 (the mix pans and levels the stems itself, without effects), and
    gets its program; at any tick note-offs come before note-ons. Every note ends by
    ``end_beats``."""
    events: list[tuple[int, int, bytes]] = []  # (tick, order, message): note-offs first
    channels = sorted({n[2] for n in part.notes} | set(part.programs))
    for channel in channels:
        for cc, value in ((7, 100), (10, 64), (11, 127), (91, 0), (93, 0)):
            events.append((0, 1, bytes([0xB0 | channel, cc, value])))
        if channel in part.programs:
            events.append((0, 1, bytes([0xC0 | channel, part.programs[channel]])))
    for tick, channel, cc, value in part.controls:
        events.append((tick, 2, bytes([0xB0 | channel, cc, value])))
    end = round(end_beats * TICKS_PER_BEAT)
    for tick, ticks, channel, key, velocity in part.notes:
        if tick < end:  # a MIDI player (FluidSynth's) plays on while a note sounds
            events.append((tick, 3, bytes([0x90 | channel, key, velocity])))
            events.append((min(tick + ticks, end), 1, bytes([0x80 | channel, key, 0])))
    return [(tick, message) for tick, _, message in sorted(events)]


def midi_bytes(part: Part, tempo_bpm: float, end_beats: float) -> bytes:
    """A format-0 Standard MIDI File of ``part`` (:func:`messages`) at ``tempo_bpm``,
    ending at ``end_beats``: the part as any MIDI player or sequencer reads it."""
    tempo = round(60_000_000 / tempo_bpm)
    events = [(0, b"\xff\x51\x03" + tempo.to_bytes(3, "big")), *messages(part, end_beats)]
    track, now = bytearray(), 0
    for tick, data in events:
        track += _varlen(tick - now) + data
        now = tick
    end = round(end_beats * TICKS_PER_BEAT)
    track += _varlen(end - now) + b"\xff\x2f\x00"  # end of track: the song's length
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def _varlen(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))
