#!/usr/bin/env python3
"""Evaluate the shipped embedded models on the held-out generated test sets; print and write the results table.

AVS (AVSBench-Robust, ``perception_eval.metrics.evaluate_robust``): every clip of the audio-visual world's
``robust_<split>.csv`` under each of its audio conditions (positive, silence, noise, off-screen, mixed). Each
frame is run as ``avs_node`` runs it (one frame, ``clip_length`` 1, the model's own threshold), the mask is
upsampled to the frame's size and published only when the gate says "sounding" (the un-gated baseline
publishes every mask). Figures: mIoU / F on positives, G-mIoU, G-F, G-FPR, per-condition FPR, mixed-audio
mIoU, the un-gated mIoU on positives and the gate accuracy (``training.avs.calibrate``'s ``predict_robust`` and
``robust_figures``, with which the gate threshold was chosen on VAL). A gated model whose threshold is not 0.5
is also scored at 0.5 on the same predictions, in a column of its own.

TrackGPT (when a model folder exists): the instruction world's held-out split, tracked by the library's tracker
(``perception_eval.tracking.evaluate_video``, synchronous timing: reasoning on frame 0 before it is decoded,
propagation, rethinking below ``tau`` x the reference purport score) and scored by the workspace's one J&F rule
(every frame, ``perception_eval.metrics.score_track``): overall, per instruction kind, held-out vs seen templates,
and rethinking on vs off.

``--naming-only``: only the brain's first answer to each instruction on its video's first frame (no tracking, one
brain call each): the share that names the target's colour and category ("named") and its category, per kind and
held-out flag, on any split (VAL for choosing a brain stage: it has held-out parts of its own). Writes
``<out>/naming-<split>.json`` and prints the table; ``results.json`` is left alone. With ``--true-objects`` a brain
whose visual tokens are the frame's objects (``brain.vision_source: objects``), or that names its target from a
listing of them (``brain.naming: scene``), reads the world's own objects of that frame instead of its proposer's
(``naming-<split>-true-objects.json``): what the brain names when it sees every object, against what it names from
the objects it finds.

Examples::

    python scripts/eval_embedded.py                                   # both shipped models, results/embedded/
    python scripts/eval_embedded.py --naming-only --trackgpt-split val --out /tmp/naming
    python scripts/eval_embedded.py --avs-max-clips 20 --skip-trackgpt --out /tmp/quick
    python scripts/eval_embedded.py --avs-model data/runs/avs-embedded/model --avs-baseline ''
    python scripts/eval_embedded.py --avs-model '' --avs-baseline '' --update   # re-score TrackGPT, keep AVS

Writes ``<out>/results.json`` and ``<out>/results.md`` (Markdown tables, also printed).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
AVS_DEFAULT = REPO / "src/avs/avs/pretrained/embedded"
AVS_BASELINE_DEFAULT = REPO / "src/avs/avs/pretrained/embedded-baseline"
TRACKGPT_DEFAULT = REPO / "src/trackgpt/trackgpt/pretrained/embedded"
if str(REPO) not in sys.path:  # the training package lives at the repository root
    sys.path.insert(0, str(REPO))


def evaluate_avs(
    model, root: str | Path, split: str = "test", *, max_clips: int | None = None, also_thresholds=()
) -> dict[str, Any]:
    """AVSBench-Robust figures of ``model`` on ``root``'s ``robust_<split>.csv`` (see the module docstring).

    ``also_thresholds``: further gate thresholds scored on the same predictions (gated models), under
    ``res["at_threshold"][str(t)]``, e.g. 0.5 beside a threshold calibrated on VAL.
    """
    from training.avs.calibrate import predict_robust, robust_figures

    preds = predict_robust(model, root, split, max_clips=max_clips)
    gated = model.config.gate != "off"
    res = robust_figures(preds, threshold=float(model.config.threshold) if gated else None)
    res["threshold"] = float(model.config.threshold) if gated else None
    if gated:
        res["at_threshold"] = {str(t): robust_figures(preds, threshold=float(t)) for t in also_thresholds}
    return res


def evaluate_trackgpt(
    model,
    root: str | Path,
    split: str = "test",
    *,
    max_videos: int | None = None,
    max_expressions: int = 2,
    max_frames: int = 0,
    tau: float = 0.5,
    rethink_modes: tuple[bool, ...] = (True, False),
    propagation_off: bool = True,
    oracle_answer: bool = True,
) -> dict[str, Any]:
    """J&F (every frame scored) of a TrackGPT model on the instruction world, tracked by the library's tracker
    (reason on frame 0, propagation, rethinking below ``tau`` x the reference purport score).

    The first ``max_videos`` videos of ``split`` and at most ``max_expressions`` instructions each. Groups:
    overall, per instruction kind, held-out templates vs seen templates (``heldout_template``), any held-out
    flag vs none, the target's colour/category pair held out of training (``heldout_combo``) vs seen, each with
    rethinking on and off, and (``propagation_off``) with rethinking on and the cross-frame
    referring propagation off (Q_t = Q_R every frame; the paper's Table 3 ablation), and (``oracle_answer``, where
    the world names the target and the answer template has ``{target}``) with rethinking on and the brain's answer
    teacher-forced to name the true target ("colour category"): what the perception reaches when the brain names
    the right object, so the two components' shares of the error can be told apart. Where the world names the
    target (its colour and category) and the model's answer template names it (``{target}``, the embedded model's),
    each group also has the share of first answers that name the target (``named``) and its category
    (``category_named``); ``None`` otherwise.
    """
    from perception_eval.metrics import TRACKING_RULE, summarize_davis
    from perception_eval.tracking import evaluate_video
    from training.trackgpt.calibrate import instruction_pairs, score_record, track_record
    from training.trackgpt.data import target_name

    pairs = instruction_pairs(root, split, max_videos=max_videos, max_expressions=max_expressions)
    threshold = float(model.perception.mask_threshold)
    res: dict[str, Any] = {
        "split": split, "instructions": len(pairs), "tau": tau, "mask_threshold": threshold,
        "rule": TRACKING_RULE, "timing": "sync",
    }
    template = model.config.brain.answer_template
    passes = [("rethink_on" if r else "rethink_off", r, True, False) for r in rethink_modes]
    if propagation_off:
        passes.append(("propagation_off", True, False, False))
    if oracle_answer and "{target}" in template:
        passes.append(("oracle_answer", True, True, True))
    for label, rethink, propagate, oracle in passes:
        groups: dict[str, list] = {}
        at_zero: dict[str, list] = {}  # the same masks at SAM's threshold 0, when the model's differs
        t0 = time.perf_counter()
        for video, expression in pairs:
            extra = expression.extra
            target = target_name(extra.get("colour"), extra.get("category"))
            if oracle and not target:
                continue  # the world does not name this target
            obj, run = evaluate_video(
                model,
                video,
                expression,
                max_frames=max_frames,
                rethink=rethink,
                tau=tau,
                keep_logits=threshold != 0.0,
                propagate=propagate,
                oracle_target=target if oracle else None,
            )
            answers, logits = run.answers, run.logits
            naming = answer_names_target(
                answers[0] if answers else "", template, extra.get("colour"), extra.get("category")
            )
            keys = [
                "overall",
                f"kind={expression.kind}",
                "templates=heldout" if extra.get("heldout_template") else "templates=seen",
                "combo=heldout" if extra.get("heldout_combo") else "combo=seen",
                "heldout(any)" if expression.heldout else "seen(all)",
            ]
            zero = score_record(track_record(video, expression, logits), 0.0) if logits else None
            for k in keys:
                groups.setdefault(k, []).append((obj, naming))
                if zero is not None:
                    at_zero.setdefault(k, []).append(zero)
        block = {}
        for k, rows in sorted(groups.items()):
            o = summarize_davis([obj for obj, _ in rows]).overall
            block[k] = {"J&F": o["J&F-Mean"], "J": o["J-Mean"], "F": o["F-Mean"], "count": len(rows)}
            if k in at_zero:
                block[k]["J&F_mask_threshold_0"] = summarize_davis(at_zero[k]).overall["J&F-Mean"]
            named = [n for _, n in rows if n is not None]
            block[k]["named"] = float(np.mean([n[0] for n in named])) if named else None
            block[k]["category_named"] = float(np.mean([n[1] for n in named])) if named else None
        block["seconds"] = round(time.perf_counter() - t0, 1)
        res[label] = block
    return res


def evaluate_naming(
    model, root: str | Path, split: str = "val", *, max_videos: int | None = None, max_expressions: int = 2,
    true_objects: bool = False,
) -> dict[str, Any]:
    """The brain's first answer to each instruction on frame 0 of its video (see ``--naming-only``): per group, the
    share of answers that name the target (colour and category) and its category. ``true_objects``: a brain whose
    tokens are the frame's objects reads the world's own objects of frame 0 instead of the proposed ones."""
    from training.trackgpt.calibrate import instruction_pairs

    pairs = instruction_pairs(root, split, max_videos=max_videos, max_expressions=max_expressions)
    template = model.config.brain.answer_template
    groups: dict[str, list[tuple[bool, bool]]] = {}
    t0 = time.perf_counter()
    for video, expression in pairs:
        extra = expression.extra
        if true_objects:
            with model.objects_given(video.load_mask(0)):
                answer = model.reason(video.load_frame(0), expression.instruction).answer
        else:
            answer = model.reason(video.load_frame(0), expression.instruction).answer
        naming = answer_names_target(answer, template, extra.get("colour"), extra.get("category"))
        if naming is None:
            continue
        for key in ("overall", f"kind={expression.kind}",
                    "combo=heldout" if extra.get("heldout_combo") else "combo=seen",
                    "heldout(any)" if expression.heldout else "seen(all)"):
            groups.setdefault(key, []).append(naming)
    table = {k: {"count": len(v), "named": float(np.mean([n[0] for n in v])),
                 "category_named": float(np.mean([n[1] for n in v]))} for k, v in sorted(groups.items())}
    return {"split": split, "instructions": len(pairs), "groups": table, "true_objects": true_objects,
            "seconds": round(time.perf_counter() - t0, 1)}


def naming_markdown(res: dict[str, Any]) -> str:
    lines = [
        f"### Brain naming, instruction world {res['split']} split ({res['instructions']} instructions, first "
        "answer on frame 0)", "", "| group | n | named (colour + category) | category named |", "|---|---|---|---|",
    ]
    for k, g in res["groups"].items():
        lines.append(f"| {k} | {g['count']} | {g['named']:.3f} | {g['category_named']:.3f} |")
    return "\n".join(lines) + "\n"


def answer_names_target(
    answer: str, template: str, colour: str | None, category: str | None
) -> tuple[bool, bool] | None:
    """``(names colour and category, names the category)`` for an answer made from ``template`` (the brain's
    ``answer_template``, e.g. "Sure, I track the {target}. <TK>, <PO>").

    ``None`` when the world does not name the target, the template has no ``{target}`` (the paper's answer,
    "Sure, I track the object.", names nothing) or the answer does not follow it.
    """
    if not category or "{target}" not in template:
        return None
    before, after = template.lower().split("{target}", 1)
    stop = after.split("<")[0].strip()  # the text between the name and the special tokens, e.g. "."
    pattern = re.escape(before.strip()) + r"\s*(.+?)\s*" + (re.escape(stop) if stop else "$")
    match = re.search(pattern, answer.lower())
    if match is None:
        return None
    from training.trackgpt.data import target_name

    words = match.group(1).split()
    return words == target_name(colour, category).lower().split(), words[-1] == category.lower()


def trackgpt_markdown(res: dict[str, Any]) -> str:
    modes = [m for m in ("rethink_on", "rethink_off", "propagation_off", "oracle_answer") if m in res]
    groups = [k for k in res[modes[0]] if k != "seconds"]
    zero = int(any("J&F_mask_threshold_0" in res[modes[0]][g] for g in groups))
    lines = [
        f"### TrackGPT embedded (J&F, every frame scored, instruction world {res['split']} split, "
        f"{res['instructions']} instructions, tau {res['tau']}, mask threshold {res.get('mask_threshold', 0.0):g})",
        "",
        "| group | n | "
        + " | ".join(f"J&F ({m.replace('_', ' ')})" for m in modes)
        + (f" | J&F ({modes[0].replace('_', ' ')}, mask threshold 0)" if zero else "")
        + " | J (on) | F (on) | named | category named |",
        "|---|---|" + "---|" * (len(modes) + zero) + "---|---|---|---|",
    ]
    for g in groups:
        b = res[modes[0]][g]
        lines.append(
            f"| {g} | {b['count']} | "
            + " | ".join(_fmt(res[m].get(g, {}).get("J&F")) for m in modes)
            + (f" | {_fmt(b.get('J&F_mask_threshold_0'))}" if zero else "")
            + f" | {_fmt(b['J'])} | {_fmt(b['F'])} | {_fmt(b.get('named'))} | {_fmt(b.get('category_named'))} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def avs_markdown(results: dict[str, dict]) -> str:
    names = list(results)
    lines = [
        "### AVS (AVSBench-Robust metrics, held-out test split)",
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    keys = [
        "clips",
        "samples",
        "threshold",
        "G-mIoU",
        "G-F",
        "G-FPR",
        "mIoU",
        "F",
        "mIoU_N",
        "mIoU_mixed",
        "mIoU_ungated",
        "gate_acc",
    ]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(_fmt(results[n].get(k)) for n in names) + " |")
    for c in ("silence", "noise", "offscreen"):
        lines.append(
            f"| FPR {c} | " + " | ".join(_fmt(results[n]["per_condition"].get(c, {}).get("FPR")) for n in names) + " |"
        )
    for c in ("silence", "noise", "offscreen"):
        lines.append(
            f"| G-mIoU {c} | "
            + " | ".join(_fmt(results[n]["per_condition"].get(c, {}).get("G-mIoU")) for n in names)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="scripts/eval_embedded.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--avs-model", default=str(AVS_DEFAULT), help="gated AVS model folder ('' to skip)")
    p.add_argument("--avs-baseline", default=str(AVS_BASELINE_DEFAULT), help="un-gated baseline folder ('' to skip)")
    p.add_argument("--avs-world", default="data/worlds/avs", help="audio-visual world root (perception-worlds)")
    p.add_argument("--avs-split", default="test", help="split of robust_<split>.csv (default: test, held out)")
    p.add_argument("--avs-max-clips", type=int, default=0, help="at most this many clips (0 = all)")
    p.add_argument("--trackgpt-model", default=str(TRACKGPT_DEFAULT), help="TrackGPT model folder ('' to skip)")
    p.add_argument("--instruction-world", default="data/worlds/instruction", help="instruction world root")
    p.add_argument("--trackgpt-split", default="test", help="instruction world split (default: test, held out)")
    p.add_argument("--trackgpt-max-videos", type=int, default=0, help="first N videos (0 = all)")
    p.add_argument("--trackgpt-max-expressions", type=int, default=2, help="instructions per video")
    p.add_argument("--trackgpt-max-frames", type=int, default=0, help="frames per video (0 = all)")
    p.add_argument("--tau", type=float, default=0.5, help="rethinking threshold factor")
    p.add_argument(
        "--no-propagation-ablation",
        action="store_true",
        help="skip the TrackGPT pass with the cross-frame propagation off (Q_t = Q_R every frame)",
    )
    p.add_argument(
        "--no-oracle-ablation",
        action="store_true",
        help="skip the TrackGPT pass whose answers are teacher-forced to name the true target",
    )
    p.add_argument("--skip-trackgpt", action="store_true", help="AVS only")
    p.add_argument("--naming-only", action="store_true",
                   help="TrackGPT only, no tracking: how often the brain's first answer names the target "
                        "(on --trackgpt-split)")
    p.add_argument("--true-objects", action="store_true",
                   help="with --naming-only, a brain whose tokens are the frame's objects (brain.vision_source "
                        "objects) or that names its target from a listing of them (brain.naming scene) reads the "
                        "world's own objects instead of the proposed ones (an ablation)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default="results/embedded", help="folder for results.json / results.md")
    p.add_argument(
        "--update",
        action="store_true",
        help="keep the results in <out>/results.json of the models not evaluated by this call (e.g. re-score "
        "TrackGPT only with --avs-model '' --avs-baseline '')",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))

    if args.naming_only:
        from trackgpt.loading import load_model as load_tracker

        res = evaluate_naming(load_tracker(str(args.trackgpt_model)), args.instruction_world, args.trackgpt_split,
                              max_videos=args.trackgpt_max_videos or None,
                              max_expressions=args.trackgpt_max_expressions, true_objects=args.true_objects)
        res["model"] = str(args.trackgpt_model)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        name = f"naming-{args.trackgpt_split}{'-true-objects' if args.true_objects else ''}.json"
        (Path(args.out) / name).write_text(json.dumps(res, indent=2) + "\n")
        print(naming_markdown(res))
        return 0
    from avs.loading import load_model as load_avs

    out: dict[str, Any] = {"avs": {}, "trackgpt": None}
    for label, folder in (("gated", args.avs_model), ("baseline (gate off)", args.avs_baseline)):
        if not folder:
            continue
        if not Path(folder).is_dir():
            print(f"eval_embedded: no AVS model folder {folder}", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        model = load_avs(str(folder))
        also = () if model.config.gate == "off" or model.config.threshold == 0.5 else (0.5,)
        res = evaluate_avs(
            model, args.avs_world, args.avs_split, max_clips=args.avs_max_clips or None, also_thresholds=also
        )
        res["model"] = str(folder)
        res["eval_seconds"] = round(time.perf_counter() - t0, 1)
        out["avs"][label] = res
        for t, other in res.pop("at_threshold", {}).items():  # the same predictions at another threshold
            out["avs"][f"{label}, threshold {t}"] = {**other, "threshold": float(t), "model": str(folder)}
    if not args.skip_trackgpt and args.trackgpt_model and Path(args.trackgpt_model).is_dir():
        from trackgpt.loading import load_model as load_tracker

        tmodel = load_tracker(str(args.trackgpt_model))
        out["trackgpt"] = evaluate_trackgpt(
            tmodel,
            args.instruction_world,
            args.trackgpt_split,
            max_videos=args.trackgpt_max_videos or None,
            max_expressions=args.trackgpt_max_expressions,
            max_frames=args.trackgpt_max_frames,
            tau=args.tau,
            propagation_off=not args.no_propagation_ablation,
            oracle_answer=not args.no_oracle_ablation,
        )
        out["trackgpt"]["model"] = str(args.trackgpt_model)
    previous = Path(args.out) / "results.json"
    if args.update and previous.is_file():
        kept = json.loads(previous.read_text())
        out["avs"] = {**kept.get("avs", {}), **out["avs"]}
        out["trackgpt"] = out["trackgpt"] or kept.get("trackgpt")
    md = avs_markdown(out["avs"]) if out["avs"] else ""
    if out["trackgpt"]:
        md += "\n" + trackgpt_markdown(out["trackgpt"])
    elif not args.skip_trackgpt:
        md += "\nTrackGPT: no shipped model folder; not evaluated.\n"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    (Path(args.out) / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
