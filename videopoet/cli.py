"""The `videopoet` command. Subcommands parse their options and delegate; the work lives in the package.

A user error (bad path, bad option, unreadable file: any `UserError`) prints one line on stderr and exits
with status 2; `--debug` shows the traceback instead. Heavy modules are imported inside the handlers so
`videopoet --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from videopoet import __version__
from videopoet.errors import UserError

EXIT_USER_ERROR = 2

# Errors of the environment a user can fix (a wrong path, a folder without permission) count as user
# errors at the command line; every other exception is a bug and keeps its traceback.
_USER_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


# ---- handlers: each delegates to one library call ----------------------------------------------------


def _media_probe(args: argparse.Namespace) -> None:
    from videopoet.data.io import probe

    infos = [probe(path).to_dict() for path in args.files]
    _print_json(infos[0] if len(infos) == 1 else infos)


def _config_show(args: argparse.Namespace) -> None:
    import yaml

    from videopoet.config import load_project_config, to_dict

    sections = load_project_config(args.config, args.overrides)
    print(yaml.safe_dump({name: to_dict(cfg) for name, cfg in sections.items()}, sort_keys=False), end="")


def _tokenizer_train_text(args: argparse.Namespace) -> None:
    from videopoet.config import load_section
    from videopoet.tokenizers.text import train_text_tokenizer

    overrides = list(args.overrides)
    if args.vocab_size is not None:
        overrides.append(f"vocab_size={args.vocab_size}")
    config = load_section("text_tokenizer", args.config, overrides)
    tokenizer = train_text_tokenizer(args.input, args.out, config)
    print(f"trained a text tokenizer with {tokenizer.vocab_size} pieces in {args.out}")


def _tokenizer_train_media(args: argparse.Namespace) -> None:
    from videopoet.config import load_section

    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    config = load_section(f"{args.kind}_tokenizer", args.config, overrides)
    if args.kind == "video":
        from videopoet.tokenizers.video.train import train_video_tokenizer

        shapes = load_section("shapes", args.config, [])  # how `--data shapes` clips look
        result = train_video_tokenizer(config, args.data, args.out, resume=args.resume, shapes=shapes)
    else:
        from videopoet.tokenizers.audio.train import train_audio_tokenizer

        result = train_audio_tokenizer(config, args.data, args.out, resume=args.resume)
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in (result.get("val") or {}).items())
    print(f"trained the {args.kind} tokenizer to step {result.get('step')} in {args.out}" + (f": {metrics}" if metrics else ""))


def _tokenizer_tools(kind: str):
    if kind == "video":
        from videopoet.tokenizers.video import tools
    else:
        from videopoet.tokenizers.audio import tools
    return tools


def _tokenizer_encode(args: argparse.Namespace) -> None:
    tools = _tokenizer_tools(args.kind)
    if args.kind == "video":
        info = tools.encode_file(args.ckpt, args.input, args.out, start=args.start, frames=args.frames, size=args.size)
    else:
        info = tools.encode_file(args.ckpt, args.input, args.out, start=args.start, seconds=args.seconds)
    print(f"wrote {args.out}: " + ", ".join(f"{k}={v}" for k, v in info.items() if isinstance(v, (int, float, str, list, tuple))))


def _tokenizer_decode(args: argparse.Namespace) -> None:
    _tokenizer_tools(args.kind).decode_file(args.ckpt, args.tokens, args.out)
    print(f"wrote {args.out}")


def _tokenizer_eval(args: argparse.Namespace) -> None:
    tools = _tokenizer_tools(args.kind)
    if args.kind == "video":
        result = tools.evaluate_files(args.ckpt, args.inputs, frames=args.frames, size=args.size)
    else:
        result = tools.evaluate_files(args.ckpt, args.inputs)
    if args.json:
        _print_json(result)
    else:
        for k, v in (result.get("mean") or result).items():
            if isinstance(v, (int, float)):
                print(f"{k:<24} {v:.4g}")


def _data_shapes(args: argparse.Namespace) -> None:
    from videopoet.config import load_section
    from videopoet.data.synthetic import write_shapes_dataset

    overrides = list(args.overrides)
    for key in ("size", "frames", "fps"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    config = load_section("shapes", args.config, overrides)
    out = write_shapes_dataset(args.out, num_clips=args.num_clips, seed=args.seed, config=config)
    print(f"wrote {args.num_clips} clips to {out / 'clips'} with {out / 'metadata.jsonl'}")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 128x224, got {text!r}") from None
    return h, w


def _data_ingest(args: argparse.Namespace) -> None:
    from videopoet.config import load_section
    from videopoet.data.ingest import ingest

    overrides = list(args.overrides)
    for key in ("fps", "frames", "stride_s", "min_seconds", "num_proc", "media_column", "caption_column"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    if args.size is not None:
        overrides.append(f"size=[{args.size[0]}, {args.size[1]}]")
    config = load_section("ingest", args.config, overrides)
    report = ingest(args.src, args.out, config, captions=args.captions)
    print(f"{report['files_seen']} files seen, {report['files_ingested']} ingested, {report['clips']} clips; "
          f"{len(report['skipped'])} skipped (reasons in {Path(args.out) / 'report.json'})")
    for item in report["skipped"][:20]:
        print(f"  skipped {item['file']}: {item['reason']}")


def _tokenize(args: argparse.Namespace) -> None:
    from videopoet.data.pretokenize import pretokenize

    report = pretokenize(args.data, args.out, args.video_tokenizer, args.text_tokenizer, args.audio_tokenizer,
                         batch_size=args.batch_size, num_workers=args.num_workers, shard=args.shard)
    merged = f"; merged into {Path(args.out) / 'records'}" if report["merged"] else "; waiting for the other shards"
    print(f"{report['shard']}: {report['clips']} clips ({report['tokenized_now']} now, {report['clips_per_s']:.2f} clips/s){merged}")


def _generate(args: argparse.Namespace) -> None:
    from videopoet.llm.generate import GenerateRequest, Generator
    from videopoet.llm.sampling import SamplingConfig

    try:
        sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, cfg_scale=args.cfg,
                                  steps=args.steps, seed=args.seed)
    except ValueError as e:
        raise UserError(str(e)) from None
    request = GenerateRequest(task=args.task, prompt=args.prompt or "", image=args.image, video=args.video, audio=args.audio,
                              sampler=args.sampler, sampling=sampling, num_samples=args.num_samples, fps=args.fps,
                              box=tuple(args.box) if args.box else None, seconds=args.seconds)
    for sidecar in Generator(args.model).generate(request, args.out):
        print(f"{Path(args.out) / sidecar['file']}  ({sidecar['timings']['sample_s']:.2f} s sampling)")


def _eval_shapes(args: argparse.Namespace) -> None:
    from videopoet.eval.shapes import evaluate, format_report

    result = evaluate(args.inputs, metadata=args.metadata, prompt=args.prompt)
    if args.json:
        _print_json(result)
    else:
        print(format_report(result))


def _doctor(args: argparse.Namespace) -> None:
    from videopoet import doctor

    lock = args.lock if args.lock is not None else doctor.find_lock()
    if lock is not None and not Path(lock).is_file():
        raise UserError(f"lock file {lock} not found")
    if not args.json:
        print("checking this machine (DeepSpeed builds its CPU op the first time: about a minute)...", file=sys.stderr)
    checks = doctor.run_checks(lock, runs=args.runs, build_ops=not args.no_build)
    if args.json:
        _print_json(doctor.to_json(checks, lock))
    else:
        print(doctor.format_report(checks, lock))
    problems = doctor.failures(checks)
    for check in problems:
        print(f"videopoet doctor: {check.line()}", file=sys.stderr)
    if problems:
        raise SystemExit(EXIT_USER_ERROR)


def _demo(args: argparse.Namespace) -> None:
    from videopoet.demo import run_demo

    config = args.config if args.config is not None else Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    if not Path(config).is_file():
        raise UserError(f"config {config} not found; pass --config configs/tiny.yaml from a checkout")
    report = run_demo(args.out, config, list(args.overrides))
    print(f"report: {args.out / 'report.md'}")
    for sampler, acc in report["prompt_accuracy"].items():
        seen, held = (f"{v:.0%}" if v is not None else "-" for v in (acc["seen"], acc["heldout"]))
        print(f"{sampler}: prompt accuracy seen {seen}, held-out {held}, {report['seconds_per_clip'][sampler]:.2f} s per clip")


def _train(args: argparse.Namespace) -> None:
    from videopoet.llm.parallelize import launch_local

    overrides = list(args.overrides)
    if args.deepspeed is not None:
        overrides.append(f"llm_train.deepspeed={args.deepspeed}")
    if args.out is not None:
        overrides.append(f"llm_train.out={args.out}")
    status = launch_local(args.nproc, args.config, overrides, resume=args.resume)
    if status:
        raise SystemExit(status)


def _export(args: argparse.Namespace) -> None:
    from videopoet.llm.export import export_run

    meta = export_run(args.run, args.out, checkpoint=args.checkpoint)
    print(f"exported step {meta['step']} of {args.run} to {args.out}")


# ---- parser -------------------------------------------------------------------------------------------


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="project config YAML (e.g. configs/tiny.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. vocab_size=2000")


def _group(subparsers: Any, name: str, help_text: str) -> Any:
    """A subcommand that only holds further subcommands."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=lambda _args, p=parser: p.error("choose a subcommand"))
    return parser.add_subparsers(title="subcommands", metavar="COMMAND")


