"""``perception-worlds``: generate the instruction or audio-visual world, optionally with a preview sheet.

Examples::

    perception-worlds instruction --out data/worlds/instruction --seed 0
    perception-worlds instruction --out /tmp/iw --videos-per-split 20 4 10 --preview /tmp/iw.png
    perception-worlds audiovisual --out data/worlds/avs --seed 0 --videos-per-split train=600 val=100 test=150
    perception-worlds audiovisual --out /tmp/av --condition-fraction train.silence=0.1 --preview /tmp/av.png
    perception-worlds instruction --out data/worlds/instruction --preview-only --preview /tmp/iw.png

The same seed, sizes and options give byte-identical files whatever ``--workers`` is.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import SPLITS, default_workers

DEFAULT_SIZES = {
    "instruction": {"train": 400, "val": 60, "test": 100},
    "audiovisual": {"train": 600, "val": 100, "test": 150},
}


def _parse_sizes(values: list[str] | None, world: str) -> dict[str, int]:
    sizes = dict(DEFAULT_SIZES[world])
    if not values:
        return sizes
    if all("=" not in v for v in values):
        if len(values) != len(SPLITS):
            raise argparse.ArgumentTypeError(f"give {len(SPLITS)} numbers (train val test) or split=N pairs")
        return {s: int(v) for s, v in zip(SPLITS, values, strict=True)}
    for item in values:
        split, _, n = item.partition("=")
        if split not in SPLITS or not n.isdigit():
            raise argparse.ArgumentTypeError(f"bad size {item!r}; expected split=N with split in {SPLITS}")
        sizes[split] = int(n)
    return sizes


def _parse_fractions(items: list[str] | None) -> dict[str, dict[str, float]]:
    from .audiovisual import _default_fractions

    fractions = _default_fractions()
    for item in items or []:
        key, _, value = item.partition("=")
        split, _, cond = key.partition(".")
        if split not in SPLITS or not cond or not value:
            raise argparse.ArgumentTypeError(f"bad --condition-fraction {item!r}; expected SPLIT.CONDITION=F")
        fractions[split][cond] = float(value)
    return fractions


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``perception-worlds``."""
    parser = argparse.ArgumentParser(
        prog="perception-worlds",
        description="Generate seeded synthetic datasets in the real benchmarks' layouts: the instruction world "
        "(Ref-YouTube-VOS / InsTrack layout) or the audio-visual world (AVSBench S4 + AVSBench-Robust).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:" + __doc__.split("Examples::", 1)[1],
    )
    sub = parser.add_subparsers(dest="world", required=True, metavar="{instruction,audiovisual}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, type=Path, help="output folder (created)")
    common.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    common.add_argument(
        "--videos-per-split", "--clips-per-split", nargs="+", metavar="N", dest="sizes",
        help="videos/clips per split: three numbers 'TRAIN VAL TEST' or 'split=N' pairs "
        "(defaults: instruction 400 60 100, audiovisual 600 100 150)",
    )
    common.add_argument("--workers", type=int, default=default_workers(),
                        help="processes to render on (default: the CPUs available, at most 8)")
    common.add_argument("--overwrite", action="store_true", help="replace an earlier world in --out")
    common.add_argument("--preview", type=Path, metavar="PNG", help="also write a contact sheet to this PNG")
    common.add_argument("--preview-split", default="test", choices=SPLITS, help="split shown in the preview")
    common.add_argument("--preview-rows", type=int, default=8, help="rows of the preview (default 8)")
    common.add_argument("--preview-only", action="store_true",
                        help="do not generate; write --preview from the world already in --out")
    common.add_argument("--no-progress", action="store_true", help="no progress bar")

    ins = sub.add_parser("instruction", parents=[common], help="instruction-tracking videos",
                         description="Instruction world: videos with explicit, implicit and relational instructions.")
    ins.add_argument("--width", type=int, default=320)
    ins.add_argument("--height", type=int, default=240)
    ins.add_argument("--frames", type=int, nargs=2, default=(24, 48), metavar=("MIN", "MAX"),
                     help="frames per video (default 24 48)")
    ins.add_argument("--objects", type=int, nargs=2, default=(3, 6), metavar=("MIN", "MAX"),
                     help="objects per video (default 3 6)")
    ins.add_argument("--expressions", type=int, nargs=2, default=(1, 3), metavar=("MIN", "MAX"),
                     help="instructions per video (default 1 3)")
    ins.add_argument("--fps", type=int, default=12, help="nominal frame rate written to world.json (default 12)")

    av = sub.add_parser("audiovisual", parents=[common], help="sounding-object clips",
                        description="Audio-visual world: 5 s clips with a sounding object, silent distractors and "
                        "the AVSBench-Robust audio conditions (silence, noise, off-screen) plus mixed.")
    av.add_argument("--size", type=int, default=224, help="frame side in pixels (default 224)")
    av.add_argument("--sample-rate", type=int, default=16000, help="rate of the category sounds (default 16000)")
    av.add_argument("--condition-fraction", action="append", metavar="SPLIT.CONDITION=F",
                    help="chance a clip of SPLIT also gets CONDITION (silence, noise, offscreen, mixed); "
                    "repeatable; defaults: train 0.25 each, val/test 1.0 each")
    av.add_argument("--snr-db", type=float, nargs=2, default=(3.0, 15.0), metavar=("MIN", "MAX"),
                    help="SNR range of the mixed condition (default 3 15)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``perception-worlds``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sizes = _parse_sizes(args.sizes, args.world)
    except (argparse.ArgumentTypeError, ValueError) as error:
        parser.error(str(error))
    if args.preview_only and not args.preview:
        parser.error("--preview-only needs --preview PNG")
    progress = not args.no_progress
    start = time.perf_counter()
    try:
        if args.world == "instruction":
            from .instruction import InstructionWorldConfig, generate_instruction_world
            from .preview import instruction_preview as preview

            if not args.preview_only:
                config = InstructionWorldConfig(
                    width=args.width, height=args.height, frames_min=args.frames[0], frames_max=args.frames[1],
                    objects_min=args.objects[0], objects_max=args.objects[1],
                    expressions_min=args.expressions[0], expressions_max=args.expressions[1], fps=args.fps,
                )
                generate_instruction_world(args.out, seed=args.seed, videos=sizes, config=config,
                                           workers=args.workers, overwrite=args.overwrite, progress=progress)
        else:
            from .audiovisual import AudioVisualWorldConfig, generate_audiovisual_world
            from .preview import audiovisual_preview as preview

            if not args.preview_only:
                try:
                    fractions = _parse_fractions(args.condition_fraction)
                except (argparse.ArgumentTypeError, ValueError) as error:
                    parser.error(str(error))
                config = AudioVisualWorldConfig(
                    size=args.size, sample_rate=args.sample_rate, condition_fractions=fractions,
                    snr_db_min=args.snr_db[0], snr_db_max=args.snr_db[1],
                )
                generate_audiovisual_world(args.out, seed=args.seed, clips=sizes, config=config,
                                           workers=args.workers, overwrite=args.overwrite, progress=progress)
        generated = time.perf_counter() - start
        if not args.preview_only:
            print(f"wrote the {args.world} world ({', '.join(f'{k} {v}' for k, v in sizes.items())}) to {args.out} "
                  f"in {generated:.1f} s", file=sys.stderr)
        if args.preview:
            split = args.preview_split
            if not sizes.get(split) and not args.preview_only:
                split = next(s for s in SPLITS if sizes.get(s))
            preview(args.out, args.preview, split=split, rows=args.preview_rows)
            print(f"wrote the preview to {args.preview}", file=sys.stderr)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"perception-worlds: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
