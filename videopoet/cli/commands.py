"""The `videopoet` subcommands: each parses nothing, delegates to one library call, and prints its result.

Heavy modules are imported inside the handlers, so building the parser (and `videopoet --help`) imports
neither torch nor any model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from videopoet.errors import UserError

EXIT_USER_ERROR = 2


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


# ---- handlers: each delegates to one library call ----------------------------------------------------


def media_probe(args: argparse.Namespace) -> None:
    from videopoet.media import probe

    infos = [probe(path).to_dict() for path in args.files]
    print_json(infos[0] if len(infos) == 1 else infos)


def config_show(args: argparse.Namespace) -> None:
    import yaml

    from videopoet.config import load_project_config, to_dict

    sections = load_project_config(args.config, args.overrides)
    print(yaml.safe_dump({name: to_dict(cfg) for name, cfg in sections.items()}, sort_keys=False), end="")


def tokenizer_train_text(args: argparse.Namespace) -> None:
    from videopoet.config import load_section
    from videopoet.tokenizers.text import train_text_tokenizer

    overrides = list(args.overrides)
    if args.vocab_size is not None:
        overrides.append(f"vocab_size={args.vocab_size}")
    config = load_section("text_tokenizer", args.config, overrides)
    tokenizer = train_text_tokenizer(args.input, args.out, config)
    print(f"trained a text tokenizer with {tokenizer.vocab_size} pieces in {args.out}")


def tokenizer_train_media(args: argparse.Namespace) -> None:
    import torch

    from videopoet import distributed
    from videopoet.config import load_section
    from videopoet.data.sources import split_among_ranks, training_source
    from videopoet.tokenizers.registry import get_family

    if args.nproc < 1:
        raise UserError(f"--nproc must be at least 1, got {args.nproc}")
    family = get_family(args.kind)
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    config = load_section(family.section, args.config, overrides)
    shapes = load_section("shapes", args.config, [])  # how `--data shapes` clips look
    media = load_section("media_clips", args.config, [])  # how clips are made from photographs and videos
    split_among_ranks(config, media, int(os.environ["WORLD_SIZE"]) if distributed.launched() else args.nproc)
    source = training_source(family, args.data, config, shapes, media)  # bad data fails here, once
    if args.nproc > 1 and not distributed.launched():  # start the ranks, each running this same command
        del source  # the ranks make their own
        if distributed.use_gpus() and args.nproc > torch.cuda.device_count():
            raise UserError(f"--nproc {args.nproc} asks for more ranks than the {torch.cuda.device_count()} GPUs here")
        status = distributed.relaunch(args.nproc, ["-m", "videopoet.cli", *distributed.without_nproc(args.argv)])
        if status:
            raise SystemExit(status)
        return
    rank, _ = distributed.join_from_environment()
    try:
        result = family.train(config, source, args.out, resume=args.resume)
    finally:
        distributed.leave()
    if rank:
        return
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in (result.get("val") or {}).items())
    print(f"trained the {args.kind} tokenizer to step {result.get('step')} in {args.out}" + (f": {metrics}" if metrics else ""))


def family_tools(args: argparse.Namespace, options: str) -> tuple[Any, dict[str, Any]]:
    """The family's tools module and the family-specific options the user gave (`encode` or `eval`)."""
    from videopoet.tokenizers.registry import get_family

    family = get_family(args.kind)
    names = getattr(family, f"{options}_options")
    return family.load("tools"), {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def tokenizer_encode(args: argparse.Namespace) -> None:
    tools, options = family_tools(args, "encode")
    info = tools.encode_file(args.ckpt, args.input, args.out, start=args.start, **options)
    print(f"wrote {args.out}: " + ", ".join(f"{k}={v}" for k, v in info.items() if isinstance(v, (int, float, str, list, tuple))))


def tokenizer_decode(args: argparse.Namespace) -> None:
    family_tools(args, "encode")[0].decode_file(args.ckpt, args.tokens, args.out)
    print(f"wrote {args.out}")


def tokenizer_eval(args: argparse.Namespace) -> None:
    tools, options = family_tools(args, "eval")
    result = tools.evaluate_files(args.ckpt, args.inputs, **options)
    if args.json:
        print_json(result)
    else:
        for k, v in (result.get("mean") or result).items():
            if isinstance(v, (int, float)):
                print(f"{k:<24} {v:.4g}")


def data_shapes(args: argparse.Namespace) -> None:
    from videopoet.config import load_section
    from videopoet.data.shapes_dataset import write_shapes_dataset

    overrides = list(args.overrides)
    for key in ("size", "frames", "fps"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    config = load_section("shapes", args.config, overrides)
    out = write_shapes_dataset(args.out, num_clips=args.num_clips, seed=args.seed, config=config)
    print(f"wrote {args.num_clips} clips to {out / 'clips'} with {out / 'metadata.jsonl'}")


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 128x224, got {text!r}") from None
    return h, w


def data_ingest(args: argparse.Namespace) -> None:
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


def tokenize(args: argparse.Namespace) -> None:
    from videopoet.data.pretokenize import pretokenize

    report = pretokenize(args.data, args.out, args.video_tokenizer, args.text_tokenizer, args.audio_tokenizer,
                         batch_size=args.batch_size, num_workers=args.num_workers, shard=args.shard)
    merged = f"; merged into {Path(args.out) / 'records'}" if report["merged"] else "; waiting for the other shards"
    print(f"{report['shard']}: {report['clips']} clips ({report['tokenized_now']} now, {report['clips_per_s']:.2f} clips/s){merged}")


def generate(args: argparse.Namespace) -> None:
    from videopoet.llm.generate import GenerateRequest, Generator

    generator = Generator(args.model)
    given = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "cfg_scale": args.cfg,
             "steps": args.steps, "choice_temperature": args.choice_temperature, "seed": args.seed}
    # the model's own sampling settings, with the options the user gave
    sampling = generator.default_sampling(args.sampler, **{k: v for k, v in given.items() if v is not None})
    request = GenerateRequest(task=args.task, prompt=args.prompt or "", image=args.image, video=args.video, audio=args.audio,
                              sampler=args.sampler, sampling=sampling, num_samples=args.num_samples,
                              box=tuple(args.box) if args.box else None, seconds=args.seconds)
    for sidecar in generator.generate(request, args.out):
        print(f"{Path(args.out) / sidecar['file']}  ({sidecar['timings']['sample_s']:.2f} s sampling)")

def eval_shapes(args: argparse.Namespace) -> None:
    from videopoet.eval.shapes import evaluate, format_report

    result = evaluate(args.inputs, metadata=args.metadata, prompt=args.prompt)
    if args.json:
        print_json(result)
    else:
        print(format_report(result))


def doctor(args: argparse.Namespace) -> None:
    from videopoet import doctor

    lock = args.lock if args.lock is not None else doctor.find_lock()
    if lock is not None and not Path(lock).is_file():
        raise UserError(f"lock file {lock} not found")
    if not args.json:
        print("checking this machine (DeepSpeed builds its CPU op the first time: a minute or two)...", file=sys.stderr)
    checks = doctor.run_checks(lock, runs=args.runs, build_ops=not args.no_build)
    if args.json:
        print_json(doctor.to_json(checks, lock))
    else:
        print(doctor.format_report(checks, lock))
    problems = doctor.failures(checks)
    for check in problems:
        print(f"videopoet doctor: {check.line()}", file=sys.stderr)
    if problems:
        raise SystemExit(EXIT_USER_ERROR)


def demo(args: argparse.Namespace) -> None:
    from videopoet.demo import run_demo

    config = args.config if args.config is not None else Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
    if not Path(config).is_file():
        raise UserError(f"config {config} not found; pass --config configs/tiny.yaml from a checkout")
    report = run_demo(args.out, config, list(args.overrides))
    print(f"report: {args.out / 'report.md'}")
    for sampler, acc in report["prompt_accuracy"].items():
        seen, held = (f"{v:.0%}" if v is not None else "-" for v in (acc["seen"], acc["heldout"]))
        print(f"{sampler}: prompt accuracy seen {seen}, held-out {held}, {report['seconds_per_clip'][sampler]:.2f} s per clip")
    print(f"serve it: videopoet serve --model {args.out / 'model'}  (then open http://127.0.0.1:8000/; docs/serve.md)")


def train(args: argparse.Namespace) -> None:
    from videopoet.llm.parallelize import launch_local

    overrides = list(args.overrides)
    if args.deepspeed is not None:
        overrides.append(f"llm_train.deepspeed={args.deepspeed}")
    status = launch_local(args.nproc, args.config, overrides, args.data, args.out, resume=args.resume)
    if status:
        raise SystemExit(status)


def export(args: argparse.Namespace) -> None:
    from videopoet.llm.export import export_run

    meta = export_run(args.run, args.out, checkpoint=args.checkpoint)
    print(f"exported step {meta['step']} of {args.run} to {args.out}")


def plan(args: argparse.Namespace) -> None:
    from videopoet.plan import format_plan, plan_command

    result = plan_command(args.config, list(args.overrides), args.gpus, args.gpu, args.zero, args.offload,
                          args.seq_len, args.mfu, args.tokens)
    if args.json:
        print_json(result.to_dict())
    else:
        print(format_plan(result))


def serve(args: argparse.Namespace) -> None:
    if args.model is None:
        raise UserError("serve needs --model DIR (a folder written by `videopoet export`)")
    if min(args.max_queue, args.max_batch, args.rate, args.quota) < 1 or not 0 < args.port < 65536 or not args.batch_wait_ms >= 0:
        raise UserError("--max-queue, --max-batch, --rate and --quota must be at least 1, --port 1 to 65535, --batch-wait-ms 0 or more")
    from videopoet.serve.limits import Limits
    from videopoet.serve.server import Retention
    from videopoet.serve.server import serve as run_server

    limits = Limits(rate_per_minute=args.rate, max_active_per_key=args.quota)
    run_server(args.model, host=args.host, port=args.port, keys=args.keys, out=args.out,
               max_queue=args.max_queue, max_batch=args.max_batch, batch_wait_s=args.batch_wait_ms / 1000, device=args.device, limits=limits,
               retention=Retention(keep_days=args.keep_days, max_jobs=args.max_jobs))


def serve_keys_add(args: argparse.Namespace) -> None:
    from videopoet.serve.keys import add_key

    key = add_key(args.keys, args.name)
    print(key)
    print(f"added key {args.name!r} to {args.keys} (only its hash is stored: keep the key now, it is not shown again)", file=sys.stderr)
