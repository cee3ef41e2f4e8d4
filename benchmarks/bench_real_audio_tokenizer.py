"""Audio tokenizer on real sound: train on a corpus for a time budget, then score it against Opus.

    python benchmarks/bench_real_audio_tokenizer.py --corpus CORPUS --minutes 60 \\
        [--media DIR ...] [--json FILE] [--out DIR] [--config configs/real-audio.yaml] [--preset videopoet] \\
        [--seconds 30] [--steps N] [--eval-only] [KEY=VALUE ...]

Trains the `audio_tokenizer` section of `--config` (`KEY=VALUE` overrides fields of it; `--preset NAME`
replaces its model by the preset `tiny` or `videopoet`, 4 x 1024 codes at 50 frames/s) on the `train`
split of the corpus (`splits.json`) into `--out` (a tokenizer folder, loadable with
`videopoet.tokenizers.checkpoint.load_tokenizer(out, "audio")`). The step count comes from timed
calibration steps (`fit_steps_to_minutes`, which also scales the learning-rate warm-up) so training takes
about `--minutes`, and stops there should the steps run slower than timed (`--steps` sets it instead; `--eval-only` scores an existing `--out`); a quantizer or
mel warm-up longer than half the run is cut to half (printed) unless an override sets it.

Then it scores every `val` file of the corpus (grouped by folder: speech, music) and every file with sound
under each `--media` folder (group `media`), each from its start for at most `--seconds` (default 30; 0:
whole files): SI-SDR, multi-scale mel distance and loudness difference (LU, BS.1770) of the codec and of
Opus at 6 kbps (its floor) and 12 kbps, the codec's kbps, encode and decode real-time factors (audio
seconds per compute second), per-level RVQ code usage over the corpus val files, and one spectrogram PNG
per file (log-mel, top to bottom: original, codec, Opus 6 kbps; low frequencies at the bottom of each
panel). A file that cannot be read is skipped with one line on stderr. Prints per-file rows, group means
and the targets (val speech: multi-scale mel distance at or below Opus 6 kbps at <= 2 kbps, SI-SDR above
0 dB), and writes JSON (`--json`, default `<out>/bench.json`) with the rows, the means, the training
config, the steps run (`steps`; `planned_steps`: the plan's), minutes and the spectrogram files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from videopoet.config import load_section, to_dict  # noqa: E402
from videopoet.data.corpus import MODALITY_EXTENSIONS, split_files  # noqa: E402
from videopoet.data.sources import training_source  # noqa: E402
from videopoet.errors import UserError  # noqa: E402
from videopoet.runs import step_of  # noqa: E402
from videopoet.tokenizers.audio.train import AudioTokenizerTrainingConfig  # noqa: E402
from videopoet.tokenizers.budget import fit_steps_to_minutes  # noqa: E402
from videopoet.tokenizers.registry import get_family  # noqa: E402

FAMILY = get_family("audio")
DEFAULT_CONFIG = ROOT / "configs" / "real-audio.yaml"
OPUS_KBPS = (6.0, 12.0)  # Opus' floor, and twice it
TARGET_KBPS = 2.0
METRICS = ("si_sdr", "mel", "loudness")  # per coder: SI-SDR (dB), multi-scale mel distance, loudness diff (LU)
SPECTROGRAM_DB = 80.0  # dynamic range shown, down from the original's loudest bin


def load_config(path: str | Path, preset: str | None = None, overrides: list[str] | None = None) -> AudioTokenizerTrainingConfig:
    """The `audio_tokenizer` section of `path` with `overrides` (KEY=VALUE); `preset` replaces the model
    section by that preset (the overrides still apply to it) but keeps the config's `init`, which belongs
    to the recipe: under PyTorch's default init a fresh codec sits near silence (docs/results.md)."""
    first = []
    if preset:
        init = load_section("audio_tokenizer", path, []).model.init
        first = [f"model={{preset: {preset}, init: {init}}}"]
    return load_section("audio_tokenizer", path, [*first, *(overrides or [])])


