"""The object categories, colour palette and held-out colour/category pairs shared by both generated worlds.

Each :class:`Category` has a look (its drawing, in :mod:`perception_eval.worlds.drawing`), the colours it
may take, a typical size, a group ("fruit", "tool", ...), everyday uses (for implicit instructions of the
instruction world) and a sound (in :mod:`perception_eval.worlds.sounds`).

Everything here is constant data: tuples in a fixed order, so iteration never depends on dict/set order.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CATEGORIES",
    "CATEGORY_NAMES",
    "COLOURS",
    "GROUPS",
    "HELDOUT_COMBOS",
    "VAL_HELDOUT_COMBOS",
    "Category",
    "Group",
    "category",
    "category_table",
    "train_colours",
    "val_colours",
]

#: Colour names and their nominal RGB values. Objects take these with a small per-object jitter and shading.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 45),
    "green": (45, 165, 60),
    "blue": (40, 85, 215),
    "purple": (135, 60, 175),
    "pink": (240, 125, 185),
    "brown": (125, 78, 40),
    "white": (236, 236, 232),
    "black": (38, 38, 42),
    "gray": (150, 152, 158),
}


@dataclass(frozen=True)
class Category:
    """One object category.

    Attributes:
        name: singular noun used in instructions ("cup").
        plural: plural noun ("cups").
        group: group name, a key of :data:`GROUPS`.
        colours: colour names (keys of :data:`COLOURS`) the category may take, held-out ones included.
        size: typical longest side as a fraction of ``min(H, W)`` of a 320x240 instruction-world frame.
        upright: True if the object stays roughly upright (cups, bottles); False if it may lie at any angle.
        uses: verb phrases completing "something I could ..." that identify this category (training).
        heldout_uses: further such phrases used only in the test split.
        colour_part: what the colour name describes ("body", "handle", ...), for documentation.
        val_uses: further such phrases used only in the val split (held out of train and test, so model
            selection on val sees phrases no model trained on).
    """

    name: str
    plural: str
    group: str
    colours: tuple[str, ...]
    size: float
    upright: bool
    uses: tuple[str, ...]
    heldout_uses: tuple[str, ...]
    colour_part: str = "body"
    val_uses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Group:
    """A group of categories ("fruit") with its nouns and the uses shared by all of its members."""

    name: str
    noun: str
    plural: str
    uses: tuple[str, ...]
    heldout_uses: tuple[str, ...]
    val_uses: tuple[str, ...] = ()


GROUPS: dict[str, Group] = {
    "fruit": Group(
        "fruit", "fruit", "fruits", ("eat as a healthy snack", "have for dessert"), ("grab for a quick bite",),
        val_uses=("pack in a lunch box",),
    ),
    "tool": Group(
        "tool", "tool", "tools", ("fix things around the house with", "keep in a toolbox"), ("use in a workshop",),
        val_uses=("do some repairs with",),
    ),
    "drinkware": Group(
        "drinkware", "container", "containers", ("drink from", "fill with water"), ("quench my thirst with",),
        val_uses=("pour a drink into",),
    ),
    "toy": Group(
        "toy", "toy", "toys", ("play with",), ("have fun with",),
        val_uses=("keep a child busy with",),
    ),
    "electronics": Group(
        "electronics", "device", "devices", ("charge overnight",), ("plug into a charger",),
        val_uses=("watch videos on",),
    ),
    "stationery": Group(
        "stationery", "item", "items", ("put on a bookshelf",), ("find in a library",),
        val_uses=("put in a school bag",),
    ),
    "hardware": Group(
        "hardware", "item", "items", ("hang on a hook by the door",), ("copy at a locksmith",),
        val_uses=("keep on a key ring",),
    ),
}

CATEGORIES: tuple[Category, ...] = (
    Category(
        "apple", "apples", "fruit", ("red", "green", "yellow"), 0.22, True,
        ("bake into a pie", "pick from a tree in autumn", "eat to keep the doctor away"),
        ("press into cider",),
        val_uses=("dip in caramel",),
    ),
    Category(
        "banana", "bananas", "fruit", ("yellow", "green", "brown"), 0.32, False,
        ("peel and eat", "feed to a monkey", "slice onto my cereal"),
        ("give a hungry gorilla",),
        val_uses=("mash into bread dough",),
    ),
    Category(
        "orange", "oranges", "fruit", ("orange", "yellow", "green"), 0.22, True,
        ("squeeze into fresh juice", "peel into segments", "get vitamin C from"),
        ("grate zest from for a cake",),
        val_uses=("share with a friend at halftime",),
    ),
    Category(
        "knife", "knives", "tool", ("black", "brown", "red", "blue"), 0.40, False,
        ("cut bread with", "slice vegetables with", "spread butter with"),
        ("carve a roast with",), "handle",
        val_uses=("chop onions with",),
    ),
    Category(
        "hammer", "hammers", "tool", ("brown", "red", "yellow", "black"), 0.36, False,
        ("drive a nail with", "knock a nail into the wall with", "pound a tent peg with"),
        ("hang a picture frame with",), "handle",
        val_uses=("flatten a bent nail with",),
    ),
    Category(
        "scissors", "scissors", "tool", ("red", "blue", "orange", "black", "green", "purple"), 0.30, False,
        ("cut paper with", "trim a ribbon with", "snip coupons out of a magazine with"),
        ("give someone a haircut with",), "handles",
        val_uses=("cut out a paper snowflake with",),
    ),
    Category(
        "cup", "cups", "drinkware", ("white", "red", "blue", "green", "yellow", "pink", "purple"), 0.26, True,
        ("drink coffee from", "drink hot tea from", "hold my morning cappuccino in"),
        ("sip hot cocoa from",),
        val_uses=("warm my hands around",),
    ),
    Category(
        "bottle", "bottles", "drinkware", ("green", "blue", "white", "brown", "orange"), 0.36, True,
        ("take water on a hike in", "keep a drink in with a screw cap", "refill at a water fountain"),
        ("send a message in at sea",),
        val_uses=("carry juice to school in",),
    ),
    Category(
        "ball", "balls", "toy", ("red", "blue", "yellow", "green", "orange", "purple", "pink", "white"), 0.22, False,
        ("play catch with", "kick around in the park", "throw for the dog"),
        ("dribble on a basketball court",),
        val_uses=("bounce against a wall",),
    ),
    Category(
        "phone", "phones", "electronics", ("black", "white", "blue", "pink", "purple", "red"), 0.28, True,
        ("call my mother with", "send a text message with", "take a selfie with"),
        ("check the weather forecast on",), "case",
        val_uses=("video call my friend with",),
    ),
    Category(
        "book", "books", "stationery", ("red", "blue", "green", "brown", "orange", "purple", "black"), 0.34, True,
        ("read a story from", "learn new words from", "read before bed"),
        ("borrow from the library",), "cover",
        val_uses=("look up a recipe in",),
    ),
    Category(
        "key", "keys", "hardware", ("gray", "yellow", "red", "blue"), 0.24, False,
        ("unlock the front door with", "open a padlock with", "start the car with"),
        ("lock the garden shed with",),
        val_uses=("open the mailbox with",),
    ),
)

CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)

#: (category, colour) pairs that never appear in the train and val splits of the instruction world (one per
#: category; each category keeps at least two seen colours and every colour stays seen on other categories).
HELDOUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("apple", "yellow"),
    ("banana", "green"),
    ("orange", "green"),
    ("knife", "blue"),
    ("hammer", "yellow"),
    ("scissors", "purple"),
    ("cup", "pink"),
    ("bottle", "orange"),
    ("ball", "purple"),
    ("phone", "red"),
    ("book", "orange"),
    ("key", "red"),
)

#: (category, colour) pairs that appear only in the val split (one per category): colours no category takes in
#: train or test, so model selection on val meets pairs that no shipped model trained on and test stays as it was.
VAL_HELDOUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("apple", "pink"),
    ("banana", "red"),
    ("orange", "red"),
    ("knife", "green"),
    ("hammer", "blue"),
    ("scissors", "yellow"),
    ("cup", "orange"),
    ("bottle", "red"),
    ("ball", "black"),
    ("phone", "green"),
    ("book", "yellow"),
    ("key", "black"),
)

_BY_NAME = {c.name: c for c in CATEGORIES}


def category(name: str) -> Category:
    """Return the :class:`Category` called ``name`` (KeyError if unknown)."""
    return _BY_NAME[name]


def train_colours(name: str) -> tuple[str, ...]:
    """The colours category ``name`` may take in train/val (its colours minus the held-out pairs)."""
    return tuple(c for c in _BY_NAME[name].colours if (name, c) not in HELDOUT_COMBOS)


def val_colours(name: str) -> tuple[str, ...]:
    """The colours category ``name`` may take in val: its train colours and its val-only held-out colour."""
    return train_colours(name) + tuple(col for cat, col in VAL_HELDOUT_COMBOS if cat == name)


def category_table() -> list[dict]:
    """The category table as JSON-ready dicts (written to ``world.json``)."""
    rows = []
    for c in CATEGORIES:
        rows.append(
            {
                "name": c.name,
                "plural": c.plural,
                "group": c.group,
                "colours": list(c.colours),
                "train_colours": list(train_colours(c.name)),
                "colour_part": c.colour_part,
                "size": c.size,
                "upright": c.upright,
                "uses": list(c.uses),
                "heldout_uses": list(c.heldout_uses),
                "val_uses": list(c.val_uses),
            }
        )
    return rows
