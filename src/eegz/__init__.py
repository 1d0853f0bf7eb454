"""eegz: EDF/BDF EEG compression with a neural (DAC) codec, a transform codec and an exact layer.

The public surface (everything else is private and may change):

    eegz.compress(in_path, out_path=None, mode="lossy", codebooks=6, ...) -> dict   mode="transform", bitrate=250
    eegz.decompress(in_path, out_path=None, start=None, end=None, codebooks=None, ...) -> dict
    eegz.recode(in_path, out_path, codebooks) -> dict         keep fewer codebooks without re-encoding
    eegz.open(path) -> EegzFile                                channels, annotations, read(), to_mne(), tokens()
    eegz.read_signals(in_path, start=None, end=None) -> {label: numpy array in physical units}
    eegz.info(in_path) -> dict
    eegz.verify(eegz_path, edf_path) -> dict                   every sample against the original
    eegz.check(eegz_path) -> dict                              every checksum and block, without the original
    eegz.EegzError and its subclasses FormatError, ModelError, OutputExistsError, VerifyError

Names are resolved on first use, so `import eegz` (and the command line) stays fast.
"""
__version__ = "0.28.0"

__all__ = ["compress", "decompress", "recode", "open", "EegzFile", "read_signals", "info", "verify", "check",
           "EegzError", "FormatError", "ModelError", "OutputExistsError", "VerifyError", "__version__"]

_API = {"compress", "decompress", "recode", "read_signals", "info", "verify", "check"}
_READER = {"open", "EegzFile"}
_ERRORS = {"EegzError", "FormatError", "ModelError", "OutputExistsError", "VerifyError"}


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    if name in _READER:
        from . import reader
        return getattr(reader, name)
    if name in _ERRORS:
        from . import errors
        return getattr(errors, name)
    raise AttributeError(f"module 'eegz' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