def cap_warmups(config: AudioTokenizerTrainingConfig, overrides: list[str] = ()) -> dict[str, int]:
    """Cut a warm-up (`loss.quantizer_start`, `loss.mel_start`) longer than half of `config.train.steps`
    to half, unless `overrides` set it; returns what it cut. A run shorter than the warm-up would quantize
    only on its last step; cut further (or scaled with the run, as the video schedule is), the RVQ starts
    on latents of an autoencoder that has not learnt yet and its codes collapse (a 245-step run quantizing
    from step 61 used 1 to 3 codes per level)."""
    cap = max(1, config.train.steps // 2)
    given = {o.split("=", 1)[0].removeprefix("audio_tokenizer.") for o in overrides}
    cut = {}
    for key in config.loss.warmup_starts:
        if getattr(config.loss, key) > cap and f"loss.{key}" not in given:
            print(f"loss.{key} {getattr(config.loss, key)} -> {cap}: half of this {config.train.steps}-step run", flush=True)
            setattr(config.loss, key, cap)
            cut[f"loss.{key}"] = cap
    return cut


def eval_files(corpus: str | Path | None, media: list[Path]) -> list[tuple[str, Path]]:
    """(group, file) to score: the corpus' val files grouped by their folder (speech, music), then every
    file with a sound extension under each media folder (group `media`)."""
    exts = MODALITY_EXTENSIONS["audio"]
    out: list[tuple[str, Path]] = []
    if corpus is not None:
        out += [(p.parent.name, p) for p in split_files(corpus, exts)[1]]
    for folder in media:
        if not Path(folder).exists():
            raise UserError(f"--media folder not found: {folder}")
        out += [("media", p) for p in split_files(folder, exts)[0]]
    return out


# ---- spectrograms -------------------------------------------------------------------------------------------

_COLORS = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
                    [250, 193, 39], [252, 255, 164]], dtype=np.float64)  # fmt: skip  # inferno-like, dark to bright


def colorize(values: np.ndarray) -> np.ndarray:
    """uint8 RGB `[..., 3]` of values in [0, 1] on a dark-to-bright (inferno-like) colormap."""
    v = np.clip(np.nan_to_num(values), 0.0, 1.0) * (len(_COLORS) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_COLORS) - 2)
    t = (v - lo)[..., None]
    return np.round(_COLORS[lo] * (1 - t) + _COLORS[lo + 1] * t).astype(np.uint8)


def spectrogram_image(panels: list[np.ndarray], sample_rate: int, max_width: int = 2000, mels: int = 80) -> np.ndarray:
    """uint8 RGB image of the log-mel spectrograms of `panels` (1-D waveforms, stacked top to bottom with
    a white line between them, each 2 * `mels` rows, low frequencies at the bottom): 512-sample windows,
    hop 128 (or wider so the image is at most `max_width` columns), shown over `SPECTROGRAM_DB` dB down
    from the first panel's loudest bin so every panel shares one scale."""
    from torchaudio.transforms import MelSpectrogram

    n = max(len(p) for p in panels)
    hop = max(128, math.ceil(n / max_width))
    mel = MelSpectrogram(sample_rate=sample_rate, n_fft=512, hop_length=hop, n_mels=mels, power=2.0)
    with torch.no_grad():
        specs = [10 * torch.log10(mel(torch.from_numpy(np.pad(p, (0, n - len(p))).astype(np.float32))) + 1e-10).numpy()
                 for p in panels]  # fmt: skip
    top = float(specs[0].max())
    rows = []
    for i, s in enumerate(specs):
        img = colorize((s[::-1] - (top - SPECTROGRAM_DB)) / SPECTROGRAM_DB)
        rows.append(np.repeat(img, 2, axis=0))
        if i + 1 < len(specs):
            rows.append(np.full((2, img.shape[1], 3), 255, np.uint8))
    return np.concatenate(rows, axis=0)


# ---- evaluation ---------------------------------------------------------------------------------------------


