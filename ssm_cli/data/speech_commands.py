"""Speech Commands as raw 16 kHz waveforms: ``sc35`` (all words, official split) and ``sc10`` (ten words).

Source: the release as unpacked, ``<word>/<speaker>_nohash_<k>.wav`` (16-bit PCM mono, 16 kHz),
``validation_list.txt``, ``testing_list.txt``; ``_background_noise_/`` is ignored. Looked for in
``<data_dir>/speech_commands/speech_commands_<version>/`` (the archive's name), torchaudio's
``<data_dir>/speech_commands/SpeechCommands/speech_commands_<version>/``, then
``<data_dir>/speech_commands/`` itself; downloaded into the first when missing and ``download``.

Processing: every clip is zero-padded at the end to 16000 samples and stored as int16 in the cache
(SC35 is ~3.4 GB; it is built through a memory-mapped scratch file, so it fits in 8 GB of RAM) and
memory-mapped at load; items are converted to float32 (scale 1/32768) one at a time.

- ``sc35``: classes = the version's words (35 for v0.02, 30 for v0.01) in alphabetical order;
  split = the official lists (v0.02: 84,843 / 9,981 / 11,005).
- ``sc10``: yes, no, up, down, left, right, on, off, stop, go (in that order); all clips of these
  words, split per word 70/15/15 (``val_split``, ``test_split`` fractions, ``split_seed``).

Both also return zero-shot 8 kHz views in ``extra_eval``: ``val_8k`` and ``test_8k``, the same clips
subsampled by 2 (x[::2], L=8000), evaluated with the model's rate 2.0.

Options: ``version="v0.02"`` (or ``"v0.01"``), ``download=True``; ``sc10`` also
``val_split=0.15``, ``test_split=0.15``, ``split_seed=42``.
"""
from __future__ import annotations

import os
import struct
import tempfile
import wave
from pathlib import Path

import numpy as np

from ssm_cli.data.arrays import ArrayDataset, ToSequence, stratified_indices
from ssm_cli.data.base import DatasetBundle, DataSpec
from ssm_cli.data.cache import CACHE_FOLDER, cached_arrays
from ssm_cli.data.download import extract, fetch, files_digest, remove, track
from ssm_cli.data.paths import check_options, missing_data
from ssm_cli.errors import DataFileError, UserError, check_choice

SOURCE = "speech_commands"
SAMPLE_RATE = 16000
LENGTH = 16000
SCALE = 1 / 32768
WORDS_V1 = (
    "bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy", "house", "left",
    "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six", "stop", "three",
    "tree", "two", "up", "wow", "yes", "zero",
)
WORDS = {"v0.01": WORDS_V1, "v0.02": tuple(sorted(WORDS_V1 + ("backward", "follow", "forward", "learn", "visual")))}
SC10_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
URLS = {
    "v0.01": ("http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
              "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d"),
    "v0.02": ("http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
              "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"),
}
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
PROCESSING_VERSION = 1


def layout(version: str) -> str:
    return (
        f"speech_commands/speech_commands_{version}/<word>/<speaker>_nohash_<k>.wav   (16-bit PCM mono, 16 kHz)\n"
        f"speech_commands/speech_commands_{version}/validation_list.txt, testing_list.txt\n"
        f"words ({len(WORDS[version])}): {', '.join(WORDS[version])}"
    )


def remedy(version: str) -> str:
    url = URLS[version][0]
    return (
        f"ssm data prepare sc35   (downloads {url}, ~2.4 GB for v0.02)\n"
        f"or download it elsewhere and unpack it into <data_dir>/speech_commands/speech_commands_{version}/"
    )


def candidates(data_dir: Path, version: str) -> list[Path]:
    root = Path(data_dir) / SOURCE
    return [root / f"speech_commands_{version}", root / "SpeechCommands" / f"speech_commands_{version}", root]


def locate(data_dir: Path, version: str = "v0.02") -> Path | None:
    """The first candidate folder holding at least one of the version's word folders, else None."""
    for folder in candidates(data_dir, version):
        if folder.is_dir() and any((folder / w).is_dir() for w in WORDS[version]):
            return folder
    return None


def load_sc35(data_dir: Path, **options) -> DatasetBundle:
    """SC35: x (16000, 1) float32 waveform in [-1, 1); y the word index; official split."""
    valid = {"version": "v0.02", "download": True}
    check_options("sc35", options, valid)
    opts = {**valid, **options}
    check_choice("version", opts["version"], WORDS)
    arrays = load_waveforms(data_dir, opts["version"], opts["download"], dataset="sc35")
    rows = {name: np.flatnonzero(arrays["split"] == code) for name, code in SPLIT_CODES.items()}
    spec = DataSpec("sc35", seq_len=LENGTH, d_input=1, d_output=len(WORDS[opts["version"]]))
    return _bundle(spec, arrays["audio"], arrays["label"], rows)


def load_sc10(data_dir: Path, **options) -> DatasetBundle:
    """SC10: the ten command words, split per word into train/val/test (70/15/15 by default)."""
    valid = {"version": "v0.02", "download": True, "val_split": 0.15, "test_split": 0.15, "split_seed": 42}
    check_options("sc10", options, valid)
    opts = {**valid, **options}
    check_choice("version", opts["version"], WORDS)
    val, test = opts["val_split"], opts["test_split"]
    if not (isinstance(val, float) and isinstance(test, float) and 0 < val and 0 < test and val + test < 1):
        raise UserError(f"sc10 needs val_split and test_split as fractions > 0 with a sum < 1, got {val!r} and {test!r}")
    arrays = load_waveforms(data_dir, opts["version"], opts["download"], dataset="sc10")
    words = WORDS[opts["version"]]
    to_sc10 = np.array([SC10_WORDS.index(w) if w in SC10_WORDS else -1 for w in words])
    label = to_sc10[arrays["label"]]  # -1 for the other words
    keep = np.flatnonzero(label >= 0)
    parts = stratified_indices(label[keep], [1 - val - test, val, test], opts["split_seed"])
    rows = {name: keep[part] for name, part in zip(SPLIT_CODES, parts)}
    spec = DataSpec("sc10", seq_len=LENGTH, d_input=1, d_output=len(SC10_WORDS))
    return _bundle(spec, arrays["audio"], label, rows)


