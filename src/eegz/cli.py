"""The `eegz` command line. Errors are one line on stderr with a documented exit code (README)."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

# eegz parallelizes over blocks itself: BLAS and OpenMP pools of their own would only wait on busy cores.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import click  # noqa: E402

from . import __version__
from .errors import EegzError

EXIT_INTERNAL = 1  # bad input is 2 (also click's code for bad options); see errors.py and the README


def _fail(message: str, code: int):
    click.echo(f"eegz: error: {message}", err=True)
    sys.exit(code)


def _terminated(signum, frame):
    """SIGTERM: remove this run's temporary outputs at once, then exit like an interrupted run."""
    from .container import remove_temporaries
    remove_temporaries()
    click.echo("eegz: error: terminated", err=True)
    os._exit(128 + signum)


def _run(action):
    signal.signal(signal.SIGTERM, _terminated)
    # a reader that stops early (`eegz eval ... | head`) ends eegz quietly, as it ends any Unix tool (141)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    from . import _core
    _core.tune_malloc()
    try:
        return action()
    except EegzError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except MemoryError:
        _fail("out of memory", EXIT_INTERNAL)
    except Exception as e:  # a bug: still one line; EEGZ_DEBUG=1 shows the traceback
        if os.environ.get("EEGZ_DEBUG"):
            raise
        _fail(f"internal error ({type(e).__name__}: {e}); please report it, with EEGZ_DEBUG=1 output",
              EXIT_INTERNAL)


def _emit(result: dict, as_json: bool, quiet: bool, text: str, data_on_stdout: bool = False) -> None:
    """The summary on stdout, or on stderr when stdout carries the data itself (-o -)."""
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str), err=data_on_stdout)
    elif not quiet:
        click.echo(text, err=data_on_stdout)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eegz")
def main():
    """Compress EDF/EDF+/BDF EEG recordings into .eegz containers and back."""


def _batch_options(f):
    """Options of the commands that also take many files and folders."""
    f = click.option("--scheduler", metavar="ADDRESS",
                     help="run on a Dask cluster (tcp://HOST:PORT), one file per task; shared storage needed")(f)
    f = click.option("-j", "--jobs", type=int, help="files coded at once (default: what the cores and memory carry)")(f)
    f = click.option("-r", "--recursive", is_flag=True, help="folders: include their subfolders")(f)
    return f


def _is_batch(inputs, recursive, jobs, scheduler) -> bool:
    return len(inputs) != 1 or recursive or jobs is not None or scheduler is not None or Path(inputs[0]).is_dir()


def _run_batch(command: str, inputs, output, recursive, jobs, scheduler, options: dict, force, quiet, as_json):
    """Many files: a bar over files, one line per failure, a JSON report with --json; the exit code
    says whether (and how) any file failed (README)."""
    import time
    from . import batch
    from .progress import Progress

    def plan():
        out_dir = Path(output) if output else None
        if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
            raise EegzError(f"-o {out_dir}: with many files or a folder, -o names an output folder")
        return batch.plan(command, inputs, recursive, out_dir, options, force)

    tasks = _run(plan)
    if jobs is not None and jobs < 1:
        _fail("--jobs must be at least 1", 2)
    t0 = time.monotonic()
    with Progress(len(tasks), f"{command} files", quiet or as_json) as bar:
        def progress(entry):
            bar.update(1)
            if entry["status"] == "failed" and not as_json:
                click.echo(("\n" if bar.enabled else "") + f"eegz: error: {entry['input']}: {entry['error']}", err=True)
        if scheduler:
            results = _run(lambda: batch.run_dask(tasks, scheduler, progress, options.get("model")))
        else:
            results = batch.run_local(tasks, jobs or batch.default_jobs(command, options), progress)
    report = batch.summarize(command, results, time.monotonic() - t0)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif not quiet:
        click.echo(f"{report['files']} files: {report['ok']} done, {report['skipped']} already done, "
                   f"{report['failed']} failed ({report['seconds']:.1f} s)")
    sys.exit(batch.exit_code(results))