def coder_metrics(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> dict[str, float]:
    """SI-SDR (dB), multi-scale mel distance and loudness difference (LU; NaN under 0.4 s) of `est`."""
    from videopoet.metrics.audio import loudness_difference, multiscale_mel_distance, si_sdr

    return {"si_sdr": si_sdr(ref, est), "mel": multiscale_mel_distance(ref, est, sample_rate),
            "loudness": loudness_difference(ref, est, sample_rate)}  # fmt: skip


def read_scored(path: Path, sample_rate: int, seconds: float | None, hop: int) -> np.ndarray | None:
    """The first `seconds` (all when None or longer than the file) of `path`'s sound at `sample_rate`,
    trimmed to whole codec frames; None, with one line on stderr, when it cannot be read or is shorter
    than one frame."""
    from videopoet.media import NotEnoughFramesError
    from videopoet.tokenizers.audio.tools import read_input

    try:
        try:
            wav = read_input(path, sample_rate, 0.0, seconds)
        except NotEnoughFramesError:  # shorter than `seconds`: all of it
            wav = read_input(path, sample_rate, 0.0, None)
    except Exception as e:  # a broken file must not stop the benchmark; say why in one line
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"skipping {why if str(path) in why else f'{path}: {why}'}", file=sys.stderr, flush=True)
        return None
    n = wav.size // hop * hop
    if n == 0:
        print(f"skipping {path}: {wav.size / sample_rate:.3f} s is shorter than one codec frame", file=sys.stderr, flush=True)
        return None
    return wav[:n]


def evaluate(model: Any, files: list[tuple[str, Path]], seconds: float | None = 30.0,
             image_dir: Path | None = None, opus: bool = True) -> dict[str, Any]:  # fmt: skip
    """Score the audio tokenizer `model` on `files` ((group, path) pairs): per-file rows, group means and
    per-level RVQ code usage (over all scored files and per group). See the module docstring."""
    from videopoet.media.codecs import opus_roundtrip
    from videopoet.tokenizers.audio.rvq import codebook_usage

    sr, cfg = model.sample_rate, model.config
    rows: list[dict[str, Any]] = []
    codes_by_group: dict[str, list[np.ndarray]] = {}
    for group, path in files:
        wav = read_scored(path, sr, seconds, model.hop)
        if wav is None:
            continue
        dur = wav.size / sr
        t0 = time.perf_counter()
        codes = model.encode_long(wav)
        t1 = time.perf_counter()
        recon = model.decode_long(codes, num_samples=wav.size)
        t2 = time.perf_counter()
        codes_by_group.setdefault(group, []).append(codes)
        row: dict[str, Any] = {"group": group, "file": str(path), "seconds": dur, "kbps": cfg.bitrate_kbps(),
                               **coder_metrics(wav, recon, sr),
                               "encode_rtf": dur / max(t1 - t0, 1e-9), "decode_rtf": dur / max(t2 - t1, 1e-9)}  # fmt: skip
        panels = [wav, recon]
        for kbps in OPUS_KBPS if opus else ():
            dec, used = opus_roundtrip(wav, sr, kbps)
            row.update({f"opus{kbps:g}_{k}": v for k, v in coder_metrics(wav, dec, sr).items()})
            panels += [dec] if kbps == OPUS_KBPS[0] else []
        if image_dir is not None:
            from videopoet.media import write_image

            name = f"{group}_{path.stem}.png"
            write_image(Path(image_dir) / name, spectrogram_image(panels, sr))
            row["spectrogram"] = name
        rows.append(row)

    def usage(codes: list[np.ndarray]) -> list[dict[str, float]]:
        return codebook_usage(np.concatenate(codes, axis=-1), cfg.codebook_size) if codes else []

    groups = {g: group_means([r for r in rows if r["group"] == g]) for g in dict.fromkeys(r["group"] for r in rows)}
    corpus_codes = [c for g, cs in codes_by_group.items() if g != "media" for c in cs]
    return {"bitrate_kbps": cfg.bitrate_kbps(), "sample_rate": sr, "seconds_limit": seconds, "files": rows,
            "groups": groups, "codebook_usage": usage(corpus_codes),
            "codebook_usage_by_group": {g: usage(cs) for g, cs in codes_by_group.items()}}  # fmt: skip


