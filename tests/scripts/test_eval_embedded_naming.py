"""``scripts/eval_embedded.py --naming-only``: the brain's first answers scored for naming the target, per kind and
held-out flag; an answer that names the true target counts, one that names another colour counts only for the
category, and the run writes its table."""

from __future__ import annotations

import json
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from conftest import load_script

from perception_eval.worlds.instruction import InstructionWorldConfig, generate_instruction_world

TEMPLATE = "Sure, I track the {target}. <TK>, <PO>"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("naming") / "world"
    generate_instruction_world(root, seed=11, videos={"train": 1, "val": 5, "test": 1},
                               config=InstructionWorldConfig(frames_min=2, frames_max=2), workers=1, progress=False)
    return root


class Teller:
    """A model whose brain answers from the world's own metadata: the true target, or its category in another
    colour (``wrong_colour``)."""

    def __init__(self, world, wrong_colour: bool):
        videos = json.loads((world / "meta_expressions/val/meta_expressions.json").read_text())["videos"]
        exprs = [e for v in videos.values() for e in v["expressions"].values()]
        self.truth = {e["exp"]: (e["colour"], e["category"]) for e in exprs}
        self.wrong = wrong_colour
        self.config = SimpleNamespace(brain=SimpleNamespace(answer_template=TEMPLATE))

    def reason(self, frame, instruction):
        colour, category = self.truth[instruction]
        colour = "plaid" if self.wrong else colour
        return SimpleNamespace(answer=TEMPLATE.replace("{target}", f"{colour} {category}").split(" <TK>")[0])


@pytest.mark.parametrize("wrong_colour", [False, True])
def test_naming_counts_true_targets_and_categories(world, wrong_colour):
    module = load_script("eval_embedded")
    res = module.evaluate_naming(Teller(world, wrong_colour), world, "val", max_expressions=3)
    overall = res["groups"]["overall"]
    assert overall["count"] == res["instructions"] > 0
    assert overall["named"] == (0.0 if wrong_colour else 1.0) and overall["category_named"] == 1.0
    kinds = [k for k in res["groups"] if k.startswith("kind=")]
    assert sum(res["groups"][k]["count"] for k in kinds) == overall["count"]
    assert "| overall |" in module.naming_markdown(res)


class ObjectTeller(Teller):
    """Names the true target only while the world's objects of the frame it is asked about are given to it."""

    def __init__(self, world):
        super().__init__(world, wrong_colour=False)
        self.given = None
        self.seen = []

    @contextmanager
    def objects_given(self, objects):
        self.given = objects
        try:
            yield
        finally:
            self.given = None

    def reason(self, frame, instruction):
        self.wrong = self.given is None
        if self.given is not None:
            self.seen.append((frame.shape[:2], self.given.shape))
        return super().reason(frame, instruction)


def test_true_objects_gives_the_brain_the_frames_own_objects(world):
    module = load_script("eval_embedded")
    teller = ObjectTeller(world)
    proposed = module.evaluate_naming(teller, world, "val", max_expressions=3)
    given = module.evaluate_naming(teller, world, "val", max_expressions=3, true_objects=True)
    assert proposed["groups"]["overall"]["named"] == 0.0 and not proposed["true_objects"]
    assert given["groups"]["overall"]["named"] == 1.0 and given["true_objects"]
    assert len(teller.seen) == given["instructions"] and all(f == m for f, m in teller.seen)