def _check_codebooks_asked(codebooks: int | None, mode: str, quality: float | None, with_tokens: bool) -> None:
    """--codebooks where nothing would read it is a mistake to report, not to ignore."""
    if codebooks is None:
        return
    if mode == "transform":
        raise EegzError("--codebooks applies to lossy mode (the transform codec's rate is --bitrate)")
    if mode == "lossy" and quality is not None:
        raise EegzError("--codebooks and --quality exclude each other: pick a number of codebooks or a quality")
    if mode != "lossy" and not with_tokens:
        raise EegzError(f"--codebooks applies to lossy mode and to --with-tokens, not to {mode} alone")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="output .eegz path ('-': standard output); with many files, an output folder")
@click.option("--mode", type=click.Choice(["lossy", "lossless", "near-lossless", "transform"]), default="lossy",
              show_default=True, help="lossy: the neural codec; transform: the transform codec (see --bitrate)")
@click.option("--codebooks", type=int, help="RVQ codebooks kept (3-9), lossy mode and --with-tokens [default: 6]")
@click.option("--max-error", "max_error", type=float, help="near-lossless bound in µV")
@click.option("--max-error-lsb", "max_error_lsb", type=int, help="near-lossless bound in digital steps")
@click.option("--with-tokens", is_flag=True, help="also store neural tokens in exact modes")
@click.option("--quality", type=float, help="lossy: per block and channel the fewest codebooks (3-9) whose block "
              "PRDN and delta..beta band powers are within Q percent (instead of a fixed --codebooks); transform: "
              "the coarsest step that meets it (instead of a fixed --bitrate)")
@click.option("--bitrate", type=float, help="transform: bits per second per EEG channel [default: 250]")
@click.option("--band-envelope/--no-band-envelope", default=True, show_default=True,
              help="lossy: carry each block's power above beta and restore it on decode (noise filling)")
@click.option("--channel-rotation/--no-channel-rotation", "rotate_channels", default=True, show_default=True,
              help="transform: code the principal components of each block's EEG channels, not each channel apart")
@click.option("--exact-channel", "exact_channels", multiple=True, help="keep this EEG channel exactly (repeatable)")
@click.option("--model", help="model name or .npz path (default: the shipped model)")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda")
@click.option("--anonymize", is_flag=True,
              help="replace the patient and recording identification ('X'; start date 01.01.85)")
@click.option("--drop-annotation-text", is_flag=True, help="replace every EDF+ annotation text by 'X'")
@click.option("--encrypt-identity", is_flag=True,
              help="anonymize, and keep the original identification encrypted with --passphrase-file's passphrase")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help="file whose first line is the passphrase (with --encrypt-identity)")
@_batch_options
@click.option("-f", "--force", is_flag=True, help="overwrite existing outputs")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar, no summary")
@click.option("--json", "as_json", is_flag=True, help="print the summary (with many files: the report) as JSON")
def compress(inputs, output, mode, codebooks, max_error, max_error_lsb, with_tokens, quality, bitrate, band_envelope,
             rotate_channels, exact_channels, model, device,
             anonymize, drop_annotation_text, encrypt_identity, passphrase_file, recursive, jobs, scheduler, force,
             quiet, as_json):
    """Compress EDF/BDF files ('-': standard input); the default output is each INPUT with .eegz."""
    from .api import compress as run

    def options() -> dict:
        passphrase = None
        if encrypt_identity or passphrase_file:
            if not (encrypt_identity and passphrase_file):
                raise EegzError("--encrypt-identity and --passphrase-file go together")
            from .identity import read_passphrase
            passphrase = read_passphrase(passphrase_file)
        _check_codebooks_asked(codebooks, mode, quality, with_tokens)
        return dict(mode=mode, **({} if codebooks is None else {"codebooks": codebooks}), device=device, model=model, max_error_uv=max_error,
                    max_error_lsb=max_error_lsb, with_tokens=with_tokens, exact_labels=tuple(exact_channels),
                    anonymize=anonymize, drop_annotation_text=drop_annotation_text, passphrase=passphrase,
                    band_envelope=band_envelope, quality=quality, bitrate=bitrate, rotate_channels=rotate_channels)
    if _is_batch(inputs, recursive, jobs, scheduler):
        _run_batch("compress", inputs, output, recursive, jobs, scheduler, _run(options), force, quiet, as_json)
    result = _run(lambda: run(inputs[0], output, force=force, quiet=quiet or as_json, **options()))
    _emit(result, as_json, quiet, f"{result['file']}: {result['mode']}, {result['bytes']} bytes, "
                                  f"ratio {result['compression_ratio']:.2f}", data_on_stdout=output == "-")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="output EDF/BDF path ('-': standard output); with many files, an output folder")
