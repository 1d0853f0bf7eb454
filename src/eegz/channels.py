"""Which channels the neural codec codes and which are stored exactly.

The neural codec was trained on scalp EEG; anything else (ECG, EMG, EOG, triggers, slow auxiliary
channels, annotations) goes through the exact path so that it comes back sample for sample.
"""
from __future__ import annotations

import re

from .dsp import microvolt_factor
from .edf import Signal
from .errors import EegzError

NEURAL, EXACT, ANNOTATION = "neural", "exact", "annotation"

_NON_EEG = re.compile(
    r"\b(ecg|ekg|emg|eog|resp|respiration|status|trigger|trig|stim|event|events|sao2|spo2|pleth|"
    r"pulse|temp|temperature|light|position|marker|photic|ibi|bursts|suppr|snore|flow|thor|abdo|"
    r"accel|gsr|eda)\b",
    re.IGNORECASE,
)
MIN_NEURAL_RATE = 64.0  # Hz; slower channels carry too few samples for the codec to pay off
MAX_NEURAL_RATE = 65536.0  # Hz; faster is not EEG, and its ratio to the codec's rate would not be representable
MIN_DIGITAL_SPAN = 64  # a channel with fewer levels is a status/trigger line, not EEG


def channel_role(signal: Signal) -> str:
    if signal.is_annotation:
        return ANNOTATION
    label = signal.label.replace("-", " ").replace("_", " ")
    if _NON_EEG.search(label):
        return EXACT
    if microvolt_factor(signal.physical_dimension) is None:
        return EXACT
    if not MIN_NEURAL_RATE <= signal.sample_rate <= MAX_NEURAL_RATE or signal.gain == 0.0:
        return EXACT
    if signal.digital_max - signal.digital_min < MIN_DIGITAL_SPAN:
        return EXACT
    return NEURAL


def _label_key(label: str) -> str:
    """How --exact-channel matches a label: case and surrounding spaces aside."""
    return label.strip().lower()


def check_exact_labels(signals: list[Signal], exact_labels: tuple[str, ...], source_name: str) -> None:
    """Refuse an --exact-channel label that names no channel: that channel would be coded lossily unnoticed."""
    labels = {_label_key(s.label) for s in signals}
    unknown = [label for label in exact_labels if _label_key(label) not in labels]
    if unknown:
        names = ", ".join(repr(s.label) for s in signals[:8]) + (", ..." if len(signals) > 8 else "")
        raise EegzError(f"--exact-channel {unknown[0]!r} names no channel of {source_name} (its channels: {names})")


def channel_roles(signals: list[Signal], exact_labels: tuple[str, ...] = ()) -> list[str]:
    wanted = {_label_key(label) for label in exact_labels}
    roles = []
    for s in signals:
        role = channel_role(s)
        if role == NEURAL and _label_key(s.label) in wanted:
            role = EXACT
        roles.append(role)
    return roles