def group_means(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of every numeric column over `rows` (NaN entries left out), plus `files`, `seconds` (total)
    and mean absolute loudness differences (`*loudness_abs`)."""
    out: dict[str, float] = {"files": len(rows), "seconds": float(sum(r["seconds"] for r in rows))}
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and k != "seconds"] if rows else []
    for k in keys:
        vals = np.array([r[k] for r in rows], dtype=np.float64)
        ok = vals[np.isfinite(vals)]
        out[k] = float(ok.mean()) if ok.size else math.nan
        if k.endswith("loudness"):
            out[f"{k}_abs"] = float(np.abs(ok).mean()) if ok.size else math.nan
    return out


def targets(groups: dict[str, dict[str, float]], kbps: float) -> dict[str, Any]:
    """The issue's audio targets on val speech: mel distance at or below Opus 6 kbps at <= 2 kbps, and
    SI-SDR above 0 dB (None where there is no speech group or no Opus column)."""
    s = groups.get("speech")
    if not s or "opus6_mel" not in s:
        return {"mel_at_or_below_opus6": None, "kbps_at_most_2": kbps <= TARGET_KBPS, "si_sdr_above_0": None}
    return {"mel_at_or_below_opus6": bool(s["mel"] <= s["opus6_mel"]), "kbps_at_most_2": kbps <= TARGET_KBPS,
            "si_sdr_above_0": bool(s["si_sdr"] > 0)}  # fmt: skip


# ---- report -------------------------------------------------------------------------------------------------


def _f(v: Any, width: int, digits: int = 2) -> str:
    return f"{v:>{width}.{digits}f}" if isinstance(v, (int, float)) and math.isfinite(v) else f"{'-':>{width}}"


def print_report(result: dict[str, Any]) -> None:
    """Per-file rows, group means, code usage and targets as plain-text tables."""
    cols = [("", "si_sdr", 7, 2), ("", "mel", 6, 3), ("", "loudness", 6, 2)]
    head = "SI-SDR    mel   loud"
    print(f"\n{'file':<40} {'sec':>5} | codec {result['bitrate_kbps']:.2f} kbps   | Opus 6 kbps          | Opus 12 kbps         | enc/dec RTF")
    print(f"{'':<40} {'':>5} | {head} | {head} | {head} |")

    def line(label: str, r: dict[str, Any], sec: float) -> str:
        parts = [" ".join(_f(r.get(f"{p}{k}"), w, d) for _, k, w, d in cols) for p in ("", "opus6_", "opus12_")]
        return f"{label:<40} {sec:>5.1f} | " + " | ".join(parts) + f" | {_f(r.get('encode_rtf'), 5, 0)}/{_f(r.get('decode_rtf'), 0, 0)}"

    for r in result["files"]:
        print(line(f"{r['group']}/{Path(r['file']).name}"[:40], r, r["seconds"]))
    print("\nmeans per group (loudness: mean signed difference, LU)")
    for g, m in result["groups"].items():
        print(line(f"{g} ({m['files']} files)", m, m["seconds"]))
    for level, u in enumerate(result["codebook_usage"]):
        print(f"RVQ level {level}: {u['fraction_used']:.1%} of codes used, perplexity {u['perplexity']:.0f}")
    t = result.get("targets", {})
    if t:
        s = result["groups"].get("speech", {})
        print(f"\ntargets on val speech: mel {_f(s.get('mel'), 0, 3)} <= Opus 6 kbps {_f(s.get('opus6_mel'), 0, 3)}: "
              f"{t['mel_at_or_below_opus6']}; codec {result['bitrate_kbps']:.2f} kbps <= 2: {t['kbps_at_most_2']}; "
              f"SI-SDR {_f(s.get('si_sdr'), 0, 2)} dB > 0: {t['si_sdr_above_0']}")


def _json_safe(v: Any) -> Any:
    """NaN and infinities as null (strict JSON)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="corpus folder with splits.json (train and val)")
    ap.add_argument("--minutes", type=float, default=60.0, help="training time budget (default 60)")
    ap.add_argument("--media", type=Path, action="append", default=[], help="extra folder of sound to score (repeatable)")
    ap.add_argument("--json", type=Path, help="results file (default: <out>/bench.json)")
    ap.add_argument("--out", type=Path, help="tokenizer folder to train into (default: runs/bench/real_audio/<name>-<time>)")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="project config with an audio_tokenizer section")
    ap.add_argument("--preset", choices=("tiny", "videopoet"), help="train this model preset instead of the config's model")
    ap.add_argument("--seconds", type=float, default=30.0, help="score at most this many seconds of each file (0: whole files)")
    ap.add_argument("--steps", type=int, help="train this many steps instead of calibrating for --minutes")
    ap.add_argument("--eval-only", action="store_true", help="score the existing tokenizer folder --out, no training")
    ap.add_argument("--no-opus", action="store_true", help="leave out the Opus columns")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override audio_tokenizer fields, e.g. train.batch_size=16")
    args = ap.parse_args(argv)
    if args.eval_only and args.out is None:
        ap.error("--eval-only needs --out (the tokenizer folder to score)")
    if args.minutes <= 0 or (args.steps is not None and args.steps < 1) or args.seconds < 0:
        ap.error("--minutes must be positive, --steps at least 1 and --seconds at least 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); returns what it writes as JSON."""
    args = parse_args(argv)
    from videopoet.tokenizers.checkpoint import latest_checkpoint, load_tokenizer

    if not args.corpus.is_dir():
        raise UserError(f"--corpus folder not found: {args.corpus}")
    config = load_config(args.config, args.preset, args.overrides)
    name = args.preset or Path(args.config).stem
    out = args.out or ROOT / "runs" / "bench" / "real_audio" / f"{name}-{args.minutes:g}min-{time.strftime('%Y%m%d-%H%M%S')}"
    files = eval_files(args.corpus, args.media)
    plan: dict[str, Any] = {}
    train_s = None
    if not args.eval_only:
        source = training_source(FAMILY, args.corpus, config)
        if args.steps:
            config.train.steps = args.steps
        else:
            plan = fit_steps_to_minutes(FAMILY, config, source, args.minutes)
            print(f"calibration: {plan['seconds_per_step']:.3f} s/step -> {plan['steps']} steps for {args.minutes:g} min", flush=True)
        plan["warmups_cut"] = cap_warmups(config, args.overrides)
        t0 = time.perf_counter()
        run = FAMILY.train(config, source, out)
        train_s = time.perf_counter() - t0
        print(f"trained {run['step']} of {run['steps']} planned steps in {train_s / 60:.1f} min into {out}", flush=True)
    model = load_tokenizer(out, "audio")
    result = evaluate(model, files, args.seconds or None, out / "spectrograms", opus=not args.no_opus)
    trained = (json.loads((out / "config.json").read_text()).get("training") or {}) if args.eval_only else to_dict(config)
    last = latest_checkpoint(out)  # the steps run: `train.max_minutes` may stop a run before its plan
    steps = step_of(last) if last else None
    result.update(targets=targets(result["groups"], result["bitrate_kbps"]), corpus=str(args.corpus),
                  media=[str(m) for m in args.media], out=str(out), spectrogram_dir=str(out / "spectrograms"),
                  config_file=str(args.config), preset=args.preset, overrides=args.overrides, training=trained,
                  steps=steps, planned_steps=trained.get("train", {}).get("steps"),
                  minutes=None if args.eval_only else args.minutes, plan=plan,
                  train_minutes=None if train_s is None else train_s / 60, threads=torch.get_num_threads())  # fmt: skip
    print_report(result)
    path = args.json or out / "bench.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(result), indent=2))
    print(f"\nwrote {path} and {len(result['files'])} spectrograms in {out / 'spectrograms'}")
    return result


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        sys.exit(f"error: {e}")