@click.option("--start", type=float, help="first second to decode")
@click.option("--end", type=float, help="last second to decode (exclusive)")
@click.option("--codebooks", type=int, help="lossy files: a quick preview from the first N codebooks")
@click.option("--model", help="model .npz path, when the file's model is not shipped with eegz")
@click.option("--device", default="auto", show_default=True)
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help="restore the encrypted original identification with the passphrase on this file's first line")
@_batch_options
@click.option("-f", "--force", is_flag=True, help="overwrite existing outputs")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def decompress(inputs, output, start, end, codebooks, model, device, passphrase_file, recursive, jobs, scheduler, force,
               quiet, as_json):
    """Decode .eegz files ('-': standard input) back to EDF/BDF (whole records covering --start..--end,
    at their true time)."""
    from .api import decompress as run

    def options() -> dict:
        passphrase = None
        if passphrase_file:
            from .identity import read_passphrase
            passphrase = read_passphrase(passphrase_file)
        return dict(start=start, end=end, device=device, model=model, passphrase=passphrase, codebooks=codebooks)
    if _is_batch(inputs, recursive, jobs, scheduler):
        _run_batch("decompress", inputs, output, recursive, jobs, scheduler, _run(options), force, quiet, as_json)
    result = _run(lambda: run(inputs[0], output, force=force, quiet=quiet or as_json, **options()))
    _emit(result, as_json, quiet, f"{result['output']}: {result['records']} records, {result['bytes']} bytes",
          data_on_stdout=output == "-")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--codebooks", type=int, required=True, help="codebooks to keep (at most those stored)")
@click.option("-o", "--output", required=True, help="output .eegz path; with many files, an output folder")
@click.option("--model", help="model .npz path, when the file's model is not shipped with eegz")
@_batch_options
@click.option("-f", "--force", is_flag=True, help="overwrite existing outputs")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def recode(inputs, codebooks, output, model, recursive, jobs, scheduler, force, quiet, as_json):
    """Keep the first N codebooks of lossy files without re-encoding (a smaller retention tier)."""
    from .api import recode as run
    options = dict(codebooks=codebooks, model=model)
    if _is_batch(inputs, recursive, jobs, scheduler):
        _run_batch("recode", inputs, output, recursive, jobs, scheduler, options, force, quiet, as_json)
    result = _run(lambda: run(inputs[0], output, force=force, **options))
    _emit(result, as_json, quiet, f"{result['file']}: {result['codebooks']} codebooks, {result['bytes']} bytes, "
                                  f"ratio {result['compression_ratio']:.2f}")


