"""Decoders of the stream formats of .eegz versions 1 and 2 (old files stay readable for good)."""
