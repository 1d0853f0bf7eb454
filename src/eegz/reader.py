"""`eegz.open`: a .eegz file as Python users read recordings (in the manner of pyedflib and MNE).

    with eegz.open("rec.eegz") as f:
        f.channels, f.duration, f.start_time, f.annotations
        x = f.read(10, 40, channels=["EEG Fp1", "EEG C3"])  # channels × samples, physical units
        raw = f.to_mne()                                   # mne.io.RawArray with annotations, in volts
        codes = f.tokens("EEG Fp1")                        # frames × codebooks, without decoding

Only the blocks a time range needs are read and decoded.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .channels import ANNOTATION, NEURAL
from .container import ANNOTATION_BYTES, NEURAL_TOKENS, RECORD_BYTES, Container
from .decode import decode_records, edf_header_of, stream_bytes
from .dsp import microvolt_factor
from .errors import EegzError


@dataclass(frozen=True)
class Channel:
    index: int  # position among the EDF signals
    label: str
    unit: str  # the EDF physical dimension, e.g. "uV"
    sample_rate: float
    role: str  # "neural" (lossy), "exact" (lossless or within max_error_lsb)
    max_error_lsb: int
    transducer: str
    prefilter: str


@dataclass(frozen=True)
class Annotation:
    onset: float  # seconds from the recording's start
    duration: float | None
    text: str


class EegzFile:
    """An open .eegz file. Use `eegz.open(path)`; close it, or use it as a context manager."""

    def __init__(self, path, model: str | None = None, device: str = "auto"):
        self.path = Path(path)
        self._container = Container(self.path)
        try:
            self._header = edf_header_of(self._container)
        except BaseException:
            self._container.close()
            raise
        self._model, self._device = model, device
        meta = self._container.meta
        self.mode: str = meta["mode"]
        self.n_records: int = meta["edf"]["records"]
        self.record_duration: float = meta["edf"]["record_duration"]
        self.duration: float = self.n_records * self.record_duration
        self.channels: list[Channel] = [
            Channel(s.index, s.label, s.physical_dimension, s.sample_rate, c["role"], c["max_error_lsb"],
                    s.transducer, s.prefilter)
            for s, c in zip(self._header.signals, meta["channels"]) if c["role"] != ANNOTATION]
        self._annotations: list[Annotation] | None = None

    # -- metadata

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.channels]

    @property
    def start_time(self) -> dt.datetime | None:
        """The recording's start from the EDF header (naive local time as EDF stores it; None when the
        header's date cannot be read)."""
        from .identity import start_of
        return start_of(self._container.edf_header)

    @property
    def annotations(self) -> list[Annotation]:
        """EDF+ annotations (the records' timekeeping entries left out), read from the annotation streams
        alone: nothing is decoded."""
        if self._annotations is None:
            self._annotations = list(self._read_annotations())
        return self._annotations

    def _read_annotations(self):
        from .edf import split_records
        from .identity import annotations_in
        signals = [s for s in self._header.signals if s.is_annotation]
        if not signals:
            return
        width = self._header.sample_width
        for k, entry in enumerate(self._container.blocks):
            streams = self._container.read_block(k)
            if streams and streams[0].kind == RECORD_BYTES:
                raw = stream_bytes(streams[0].data, entry.record_count * self._header.record_bytes, "record bytes")
                digital = split_records(self._header, raw, entry.record_count)
                pieces = {s.index: _bytes_of(digital[s.index], width) for s in signals}
            else:
                pieces = {s.signal: stream_bytes(s.data, entry.record_count * self._header.signals[s.signal].samples_per_record
                                             * width, "annotation") for s in streams if s.kind == ANNOTATION_BYTES}
            for s in signals:
                data = pieces.get(s.index, b"")
                for onset, duration, text in annotations_in(data, s.samples_per_record * width):
                    yield Annotation(onset, duration, text)

    # -- samples

    def _pick(self, channels) -> list[Channel]:
        if channels is None:
            return list(self.channels)
        by_label = {c.label: c for c in self.channels}
        picked = []
        for name in ([channels] if isinstance(channels, (str, int)) else channels):
            if isinstance(name, int):
                if not 0 <= name < len(self.channels):
                    raise EegzError(f"channel number {name} is out of range (0..{len(self.channels) - 1})")
                picked.append(self.channels[name])
            elif name in by_label:
                picked.append(by_label[name])
            else:
                raise EegzError(f"no channel {name!r} in {self.path.name} (channels: {', '.join(self.labels)})")
        return picked

    def read(self, start: float | None = None, end: float | None = None, channels=None) -> np.ndarray:
        """Physical values (the channels' own units) of [start, end) seconds, channels × samples. The
        channels (labels or positions; default all) must share one sample rate."""
        picked = self._pick(channels)
        rates = sorted({c.sample_rate for c in picked})
        if len(rates) != 1:
            raise EegzError(f"the channels have different sample rates ({', '.join(f'{r:g}' for r in rates)} Hz): "
                            "pass channels= of one rate")
        rate = rates[0]
        start = 0.0 if start is None else float(start)
        end = self.duration if end is None else min(float(end), self.duration)
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
            raise EegzError(f"bad time range {start}..{end} s (the recording lasts {self.duration:g} s)")
        if end == start or self.record_duration <= 0:
            return np.zeros((len(picked), 0))
        first = int(math.floor(start / self.record_duration + 1e-9))
        stop = min(self.n_records, int(math.ceil(end / self.record_duration - 1e-9)))
        digital = decode_records(self._container, first, stop, self._device, self._model)
        lo = int(round((start - first * self.record_duration) * rate))
        n = int(round((end - start) * rate))
        out = np.empty((len(picked), n))
        for row, c in enumerate(picked):
            signal = self._header.signals[c.index]
            out[row] = signal.to_physical(digital[c.index][lo:lo + n])
        return out

    def to_mne(self, start: float | None = None, end: float | None = None, channels=None):
        """An `mne.io.RawArray` of [start, end) seconds: voltages in volts, channel types from the labels,
        the start time as meas_date, and the annotations that fall in the range (onsets relative to it)."""
        try:
            import mne
        except ImportError:
            raise EegzError('to_mne needs MNE-Python: pip install "eegz[mne]"') from None
        picked = self._pick(channels)
        data = self.read(start, end, [c.index for c in picked])
        offset = 0.0 if start is None else float(start)
        scales = [(microvolt_factor(c.unit) or 1e6) * 1e-6 if microvolt_factor(c.unit) else 1.0 for c in picked]
        info = mne.create_info([c.label for c in picked], picked[0].sample_rate, [_mne_type(c) for c in picked])
        raw = mne.io.RawArray(data * np.asarray(scales)[:, None], info, verbose="error")
        when = self.start_time
        if when is not None:
            raw.set_meas_date((when + dt.timedelta(seconds=offset)).replace(tzinfo=dt.timezone.utc))
        span = data.shape[1] / picked[0].sample_rate
        kept = [a for a in self.annotations if offset <= a.onset < offset + span]
        if kept:
            raw.set_annotations(mne.Annotations([a.onset - offset for a in kept], [a.duration or 0.0 for a in kept],
                                                [a.text for a in kept], orig_time=raw.info["meas_date"]))
        return raw

    def tokens(self, channel) -> np.ndarray:
        """The RVQ codes of a neural channel, frames × codebooks (int16), read without decoding: the
        codec's frames from the first record to the last. Stretches stored exactly (flat or clipped
        blocks) hold -1."""
        (picked,) = self._pick([channel])
        meta = self._container.meta
        aux = meta.get("with_tokens")
        if meta["mode"] == "transform":
            raise EegzError(f"{picked.label} holds no tokens (the file is transform-coded)")
        if meta.get("codec") is None or (picked.role != NEURAL and not aux):
            raise EegzError(f"{picked.label} holds no tokens (it is stored exactly)")
        from .lossy import frame_of, hop_of
        from .tokens import token_tables, unpack_tokens
        config, n_codebooks = meta["codec"]["config"], meta["codec"]["n_codebooks"]
        rate, hop = config["sample_rate"], hop_of(config)
        total = frame_of(self.n_records, self.record_duration, rate, hop)
        out = np.full((total, n_codebooks), -1, np.int16)
        tables = None
        for k, entry in enumerate(self._container.blocks):
            f0 = frame_of(entry.first_record, self.record_duration, rate, hop)
            f1 = frame_of(entry.first_record + entry.record_count, self.record_duration, rate, hop)
            for s in self._container.read_block(k):
                if s.kind != NEURAL_TOKENS or s.signal != picked.index:
                    continue
                if self._container.version < 3:
                    raise EegzError("tokens() reads format 3 files; recode older ones with eegz 0.2 first")
                if tables is None:
                    tables = token_tables(_token_counts(meta, self._model))
                codes = unpack_tokens(s.data, tables, f1 - f0, n_codebooks, self._container.version,
                                      entry.record_count * self.record_duration).codes
                out[f0:f1, :codes.shape[0]] = codes.T
        return out

    # -- life cycle

    def close(self) -> None:
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"<eegz file {self.path.name}: {self.mode}, {len(self.channels)} channels, {self.duration:g} s>")


def open(path, model: str | None = None, device: str = "auto") -> EegzFile:  # noqa: A001 - eegz.open, like gzip.open
    """Open a .eegz file for reading (see EegzFile)."""
    return EegzFile(path, model, device)


def _bytes_of(digital: np.ndarray, width: int) -> bytes:
    from .edf import digital_to_bytes
    return digital_to_bytes(digital, width).tobytes()


def _token_counts(meta: dict, model: str | None) -> np.ndarray:
    """The model's token usage counts (its rANS tables), read from the .npz without loading torch."""
    from .neural import read_token_counts
    return read_token_counts(model or meta["codec"]["model"], meta["codec"]["weights_sha256"])


_MNE_TYPES = (("ecg", "ecg"), ("ekg", "ecg"), ("eog", "eog"), ("emg", "emg"), ("resp", "resp"), ("stim", "stim"),
              ("status", "stim"), ("trig", "stim"))


def _mne_type(channel: Channel) -> str:
    label = channel.label.lower()
    for key, kind in _MNE_TYPES:
        if key in label:
            return kind
    return "eeg" if microvolt_factor(channel.unit) is not None else "misc"
