"""The `videopoet` command tree: groups, subcommands and their options (`commands` does the work)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videopoet import __version__
from videopoet.cli import commands
from videopoet.cli.commands import EXIT_USER_ERROR


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# The options a tokenizer family's tools may take (`TokenizerFamily.encode_options` / `eval_options`);
# left out, the tool's own default applies.
_FAMILY_OPTIONS: dict[str, tuple[Any, dict[str, str]]] = {
    "frames": (int, {"encode": "frames to encode (default: all that fit 1 + k * t_factor)", "eval": "frames per clip (default 17)"}),
    "size": (commands.parse_size, {"encode": "resize + center-crop to HxW", "eval": "resize + center-crop to HxW (default: the model's size)"}),
    "seconds": (float, {"encode": "seconds to encode (default: to the end)", "eval": "score the first SECONDS of each file (default: all)"}),
    "x264_sweep": (bool, {"eval": "also x264's rate-distortion curve (veryslow, crf 51 down) and its PSNR read at the tokenizer's bits per pixel"}),
}
_OUTPUTS = {"video": ".mp4 or .png", "audio": ".wav or .flac"}


def _add_family_options(p: argparse.ArgumentParser, names: tuple[str, ...], use: str) -> None:
    for name in names:
        kind, helps = _FAMILY_OPTIONS[name]
        if kind is bool:  # a flag: --x264-sweep sets x264_sweep
            p.add_argument(f"--{name.replace('_', '-')}", dest=name, action="store_true", default=None, help=helps[use])
        else:
            p.add_argument(f"--{name}", type=kind, help=helps[use])


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
    parser = Parser(
        prog="videopoet",
        description="An open VideoPoet-style multimodal LLM training system.",
    )
    parser.add_argument("--version", action="version", version=f"videopoet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.set_defaults(func=lambda _args: parser.print_help())
    top = parser.add_subparsers(title="commands", metavar="COMMAND")

    media = _group(top, "media", "inspect media files")
    p = _command(media, "probe", "print a media file's container and streams as JSON", commands.media_probe)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")

    config = _group(top, "config", "inspect project configs")
    p = _command(config, "show", "print a project config with overrides applied, validated", commands.config_show)
    _add_config_options(p)

    tokenizer = _group(top, "tokenizer", "train and use the text, video and audio tokenizers")
    train = _group(tokenizer, "train", "train a tokenizer")
    p = _command(train, "text", "train the SentencePiece text tokenizer on captions", commands.tokenizer_train_text)
    p.add_argument("--input", required=True, type=Path, help="UTF-8 text file, one caption per line")
    p.add_argument("--vocab-size", type=int, help="number of pieces (default from the config)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    _add_config_options(p)

    from videopoet.tokenizers.registry import FAMILIES  # names and options only: imports nothing heavy

    for kind in FAMILIES:
        p = _command(train, kind, f"train the {kind} tokenizer", commands.tokenizer_train_media)
        p.set_defaults(kind=kind)
        p.add_argument("--data", required=True, help="shapes, a folder of media files, or a clip index (videopoet data ingest)")
        p.add_argument("--out", required=True, type=Path, help="output folder (the tokenizer folder, checkpoints, tensorboard)")
        p.add_argument("--steps", type=int, help="training steps (default from the config)")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
        p.add_argument("--nproc", type=int, default=1, help="data-parallel ranks to start with torchrun (GPUs, or CPU "
                       "processes sharing the cores without one); they split the config's batch")
        _add_config_options(p)

    encode = _group(tokenizer, "encode", "encode a media file to tokens (.npz)")
    decode = _group(tokenizer, "decode", "decode tokens (.npz) back to media")
    evaluate_tok = _group(tokenizer, "eval", "measure a tokenizer's reconstruction quality and speed against a real codec")
    for kind, family in FAMILIES.items():
        p = _command(encode, kind, f"encode with the {kind} tokenizer", commands.tokenizer_encode)
        p.set_defaults(kind=kind)
        p.add_argument("--ckpt", required=True, type=Path, help="tokenizer folder")
        p.add_argument("--input", required=True, type=Path)
        p.add_argument("--start", type=float, default=0.0, help="start time in seconds")
        _add_family_options(p, family.encode_options, "encode")
        p.add_argument("--out", required=True, type=Path, help="tokens file (.npz)")
        p = _command(decode, kind, f"decode {kind} tokens", commands.tokenizer_decode)
        p.set_defaults(kind=kind)
        p.add_argument("--ckpt", required=True, type=Path, help="tokenizer folder")
        p.add_argument("--tokens", required=True, type=Path, help="tokens file (.npz) from encode")
        p.add_argument("--out", required=True, type=Path, help=f"output file ({family.modality}: {_OUTPUTS[family.modality]})")
        p = _command(evaluate_tok, kind, f"evaluate the {kind} tokenizer", commands.tokenizer_eval)
        p.set_defaults(kind=kind)
        p.add_argument("--ckpt", required=True, type=Path, help="tokenizer folder")
        p.add_argument("--inputs", required=True, nargs="+", type=Path, metavar="FILE")
        _add_family_options(p, family.eval_options, "eval")
        p.add_argument("--json", action="store_true", help="print JSON")

    data = _group(top, "data", "make and prepare training data")
    p = _command(data, "shapes", "write the built-in shapes dataset (moving shapes with tones and captions)", commands.data_shapes)
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--num-clips", required=True, type=int, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    p.add_argument("--size", type=int, help="frame height and width in pixels (default 64)")
    p.add_argument("--frames", type=int, help="frames per clip (default 17)")
    p.add_argument("--fps", type=float, help="frames per second (default 8)")
    _add_config_options(p)

    p = _command(data, "ingest", "cut a media folder or Hugging Face dataset into a clip index", commands.data_ingest)
    p.add_argument("--src", required=True, help="a folder (searched recursively), a dataset saved on disk, or a data file")
    p.add_argument("--out", required=True, type=Path, help="output folder (clip index, report.json)")
    p.add_argument("--fps", type=float, help="clip frame rate (default 8)")
    p.add_argument("--frames", type=int, help="frames per clip (default 17)")
    p.add_argument("--size", type=commands.parse_size, help="resize + center-crop clips to HxW")
    p.add_argument("--stride-s", dest="stride_s", type=float, help="seconds between clip starts (default: one clip length)")
    p.add_argument("--min-seconds", dest="min_seconds", type=float, help="skip files shorter than this")
    p.add_argument("--captions", type=Path, help="captions.jsonl or CSV mapping file names to captions")
    p.add_argument("--num-proc", dest="num_proc", type=int, help="processes probing files in parallel")
    p.add_argument("--media-column", dest="media_column", help="dataset column of media paths (default: auto)")
    p.add_argument("--caption-column", dest="caption_column", help="dataset column of captions (default: auto)")
    _add_config_options(p)

    p = _command(top, "tokenize", "turn a clip index into token records for LLM training", commands.tokenize)
    p.add_argument("--data", required=True, type=Path, help="clip index folder (videopoet data ingest --out)")
    p.add_argument("--video-tokenizer", required=True, type=Path, help="video tokenizer folder")
    p.add_argument("--text-tokenizer", required=True, type=Path, help="text tokenizer folder")
    p.add_argument("--audio-tokenizer", type=Path, help="audio tokenizer folder (without it, records have no audio)")
    p.add_argument("--out", required=True, type=Path, help="token records folder")
    p.add_argument("--batch-size", type=int, default=8, help="clips per tokenizer batch")
    p.add_argument("--num-workers", type=int, default=1, help="DataLoader workers decoding clips")
    p.add_argument("--shard", help="I/N: this process takes clips I, I+N, ... (default: RANK/WORLD_SIZE or 0/1)")

    p = _command(top, "generate", "sample videos, images or sound from an exported model", commands.generate)
    p.add_argument("--model", required=True, type=Path, help="model folder written by `videopoet export`")
    p.add_argument("--task", required=True, help="text_to_video, text_to_image, text_to_video_audio, image_to_video, video_continuation, "
                   "video_inpainting, video_outpainting, video_to_audio, audio_to_video, unconditional_video")
    p.add_argument("--prompt", help="the text prompt (text tasks)")
    p.add_argument("--image", help="input image (image_to_video)")
    p.add_argument("--video", help="input video (continuation, inpainting, outpainting, video_to_audio)")
    p.add_argument("--audio", help="input sound (audio_to_video)")
    p.add_argument("--box", type=float, nargs=4, metavar=("TOP", "LEFT", "H", "W"), help="inpainting box as shares of the frame")
    p.add_argument("--sampler", choices=["ar", "maskgit"], default="maskgit")
    # Left out, each of these takes the model's own setting (the `sampling` section it was trained with).
    p.add_argument("--steps", type=int, help="MaskGIT steps")
    p.add_argument("--cfg", type=float, help="classifier-free guidance scale (1: off)")
    p.add_argument("--temperature", type=float, help="sampling temperature (0: greedy)")
    p.add_argument("--choice-temperature", dest="choice_temperature", type=float, help="MaskGIT: Gumbel noise on the confidences")
    p.add_argument("--top-k", dest="top_k", type=int, help="keep the k most likely ids (0: off)")
    p.add_argument("--top-p", dest="top_p", type=float, help="nucleus sampling (1: off)")
    p.add_argument("--seed", type=int, help="seed of the first sample (the next ones add 1)")
    p.add_argument("--num-samples", dest="num_samples", type=int, default=1)
    p.add_argument("--seconds", type=float, help="make videos this long by repeatedly continuing from their last frames")
    p.add_argument("--out", required=True, type=Path, help="output folder")

    evaluate = _group(top, "eval", "score generated or reconstructed media")
    p = _command(evaluate, "shapes", "read color, shape, direction and pitch of shapes clips", commands.eval_shapes)
    p.add_argument("--inputs", nargs="+", required=True, type=Path, metavar="FILE")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--metadata", type=Path, help="metadata.jsonl of a shapes dataset")
    target.add_argument("--prompt", help="the prompt every input was generated from")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = _command(top, "train", "train the LLM with DeepSpeed on this machine (wraps the deepspeed launcher)", commands.train)
    p.add_argument("--nproc", type=int, default=1, help="ranks to start (GPUs, or CPU processes without a GPU)")
    p.add_argument("--data", required=True, type=Path, help="token records (videopoet tokenize --out)")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, logs; resumed when it holds a run)")
    p.add_argument("--deepspeed", type=Path, help="DeepSpeed JSON: sets llm_train.deepspeed (default deploy/deepspeed/zero2.json)")
    p.add_argument("--resume", default="auto", help="auto (the run's latest checkpoint, if any), none, or a checkpoint folder")
    _add_config_options(p)

    p = _command(top, "export", "write a training run's weights as a Hugging Face folder (any ZeRO stage)", commands.export)
    p.add_argument("--run", required=True, type=Path, help="the run folder (videopoet train --out)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--checkpoint", default="auto", help="auto (latest) or a checkpoint folder")

    p = _command(top, "plan", "memory per GPU, largest micro-batch, step time and days to train a config on a cluster",
                 commands.plan)
    p.add_argument("--gpus", required=True, type=int, help="GPUs in the cluster")
    p.add_argument("--gpu", choices=["h100", "h200", "a100", "l40s"], default="h100", help="GPU kind (default h100)")
    p.add_argument("--zero", type=int, choices=[0, 1, 2, 3], help="ZeRO stage (default: the config's DeepSpeed JSON)")
    p.add_argument("--offload", action="store_true", default=None, help="offload the optimizer (ZeRO-3: and weights) to CPU")
    p.add_argument("--seq-len", dest="seq_len", type=int, default=2048, help="tokens per sequence (default 2048)")
    p.add_argument("--mfu", type=float, default=0.40, help="model FLOPs utilisation assumed (default 0.40)")
    p.add_argument("--tokens", type=float, default=2e12,
                   help="training tokens (default 2e12: VideoPoet's ~2 trillion, paper section 5.1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_config_options(p)

    p = _command(top, "doctor", "check that this machine can run videopoet: packages against the lock, native "
                 "libraries, encoders, GPUs or CPU, DeepSpeed, disk (exit 2 with one line per problem)", commands.doctor)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--lock", type=Path, help="lock file to compare with (default: requirements.lock of this checkout)")
    p.add_argument("--runs", default="runs", help="folder whose disk must hold the runs (default: runs)")
    p.add_argument("--no-build", dest="no_build", action="store_true", help="do not compile DeepSpeed's CPU op, only check it")

    p = _command(top, "demo", "run the whole pipeline on the shapes dataset and write a scored report (make demo)", commands.demo)
    p.add_argument("--out", required=True, type=Path, help="output folder (re-running continues an unfinished demo)")
    _add_config_options(p)

    # `videopoet serve --model DIR ...` serves; `videopoet serve keys add NAME` manages its keys (docs/serve.md).
    p = _command(top, "serve", "serve a model over HTTP: an API under /v1 and a web page at / (docs/serve.md)", commands.serve)
    p.add_argument("--model", type=Path, help="model folder written by `videopoet export` (required to serve)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (without --keys: 127.0.0.1 only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--keys", type=Path, help="API keys file (videopoet serve keys add); without it there is no authentication")
    p.add_argument("--out", type=Path, default=Path("serve-out"), help="jobs database and results (default: serve-out)")
    p.add_argument("--max-queue", dest="max_queue", type=int, default=64, help="jobs waiting at most; more get 503 (default 64)")
    p.add_argument("--max-batch", dest="max_batch", type=int, default=8, help="samples in one batched sampler call (1: no batching; default 8)")
    p.add_argument("--batch-wait-ms", dest="batch_wait_ms", type=float, default=50.0,
                   help="under load, how long a job may wait for the next batch to fill as the last one did (default 50)")
    p.add_argument("--rate", type=int, default=60, help="requests per minute per key; more get 429 (default 60)")
    p.add_argument("--quota", type=int, default=8, help="queued or running jobs per key; more get 429 (default 8)")
    p.add_argument("--keep-days", dest="keep_days", type=float, default=30.0,
                   help="delete finished jobs (rows and files) this many days after they finished; 0 keeps them (default 30)")
    p.add_argument("--max-jobs", dest="max_jobs", type=int, default=0, help="keep at most this many finished jobs, the newest (default 0: no limit)")
    p.add_argument("--device", default="cpu", help="torch device of the model, e.g. cuda:0 (default cpu)")
    serve_sub = p.add_subparsers(title="subcommands", metavar="COMMAND")
    keys = _group(serve_sub, "keys", "manage the server's API keys")
    p = _command(keys, "add", "add an API key and print it (once: only its hash is stored)", commands.serve_keys_add)
    p.add_argument("name", help="who the key is for (letters, digits, _ . @ -)")
    p.add_argument("--keys", type=Path, default=Path("keys.json"), help="keys file to add it to (default: keys.json)")

    return parser