def _command(subparsers: Any, name: str, help_text: str, func: Callable[[argparse.Namespace], Any]) -> Any:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree: `videopoet GROUP [SUBGROUP] COMMAND [options]`."""
    parser = _Parser(
        prog="videopoet",
        description="An open VideoPoet-style multimodal LLM training system.",
    )
    parser.add_argument("--version", action="version", version=f"videopoet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.set_defaults(func=lambda _args: parser.print_help())
    top = parser.add_subparsers(title="commands", metavar="COMMAND")

    media = _group(top, "media", "inspect media files")
    p = _command(media, "probe", "print a media file's container and streams as JSON", _media_probe)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")

    config = _group(top, "config", "inspect project configs")
    p = _command(config, "show", "print a project config with overrides applied, validated", _config_show)
    _add_config_options(p)

    tokenizer = _group(top, "tokenizer", "train and use the text, video and audio tokenizers")
    train = _group(tokenizer, "train", "train a tokenizer")
    p = _command(train, "text", "train the SentencePiece text tokenizer on captions", _tokenizer_train_text)
    p.add_argument("--input", required=True, type=Path, help="UTF-8 text file, one caption per line")
    p.add_argument("--vocab-size", type=int, help="number of pieces (default from the config)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    _add_config_options(p)

    for kind in ("video", "audio"):
        p = _command(train, kind, f"train the {kind} tokenizer", _tokenizer_train_media)
        p.set_defaults(kind=kind)
        p.add_argument("--data", required=True, help="shapes, a folder of media files, or a clip index (videopoet data ingest)")
        p.add_argument("--out", required=True, type=Path, help="output folder (the tokenizer folder, checkpoints, tensorboard)")
        p.add_argument("--steps", type=int, help="training steps (default from the config)")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
        _add_config_options(p)

    encode = _group(tokenizer, "encode", "encode a media file to tokens (.npz)")
    decode = _group(tokenizer, "decode", "decode tokens (.npz) back to media")
    evaluate_tok = _group(tokenizer, "eval", "measure a tokenizer's reconstruction quality and speed against a real codec")
    for kind in ("video", "audio"):
        p = _command(encode, kind, f"encode with the {kind} tokenizer", _tokenizer_encode)
        p.set_defaults(kind=kind)
        p.add_argument("--ckpt", required=True, type=Path, help="tokenizer folder")
        p.add_argument("--input", required=True, type=Path)
        p.add_argument("--start", type=float, default=0.0, help="start time in seconds")
        if kind == "video":
            p.add_argument("--frames", type=int, help="frames to encode (default: all that fit 1 + k * t_factor)")
            p.add_argument("--size", type=_parse_size, help="resize + center-crop to HxW")
        else:
            p.add_argument("--seconds", type=float, help="seconds to encode (default: to the end)")
        p.add_argument("--out", required=True, type=Path, help="tokens file (.npz)")
        p = _command(decode, kind, f"decode {kind} tokens", _tokenizer_decode)
        p.set_defaults(kind=kind)
        p.add_argument("--ckpt", required=True, type=Path, help="tokenizer folder")
        p.add_argument("--tokens", required=True, type=Path, help="tokens file (.npz) from encode")
        p.add_argument("--out", required=True, type=Path, help=".mp4 or .png" if kind == "video" else ".wav or .flac")
        p = _command(evaluate_tok, kind, f"evaluate the {kind} tokenizer", _tokenizer_eval)
        p.set_defaults(kind=kind)
        p.add_argument("--ckpt", required=True, type=Path, help="tokenizer folder")
        p.add_argument("--inputs", required=True, nargs="+", type=Path, metavar="FILE")
        if kind == "video":
            p.add_argument("--frames", type=int, default=17, help="frames per clip")
            p.add_argument("--size", type=_parse_size, help="resize + center-crop to HxW (default: the model's size)")
        p.add_argument("--json", action="store_true", help="print JSON")

    data = _group(top, "data", "make and prepare training data")
    p = _command(data, "shapes", "write the built-in shapes dataset (moving shapes with tones and captions)", _data_shapes)
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--num-clips", required=True, type=int, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    p.add_argument("--size", type=int, help="frame height and width in pixels (default 64)")
    p.add_argument("--frames", type=int, help="frames per clip (default 17)")
    p.add_argument("--fps", type=float, help="frames per second (default 8)")
    _add_config_options(p)

    p = _command(data, "ingest", "cut a media folder or Hugging Face dataset into a clip index", _data_ingest)
    p.add_argument("--src", required=True, help="a folder (searched recursively), a dataset saved on disk, or a data file")
    p.add_argument("--out", required=True, type=Path, help="output folder (clip index, report.json)")
    p.add_argument("--fps", type=float, help="clip frame rate (default 8)")
    p.add_argument("--frames", type=int, help="frames per clip (default 17)")
    p.add_argument("--size", type=_parse_size, help="resize + center-crop clips to HxW")
    p.add_argument("--stride-s", dest="stride_s", type=float, help="seconds between clip starts (default: one clip length)")
    p.add_argument("--min-seconds", dest="min_seconds", type=float, help="skip files shorter than this")
    p.add_argument("--captions", type=Path, help="captions.jsonl or CSV mapping file names to captions")
    p.add_argument("--num-proc", dest="num_proc", type=int, help="processes probing files in parallel")
    p.add_argument("--media-column", dest="media_column", help="dataset column of media paths (default: auto)")
    p.add_argument("--caption-column", dest="caption_column", help="dataset column of captions (default: auto)")
    _add_config_options(p)

    p = _command(top, "tokenize", "turn a clip index into token records for LLM training", _tokenize)
    p.add_argument("--data", required=True, type=Path, help="clip index folder (videopoet data ingest --out)")
    p.add_argument("--video-tokenizer", required=True, type=Path, help="video tokenizer folder")
    p.add_argument("--text-tokenizer", required=True, type=Path, help="text tokenizer folder")
    p.add_argument("--audio-tokenizer", type=Path, help="audio tokenizer folder (without it, records have no audio)")
    p.add_argument("--out", required=True, type=Path, help="token records folder")
    p.add_argument("--batch-size", type=int, default=8, help="clips per tokenizer batch")
    p.add_argument("--num-workers", type=int, default=1, help="DataLoader workers decoding clips")
    p.add_argument("--shard", help="I/N: this process takes clips I, I+N, ... (default: RANK/WORLD_SIZE or 0/1)")

    p = _command(top, "generate", "sample videos, images or sound from an exported model", _generate)
    p.add_argument("--model", required=True, type=Path, help="model folder written by `videopoet export`")
    p.add_argument("--task", required=True, help="text_to_video, text_to_image, text_to_video_audio, image_to_video, video_continuation, "
                   "video_inpainting, video_outpainting, video_to_audio, audio_to_video, unconditional_video")
    p.add_argument("--prompt", help="the text prompt (text tasks)")
    p.add_argument("--image", help="input image (image_to_video)")
    p.add_argument("--video", help="input video (continuation, inpainting, outpainting, video_to_audio)")
    p.add_argument("--audio", help="input sound (audio_to_video)")
    p.add_argument("--box", type=float, nargs=4, metavar=("TOP", "LEFT", "H", "W"), help="inpainting box as shares of the frame")
    p.add_argument("--sampler", choices=["ar", "maskgit"], default="maskgit")
    p.add_argument("--steps", type=int, default=16, help="MaskGIT steps")
    p.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale (1: off)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", dest="top_k", type=int, default=0)
    p.add_argument("--top-p", dest="top_p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-samples", dest="num_samples", type=int, default=1)
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of the clips the model was trained on")
    p.add_argument("--seconds", type=float, help="make videos this long by repeatedly continuing from their last frames")
    p.add_argument("--out", required=True, type=Path, help="output folder")

    evaluate = _group(top, "eval", "score generated or reconstructed media")
    p = _command(evaluate, "shapes", "read color, shape, direction and pitch of shapes clips", _eval_shapes)
    p.add_argument("--inputs", nargs="+", required=True, type=Path, metavar="FILE")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--metadata", type=Path, help="metadata.jsonl of a shapes dataset")
    target.add_argument("--prompt", help="the prompt every input was generated from")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = _command(top, "train", "train the LLM with DeepSpeed on this machine (wraps the deepspeed launcher)", _train)
    p.add_argument("--nproc", type=int, default=1, help="ranks to start (GPUs, or CPU processes without a GPU)")
    p.add_argument("--deepspeed", type=Path, help="DeepSpeed JSON (default from the config: deploy/deepspeed/zero2.json)")
    p.add_argument("--out", type=Path, help="run folder (default from the config)")
    p.add_argument("--resume", default="auto", help="auto (the run's latest checkpoint, if any), none, or a checkpoint folder")
    _add_config_options(p)

    p = _command(top, "export", "write a training run's weights as a Hugging Face folder (any ZeRO stage)", _export)
    p.add_argument("--run", required=True, type=Path, help="the run folder (llm_train.out)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--checkpoint", default="auto", help="auto (latest) or a checkpoint folder")

    p = _command(top, "doctor", "check that this machine can run videopoet: packages against the lock, native "
                 "libraries, encoders, GPUs or CPU, DeepSpeed, disk (exit 2 with one line per problem)", _doctor)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--lock", type=Path, help="lock file to compare with (default: requirements.lock of this checkout)")
    p.add_argument("--runs", default="runs", help="folder whose disk must hold the runs (default: runs)")
    p.add_argument("--no-build", dest="no_build", action="store_true", help="do not compile DeepSpeed's CPU op, only check it")

    p = _command(top, "demo", "run the whole pipeline on the shapes dataset and write a scored report (make demo)", _demo)
    p.add_argument("--out", required=True, type=Path, help="output folder (re-running continues an unfinished demo)")
    _add_config_options(p)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (UserError, *_USER_OS_ERRORS) as e:
        if debug:
            traceback.print_exc()
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"videopoet: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (ImportError, OSError) as e:
        # A package that does not import (torchaudio built for another torch, a missing PyAV) is the
        # environment's fault: the doctor names it in one line. Anything else is a bug.
        from videopoet.doctor import import_failure_line

        line = import_failure_line(e)
        if line is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"videopoet: error: {line} (run `videopoet doctor` for every check)", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("videopoet: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