@main.command()
@click.argument("input", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def info(input, as_json):
    """Describe a .eegz file: channels, duration, mode, codec, sizes and ratio."""
    from .api import info as run
    result = _run(lambda: run(input))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    lines = [f"file          {result['file']}",
             f"source        {result['source']} ({result['kind']}, {result['source_bytes']} bytes)",
             f"mode          {result['mode']}",
             f"duration      {result['duration_s']:g} s in {result['records']} records, {result['blocks']} blocks",
             f"size          {result['bytes']} bytes, ratio {result['compression_ratio']:.2f}",
             f"identity      {result['identity']}" + (", annotation texts dropped"
                                                      if result["annotation_text"] == "dropped" else "")]
    if result["codec"]:
        bps = result["bits_per_second_per_channel"]
        lines.append(f"codec         {result['codec']['variant']} {result['model']}, {result['codebooks']} codebooks"
                     + (f", {bps:.1f} bit/s per EEG channel" if bps else ""))
        if result["codec"].get("quality") is not None:
            lines.append(f"quality       block PRDN and delta..beta power within {result['codec']['quality']:g} %")
    if result.get("transform"):
        target = result["transform"]
        rate = (f"{target['bitrate']:g} bit/s per EEG channel asked" if "bitrate" in target
                else f"block PRDN and delta..beta power within {target['quality']:g} %")
        bps = result["bits_per_second_per_channel"]
        lines.append(f"transform     {rate}" + (f", {bps:.1f} bit/s per EEG channel" if bps else "")
                     + ("" if target.get("band_envelope", True) else ", no band envelope")
                     + (", channels rotated" if target.get("rotate_channels") else ""))
    if result.get("codebook_counts"):
        lines.append("token streams " + ", ".join(f"{n} codebooks: {count}" for n, count in result["codebook_counts"].items()))
    lines.append("channels")
    for c in result["channels"]:
        bound = f" ±{c['max_error_lsb']} LSB" if c["max_error_lsb"] else ""
        style = f" style {c['style_index']}" if c["style_index"] is not None else ""
        lines.append(f"  {c['label']:<18} {c['sample_rate']:>9.3f} Hz  {c['physical_dimension']:<6} {c['role']}{bound}{style}")
    click.echo("\n".join(lines))


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--against", type=click.Path(dir_okay=False, path_type=Path),
              help="the original EDF/BDF: every sample is compared with it")
