"""The generated instruction world: layout, determinism, honest instructions and an honest test split."""

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from perception_eval.datasets.common import read_index_mask
from perception_eval.worlds import instruction as instruction_world
from perception_eval.worlds.categories import CATEGORIES, GROUPS, HELDOUT_COMBOS, VAL_HELDOUT_COMBOS, category
from perception_eval.worlds.drawing import ObjectPose, composite, render_sprite
from perception_eval.worlds.instruction import (
    AREA_RATIO,
    POSITION_MARGIN,
    RELATIONS,
    TEMPLATES,
    InstructionWorldConfig,
    generate_instruction_world,
    relational_target,
)

SMALL = InstructionWorldConfig(frames_min=4, frames_max=6)
SIZES = {"train": 10, "val": 6, "test": 10}


def _generate(root, seed=7, workers=1, sizes=SIZES):
    return generate_instruction_world(root, seed=seed, videos=sizes, config=SMALL, workers=workers, progress=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("iw")
    info = _generate(root)
    meta = {
        s: json.loads((root / "meta_expressions" / s / "meta_expressions.json").read_text())["videos"] for s in SIZES
    }
    return root, info, meta


def _tree_hash(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{[a-z]+\}", template)
    return re.compile("^" + ".+".join(re.escape(p) for p in parts) + "$")


def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path, world):
    root, _, _ = world
    _generate(tmp_path / "again", workers=2)
    first, second = _tree_hash(root), _tree_hash(tmp_path / "again")
    assert len(first) > 50
    assert first == second


def test_different_seed_differs(tmp_path, world):
    root, _, _ = world
    _generate(tmp_path / "other", seed=8, sizes={"train": 2})
    other = _tree_hash(tmp_path / "other")
    first = _tree_hash(root)
    frames = [k for k in other if k.endswith(".jpg")]
    assert frames and all(other[k] != first.get(k) for k in frames[:5])


def test_refuses_to_overwrite_without_flag(world):
    root, _, _ = world
    with pytest.raises(FileExistsError):
        _generate(root)


def test_layout_and_metadata(world):
    root, info, meta = world
    assert info["version"] and info["seed"] == 7
    on_disk = json.loads((root / "world.json").read_text())
    assert on_disk["counts"]["train"]["videos"] == SIZES["train"]
    assert {c["name"] for c in on_disk["categories"]} == {c.name for c in CATEGORIES}
    for split, videos in meta.items():
        assert len(videos) == SIZES[split]
        for vid, v in videos.items():
            jpgs = sorted(p.stem for p in (root / split / "JPEGImages" / vid).glob("*.jpg"))
            pngs = sorted(p.stem for p in (root / split / "Annotations" / vid).glob("*.png"))
            assert jpgs == pngs == v["frames"]
            assert SMALL.frames_min <= len(v["frames"]) <= SMALL.frames_max
            assert all(re.fullmatch(r"\d{5}", f) for f in v["frames"])
            assert SMALL.objects_min <= len(v["objects"]) <= SMALL.objects_max
            assert SMALL.expressions_min <= len(v["expressions"]) <= SMALL.expressions_max
            for key, e in v["expressions"].items():
                assert key.isdigit()
                assert {"exp", "obj_id", "kind", "template", "heldout", "category"} <= set(e)
                assert isinstance(e["obj_id"], str) and e["obj_id"] in v["objects"]
                assert e["category"] == v["objects"][e["obj_id"]]["category"]
                assert isinstance(e["heldout"], bool)
                assert e["heldout"] == (e["heldout_template"] or e["heldout_combo"] or e["heldout_use"])


def test_frames_and_masks(world):
    root, _, meta = world
    for split, videos in meta.items():
        for vid, v in list(videos.items())[:4]:
            ids_all = set()
            for f in v["frames"]:
                with Image.open(root / split / "Annotations" / vid / f"{f}.png") as im:
                    assert im.mode == "P"
                ids = read_index_mask(root / split / "Annotations" / vid / f"{f}.png")
                img = cv2.imread(str(root / split / "JPEGImages" / vid / f"{f}.jpg"))
                assert img.shape == (SMALL.height, SMALL.width, 3) == (*ids.shape, 3)
                present = set(np.unique(ids).tolist()) - {0}
                assert present <= {int(k) for k in v["objects"]}
                ids_all |= present
            first = read_index_mask(root / split / "Annotations" / vid / f"{v['frames'][0]}.png")
            # Every object is on screen in frame 0, and every target is well visible there.
            assert set(np.unique(first).tolist()) - {0} == {int(k) for k in v["objects"]}
            for e in v["expressions"].values():
                assert (first == int(e["obj_id"])).sum() >= 120


def test_composite_masks_are_the_visible_pixels_of_the_drawn_objects():
    rng = np.random.default_rng(0)
    bg = np.full((120, 160, 3), 90, np.uint8)
    sprites = []
    for k, c in enumerate(CATEGORIES[:6], start=1):
        pose = ObjectPose(rng.uniform(30, 130), rng.uniform(30, 90), rng.uniform(40, 70), rng.uniform(-90, 90))
        sprites.append((k, render_sprite(c.name, pose, (200, 30, 30))))
    img, ids = composite(bg, sprites, shadow=0.0)
    expected = np.zeros_like(ids)
    for k, sp in sprites:  # back to front: a later sprite covers an earlier one
        h, w = sp.mask.shape
        canvas = np.zeros((120 + 2 * h, 160 + 2 * w), bool)
        canvas[sp.y0 + h : sp.y0 + 2 * h, sp.x0 + w : sp.x0 + 2 * w] = sp.mask
        m = canvas[h : h + 120, w : w + 160]
        expected[m] = k
        assert sp.area == sp.mask.sum() > 0
    assert np.array_equal(ids, expected)
    assert (np.unique(ids) > 0).sum() >= 4
    assert np.all(img[ids == 0] == 90)  # background untouched (no shadow asked)
    assert np.any(img[ids > 0] != 90, axis=-1).mean() > 0.95


def test_explicit_and_implicit_instructions_name_exactly_one_object(world):
    _, _, meta = world
    seen = {"explicit": 0, "implicit": 0}
    for videos in meta.values():
        for v in videos.values():
            objs = v["objects"]
            for e in v["expressions"].values():
                if e["kind"] == "explicit":
                    same = [k for k, o in objs.items() if (o["category"], o["colour"]) == (e["category"], e["colour"])]
                    assert same == [e["obj_id"]]
                    assert f"{e['colour']} {e['category']}" in e["exp"]
                    seen["explicit"] += 1
                elif e["kind"] == "implicit":
                    field = "group" if e["refers"] in GROUPS else "category"
                    refs = [k for k, o in objs.items() if o[field] == e["refers"]]
                    assert refs == [e["obj_id"]]
                    assert e["use"] in e["exp"]
                    assert e["category"] not in e["exp"].split()  # implicit: the category is not named
                    seen["implicit"] += 1
    assert all(seen.values())


def test_relational_instructions_are_unambiguous_in_the_first_frame(world):
    root, _, meta = world
    checked = 0
    for split, videos in meta.items():
        for vid, v in videos.items():
            first = read_index_mask(root / split / "Annotations" / vid / f"{v['frames'][0]}.png")
            for e in v["expressions"].values():
                if e["kind"] != "relational":
                    continue
                objs = v["objects"]
                if e["set"] == "object":
                    members = list(objs)
                elif e["set"] in GROUPS and e["set"] not in {c.name for c in CATEGORIES}:
                    members = [k for k, o in objs.items() if o["group"] == e["set"]]
                else:
                    members = [k for k, o in objs.items() if o["category"] == e["set"]]
                assert len(members) >= 2 and e["obj_id"] in members
                spec = RELATIONS[e["relation"]]
                vals = {}
                for k in members:
                    ys, xs = np.nonzero(first == int(k))
                    assert len(xs) >= 120
                    vals[k] = {"x": xs.mean(), "y": ys.mean(), "area": len(xs)}[spec["measure"]]
                others = [vals[k] for k in members if k != e["obj_id"]]
                t = vals[e["obj_id"]]
                if spec["measure"] == "area":
                    if spec["max"]:
                        assert t >= AREA_RATIO * max(others)
                    else:
                        assert AREA_RATIO * t <= min(others)
                else:
                    margin = POSITION_MARGIN * (SMALL.width if spec["measure"] == "x" else SMALL.height)
                    if spec["max"]:
                        assert t >= max(others) + margin - 1e-6
                    else:
                        assert t <= min(others) - margin + 1e-6
                checked += 1
    assert checked >= 3


def test_relational_target_rule():
    def st(x, y, area, frac=1.0):
        return {"x": x, "y": y, "area": area, "frac": frac}

    stats = {1: st(50, 100, 1000), 2: st(200, 110, 2100), 3: st(80, 30, 1100)}
    assert relational_target(stats, [1, 2, 3], "left", 320, 240) is None  # 1 and 3 are 30 px apart (< 32)
    assert relational_target(stats, [1, 2], "left", 320, 240) == 1
    assert relational_target(stats, [1, 2, 3], "right", 320, 240) == 2
    assert relational_target(stats, [1, 2, 3], "top", 320, 240) == 3
    assert relational_target(stats, [1, 2, 3], "largest", 320, 240) is None  # 2100 < 2 x 1100
    assert relational_target(stats, [1, 2], "largest", 320, 240) == 2
    assert relational_target(stats, [1], "left", 320, 240) is None  # one member: not relational
    stats[1]["frac"] = 0.3  # a half-hidden member makes any relation undecidable
    assert relational_target(stats, [1, 2], "right", 320, 240) is None


def _held_parts(templates: str, uses: str, combos) -> tuple[dict, set, set]:
    regexes = {k: [_template_regex(t) for t in d[templates]] for k, d in TEMPLATES.items()}
    phrases = {u for c in CATEGORIES for u in getattr(c, uses)} | {u for g in GROUPS.values() for u in getattr(g, uses)}
    return regexes, phrases, set(combos)


@pytest.mark.parametrize(
    "parts, kept_out_of",
    [
        (("heldout", "heldout_uses", HELDOUT_COMBOS), ("train", "val")),
        (("val_heldout", "val_uses", VAL_HELDOUT_COMBOS), ("train", "test")),
    ],
    ids=["test-parts", "val-parts"],
)
def test_heldout_templates_uses_and_combos_stay_in_their_split(world, parts, kept_out_of):
    _, _, meta = world
    regexes, phrases, combos = _held_parts(*parts)
    for split in kept_out_of:
        for v in meta[split].values():
            for o in v["objects"].values():
                assert (o["category"], o["colour"]) not in combos
            for e in v["expressions"].values():
                assert not any(r.match(e["exp"]) for r in regexes[e["kind"]]), e["exp"]
                assert e.get("use") not in phrases
    for v in meta["train"].values():
        for e in v["expressions"].values():
            assert not e["heldout"] and re.fullmatch(r"[a-z]{3}-t\d+", e["template"])


def test_val_parts_leave_train_and_test_as_they_were(tmp_path, world, monkeypatch):
    """The val split's held-out parts draw nothing from train's or test's random streams: without them (val drawn
    like train, as before they existed) train and test are the same files."""
    root, _, _ = world
    monkeypatch.setattr(instruction_world, "val_colours", instruction_world.train_colours)
    monkeypatch.setattr(instruction_world, "HELDOUT_PARTS", {"test": instruction_world.HELDOUT_PARTS["test"]})
    _generate(tmp_path / "before")
    with_val, without = _tree_hash(root), _tree_hash(tmp_path / "before")
    for split in ("train", "test"):
        a = {k: h for k, h in with_val.items() if k.startswith((f"{split}/", f"meta_expressions/{split}/"))}
        b = {k: h for k, h in without.items() if k.startswith((f"{split}/", f"meta_expressions/{split}/"))}
        assert len(a) > 20 and a == b, split
    val_a = {k: h for k, h in with_val.items() if k.startswith("meta_expressions/val/")}
    val_b = {k: h for k, h in without.items() if k.startswith("meta_expressions/val/")}
    assert val_a != val_b  # val did change


def test_template_ids_match_the_text_and_val_and_test_mix_heldout_and_seen(world):
    _, _, meta = world
    pools = {"t": "train", "h": "heldout", "v": "val_heldout"}
    for split, videos in meta.items():
        for v in videos.values():
            for e in v["expressions"].values():
                tag = e["template"].split("-")[1]
                pool = pools[tag[0]]
                assert pool == "train" or {"heldout": "test", "val_heldout": "val"}[pool] == split
                tmpl = TEMPLATES[e["kind"]][pool][int(tag[1:])]
                assert _template_regex(tmpl).match(e["exp"]), (e["exp"], tmpl)
                assert e["heldout_template"] == (pool != "train")
                pair = (e["category"], e["colour"])
                assert e["heldout_combo"] == (pair in HELDOUT_COMBOS or pair in VAL_HELDOUT_COMBOS)
                assert category(e["category"])
    for split in ("val", "test"):
        flags = [e["heldout"] for v in meta[split].values() for e in v["expressions"].values()]
        assert any(flags) and not all(flags), split


def test_template_counts():
    for kind, d in TEMPLATES.items():
        assert len(d["train"]) >= 6 and len(d["heldout"]) >= 2 and len(d["val_heldout"]) >= 2, kind
        assert not set(d["train"]) & set(d["heldout"])
        assert not (set(d["train"]) | set(d["heldout"])) & set(d["val_heldout"])
    for c in CATEGORIES:
        assert len(c.colours) - sum(c.name == h[0] for h in HELDOUT_COMBOS) >= 2
        assert not any(c.name in u.split() for u in (*c.uses, *c.heldout_uses, *c.val_uses))
        assert c.val_uses and not set(c.val_uses) & set(c.uses + c.heldout_uses)
        # one val-only pair per category, in a colour it never takes in train or test
        assert [col for cat, col in VAL_HELDOUT_COMBOS if cat == c.name] == [
            col for cat, col in VAL_HELDOUT_COMBOS if cat == c.name and col not in c.colours
        ] and sum(cat == c.name for cat, _ in VAL_HELDOUT_COMBOS) == 1
    for g in GROUPS.values():
        assert g.val_uses and not set(g.val_uses) & set(g.uses + g.heldout_uses)
