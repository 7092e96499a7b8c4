"""Instruction world: short generated videos with instructions of three kinds, in the Ref-YouTube-VOS /
InsTrack layout, for training and evaluating instruction trackers (TrackGPT) without downloading data.

Each video has a textured background and 3-6 moving objects (categories, colours and looks from
:mod:`perception_eval.worlds.categories` and :mod:`perception_eval.worlds.drawing`) that translate along
smooth random paths with bounces, change scale, rotate, and occlude each other (fixed z-order; masks are
the visible pixels). Scenes are sampled with same-colour distractors (same colour, other category) and
same-category distractors (other colour) so that neither colour nor category alone names a target.

Instructions (1-3 per video), each about one object, all decidable from the FIRST frame:

* ``explicit``  -- colour + category, only when that pair is unique in the scene ("track the red ball");
* ``implicit``  -- an everyday use of the object's category (or group), only when exactly one object in
  the scene has that category (group) ("something I could drink coffee from");
* ``relational`` -- an extreme of position or size inside a set (a category, a group, or all objects),
  only when the target wins in frame 0 by a margin (centroid 0.1 x width / height apart, or 2x the
  visible area) over every other member ("the fruit on the left", "the largest cup").

Held-out parts for an honest test split, and others of its own for val, so that model selection on val measures
generalisation rather than fitting: each kind has training templates (>= 6), held-out templates (>= 2) used only in
``test`` and others used only in ``val``; one colour per category
(:data:`~perception_eval.worlds.categories.HELDOUT_COMBOS`) never appears in ``train`` or ``val`` (in any object,
target or not), and one more pair per category, in a colour that category never takes elsewhere
(:data:`~perception_eval.worlds.categories.VAL_HELDOUT_COMBOS`), appears only in ``val``; each category and group
has held-out use phrases for implicit instructions used only in ``test`` and others used only in ``val``. Val and
test expressions mix held-out and seen parts; each records ``heldout`` (any part held out of training) and which:
``heldout_template``, ``heldout_combo`` (the target's colour/category pair), ``heldout_use``. The val parts draw
nothing from the random streams of ``train`` and ``test``: those splits are the same as before val had them.

Layout written under ``root``::

    <split>/JPEGImages/<video_id>/<00000>.jpg    RGB frames (JPEG)
    <split>/Annotations/<video_id>/<00000>.png   palette PNG, value = object id 1..K, 0 = background
    meta_expressions/<split>/meta_expressions.json
    world.json                                    generator, version, seed, parameters, tables, counts

``meta_expressions.json`` is ``{"videos": {id: {"frames": [...], "expressions": {"0": {...}}, "objects":
{...}}}}``; every expression has ``exp``, ``obj_id`` (a string), ``kind``, ``template``, ``heldout``,
``category`` and the extra keys above (plus ``relation``/``set`` for relational and ``refers``/``use`` for
implicit ones). ``objects`` gives each id's category, colour and group.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..datasets.common import write_index_mask
from .categories import (
    CATEGORIES,
    CATEGORY_NAMES,
    GROUPS,
    HELDOUT_COMBOS,
    VAL_HELDOUT_COMBOS,
    category,
    category_table,
    train_colours,
    val_colours,
)
from .common import SPLITS, item_rng, prepare_output, run_jobs, write_json
from .drawing import ObjectPose, background, composite, jitter_colour, render_sprite

__all__ = [
    "GENERATOR_VERSION",
    "KINDS",
    "RELATIONS",
    "TEMPLATES",
    "InstructionWorldConfig",
    "generate_instruction_world",
    "relational_target",
]

GENERATOR_VERSION = "1.0.0"
WORLD_CODE = 1
KINDS: tuple[str, ...] = ("explicit", "implicit", "relational")

#: Paraphrase templates per kind: ``train`` ones (train/val/test), ``heldout`` ones (test only) and ``val_heldout``
#: ones (val only).
#: Slots: explicit ``{desc}`` ("red ball"); implicit ``{use}`` (a verb phrase completing "something I could
#: ..."); relational ``{adj}``/``{pos}``/``{cmp}`` (the relation's words) and ``{set}``/``{sets}``.
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "explicit": {
        "train": (
            "the {desc}",
            "track the {desc}",
            "follow the {desc}",
            "where is the {desc}?",
            "segment the {desc}",
            "keep an eye on the {desc}",
            "please find the {desc}",
        ),
        "heldout": (
            "lock onto the {desc} and stay with it",
            "can you watch the {desc} for me?",
            "I'm looking for the {desc}",
        ),
        "val_heldout": (
            "stay on the {desc} please",
            "could you follow the {desc} around?",
            "the {desc} is what I want tracked",
        ),
    },
    "implicit": {
        "train": (
            "something I could {use}",
            "the thing I could {use}",
            "track something I could {use}",
            "which object could I {use}?",
            "find me something to {use}",
            "show me what I could {use}",
            "follow the object I would {use}",
        ),
        "heldout": (
            "is there anything here I could {use}? keep tracking it",
            "point out an item I might {use}",
            "what here could I {use}?",
        ),
        "val_heldout": (
            "I need something to {use}; track it",
            "anything around that I can {use}?",
            "look for what I might {use}",
        ),
    },
    "relational": {
        "train": (
            "the {adj} {set}",
            "the {set} {pos}",
            "track the {adj} {set}",
            "follow the {set} {pos}",
            "find the {set} that is {cmp}",
            "segment the {adj} of the {sets}",
            "keep an eye on the {adj} {set}",
        ),
        "heldout": (
            "among the {sets}, pick whichever is {cmp}",
            "out of the {sets}, I mean the {adj} one",
            "which {set} is {cmp}? track that one",
        ),
        "val_heldout": (
            "of all the {sets}, the one {pos}",
            "I want the {set} that is {cmp}",
            "stay on the {adj} {set} please",
        ),
    },
}

#: Relations: words for the templates, the measure, and whether the target maximises it.
RELATIONS: dict[str, dict] = {
    "left": {"adj": "leftmost", "pos": "on the left", "cmp": "furthest to the left", "measure": "x", "max": False},
    "right": {"adj": "rightmost", "pos": "on the right", "cmp": "furthest to the right", "measure": "x", "max": True},
    "top": {"adj": "topmost", "pos": "at the top", "cmp": "highest up", "measure": "y", "max": False},
    "bottom": {"adj": "lowest", "pos": "at the bottom", "cmp": "lowest down", "measure": "y", "max": True},
    "largest": {"adj": "largest", "pos": "that looks biggest", "cmp": "the biggest", "measure": "area", "max": True},
    "smallest": {
        "adj": "smallest", "pos": "that looks smallest", "cmp": "the smallest", "measure": "area", "max": False,
    },
}
RELATION_NAMES: tuple[str, ...] = tuple(RELATIONS)

# Frame-0 visibility rules (visible pixels / the object's whole drawn area, and a pixel floor).
TARGET_MIN_VISIBLE = 0.6
MEMBER_MIN_VISIBLE = 0.5
SIZE_MEMBER_MIN_VISIBLE = 0.8
MIN_PIXELS = 120
POSITION_MARGIN = 0.1  # of width (x) / height (y)
AREA_RATIO = 2.0


@dataclass(frozen=True)
class InstructionWorldConfig:
    """Parameters of the instruction world (all written to ``world.json``).

    Attributes:
        width, height: frame size in pixels.
        frames_min, frames_max: number of frames per video (inclusive range).
        fps: nominal frame rate (metadata; motion is in pixels per frame, scaled with the width).
        objects_min, objects_max: objects per video (inclusive).
        expressions_min, expressions_max: instructions per video (inclusive).
        heldout_template_rate: val and test splits -- chance that an expression uses a held-out template.
        heldout_combo_rate: val and test splits -- chance that a video contains a held-out colour/category object
            (which is then preferred as a target half of the time).
        heldout_use_rate: val and test splits -- chance that an implicit expression uses a held-out use phrase.
        occlusion_rate: chance that an object in front of a target is sent across it mid-video.
        jpeg_quality: JPEG quality of the frames.
    """

    width: int = 320
    height: int = 240
    frames_min: int = 24
    frames_max: int = 48
    fps: int = 12
    objects_min: int = 3
    objects_max: int = 6
    expressions_min: int = 1
    expressions_max: int = 3
    heldout_template_rate: float = 0.5
    heldout_combo_rate: float = 0.5
    heldout_use_rate: float = 0.3
    occlusion_rate: float = 0.75
    jpeg_quality: int = 90

    def __post_init__(self):
        if self.width < 64 or self.height < 64:
            raise ValueError("width and height must be at least 64")
        if not 2 <= self.frames_min <= self.frames_max:
            raise ValueError("need 2 <= frames_min <= frames_max")
        if not 2 <= self.objects_min <= self.objects_max <= 12:
            raise ValueError("need 2 <= objects_min <= objects_max <= 12")
        if not 1 <= self.expressions_min <= self.expressions_max:
            raise ValueError("need 1 <= expressions_min <= expressions_max")


DEFAULT_VIDEOS = {"train": 400, "val": 60, "test": 100}


@dataclass
class _Obj:
    obj_id: int
    category: str
    colour: str
    rgb: tuple
    size: float
    heldout_combo: bool
    x: np.ndarray = field(default=None, repr=False)
    y: np.ndarray = field(default=None, repr=False)
    scale: np.ndarray = field(default=None, repr=False)
    angle: np.ndarray = field(default=None, repr=False)

    @property
    def group(self) -> str:
        return category(self.category).group

    def pose(self, t: int) -> ObjectPose:
        return ObjectPose(float(self.x[t]), float(self.y[t]), float(self.size * self.scale[t]), float(self.angle[t]))


# ----------------------------------------------------------------------------------------------- scenes


#: Per split with held-out parts: its colour/category pairs, template pool, use-phrase attribute and template tag.
HELDOUT_PARTS: dict[str, dict] = {
    "test": {"combos": HELDOUT_COMBOS, "templates": "heldout", "uses": "heldout_uses", "tag": "h"},
    "val": {"combos": VAL_HELDOUT_COMBOS, "templates": "val_heldout", "uses": "val_uses", "tag": "v"},
}


def _allowed_colours(cat: str, split: str) -> tuple[str, ...]:
    if split == "test":
        return category(cat).colours
    return val_colours(cat) if split == "val" else train_colours(cat)


def _sample_objects(rng: np.random.Generator, cfg: InstructionWorldConfig, split: str, force_heldout: bool):
    n = int(rng.integers(cfg.objects_min, cfg.objects_max + 1))
    picks: list[tuple[str, str, float]] = []  # (category, colour, size multiplier)
    if force_heldout:
        combos = HELDOUT_PARTS[split]["combos"]
        picks.append((*combos[int(rng.integers(len(combos)))], 1.0))
    while len(picks) < n:
        r = rng.random()
        if picks and r < 0.3:  # same colour, another category
            base = picks[int(rng.integers(len(picks)))]
            cats = [c for c in CATEGORY_NAMES if c != base[0] and base[1] in _allowed_colours(c, split)]
            if cats:
                picks.append((cats[int(rng.integers(len(cats)))], base[1], 1.0))
                continue
        elif picks and r < 0.5:  # same category, another colour; half the time clearly bigger or smaller
            base = picks[int(rng.integers(len(picks)))]
            cols = [c for c in _allowed_colours(base[0], split) if c != base[1]]
            if cols:
                mult = 1.0 if rng.random() < 0.5 else base[2] * (0.62 if rng.random() < 0.5 else 1.6)
                picks.append((base[0], cols[int(rng.integers(len(cols)))], mult))
                continue
        elif picks and r < 0.65:  # same group, another category
            base = picks[int(rng.integers(len(picks)))]
            group = category(base[0]).group
            cats = [c.name for c in CATEGORIES if c.group == group and c.name != base[0]]
            if cats:
                cat = cats[int(rng.integers(len(cats)))]
                cols = _allowed_colours(cat, split)
                picks.append((cat, cols[int(rng.integers(len(cols)))], 1.0))
                continue
        cat = CATEGORY_NAMES[int(rng.integers(len(CATEGORY_NAMES)))]
        cols = _allowed_colours(cat, split)
        picks.append((cat, cols[int(rng.integers(len(cols)))], 1.0))
    order = rng.permutation(len(picks))  # object ids in random order (not by sampling rule)
    unit = min(cfg.width, cfg.height)
    objs = []
    for obj_id, k in enumerate(order, start=1):
        cat, col, mult = picks[int(k)]
        objs.append(
            _Obj(
                obj_id=obj_id,
                category=cat,
                colour=col,
                rgb=jitter_colour(rng, col),
                size=category(cat).size * unit * float(np.clip(mult * rng.uniform(0.75, 1.3), 0.45, 1.9)),
                heldout_combo=(cat, col) in HELDOUT_COMBOS or (cat, col) in VAL_HELDOUT_COMBOS,
            )
        )
    return objs


def _place(rng: np.random.Generator, objs: list[_Obj], cfg: InstructionWorldConfig) -> list[tuple[float, float]]:
    w, h = cfg.width, cfg.height
    placed: list[tuple[float, float]] = []
    for ob in objs:
        best = None
        for _ in range(30):
            x, y = rng.uniform(0.12 * w, 0.88 * w), rng.uniform(0.15 * h, 0.85 * h)
            gap = min(
                (math.hypot(x - px, y - py) / (0.5 * (ob.size + objs[j].size)) for j, (px, py) in enumerate(placed)),
                default=9.0,
            )
            if best is None or gap > best[0]:
                best = (gap, x, y)
            if gap > 0.75:
                break
        placed.append((best[1], best[2]))
    return placed


def _path(rng, start, heading: float, speed: float, n_frames: int, cfg: InstructionWorldConfig, turn_sd: float):
    """Positions of a smooth random walk (heading and speed drift) bouncing inside the frame."""
    w, h = cfg.width, cfg.height
    px = w / 320.0
    x0, x1, y0, y1 = 0.06 * w, 0.94 * w, 0.08 * h, 0.92 * h
    xs, ys = np.empty(n_frames), np.empty(n_frames)
    x, y = start
    th, sp = heading, speed
    turn = rng.normal(0, turn_sd, n_frames)
    dsp = rng.normal(0, 0.08 * px, n_frames)
    for t in range(n_frames):
        xs[t], ys[t] = x, y
        x += sp * math.cos(th)
        y += sp * math.sin(th)
        if x < x0 or x > x1:
            x = 2 * x0 - x if x < x0 else 2 * x1 - x
            th = math.pi - th
        if y < y0 or y > y1:
            y = 2 * y0 - y if y < y0 else 2 * y1 - y
            th = -th
        th += turn[t]
        sp = float(np.clip(sp + dsp[t], 0.1 * px, 5.0 * px))
    return xs, ys


def _simulate(rng: np.random.Generator, objs: list[_Obj], starts, n_frames: int, cfg: InstructionWorldConfig):
    """Fill each object's per-frame centre, scale (1 at frame 0) and angle."""
    px = cfg.width / 320.0
    t = np.arange(n_frames, dtype=np.float64)
    for k, ob in enumerate(objs):
        speed = 0.15 * px if rng.random() < 0.15 else rng.uniform(0.6, 3.5) * px
        ob.x, ob.y = _path(rng, starts[k], rng.uniform(0, 2 * math.pi), speed, n_frames, cfg, 0.12)
        mode = rng.random()
        if mode < 0.4:
            amp, period = rng.uniform(0.1, 0.3), rng.uniform(0.5, 2.0) * n_frames
            ob.scale = 1.0 + amp * np.sin(2 * math.pi * t / period) * (1 if rng.random() < 0.5 else -1)
        elif mode < 0.8:
            end = math.log(rng.uniform(0.7, 1.4))
            ob.scale = np.exp(end * t / max(1, n_frames - 1))
        else:
            ob.scale = np.ones(n_frames)
        if category(ob.category).upright:
            a0, av = float(np.clip(rng.normal(0, 6), -15, 15)), rng.normal(0, 0.3)
            ang = a0 + av * t
            ang = 20 - np.abs((ang + 20) % 80 - 40)  # bounce inside [-20, 20]
        else:
            ang = rng.uniform(-180, 180) + rng.normal(0, 1.5) * t
        ob.angle = ang