def _bundle(spec: DataSpec, audio: np.ndarray, label: np.ndarray, rows: dict[str, np.ndarray]) -> DatasetBundle:
    full, half = ToSequence(1, scale=SCALE), ToSequence(1, scale=SCALE, step=2)
    return DatasetBundle(
        spec=spec,
        train=ArrayDataset(audio, label, rows["train"], full),
        val=ArrayDataset(audio, label, rows["val"], full),
        test=ArrayDataset(audio, label, rows["test"], full),
        extra_eval={
            "val_8k": (ArrayDataset(audio, label, rows["val"], half), 2.0),
            "test_8k": (ArrayDataset(audio, label, rows["test"], half), 2.0),
        },
    )


def load_waveforms(data_dir: Path, version: str = "v0.02", download: bool = True, dataset: str = "sc35") -> dict[str, np.ndarray]:
    """Every clip of the version's words: ``audio`` (N, 16000) int16 (memory-mapped), ``label`` (N,)
    int64 index into ``WORDS[version]``, ``split`` (N,) uint8 official split code (0 train, 1 val, 2 test)."""
    folder = locate(data_dir, version)
    if folder is None and download:
        prepare(data_dir, version)
        folder = locate(data_dir, version)
    if folder is None:
        raise missing_data(dataset, candidates(data_dir, version), layout(version), remedy(version))
    lists = {name: folder / f"{name}_list.txt" for name in ("validation", "testing")}
    for path in lists.values():
        if not path.is_file():
            raise UserError(f"Speech Commands split list missing: {path}\nExpected layout:\n{layout(version)}")
    # the clips of each word's folder ("*.wav") sorted by name, as strings like str(folder / word / name):
    # 105,000 Path objects would cost a second at every load
    clips = [
        (label, f"{folder / word}/{name}")
        for label, word in enumerate(WORDS[version])
        if (folder / word).is_dir()
        for name in sorted(e.name for e in os.scandir(folder / word) if e.name.endswith(".wav"))
    ]
    files = [wav for _, wav in clips] + list(lists.values())
    key = {"version": PROCESSING_VERSION, "words": WORDS[version], "n_files": len(files), "files": files_digest(files)}
    scratch: list[Path] = []

    def build() -> dict[str, np.ndarray]:
        # the audio is written through a memory-mapped scratch file, so ~3.4 GB never sit in RAM
        (folder / CACHE_FOLDER).mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=".scratch-", suffix=".npy", dir=folder / CACHE_FOLDER)
        os.close(fd)
        scratch.append(Path(path))
        return _read_clips(clips, lists, Path(path))

    try:
        return cached_arrays(folder, f"speech-{version}", key, build)
    finally:
        for path in scratch:  # the cache holds its own copy
            path.unlink(missing_ok=True)


def _read_clips(clips: list[tuple[int, str]], lists: dict[str, Path], scratch: Path) -> dict[str, np.ndarray]:
    val = set(lists["validation"].read_text().split())
    test = set(lists["testing"].read_text().split())
    audio = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.int16, shape=(len(clips), LENGTH))
    split = np.zeros(len(clips), dtype=np.uint8)
    for i, (_, wav) in enumerate(track(clips, len(clips), "read Speech Commands clips")):
        samples = read_wav(wav)
        audio[i, : len(samples)] = samples[:LENGTH]
        audio[i, len(samples):] = 0
        rel = "/".join(wav.rsplit("/", 2)[-2:])  # <word>/<file>, as the split lists name clips
        split[i] = SPLIT_CODES["val"] if rel in val else SPLIT_CODES["test"] if rel in test else SPLIT_CODES["train"]
    audio.flush()
    return {"audio": audio, "label": np.array([label for label, _ in clips], dtype=np.int64), "split": split}


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit PCM mono 16 kHz WAV -> int16 samples; anything else is a UserError naming the file."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            frames = w.readframes(n)
    except (wave.Error, EOFError, OSError, RuntimeError, ValueError, struct.error) as err:
        # a RIFF header with garbage after it: the chunk reader raises a bare RuntimeError
        raise DataFileError(path, f"corrupt WAV file {path} ({type(err).__name__}{': ' + str(err) if str(err) else ''})") from None
    if (channels, width, rate) != (1, 2, SAMPLE_RATE):
        raise DataFileError(path, f"WAV file {path} is {channels} channel(s), {8 * width}-bit, {rate} Hz; expected mono 16-bit 16000 Hz")
    if len(frames) != 2 * n:
        raise DataFileError(path, f"truncated WAV file {path}: header says {n} samples, found {len(frames) // 2}")
    return np.frombuffer(frames, dtype="<i2")


def prepare(data_dir: Path, version: str = "v0.02") -> Path:
    """Download and unpack the release into ``<data_dir>/speech_commands/speech_commands_<version>/``."""
    url, sha256 = URLS[version]
    target = Path(data_dir) / SOURCE / f"speech_commands_{version}"
    archive = fetch(url, Path(data_dir) / SOURCE / f"speech_commands_{version}.tar.gz", checksum=("sha256", sha256),
                    offline_hint=f"Then unpack it into {target}/")
    extract(archive, target)
    remove(archive)
    return target