@click.option("--model", help="model .npz path for lossy files")
@click.option("--device", default="auto", show_default=True)
@_batch_options
@click.option("-q", "--quiet", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def verify(inputs, against, model, device, recursive, jobs, scheduler, quiet, as_json):
    """Check .eegz files: against the original (exact channels equal, bounded channels within bound), or
    without it (every checksum, every block decoded, and a lossless file's SHA-256)."""
    from . import api
    if _is_batch(inputs, recursive, jobs, scheduler):
        if against:
            _fail("--against compares one file; folders are checked without it", 2)
        _run_batch("verify", inputs, None, recursive, jobs, scheduler, dict(device=device, model=model), False,
                   quiet, as_json)
    if against:
        result = _run(lambda: api.verify(inputs[0], against, device=device, model=model))
        _emit(result, as_json, quiet, f"{inputs[0]}: OK ({result['mode']}, {len(result['channels'])} channels)")
    else:
        result = _run(lambda: api.check(inputs[0], device=device, model=model))
        _emit(result, as_json, quiet, f"{inputs[0]}: OK ({result['mode']}, {result['records']} records decoded)")


@main.command()
@click.argument("reference", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("candidate", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", help="model .npz path for lossy files")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def eval(reference, candidate, model, device, as_json):
    """Fidelity of a reconstruction (.eegz or decoded .edf) against the original EDF."""
    from .metrics import evaluate_files
    result = _run(lambda: evaluate_files(reference, candidate, device=device, model=model))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    o = result["overall"]
    click.echo(f"PRD {o['prd']:.2f}%  PRDN {o['prdn']:.2f}%  SNR {_decibels(o['snr_db'])}  r {o['correlation']:.4f}  "
               f"max |err| {o['max_abs_error_uv']:.2f} µV  mel {o['mel_loss']:.3f}  line length {o['line_length_error']:.3f}"
               + (f"  ratio {result['compression_ratio']:.2f}" if result.get("compression_ratio") else ""))
    click.echo("band power error  " + "  ".join(f"{b} {v:.3f}" for b, v in o["band_power_error"].items()))
    click.echo("0.5-s windows: band power error median / 90th percentile  " + "  ".join(
        f"{b} {v['median']:.2f}/{v['p90']:.2f}" for b, v in o["window_band_error"].items()))
    click.echo("0.5-s windows from 0.25 s (across the codec's 0.5-s parts and seams): 90th percentile  " + "  ".join(
        f"{b} {v['p90']:.2f}" for b, v in o["window_band_error_offset"].items()))
    if o.get("transients"):
        t = o["transients"]
        click.echo(f"largest peak a window: amplitude error {t['amplitude_error']['median']:.2f} (90 %: "
                   f"{t['amplitude_error']['p90']:.2f}), timing {t['timing_ms']['median']:.1f} ms (90 %: "
                   f"{t['timing_ms']['p90']:.1f} ms)")
    line = o["spectral_line"]
    click.echo(f"strongest invented spectral line {line['ratio']:.2f}x at {line['hz']:.2f} Hz (1.0: none; "
               f"white quantization noise gives 1.1-1.3)")
    if o.get("ripples"):
        r = o["ripples"]
        click.echo(f"ripple detector (80-250 Hz): {r['original']} events in the original, {r['decoded']} decoded, "
                   f"{r['invented']} invented ({r['invented'] / max(r['minutes'], 1e-9):.2f} a channel-minute), "
                   f"{r['missed']} missed")
    for c in result["channels"]:
        click.echo(f"  {c['label']:<18} PRDN {c['prdn']:7.2f}%  SNR {_decibels(c['snr_db']):>9}  r {c['correlation']:.4f}")


def _decibels(snr_db: float | None) -> str:
    return "exact" if snr_db is None else f"{snr_db:.2f} dB"


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--steps", type=int, default=20000, show_default=True,
              help="0: evaluate and save the starting model (--frame-start, --from-model switched or widened)")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=3e-4, show_default=True)
@click.option("--lr-final", type=float, help="decay the learning rate along a half cosine to this by the last step")
@click.option("--warmup-steps", type=int, default=0, show_default=True,
              help="DAC-SC: raise the learning rate linearly over the first N steps (fine-tuning a trained model; "
                   "DAC-MC always warms up over 200)")
@click.option("--init", type=click.Path(dir_okay=False, path_type=Path),
              help="start from a DAC checkpoint in descript-audio-codec's format (DAC.load)")
@click.option("--resume", is_flag=True,
              help="continue from OUT/train_state.pt (the run's own card gives the model: --from-model, "
                   "--code-lookup, --upsampling and --frame-start only shape a new run)")
@click.option("--from-model", type=click.Path(dir_okay=False, path_type=Path),
              help="start from an eegz model (.npz with its .json card), e.g. eegz/models/<name>.npz")
@click.option("--val-subject", "val_subjects", multiple=True,
              help="subject held out for validation, a shell pattern such as 'Subject1[4-7]' (repeatable)")
@click.option("--adversarial-steps", type=int, default=0, show_default=True, help="final GAN-phase steps")
@click.option("--variant", type=click.Choice(["sc", "mc"]), default="sc", show_default=True,
              help="mc: fine-tune DAC-MC (channel mixing + style vectors) from the --from-model DAC-SC model")
@click.option("--channels", type=int, default=16, show_default=True, help="DAC-MC: channels per training window")
@click.option("--freeze-decoder", is_flag=True,
              help="DAC-MC: train only the channel mixing and style vectors; DAC-SC: train only the encoder (with "
                   "--from-model: codebooks and decoder stay as they are, so every token decodes as before)")
@click.option("--freeze-encoder", is_flag=True,
              help="DAC-SC: train only the decoder (with --from-model: the model's tokens stay exactly as they are)")
@click.option("--decoder-dim", type=int, default=0,
              help="DAC-SC with --from-model: widen the model's decoder to N channels; the new channels start unread, "
                   "so training starts from the model's own output")
@click.option("--stft-weight", type=float, default=0.0, show_default=True,
              help="weight of the multi-resolution STFT magnitude loss")
@click.option("--line-length-weight", type=float, default=0.0, show_default=True,
              help="weight of the relative line-length loss")
@click.option("--excess-weight", type=float, default=0.0, show_default=True,
              help="weight of the spectral-excess loss (power the decoder invents, such as spectral lines)")
@click.option("--line-weight", type=float, default=0.0, show_default=True,
              help="weight of the line loss (narrow lines the decoder invents, on each dataset's running mean spectrum)")
@click.option("--image-weight", type=float, default=0.0, show_default=True,
              help="weight of the image loss (the decoder's upsampling copies of low frequencies, such as alpha at 57 Hz)")
@click.option("--line-group", type=int, default=0, show_default=True,
              help="DAC-SC: draw batches in groups of N windows of one channel and keep the line loss per channel "
                   "(a line one channel carries is diluted in its dataset's mean spectrum)")
@click.option("--quantizer-dropout", type=float, default=0.5, show_default=True,
              help="share of each batch coded with a random count of codebooks (the rest with all of them)")
@click.option("--min-codebooks", type=click.IntRange(1, 9), default=1, show_default=True,
              help="the fewest codebooks quantizer dropout keeps (files use 3 to 9; DAC draws from 1)")
@click.option("--latent-weight", type=float, default=0.0, show_default=True,
              help="weight of the latent loss: each count of codebooks should sum to the encoder's output")
@click.option("--upsampling", type=click.Choice(["dac", "balanced"]), default="balanced", show_default=True,
              help="decoder upsampling: DAC's transposed convolutions, or balanced ones that add no frame-rate lines")
@click.option("--code-lookup", type=click.Choice(["cosine", "euclidean"]),
              help="a new model's nearest code: DAC's by direction (cosine), or by distance (euclidean, with unused "
                   "codes moved onto the data every 100 steps; default cosine). With --from-model: euclidean "
                   "switches the model, its codebooks refitted by k-means to its own stage inputs")
@click.option("--frame-start", is_flag=True,
              help="DAC-SC: a new model starts as a k-means quantizer of raw frames (encoder and decoder pass each "
                   "hop's samples through; DAC's upsampling, codes by distance) instead of random weights")
@click.option("--window-seconds", type=float, default=4.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=0, help="torch CPU threads (0: default)")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda")
@click.option("--max-seconds", type=float, default=0.0, help="stop (evaluate and save) after this much training time")
@click.option("-q", "--quiet", is_flag=True)
def train(inputs, out_dir, steps, batch_size, lr, lr_final, warmup_steps, init, resume, from_model, val_subjects,
          adversarial_steps, variant, channels, freeze_decoder, freeze_encoder, decoder_dim, stft_weight, line_length_weight, excess_weight, line_weight, image_weight,
          line_group, quantizer_dropout, min_codebooks, latent_weight, upsampling, code_lookup, frame_start, window_seconds, seed, threads, device, max_seconds, quiet):
    """Train or fine-tune the EEG codec on EDF files, Bonn segments, folders or globs."""
    from .neural import ModelConfig
    from .neural import resolve_model_path
    from .train import TrainSettings, train as run, train_multichannel
    settings = TrainSettings(steps=steps, batch_size=batch_size, lr=lr, lr_final=lr_final, warmup_steps=warmup_steps,
                             adversarial_steps=adversarial_steps,
                             stft_weight=stft_weight, line_length_weight=line_length_weight, excess_weight=excess_weight,
                             line_weight=line_weight, image_weight=image_weight, line_group=line_group,
                             quantizer_dropout=quantizer_dropout, min_codebooks=min_codebooks,
                             latent_weight=latent_weight,
                             window_seconds=window_seconds, seed=seed, threads=threads,
                             device=device, max_seconds=max_seconds, freeze_encoder=freeze_encoder, decoder_dim=decoder_dim,
                             freeze_decoder=freeze_decoder and variant == "sc")
    log = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    if code_lookup and (init or variant == "mc" or (from_model and code_lookup == "cosine")):
        _fail("--code-lookup sets a new model's code lookup, or switches a --from-model model to euclidean; "
              "an --init or DAC-MC model keeps its own", 2)
    if frame_start and variant == "mc":
        _fail("--frame-start starts a new DAC-SC model", 2)
    if variant == "mc":
        result = _run(lambda: train_multichannel(
            list(inputs), out_dir, from_model or resolve_model_path(None), settings, channels=channels,
            train_decoder=not freeze_decoder, resume=resume, val_subjects=tuple(val_subjects), quiet=quiet, log=log))
    else:
        result = _run(lambda: run(list(inputs), out_dir, ModelConfig(upsampling=upsampling, code_lookup=code_lookup or "cosine"), settings, init=init, resume=resume,
                                  from_model=from_model, val_subjects=tuple(val_subjects), quiet=quiet, log=log,
                                  switch_lookup=code_lookup == "euclidean", frame_start=frame_start))
    click.echo(json.dumps(result))


if __name__ == "__main__":
    main()