def _send_occluder(rng, objs: list[_Obj], z_order: list[int], target_id: int, cfg: InstructionWorldConfig) -> bool:
    """Re-route an object drawn in front of the target so that it passes over the target mid-video.

    Frame 0 is unchanged (paths start where they started). Returns False if no object is in front.
    """
    ti = next(k for k, o in enumerate(objs) if o.obj_id == target_id)
    front = z_order[z_order.index(ti) + 1 :]
    if not front:
        return False
    k = int(front[int(rng.integers(len(front)))])
    ob, tg = objs[k], objs[ti]
    n = len(ob.x)
    tm = int(rng.integers(max(1, n // 3), max(2, (3 * n) // 4)))
    dx, dy = tg.x[tm] - ob.x[0], tg.y[tm] - ob.y[0]
    speed = math.hypot(dx, dy) / tm
    if speed > 6.0 * cfg.width / 320.0:
        return False
    ob.x, ob.y = _path(rng, (ob.x[0], ob.y[0]), math.atan2(dy, dx), speed, n, cfg, 0.02)
    return True


def _render(bg: np.ndarray, objs: list[_Obj], z_order, t: int):
    sprites = [(objs[k].obj_id, render_sprite(objs[k].category, objs[k].pose(t), objs[k].rgb)) for k in z_order]
    img, ids = composite(bg, sprites)
    full = {oid: sp.area for oid, sp in sprites}
    return img, ids, full


def _frame_stats(ids: np.ndarray, full: dict) -> dict:
    """Per object id: visible area, visible fraction, visible-mask centroid (x, y)."""
    stats = {}
    counts = np.bincount(ids.ravel(), minlength=256)
    for oid, area in full.items():
        vis = int(counts[oid])
        if vis:
            ys, xs = np.nonzero(ids == oid)
            cx, cy = float(xs.mean()), float(ys.mean())
        else:
            cx = cy = float("nan")
        stats[oid] = {"area": vis, "frac": vis / max(area, 1), "x": cx, "y": cy}
    return stats


# -------------------------------------------------------------------------------------------- language


def relational_target(
    stats: dict, members: list[int], relation: str, width: int, height: int
) -> int | None:
    """The id among ``members`` that ``relation`` names unambiguously in a frame, or None.

    ``stats`` maps object id to ``{"area", "frac", "x", "y"}`` (visible pixels, visible fraction, visible
    centroid). Needs >= 2 members, all visible (fraction >= 0.5, >= 0.8 for size relations; >= 120 px). The
    winner must beat every other member by 0.1 of the width (x) or height (y), or by 2x in visible area.
    """
    if len(members) < 2:
        return None
    spec = RELATIONS[relation]
    need = SIZE_MEMBER_MIN_VISIBLE if spec["measure"] == "area" else MEMBER_MIN_VISIBLE
    for m in members:
        if stats[m]["frac"] < need or stats[m]["area"] < MIN_PIXELS:
            return None
    vals = {m: float(stats[m][spec["measure"]]) for m in members}
    ranked = sorted(members, key=lambda m: vals[m], reverse=spec["max"])
    best, second = ranked[0], ranked[1]
    if spec["measure"] == "area":
        hi, lo = (vals[best], vals[second]) if spec["max"] else (vals[second], vals[best])
        ok = hi >= AREA_RATIO * max(lo, 1.0)
    else:
        margin = POSITION_MARGIN * (width if spec["measure"] == "x" else height)
        ok = abs(vals[best] - vals[second]) >= margin
    if not ok or stats[best]["frac"] < TARGET_MIN_VISIBLE:
        return None
    return best


def _candidates(objs: list[_Obj], stats: dict, cfg: InstructionWorldConfig) -> dict[str, list[dict]]:
    def visible(o: _Obj) -> bool:
        return stats[o.obj_id]["frac"] >= TARGET_MIN_VISIBLE and stats[o.obj_id]["area"] >= MIN_PIXELS

    out: dict[str, list[dict]] = {k: [] for k in KINDS}
    for o in objs:
        same = [p for p in objs if p.category == o.category and p.colour == o.colour]
        if len(same) == 1 and visible(o):
            out["explicit"].append({"target": o.obj_id, "desc": f"{o.colour} {o.category}"})
    for c in CATEGORIES:
        members = [o for o in objs if o.category == c.name]
        if len(members) == 1 and visible(members[0]):
            out["implicit"].append({"target": members[0].obj_id, "refers": c.name, "level": "category"})
    for g in GROUPS.values():
        members = [o for o in objs if o.group == g.name]
        if len(members) == 1 and visible(members[0]):
            out["implicit"].append({"target": members[0].obj_id, "refers": g.name, "level": "group"})
    sets: list[tuple[str, str, str, list[int]]] = []  # (level, name, noun, members)
    for c in CATEGORIES:
        members = [o.obj_id for o in objs if o.category == c.name]
        if len(members) >= 2:
            sets.append(("category", c.name, c.name, members))
    for g in GROUPS.values():
        members = [o.obj_id for o in objs if o.group == g.name]
        if len(members) >= 2 and len({o.category for o in objs if o.group == g.name}) >= 2:
            sets.append(("group", g.name, g.noun, members))
    sets.append(("all", "object", "object", [o.obj_id for o in objs]))
    for level, name, _noun, members in sets:
        for rel in RELATION_NAMES:
            tgt = relational_target(stats, members, rel, cfg.width, cfg.height)
            if tgt is not None:
                out["relational"].append({"target": tgt, "relation": rel, "set": name, "level": level})
    return out


def _set_nouns(level: str, name: str) -> tuple[str, str]:
    if level == "category":
        c = category(name)
        return c.name, c.plural
    if level == "group":
        g = GROUPS[name]
        return g.noun, g.plural
    return "object", "objects"


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _phrase(rng, cand: dict, kind: str, objs_by_id: dict, split: str, cfg: InstructionWorldConfig) -> dict:
    parts = HELDOUT_PARTS.get(split)
    held_t = parts is not None and rng.random() < cfg.heldout_template_rate
    pool = TEMPLATES[kind][parts["templates"] if held_t else "train"]
    t_index = int(rng.integers(len(pool)))
    template = pool[t_index]
    target = objs_by_id[cand["target"]]
    rec = {
        "template": f"{kind[:3]}-{parts['tag'] if held_t else 't'}{t_index}",
        "heldout_template": held_t,
        "heldout_combo": target.heldout_combo,
        "heldout_use": False,
    }
    if kind == "explicit":
        text = template.format(desc=cand["desc"])
    elif kind == "implicit":
        src = category(cand["refers"]) if cand["level"] == "category" else GROUPS[cand["refers"]]
        held_u = parts is not None and rng.random() < cfg.heldout_use_rate
        use = _pick(rng, getattr(src, parts["uses"]) if held_u else src.uses)
        text = template.format(use=use)
        rec.update(heldout_use=held_u, refers=cand["refers"], use=use)
    else:
        noun, plural = _set_nouns(cand["level"], cand["set"])
        words = RELATIONS[cand["relation"]]
        text = template.format(adj=words["adj"], pos=words["pos"], cmp=words["cmp"], set=noun, sets=plural)
        rec.update(relation=cand["relation"], set=cand["set"])
    rec["exp"] = text
    return rec


def _choose_expressions(rng, cands: dict, objs: list[_Obj], split: str, cfg: InstructionWorldConfig) -> list[dict]:
    objs_by_id = {o.obj_id: o for o in objs}
    n = int(rng.integers(cfg.expressions_min, cfg.expressions_max + 1))
    kinds = [KINDS[int(i)] for i in rng.permutation(len(KINDS))]
    prefer_held = split in HELDOUT_PARTS and rng.random() < 0.5
    chosen: list[dict] = []
    used_targets: set[int] = set()
    texts: set[str] = set()
    for slot in range(n):
        for attempt in range(len(KINDS)):
            kind = kinds[(slot + attempt) % len(KINDS)]
            pool = [c for c in cands[kind] if c["target"] not in used_targets]
            if kind == "relational" and pool:
                # Choose position vs size, then the kind of set, then the relation, so that the (more often
                # available) position relations and the "all objects" set do not crowd out the rest.
                sized = sorted({RELATIONS[c["relation"]]["measure"] == "area" for c in pool})
                want = sized[int(rng.integers(len(sized)))]
                pool = [c for c in pool if (RELATIONS[c["relation"]]["measure"] == "area") == want]
                lvl = _pick(rng, sorted({c["level"] for c in pool}))
                pool = [c for c in pool if c["level"] == lvl]
                rel = _pick(rng, sorted({c["relation"] for c in pool}))
                pool = [c for c in pool if c["relation"] == rel]
            if prefer_held:
                held = [c for c in pool if objs_by_id[c["target"]].heldout_combo]
                pool = held or pool
            if not pool:
                continue
            cand = _pick(rng, pool)
            rec = _phrase(rng, cand, kind, objs_by_id, split, cfg)
            if rec["exp"] in texts:
                continue
            target = objs_by_id[cand["target"]]
            expr = {
                "exp": rec.pop("exp"),
                "obj_id": str(target.obj_id),
                "kind": kind,
                "template": rec.pop("template"),
                "heldout": bool(rec["heldout_template"] or rec["heldout_combo"] or rec["heldout_use"]),
                "category": target.category,
                "colour": target.colour,
            }
            expr.update(rec)
            chosen.append(expr)
            used_targets.add(target.obj_id)
            texts.add(expr["exp"])
            break
    return chosen


# ----------------------------------------------------------------------------------------------- videos


def _make_video(job) -> dict:
    root, split, index, seed, cfg = job
    rng = item_rng(seed, WORLD_CODE, split, index)
    video_id = f"{split}_{index:05d}"
    n_frames = int(rng.integers(cfg.frames_min, cfg.frames_max + 1))
    force_held = split in HELDOUT_PARTS and rng.random() < cfg.heldout_combo_rate
    bg = background(rng, cfg.height, cfg.width)
    for _attempt in range(200):
        objs = _sample_objects(rng, cfg, split, force_held)
        starts = _place(rng, objs, cfg)
        _simulate(rng, objs, starts, n_frames, cfg)
        z_order = [int(k) for k in rng.permutation(len(objs))]
        img0, ids0, full0 = _render(bg, objs, z_order, 0)
        stats0 = _frame_stats(ids0, full0)
        if min(s["frac"] for s in stats0.values()) < 0.3:
            continue
        exprs = _choose_expressions(rng, _candidates(objs, stats0, cfg), objs, split, cfg)
        if exprs:
            break
    else:  # pragma: no cover - practically unreachable
        raise RuntimeError(f"could not build a valid scene for {video_id}")
    if rng.random() < cfg.occlusion_rate:
        targets = sorted({int(e["obj_id"]) for e in exprs})
        _send_occluder(rng, objs, z_order, targets[int(rng.integers(len(targets)))], cfg)

    gain, bias = rng.uniform(0.85, 1.15), rng.normal(0, 6)
    noise_sigma = rng.uniform(1.0, 4.0)
    img_dir = Path(root) / split / "JPEGImages" / video_id
    ann_dir = Path(root) / split / "Annotations" / video_id
    img_dir.mkdir(parents=True, exist_ok=True)
    frames = []
    targets = sorted({int(e["obj_id"]) for e in exprs})
    occluded = {t: 0 for t in targets}
    quality = [int(cv2.IMWRITE_JPEG_QUALITY), int(cfg.jpeg_quality)]
    for t in range(n_frames):
        if t == 0:
            img, ids, full = img0, ids0, full0
        else:
            img, ids, full = _render(bg, objs, z_order, t)
        counts = np.bincount(ids.ravel(), minlength=256)
        for tid in targets:
            if counts[tid] < 0.5 * full[tid]:
                occluded[tid] += 1
        out = cv2.GaussianBlur(img, (0, 0), 0.6).astype(np.float32) * gain + bias
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(noise_sigma)
        out = np.clip(out, 0, 255).astype(np.uint8)
        name = f"{t:05d}"
        frames.append(name)
        cv2.imwrite(str(img_dir / f"{name}.jpg"), cv2.cvtColor(out, cv2.COLOR_RGB2BGR), quality)
        write_index_mask(ann_dir / f"{name}.png", ids)
    meta = {
        "frames": frames,
        "expressions": {str(i): e for i, e in enumerate(exprs)},
        "objects": {
            str(o.obj_id): {
                "category": o.category, "colour": o.colour, "group": o.group, "heldout_combo": o.heldout_combo
            }
            for o in objs
        },
    }
    stats = {
        "frames": n_frames,
        "objects": len(objs),
        "targets_half_hidden_frames": sum(occluded.values()),
        "target_frames": n_frames * len(targets),
    }
    return {"split": split, "video_id": video_id, "meta": meta, "stats": stats}


def _counts(videos: dict) -> dict:
    exprs = [e for v in videos.values() for e in v["expressions"].values()]
    out = {
        "videos": len(videos),
        "frames": sum(len(v["frames"]) for v in videos.values()),
        "expressions": len(exprs),
        "by_kind": {k: sum(e["kind"] == k for e in exprs) for k in KINDS},
        "heldout": sum(e["heldout"] for e in exprs),
        "heldout_template": sum(e["heldout_template"] for e in exprs),
        "heldout_combo": sum(e["heldout_combo"] for e in exprs),
        "heldout_use": sum(e["heldout_use"] for e in exprs),
    }
    return out


def generate_instruction_world(
    root: str | Path,
    *,
    seed: int = 0,
    videos: dict[str, int] | None = None,
    config: InstructionWorldConfig | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Generate the instruction world under ``root`` and return the ``world.json`` content.

    Args:
        root: output folder (created). Refuses to overwrite an earlier world unless ``overwrite``.
        seed: the seed; the same seed, sizes and config give byte-identical files.
        videos: videos per split, e.g. ``{"train": 400, "val": 60, "test": 100}`` (the default); a split
            with 0 videos is skipped.
        config: :class:`InstructionWorldConfig` (defaults if None).
        workers: processes to render on (the output does not depend on it).
        overwrite: remove this generator's earlier outputs under ``root`` first.
        progress: show a tqdm progress bar.
    """
    root = Path(root)
    cfg = config or InstructionWorldConfig()
    videos = dict(DEFAULT_VIDEOS if videos is None else videos)
    unknown = set(videos) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; expected {SPLITS}")
    prepare_output(root, [*SPLITS, "meta_expressions", "world.json"], overwrite)
    jobs = [(str(root), split, i, int(seed), cfg) for split in SPLITS for i in range(int(videos.get(split, 0)))]
    per_split: dict[str, dict] = {s: {} for s in SPLITS if videos.get(s, 0)}
    occl = [0, 0]
    for res in run_jobs(_make_video, jobs, workers=workers, desc="instruction world", progress=progress):
        per_split[res["split"]][res["video_id"]] = res["meta"]
        occl[0] += res["stats"]["targets_half_hidden_frames"]
        occl[1] += res["stats"]["target_frames"]
    for split, vids in per_split.items():
        write_json(root / "meta_expressions" / split / "meta_expressions.json", {"videos": vids})
    world = {
        "world": "instruction",
        "generator": "perception_eval.worlds.instruction",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "videos": {s: int(videos.get(s, 0)) for s in SPLITS},
        "config": asdict(cfg),
        "layout": "Ref-YouTube-VOS / InsTrack: <split>/JPEGImages, <split>/Annotations, meta_expressions/<split>",
        "categories": category_table(),
        "groups": [asdict(g) for g in GROUPS.values()],
        "heldout_combos": [list(p) for p in HELDOUT_COMBOS],
        "val_heldout_combos": [list(p) for p in VAL_HELDOUT_COMBOS],
        "templates": {k: {p: list(v) for p, v in d.items()} for k, d in TEMPLATES.items()},
        "relations": RELATIONS,
        "rules": {
            "target_min_visible_fraction": TARGET_MIN_VISIBLE,
            "relational_member_min_visible_fraction": MEMBER_MIN_VISIBLE,
            "size_relation_member_min_visible_fraction": SIZE_MEMBER_MIN_VISIBLE,
            "min_visible_pixels": MIN_PIXELS,
            "position_margin_fraction": POSITION_MARGIN,
            "area_ratio": AREA_RATIO,
        },
        "counts": {s: _counts(v) for s, v in per_split.items()},
        "target_frames_more_than_half_hidden": occl[0] / max(occl[1], 1),
    }
    write_json(root / "world.json", world)
    return world
