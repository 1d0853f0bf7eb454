"""Write the test vectors of formats 3 to 21 (spec/vectors/*.eegz and vectors.json) from real EEG: the bundled
example (eegmat Subject17, CC BY 4.0), BioSemi's BDF test file (edge/biosemi, shared data folder) and a Bonn
segment (bonn/A_Z/Z051.txt there, as a one-record EDF).

Run when the format changes, with a new file name for every new vector: vectors already in vectors.json are
kept as they are (a vector that a released eegz wrote must keep decoding to its recorded checksum); a float-decoded
vector (lossy, transform) that has no decoded_reference yet gets one from a decode here.
    python spec/vectors/make_vectors.py [SHARED_DATA_DIR]
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from eegz import api
from eegz.edf import SIGNAL_FIELDS, parse_header, read_edf, records_to_bytes

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.downstream_bonn import bonn_edf  # noqa: E402
EXAMPLE = ROOT / "examples" / "eegmat_Subject17_2.edf"
PASSPHRASE = "eegz test vector"


def excerpt(src: Path, labels: list[str], n_records: int, first: int = 0) -> bytes:
    """n_records of the named signals of an EDF/BDF file from record `first` on, as a file of their own (the
    header's fields for those signals, in the order given, and the same digital samples)."""
    rec = read_edf(src)
    raw = rec.header.raw
    ns = len(rec.header.signals)
    keep = [next(i for i, s in enumerate(rec.header.signals) if s.label == label) for label in labels]
    out = bytearray(raw[:256])
    pos = 256
    for _, width in SIGNAL_FIELDS:
        columns = [raw[pos + i * width:pos + (i + 1) * width] for i in range(ns)]
        out += b"".join(columns[i] for i in keep)
        pos += width * ns
    out[184:192] = str(256 * (len(keep) + 1)).ljust(8).encode()
    out[236:244] = str(n_records).ljust(8).encode()
    out[252:256] = str(len(keep)).ljust(4).encode()
    header = parse_header(bytes(out))
    digital = [rec.digital[i][first * rec.header.signals[i].samples_per_record:
                              (first + n_records) * rec.header.signals[i].samples_per_record] for i in keep]
    return bytes(out) + records_to_bytes(header, digital, n_records)


def sources(shared: Path) -> dict[str, bytes]:
    eeg = ["EEG Fp1", "EEG C3", "EEG Cz", "EEG O2", "EEG A2-A1", "ECG ECG", "EDF Annotations"]
    out = {"eegmat-40s": excerpt(EXAMPLE, eeg, 40), "eegmat-12s": excerpt(EXAMPLE, eeg, 12),
           "eegmat-last-16s": excerpt(EXAMPLE, eeg[:-1], 16, first=46),  # ends in the writer's padding
           "eegmat-rails-16s": excerpt(EXAMPLE, ["EEG F8", "EEG Fp1", "EEG O1"], 16, first=46)}
    # unknown record count (-1) and bytes after the last whole record (a non-compliant writer)
    odd = bytearray(out["eegmat-12s"])
    odd[236:244] = b"-1      "
    out["eegmat-12s-unknown-count"] = bytes(odd) + b"trailing bytes of a non-compliant writer\r\n"
    # bytes that only the record-bytes fallback codes well: each record a random 401-byte pattern repeated,
    # so that the repeats straddle the samples and the channels (as in the byte-shifted files of edge/corrupted)
    plain = out["eegmat-12s"]
    header = parse_header(plain[:int(plain[184:192])])
    rng = np.random.default_rng(20261126)
    records = [(rng.integers(0, 256, 401, dtype=np.uint8).tobytes() * 64)[:header.record_bytes] for _ in range(12)]
    out["byte-patterns"] = header.raw + b"".join(records)
    biosemi = shared / "edge" / "biosemi" / "Newtest17-256.bdf"
    if biosemi.exists():
        labels = [s.label for s in read_edf(biosemi).header.signals]
        out["biosemi-bdf"] = excerpt(biosemi, labels[:4] + labels[-1:], 8)
    bonn = shared / "bonn" / "A_Z" / "Z051.txt"
    if bonn.exists():
        with tempfile.TemporaryDirectory() as tmp:
            bonn_edf(np.loadtxt(bonn).astype(np.int64), Path(tmp) / "z.edf")
            out["bonn-Z051"] = (Path(tmp) / "z.edf").read_bytes()
    return out


VECTORS = {  # file: (source, options, what it exercises)
    "lossless.eegz": ("eegmat-40s", dict(mode="lossless"),
                      "3 blocks; kinds 0 (annotation bytes) and 1 (lossless: frames, channel references)"),
    "near_lossless.eegz": ("eegmat-40s", dict(mode="near-lossless", max_error_lsb=3),
                           "kind 2 (near-lossless, K = 3 digital steps)"),
    "lossless_tokens.eegz": ("eegmat-12s", dict(mode="lossless", with_tokens=True),
                             "kind 3 streams with flag 1 (auxiliary tokens) beside kind 1"),
    "lossy_sc_3.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=3),
                        "kind 3 (DAC-SC, 3 codebooks) over 3 blocks with context frames; ECG kept exactly"),
    "lossy_mc_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6, model="eegz-dac-mc-256hz-hop64"),
                        "kind 3 decoded by DAC-MC (style indices, cross-channel attention), 6 codebooks"),
    "unknown_count.eegz": ("eegmat-12s-unknown-count", dict(mode="lossless"),
                           "declared record count -1 and a TRLR section with trailing bytes"),
    "record_bytes.eegz": ("byte-patterns", dict(mode="lossless"), "kind 4 (record bytes under zstd)"),
    "encrypted.eegz": ("eegmat-12s", dict(mode="lossless", passphrase=PASSPHRASE.encode(), drop_annotation_text=True),
                       "anonymized header, annotation texts dropped, IDNT section (passphrase in vectors.json)"),
    "bdf_lossless.eegz": ("biosemi-bdf", dict(mode="lossless"), "BDF (24-bit samples) with its Status channel"),
    "lossy_envelope_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6),
                              "format 4: kind 3 with band envelopes (noise filling), DAC-SC, 6 codebooks"),
    "lossy_no_envelope_3.eegz": ("eegmat-12s", dict(mode="lossy", codebooks=3, band_envelope=False),
                                 "format 4: kind 3 with n_bands = 0 (no envelope), 3 codebooks"),
    "lossy_channel_envelope_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6, model="eegz-dac-sc-256hz-hop64-balanced"),
                                      "format 5: kind 3 with band envelopes at the channel rate (500 Hz: 16 bands), "
                                      "DAC-SC, 6 codebooks"),
    "lossy_envelope_skirt_3.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=3, model="eegz-dac-sc-256hz-hop64-lines"),
                                    "format 6: kind 3 with band envelopes at the channel rate and their skirt below "
                                    "30 Hz, DAC-SC, 3 codebooks"),
    "lossy_scale_seed_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6, model="eegz-dac-sc-256hz-hop64-lines"),
                                "format 7: kind 3 whose noise is seeded with the stream's scale too (section 6.4), "
                                "DAC-SC, 6 codebooks"),
    "transform_250.eegz": ("eegmat-40s", dict(mode="transform"),
                           "format 7: kind 5 (transform, 250 bit/s) with band envelopes and edge patches over 3 "
                           "blocks; ECG kept exactly"),
    "transform_quality.eegz": ("eegmat-12s", dict(mode="transform", quality=15.0, band_envelope=False),
                               "format 7: kind 5 at quality 15 % with n_bands = 0"),
    "transform_rotated_250.eegz": ("eegmat-40s", dict(mode="transform"),
                                   "format 8: kind 5 with a kind-6 rotation of the 5 EEG channels in each of 3 "
                                   "blocks, band envelopes, 250 bit/s; ECG kept exactly"),
    "transform_rotated_quality.eegz": ("eegmat-12s", dict(mode="transform", quality=15.0, band_envelope=False),
                                       "format 8: kinds 5 and 6 at quality 15 % with n_bands = 0"),
    "transform_profile_250.eegz": ("eegmat-40s", dict(mode="transform"),
                                   "format 9: kinds 5 and 6 with band envelopes and their time profile (section "
                                   "8.3), 250 bit/s; ECG kept exactly"),
    "transform_runs_250.eegz": ("eegmat-last-16s", dict(mode="transform"),
                                "format 10: kinds 5 and 6 with edge patches of value and slope (section 8) and "
                                "constant runs (section 8.4: the recording's padding, 0 then another constant, in "
                                "every channel), 250 bit/s; ECG kept exactly"),
    "transform_tones_241.eegz": ("bonn-Z051", dict(mode="transform", bitrate=241.0),
                                 "format 11: kind 5 with a stationary tone (section 8.5: the 50.01-Hz mains line of "
                                 "Bonn Z051, one 23.6-s record at 173.61 Hz), 241 bit/s"),
    "transform_limiter_250.eegz": ("eegmat-rails-16s", dict(mode="transform"),
                                   "format 11: kinds 5 and 6 with the rail limiter (section 8: F8 and Fp1 reach "
                                   "their rails at 51.1 s, where the decoded swing passes them) and constant runs, "
                                   "250 bit/s"),
    "lossy_tones_6.eegz": ("bonn-Z051", dict(mode="lossy", codebooks=6),
                           "format 12: kind 3 with stationary tones (section 6.6: the 50.01-Hz mains line of Bonn "
                           "Z051, one 23.6-s record at 173.61 Hz), DAC-SC, 6 codebooks"),
    "lossy_fine_bands_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6),
                                "format 13: kind 3 whose band envelope has 8.2's bands and 0.5-Hz parts (section 6.4; "
                                "22 bands at 500 Hz; the example is recorded through a 50-Hz notch), DAC-SC, 6 codebooks"),
    "lossy_fine_bands_tones_3.eegz": ("bonn-Z051", dict(mode="lossy", codebooks=3),
                                      "format 13: kind 3 with stationary tones and 8.2's 18 bands at 173.61 Hz "
                                      "(sections 6.4, 6.6; Bonn Z051), DAC-SC, 3 codebooks"),
    "lossy_runs_6.eegz": ("eegmat-last-16s", dict(mode="lossy", codebooks=6),
                          "format 14: kind 3 with constant runs (section 6.7: the recording's padding, 0 then another "
                          "constant, in every channel), the line padding of 6.1 at the recording's ends and 6.4's "
                          "exact filling, DAC-SC, 6 codebooks"),
    "lossy_blend_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6),
                           "format 14: kind 3 over 3 blocks whose normalization passes from block to block over "
                           "half a second (section 6.1), with 6.4's exact filling, DAC-SC, 6 codebooks"),
    "lossy_limiter_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6),
                             "format 15: lossy_blend_6's recording, whose decoded swings past the digital range go "
                             "through the rail limiter (sections 6.1, 8), DAC-SC, 6 codebooks"),
    "lossy_profile_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6),
                             "format 16: lossy_blend_6's recording with each block's 30-70 Hz time profile "
                             "(section 6.8), DAC-SC, 6 codebooks"),
    "lossy_quarter_parts_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6),
                                   "format 17: lossy_profile_6's streams, decoded with 0.25-Hz parts in the band "
                                   "envelope and the time profile's rescaling (sections 6.4, 6.8), DAC-SC, 6 codebooks"),
    "lossy_ceiling_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6),
                             "format 18: lossy_quarter_parts_6's recording with the band envelope's bands B_18 (1-Hz "
                             "bands from 52 to 58 Hz, [64, 74) split at 70 Hz; 26 at 500 Hz, section 6.4), and the "
                             "slow-band ceiling in theta, alpha and beta (6.9), DAC-SC, 6 codebooks"),
    "lossy_run_edges_6.eegz": ("eegmat-last-16s", dict(mode="lossy", codebooks=6),
                               "format 18: lossy_runs_6's recording (its padding, 0 then another constant, in every "
                               "channel), each run with the original samples beside it (section 6.7), DAC-SC, 6 codebooks"),
    "lossy_seams_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6),
                           "format 20: lossy_ceiling_6's recording over 3 blocks, whose band envelope acts above 64 Hz "
                           "on each block with its decoded context and reaches the blocks' faded ends there (section "
                           "6.4, Context and seams), DAC-SC, 6 codebooks"),
    "lossy_high_profile_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6),
                                  "format 21: lossy_seams_6's recording, each block with a second time profile, of "
                                  "the band from 70 Hz up, whose parts the decoder scales down (section 6.8, High "
                                  "band), DAC-SC, 6 codebooks"),
    "lossy_skirt_floor_3.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=3),
                                 "format 22: lossy_high_profile_6's recording at 3 codebooks, whose band envelope's "
                                 "skirt below 30 Hz fills each 0.25-Hz part only up to a floor, the first band's "
                                 "density faded out (section 6.4, Skirt's floor), DAC-SC, 3 codebooks"),
    "lossy_burst_cap_3.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=3),
                               "format 23: lossy_skirt_floor_3's recording, whose high band's bursts are capped "
                               "within each part of its time profile before the rescaling (section 6.8, Burst cap), "
                               "DAC-SC, 3 codebooks"),
    "lossy_rounds_6.eegz": ("eegmat-40s", dict(mode="lossy", codebooks=6),
                            "format 24: lossy_high_profile_6's recording, whose high band's shaping and rescaling "
                            "run three times (section 6.8, Rounds), DAC-SC, 6 codebooks"),
    "transform_run_edges_250.eegz": ("eegmat-last-16s", dict(mode="transform"),
                                     "format 19: kinds 5 and 6 whose band envelope has the bands B_18 (section 8.2) "
                                     "and whose constant runs (the recording's padding) carry the original samples "
                                     "beside them (section 8.4), 250 bit/s; ECG kept exactly"),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


