"""Drawing of the generated worlds: object sprites per category, textured backgrounds, z-ordered compositing.

Objects are lists of parts in a local frame (x right, y down, the longest side about 1 unit, centred on 0),
drawn with OpenCV at sub-pixel precision (``shift=4``) into a sprite: an RGB patch and a binary mask of
the object's own pixels (holes, such as a cup handle's, are left out of the mask). :func:`composite`
pastes sprites back to front with a soft drop shadow and returns the frame and the id map of *visible*
pixels, so a mask is exactly the pixels where an object shows.

All randomness comes in through a ``numpy.random.Generator`` argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .categories import COLOURS

__all__ = [
    "ObjectPose",
    "Sprite",
    "background",
    "composite",
    "jitter_colour",
    "part_list",
    "render_sprite",
]

_SHIFT = 4
_ONE = 1 << _SHIFT

# Fixed colours of roles that do not follow the object's colour (RGB).
_FIXED_ROLES = {
    "metal": (178, 182, 192),
    "darkmetal": (105, 110, 122),
    "stem": (92, 62, 30),
    "leaf": (55, 140, 50),
    "screen": (24, 28, 40),
    "page": (236, 230, 212),
}


def _arc(cx, cy, r, a0, a1, n=16):
    t = np.radians(np.linspace(a0, a1, n))
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in t]


def _rounded_rect(x0, y0, x1, y1, r, n=5):
    pts = []
    pts += _arc(x1 - r, y0 + r, r, -90, 0, n)
    pts += _arc(x1 - r, y1 - r, r, 0, 90, n)
    pts += _arc(x0 + r, y1 - r, r, 90, 180, n)
    pts += _arc(x0 + r, y0 + r, r, 180, 270, n)
    return pts


def _rect(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _spiral_dots(n, radius):
    gold = math.pi * (3 - math.sqrt(5))
    return [(radius * math.sqrt(k / n) * math.cos(k * gold), radius * math.sqrt(k / n) * math.sin(k * gold))
            for k in range(1, n + 1)]


def _shift_parts(parts, dx, dy):
    out = []
    for p in parts:
        kind = p[0]
        if kind in ("poly", "line"):
            out.append((kind, p[1], [(x + dx, y + dy) for x, y in p[2]], *p[3:]))
        elif kind in ("circle", "ellipse"):
            out.append((kind, p[1], (p[2][0] + dx, p[2][1] + dy), *p[3:]))
        else:  # pragma: no cover - programming error
            raise ValueError(kind)
    return out


def _apple():
    return [
        ("circle", "main", (-0.13, 0.05), 0.32),
        ("circle", "main", (0.13, 0.05), 0.32),
        ("ellipse", "main", (0.0, 0.14), (0.38, 0.3), 0.0),
        ("ellipse", "dark", (0.0, -0.23), (0.07, 0.035), 0.0),
        ("line", "stem", [(0.0, -0.22), (0.03, -0.42)], 0.05),
        ("ellipse", "leaf", (0.15, -0.37), (0.13, 0.055), -25.0),
        ("ellipse", "light", (-0.2, -0.04), (0.06, 0.1), 20.0),
    ]


def _orange():
    parts = [("circle", "main", (0.0, 0.0), 0.45)]
    parts += [("circle", "dark", xy, 0.016) for xy in _spiral_dots(22, 0.38)]
    parts += [("circle", "leaf", (0.04, -0.37), 0.045), ("ellipse", "light", (-0.18, -0.16), (0.07, 0.11), 30.0)]
    return parts


def _banana():
    outer = _arc(0.0, -0.6, 0.9, 56, 124, 20)
    inner = _arc(0.0, -0.76, 0.86, 121, 59, 20)
    parts = [
        ("poly", "main", outer + inner),
        ("line", "stem", [(-0.5, 0.14), (-0.58, 0.06)], 0.05),
        ("circle", "stem", (0.5, 0.14), 0.025),
        ("line", "dark", _arc(0.0, -0.68, 0.86, 70, 110, 8), 0.012),
    ]
    return _shift_parts(parts, 0.0, -0.12)


def _knife():
    return [
        ("poly", "metal", [(-0.5, 0.02), (-0.42, -0.06), (-0.3, -0.08), (0.04, -0.08), (0.04, 0.07), (-0.38, 0.07)]),
        ("poly", "darkmetal", _rect(0.04, -0.09, 0.09, 0.08)),
        ("poly", "main", _rounded_rect(0.09, -0.085, 0.52, 0.085, 0.04)),
        ("circle", "light", (0.2, 0.0), 0.02),
        ("circle", "light", (0.38, 0.0), 0.02),
    ]


def _hammer():
    parts = [
        ("poly", "main", _rounded_rect(-0.065, -0.3, 0.065, 0.58, 0.05)),
        ("poly", "dark", _rect(-0.066, 0.28, 0.066, 0.5)),
        ("poly", "metal", [(-0.34, -0.48), (0.16, -0.48), (0.16, -0.27), (-0.34, -0.27)]),
        ("poly", "metal", [(0.16, -0.47), (0.4, -0.56), (0.38, -0.47), (0.16, -0.3)]),
        ("poly", "darkmetal", _rect(-0.4, -0.47, -0.34, -0.28)),
    ]
    return _shift_parts(parts, 0.0, -0.04)


def _scissors():
    parts = []
    for sx in (-1.0, 1.0):
        parts.append(("circle", "main", (0.2 * sx, 0.36), 0.15))
        parts.append(("circle", "hole", (0.2 * sx, 0.36), 0.08))
    for sx in (-1.0, 1.0):
        parts.append(("line", "main", [(0.0, 0.06), (0.12 * sx, 0.24)], 0.075))
    parts += [
        ("poly", "metal", [(-0.05, 0.12), (0.05, 0.0), (-0.13, -0.52), (-0.16, -0.5)]),
        ("poly", "metal", [(0.05, 0.12), (-0.05, 0.0), (0.13, -0.52), (0.16, -0.5)]),
        ("circle", "darkmetal", (0.0, 0.06), 0.035),
    ]
    return _shift_parts(parts, 0.0, 0.0)


def _cup():
    parts = [
        ("circle", "main", (0.33, 0.02), 0.17),
        ("circle", "hole", (0.33, 0.02), 0.09),
        ("poly", "main", [(-0.33, -0.35), (0.33, -0.35), (0.26, 0.42), (-0.26, 0.42)]),
        ("ellipse", "light", (0.0, -0.35), (0.33, 0.07), 0.0),
        ("ellipse", "dark", (0.0, -0.34), (0.28, 0.05), 0.0),
        ("poly", "light", [(-0.24, -0.2), (-0.18, -0.2), (-0.15, 0.3), (-0.2, 0.3)]),
    ]
    return _shift_parts(parts, -0.08, 0.0)


def _bottle():
    return [
        ("poly", "main", _rounded_rect(-0.17, -0.08, 0.17, 0.5, 0.06)),
        ("poly", "main", [(-0.17, -0.04), (-0.07, -0.24), (0.07, -0.24), (0.17, -0.04)]),
        ("poly", "main", _rect(-0.07, -0.42, 0.07, -0.2)),
        ("poly", "darkmetal", _rect(-0.085, -0.5, 0.085, -0.39)),
        ("poly", "light", _rect(-0.17, 0.1, 0.17, 0.3)),
        ("poly", "light", _rect(-0.12, -0.02, -0.08, 0.44)),
    ]


def _ball():
    return [
        ("circle", "main", (0.0, 0.0), 0.45),
        ("ellipse_arc", "light", (0.0, -0.02), (0.4, 0.15), 0.0, 0.0, 180.0, 0.07),
        ("ellipse_arc", "dark", (0.0, 0.0), (0.16, 0.43), 0.0, -90.0, 90.0, 0.025),
        ("ellipse", "light", (-0.2, -0.22), (0.08, 0.05), -35.0),
    ]


def _phone():
    return [
        ("poly", "main", _rounded_rect(-0.26, -0.5, 0.26, 0.5, 0.08)),
        ("poly", "screen", _rounded_rect(-0.19, -0.37, 0.19, 0.33, 0.02)),
        ("circle", "dark", (0.0, -0.44), 0.018),
        ("circle", "light", (0.0, 0.42), 0.035),
    ]


def _book():
    return [
        ("poly", "main", _rect(-0.36, -0.5, 0.36, 0.5)),
        ("poly", "page", _rect(0.3, -0.46, 0.36, 0.46)),
        ("poly", "dark", _rect(-0.36, -0.5, -0.27, 0.5)),
        ("poly", "light", _rect(-0.14, -0.32, 0.2, -0.2)),
        ("poly", "light", _rect(-0.08, -0.14, 0.14, -0.11)),
    ]


def _key():
    return [
        ("circle", "main", (-0.32, 0.0), 0.18),
        ("circle", "hole", (-0.36, 0.0), 0.065),
        ("poly", "main", _rect(-0.17, -0.075, -0.1, 0.075)),
        ("poly", "main", _rect(-0.16, -0.04, 0.5, 0.04)),
        ("poly", "main", [(0.2, 0.03), (0.24, 0.14), (0.29, 0.03)]),
        ("poly", "main", [(0.33, 0.03), (0.35, 0.12), (0.41, 0.12), (0.44, 0.03)]),
        ("line", "dark", [(-0.08, 0.0), (0.46, 0.0)], 0.012),
    ]


_BUILDERS = {
    "apple": _apple,
    "orange": _orange,
    "banana": _banana,
    "knife": _knife,
    "hammer": _hammer,
    "scissors": _scissors,
    "cup": _cup,
    "bottle": _bottle,
    "ball": _ball,
    "phone": _phone,
    "book": _book,
    "key": _key,
}
_PARTS_CACHE: dict[str, list] = {}


def part_list(category: str) -> list:
    """The drawing parts of ``category`` in its local unit frame (cached; do not modify)."""
    if category not in _PARTS_CACHE:
        _PARTS_CACHE[category] = _BUILDERS[category]()
    return _PARTS_CACHE[category]


def jitter_colour(rng: np.random.Generator, name: str, amount: float = 14.0) -> tuple[int, int, int]:
    """The nominal RGB of colour ``name`` with a small random per-object jitter."""
    base = np.asarray(COLOURS[name], dtype=np.float64)
    return tuple(int(v) for v in np.clip(base + rng.normal(0.0, amount / 2, 3), 0, 255))


def _role_colour(role: str, main: tuple[int, int, int]) -> tuple[int, int, int]:
    if role == "main":
        return main
    if role == "dark":
        return tuple(int(c * 0.55) for c in main)
    if role == "light":
        return tuple(int(c + (255 - c) * 0.5) for c in main)
    return _FIXED_ROLES[role]


@dataclass(frozen=True)
class ObjectPose:
    """Where and how an object is drawn: centre ``(x, y)`` in pixels, longest side ``size`` in pixels,
    rotation ``angle`` in degrees (counter-clockwise on screen)."""

    x: float
    y: float
    size: float
    angle: float


@dataclass
class Sprite:
    """A rendered object: ``rgb`` (h x w x 3 uint8) and ``mask`` (h x w bool) placed with its top-left
    pixel at ``(x0, y0)`` in the frame (possibly outside it); ``area`` is the mask's pixel count before
    any clipping to the frame."""

    rgb: np.ndarray
    mask: np.ndarray
    x0: int
    y0: int
    area: int


def render_sprite(category: str, pose: ObjectPose, colour: tuple[int, int, int], *, shading: float = 0.22) -> Sprite:
    """Draw one object of ``category`` at ``pose`` in RGB ``colour`` into a sprite.

    The sprite is large enough for the whole object (nothing is clipped). A linear shading gradient
    (light from the top left) of strength ``shading`` is applied to the object's pixels.
    """
    half = int(math.ceil(pose.size * 0.8)) + 2
    x0 = int(math.floor(pose.x)) - half
    y0 = int(math.floor(pose.y)) - half
    side = 2 * half + 1
    rgb = np.zeros((side, side, 3), np.uint8)
    mask = np.zeros((side, side), np.uint8)
    cx, cy = pose.x - x0, pose.y - y0
    a = math.radians(-pose.angle)
    ca, sa = math.cos(a), math.sin(a)
    s = pose.size

    def tf(pts):
        arr = np.asarray(pts, dtype=np.float64)
        x = (arr[:, 0] * ca - arr[:, 1] * sa) * s + cx
        y = (arr[:, 0] * sa + arr[:, 1] * ca) * s + cy
        return np.round(np.stack([x, y], axis=1) * _ONE).astype(np.int32)

    for part in part_list(category):
        kind, role = part[0], part[1]
        hole = role == "hole"
        col = (0, 0, 0) if hole else _role_colour(role, colour)
        mval = 0 if hole else 255
        if kind == "poly":
            pts = tf(part[2])
            cv2.fillPoly(rgb, [pts], col, cv2.LINE_8, _SHIFT)
            cv2.fillPoly(mask, [pts], mval, cv2.LINE_8, _SHIFT)
        elif kind == "line":
            pts = tf(part[2])
            th = max(1, int(round(part[3] * s)))
            cv2.polylines(rgb, [pts], False, col, th, cv2.LINE_8, _SHIFT)
            cv2.polylines(mask, [pts], False, mval, th, cv2.LINE_8, _SHIFT)
        elif kind == "circle":
            c = tuple(int(v) for v in tf([part[2]])[0])
            r = int(round(part[3] * s * _ONE))
            cv2.circle(rgb, c, r, col, -1, cv2.LINE_8, _SHIFT)
            cv2.circle(mask, c, r, mval, -1, cv2.LINE_8, _SHIFT)
        elif kind in ("ellipse", "ellipse_arc"):
            c = tuple(int(v) for v in tf([part[2]])[0])
            axes = (int(round(part[3][0] * s * _ONE)), int(round(part[3][1] * s * _ONE)))
            ang = part[4] - pose.angle
            if kind == "ellipse":
                start, end, th = 0.0, 360.0, -1
            else:
                start, end = part[5], part[6]
                th = max(1, int(round(part[7] * s)))
            cv2.ellipse(rgb, c, axes, ang, start, end, col, th, cv2.LINE_8, _SHIFT)
            cv2.ellipse(mask, c, axes, ang, start, end, mval, th, cv2.LINE_8, _SHIFT)
        else:  # pragma: no cover - programming error
            raise ValueError(f"unknown part kind {kind!r}")
    m = mask > 0
    if shading:
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
        grad = ((xx - cx) * -0.6 + (yy - cy) * -0.8) / max(s, 1.0)
        shade = np.clip(1.0 + shading * 2.0 * grad, 0.6, 1.35)
        rgb = np.clip(rgb.astype(np.float32) * shade[..., None], 0, 255).astype(np.uint8)
    rgb[~m] = 0
    return Sprite(rgb=rgb, mask=m, x0=x0, y0=y0, area=int(m.sum()))


def _clip_box(sprite: Sprite, h: int, w: int):
    sh, sw = sprite.mask.shape
    fx0, fy0 = max(sprite.x0, 0), max(sprite.y0, 0)
    fx1, fy1 = min(sprite.x0 + sw, w), min(sprite.y0 + sh, h)
    if fx1 <= fx0 or fy1 <= fy0:
        return None
    return (fy0, fy1, fx0, fx1), (fy0 - sprite.y0, fy1 - sprite.y0, fx0 - sprite.x0, fx1 - sprite.x0)


def composite(
    frame: np.ndarray,
    sprites: list[tuple[int, Sprite]],
    *,
    shadow: float = 0.35,
    shadow_offset: tuple[int, int] = (3, 4),
) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``sprites`` (``(object_id, sprite)`` pairs, back to front) onto a copy of ``frame``.

    Each sprite first darkens what lies under its soft shadow (offset ``shadow_offset``, strength
    ``shadow``), then covers the frame where its mask is set. Returns ``(image, ids)``: the ``H x W x 3``
    uint8 image and the ``H x W`` uint8 map of the id of the object visible at each pixel (0 = background).
    """
    img = frame.astype(np.float32)
    h, w = frame.shape[:2]
    ids = np.zeros((h, w), np.uint8)
    dx, dy = shadow_offset
    for obj_id, sp in sprites:
        if shadow > 0:
            sh_mask = np.zeros(sp.mask.shape, np.float32)
            sh_mask[dy:, dx:] = sp.mask[: sp.mask.shape[0] - dy, : sp.mask.shape[1] - dx]
            sh_mask = cv2.GaussianBlur(sh_mask, (0, 0), 2.0)
            box = _clip_box(sp, h, w)
            if box is not None:
                (a0, a1, b0, b1), (c0, c1, d0, d1) = box
                img[a0:a1, b0:b1] *= (1.0 - shadow * sh_mask[c0:c1, d0:d1])[..., None]
        box = _clip_box(sp, h, w)
        if box is None:
            continue
        (a0, a1, b0, b1), (c0, c1, d0, d1) = box
        m = sp.mask[c0:c1, d0:d1]
        img[a0:a1, b0:b1][m] = sp.rgb[c0:c1, d0:d1][m]
        ids[a0:a1, b0:b1][m] = obj_id
    return np.clip(img, 0, 255).astype(np.uint8), ids


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: int, octaves: int = 3) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
        grid = rng.random((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        cell = max(2, cell // 2)
    return out / total


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    hue = rng.uniform(0, 180)
    sat = rng.uniform(20, 90)
    val = rng.uniform(90, 200)
    hsv = np.array([[[hue, sat, val]]], np.float32).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


BACKGROUND_KINDS = ("wood", "tiles", "cloud", "fabric", "speckle")


def background(rng: np.random.Generator, height: int, width: int, kind: str | None = None) -> np.ndarray:
    """A textured, muted background image (``H x W x 3`` uint8, RGB) of one of :data:`BACKGROUND_KINDS`."""
    if kind is None:
        kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    c1 = _muted_colour(rng)
    c2 = np.clip(c1 * rng.uniform(0.6, 0.85) + rng.normal(0, 10, 3), 0, 255)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "wood":
        theta = rng.uniform(0, math.pi)
        u = xx * math.cos(theta) + yy * math.sin(theta)
        warp = _value_noise(rng, height, width, 64) * rng.uniform(20, 60)
        t = 0.5 + 0.5 * np.sin((u + warp) * rng.uniform(0.08, 0.25))
        t = t**2
    elif kind == "tiles":
        tile = int(rng.integers(24, 64))
        grout = max(1, tile // 12)
        ty, tx = (yy // tile).astype(np.int32), (xx // tile).astype(np.int32)
        if rng.random() < 0.5:
            t = ((ty + tx) % 2).astype(np.float32) * 0.6 + 0.2
        else:
            jitter = rng.random((height // tile + 2, width // tile + 2)).astype(np.float32)
            t = jitter[ty, tx] * 0.5 + 0.25
        line = ((yy % tile) < grout) | ((xx % tile) < grout)
        t = np.where(line, 1.0, t)
    elif kind == "cloud":
        t = _value_noise(rng, height, width, int(rng.integers(24, 72)), 4)
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    elif kind == "fabric":
        f = rng.uniform(0.3, 0.8)
        t = 0.5 + 0.25 * np.sin(xx * f) * np.sin(yy * f) + 0.25 * np.sin((xx + yy) * f * 0.5)
        t = t * 0.7 + 0.3 * _value_noise(rng, height, width, 48)
    elif kind == "speckle":
        t = 0.6 * _value_noise(rng, height, width, 40) + 0.4 * (rng.random((height, width)) > 0.93)
    else:
        raise ValueError(f"unknown background kind {kind!r}")
    img = c2[None, None, :] + (c1 - c2)[None, None, :] * t[..., None]
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)
