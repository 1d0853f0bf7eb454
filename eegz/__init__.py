"""eegz: EDF/BDF EEG compression with a neural (DAC) codec and an exact layer."""
__version__ = "0.1.0"