REFERENCE_SAMPLES = 64  # listed samples per signal in a float-decoded vector's decoded_reference


def decoded_reference(edf: Path) -> dict:
    """What a float decode is checked against (vectors/README.md): every stride-th digital sample of each
    signal, and each signal's sample count, sum and sum of squares, which float arithmetic elsewhere may move
    by one digital unit in a few samples, not more."""
    rec = read_edf(edf)
    signals = [np.asarray(d, np.int64) for s, d in zip(rec.header.signals, rec.digital) if not s.is_annotation]
    stride = max(1, min(len(d) for d in signals) // REFERENCE_SAMPLES)
    return {"stride": stride, "samples": [" ".join(map(str, d[::stride])) for d in signals],
            "sums": [[len(d), int(d.sum()), int((d * d).sum())] for d in signals]}


def main() -> None:
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    data = sources(shared)
    table = json.loads((HERE / "vectors.json").read_text()) if (HERE / "vectors.json").exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, (source, options, what) in VECTORS.items():
            if name in table and (HERE / name).exists():
                if options["mode"] in ("lossy", "transform") and "decoded_reference" not in table[name]:
                    api.decompress(HERE / name, tmp / "back.edf", force=True, device="cpu")
                    table[name]["decoded_reference"] = decoded_reference(tmp / "back.edf")
                continue
            if source not in data:
                print(f"skipped {name}: {source} is not available", file=sys.stderr)
                continue
            src = tmp / (source + (".bdf" if "bdf" in source else ".edf"))
            src.write_bytes(data[source])
            out = HERE / name
            api.compress(src, out, force=True, device="cpu", **options)
            back = tmp / "back.edf"
            api.decompress(out, back, force=True, device="cpu")
            entry = {"exercises": what, "mode": options["mode"], "format_version": api.info(out)["format_version"],
                     "eegz_sha256": sha256(out.read_bytes()),
                     "decoded_bytes": back.stat().st_size, "decoded_sha256": sha256(back.read_bytes()),
                     "source_sha256": sha256(data[source])}
            if options["mode"] in ("lossy", "transform"):
                entry["decoded_sha256_note"] = "CPU float decode on x86-64 (informative: last bits may differ elsewhere)"
                entry["decoded_reference"] = decoded_reference(back)
            if "passphrase" in options:
                api.decompress(out, back, force=True, passphrase=options["passphrase"])
                entry["passphrase"] = PASSPHRASE
                entry["decoded_with_passphrase_sha256"] = sha256(back.read_bytes())
            if name == "lossless.eegz":  # a range: records 10..25 at their true start
                api.decompress(out, back, force=True, start=10.5, end=24.2)
                entry["range"] = {"start": 10.5, "end": 24.2, "decoded_sha256": sha256(back.read_bytes()),
                                  "records": [10, 25]}
            table[name] = entry
    (HERE / "vectors.json").write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
