"""Which channels the neural codec codes and which are stored exactly.

The neural codec was trained on scalp EEG; anything else (ECG, EMG, EOG, triggers, slow auxiliary
channels, annotations) goes through the exact path so that it comes back sample for sample.
"""
from __future__ import annotations

import re

from .dsp import microvolt_factor
from .edf import Signal

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


def unmatched_labels(signals: list[Signal], exact_labels: tuple[str, ...]) -> list[str]:
    """The --exact-channel labels that name no channel (matched as channel_roles matches them)."""
    labels = {s.label.lower() for s in signals}
    return [label for label in exact_labels if label.strip().lower() not in labels]


def channel_roles(signals: list[Signal], exact_labels: tuple[str, ...] = ()) -> list[str]:
    wanted = {label.strip().lower() for label in exact_labels}
    roles = []
    for s in signals:
        role = channel_role(s)
        if role == NEURAL and s.label.lower() in wanted:
            role = EXACT
        roles.append(role)
    return roles
