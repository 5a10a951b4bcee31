"""A built-in, CelebA-shaped data set of drawn faces with known attribute regions.

Each image is a cartoon face (an ellipse with hair, eyes, nose, mouth and a neck) over a
random background. Seven local attributes and one global one are drawn at random:

    Black_Hair, Blond_Hair, Brown_Hair   hair colour (at most one; 15% of faces have another)
    Eyeglasses, Mustache, Wearing_Hat    an object drawn over the face
    Mouth_Slightly_Open                  open (dark, with teeth) or closed mouth
    Pale_Skin                            global: every skin pixel is lighter

The set is written in CelebA's release layout (see :mod:`camfast.data.celeba`), so the
same loader reads it, plus

    masks/<stem>_<attr>.png   255 where editing <attr> changes (or would change) the image:
                              the visible hair for the hair colours, the hat / glasses /
                              mustache / mouth area whether or not the object is present,
                              the visible skin for Pale_Skin
    synthetic.json            the generator's parameters (and the attribute list)

Everything follows from ``(seed, index)``: image i uses its own numpy Generator seeded
with ``[seed, i]``, so the set is the same on every machine and run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from .celeba import ATTR_FILE, IMAGE_DIR, PARTITION_FILE

VERSION = 1  # bump when the drawing changes: it is part of the cache key
ATTRIBUTES = [
    "Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses",
    "Mouth_Slightly_Open", "Mustache", "Pale_Skin", "Wearing_Hat",
]
PARAMS_FILE = "synthetic.json"
MASK_DIR = "masks"
SUPERSAMPLE = 2  # draw at 2x and downsample: anti-aliased edges at 64 px

HAIR_COLOURS = {
    "Black_Hair": (25, 22, 22), "Blond_Hair": (225, 195, 110), "Brown_Hair": (105, 65, 35),
}
OTHER_HAIR = [(150, 150, 155), (170, 60, 30)]  # grey, red: no hair attribute set
SKIN_TONES = [(235, 190, 160), (200, 150, 110), (160, 110, 75), (110, 75, 50)]
PALE = (248, 240, 236)

# Label ids of the visible parts (a per-pixel "what is on top" map).
BG, HAIR, SKIN, HAT, FEATURE = 0, 1, 2, 3, 4


# ---------------------------------------------------------------- parameters and cache

def params(n_images: int = 4000, image_size: int = 64, seed: int = 0) -> dict:
    """The generator's parameters; their hash names the cache folder."""
    for name, v, low in (("n_images", n_images, 10), ("image_size", image_size, 16)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"synthetic {name}: expected an int >= {low}, got {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"synthetic seed: expected an int >= 0, got {seed!r}")
    return {"generator": "camfast.data.synthetic", "version": VERSION, "n_images": n_images,
            "image_size": image_size, "seed": seed, "attributes": list(ATTRIBUTES)}


def params_hash(p: dict) -> str:
    return hashlib.sha1(json.dumps(p, sort_keys=True).encode()).hexdigest()[:12]


def cache_root(override: Optional[str] = None) -> str:
    """``override``, else $CAMFAST_CACHE, else $XDG_CACHE_HOME/camfast, else ~/.cache/camfast."""
    if override:
        return os.path.abspath(os.path.expanduser(override))
    if os.environ.get("CAMFAST_CACHE"):
        return os.path.abspath(os.path.expanduser(os.environ["CAMFAST_CACHE"]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "camfast")


def is_synthetic(root: str) -> bool:
    return os.path.isfile(os.path.join(root, PARAMS_FILE))


def ensure(n_images: int = 4000, image_size: int = 64, seed: int = 0, cache: Optional[str] = None,
           progress: bool = True) -> str:
    """The folder of the synthetic set with these parameters, generating it on first use.

    Generation writes into a temporary folder next to the final one and renames it when
    complete, so an interrupted run never leaves a half data set under the final name.
    """
    p = params(n_images, image_size, seed)
    root = cache_root(cache)
    final = os.path.join(root, f"synthetic-{params_hash(p)}")
    if os.path.isdir(final):
        return final
    os.makedirs(root, exist_ok=True)
    _remove_stale_tmp(root)
    tmp = tempfile.mkdtemp(prefix=f".tmp-synthetic-{os.getpid()}-", dir=root)
    try:
        generate(tmp, p, progress=progress)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):  # a concurrent process finishing first is fine
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _remove_stale_tmp(root: str) -> None:
    """Delete temporary folders left by generators that were killed (their pid is gone)."""
    for name in os.listdir(root):
        if not name.startswith(".tmp-synthetic-"):
            continue
        try:
            pid = int(name.split("-")[2])
            os.kill(pid, 0)  # raises if no such process
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            pass


# ---------------------------------------------------------------- writing the tree

def generate(out: str, p: dict, progress: bool = True) -> None:
    """Write the whole set with parameters ``p`` (see :func:`params`) into folder ``out``."""
    n, size, seed = p["n_images"], p["image_size"], p["seed"]
    os.makedirs(os.path.join(out, IMAGE_DIR), exist_ok=True)
    os.makedirs(os.path.join(out, MASK_DIR), exist_ok=True)
    rows, parts = [], []
    bar = _progress(n, f"generating {n} synthetic images ({size} px) in {out}", progress)
    for i in range(n):
        image, attrs, masks = draw_face(np.random.default_rng([seed, i]), size)
        name = f"{i + 1:06d}.jpg"
        # 4:4:4 chroma keeps the small coloured objects sharp at 64 px.
        image.save(os.path.join(out, IMAGE_DIR, name), quality=95, subsampling=0)
        for a, m in masks.items():
            m.save(os.path.join(out, MASK_DIR, f"{i + 1:06d}_{a}.png"))
        rows.append(name + " " + " ".join(" 1" if attrs[a] else "-1" for a in ATTRIBUTES))
        # CelebA's split is by identity; ours by index: 80% train, 10% val, 10% test.
        parts.append(f"{name} {0 if i < 0.8 * n else 1 if i < 0.9 * n else 2}")
        bar(i + 1)
    with open(os.path.join(out, ATTR_FILE), "w") as f:
        f.write(f"{n}\n{' '.join(ATTRIBUTES)}\n" + "\n".join(rows) + "\n")
    with open(os.path.join(out, PARTITION_FILE), "w") as f:
        f.write("\n".join(parts) + "\n")
    with open(os.path.join(out, PARAMS_FILE), "w") as f:  # written last: marks a complete tree
        json.dump(p, f, indent=2)


def _progress(total: int, what: str, enabled: bool):
    if not enabled:
        return lambda i: None
    try:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="synthetic data", unit="img", leave=False, file=sys.stderr)

        def update(i):
            bar.update(i - bar.n)
            if i == total:
                bar.close()
        print(what, file=sys.stderr)
        return update
    except ImportError:
        print(what + " ...", file=sys.stderr)
        return lambda i: None


# ---------------------------------------------------------------- drawing one face

def _sample_attributes(rng: np.random.Generator) -> dict:
    hair = rng.choice(4, p=[0.3, 0.3, 0.25, 0.15])  # black, blond, brown, other
    return {
        "Black_Hair": hair == 0, "Blond_Hair": hair == 1, "Brown_Hair": hair == 2,
        "Eyeglasses": rng.random() < 0.4, "Mouth_Slightly_Open": rng.random() < 0.5,
        "Mustache": rng.random() < 0.35, "Pale_Skin": rng.random() < 0.35,
        "Wearing_Hat": rng.random() < 0.35,
    }


def _colour(rng, low=0, high=256):
    return tuple(int(v) for v in rng.integers(low, high, 3))


class _Canvas:
    """An RGB image and a label map drawn with the same shapes (the label map says which
    part is visible at each pixel), at ``SUPERSAMPLE`` times the output size."""

    def __init__(self, size: int, background: np.ndarray):
        self.s = size * SUPERSAMPLE
        self.rgb = Image.fromarray(background)
        self.lab = Image.new("L", (self.s, self.s), BG)
        self.d_rgb, self.d_lab = ImageDraw.Draw(self.rgb), ImageDraw.Draw(self.lab)

    def px(self, box):
        """Relative coordinates (fractions of the side) -> pixels."""
        return [v * self.s for v in box]

    def ellipse(self, box, fill, label, outline=None, width=0):
        box = self.px(box)
        w = max(1, round(width * self.s)) if width else 0
        if outline is not None:   # a ring: only the outline is drawn and labelled
            self.d_rgb.ellipse(box, outline=outline, width=w)
            self.d_lab.ellipse(box, outline=label, width=w)
        else:
            self.d_rgb.ellipse(box, fill=fill)
            self.d_lab.ellipse(box, fill=label)

    def polygon(self, pts, fill, label):
        pts = [(x * self.s, y * self.s) for x, y in pts]
        self.d_rgb.polygon(pts, fill=fill)
        self.d_lab.polygon(pts, fill=label)

    def line(self, pts, fill, label, width):
        pts = [(x * self.s, y * self.s) for x, y in pts]
        w = max(1, round(width * self.s))
        self.d_rgb.line(pts, fill=fill, width=w)
        self.d_lab.line(pts, fill=label, width=w)


def _region(size: int, draw) -> Image.Image:
    """A would-be region: ``draw(ImageDraw, side)`` fills it on an empty supersampled mask."""
    s = size * SUPERSAMPLE
    m = Image.new("L", (s, s), 0)
    draw(ImageDraw.Draw(m), s)
    return m


def _downsample_mask(m: Image.Image, size: int) -> Image.Image:
    """Supersampled 0/255 mask -> output size, 255 wherever any of the pixel is covered
    (an edge pixel mixes the region's colour, so editing the region changes it too)."""
    small = np.asarray(m.resize((size, size), Image.BOX))
    return Image.fromarray(np.where(small > 0, 255, 0).astype(np.uint8))


def _background(rng, s: int) -> np.ndarray:
    """A two-colour gradient in a random direction with a few random shapes and some noise."""
    c0, c1 = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    t = np.clip((np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) + 0.5, 0, 1)[..., None]
    img = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 6)):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * s
        w, h = rng.uniform(0.1, 0.5, 2) * s
        shape = d.ellipse if rng.random() < 0.5 else d.rectangle
        shape([x0, y0, x0 + w, y0 + h], fill=_colour(rng))
    a = np.asarray(img, np.float32) + rng.normal(0, 6, (s, s, 3)).astype(np.float32)
    return np.clip(a, 0, 255).astype(np.uint8)


def draw_face(rng: np.random.Generator, size: int, override: Optional[dict] = None):
    """``(RGB image, {attr: bool}, {attr: region mask})`` of one random face at ``size`` px.

    Every random number is drawn whatever the attributes, in a fixed order, so
    ``override`` (e.g. ``{"Eyeglasses": True}``) changes that attribute and nothing else
    of the face drawn from the same ``rng`` state: the pixels that change are the
    attribute's region (the tests check this against the masks).
    """
    attrs = _sample_attributes(rng)
    attrs.update(override or {})
    s2 = size * SUPERSAMPLE
    background = _background(rng, s2)
    cx, cy = 0.5 + rng.uniform(-0.05, 0.05), 0.56 + rng.uniform(-0.04, 0.04)
    k = rng.uniform(0.9, 1.08)                      # face scale
    fw, fh = 0.21 * k, 0.27 * k                     # face half-width, half-height
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    other_hair = OTHER_HAIR[rng.integers(len(OTHER_HAIR))]
    hair_jitter = rng.integers(-12, 13, 3)
    body = _colour(rng)
    hair_len = rng.uniform(0.0, 0.35)               # how far the hair falls below the eyes
    fringe = cy - fh * rng.uniform(0.45, 0.7)       # where the hair line crosses the forehead
    pupils = _colour(rng, 0, 120)
    frame = _colour(rng, 0, 90)
    hat_colour = _colour(rng)
    mustache = _colour(rng, 20, 90)

    if attrs["Pale_Skin"]:
        skin = tuple(int(0.25 * s + 0.75 * p) for s, p in zip(skin, PALE))
    hair_name = next((a for a in HAIR_COLOURS if attrs[a]), None)
    hair = HAIR_COLOURS[hair_name] if hair_name else other_hair
    hair = tuple(int(np.clip(v + j, 0, 255)) for v, j in zip(hair, hair_jitter))

    c = _Canvas(size, background)
    # body and neck, then hair behind the face, then the face
    c.ellipse([cx - 0.34, cy + fh * 0.95, cx + 0.34, cy + fh * 0.95 + 0.5], body, BG)
    c.polygon([(cx - 0.08 * k, cy + fh * 0.6), (cx + 0.08 * k, cy + fh * 0.6),
               (cx + 0.09 * k, cy + fh * 1.25), (cx - 0.09 * k, cy + fh * 1.25)], skin, SKIN)
    c.ellipse([cx - fw * 1.22, cy - fh * 1.22, cx + fw * 1.22, cy + fh * (0.2 + hair_len)], hair, HAIR)
    c.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], skin, SKIN)
    c.polygon([(cx - fw * 0.95, cy - fh * 0.5), (cx - fw * 0.6, fringe), (cx, fringe - 0.02),
               (cx + fw * 0.6, fringe), (cx + fw * 0.95, cy - fh * 0.5), (cx + fw, cy - fh * 1.1),
               (cx - fw, cy - fh * 1.1)], hair, HAIR)

    # eyes, nose (a darker skin tone: it is skin, and pales with it)
    ey, ex = cy - 0.04 * k, 0.085 * k
    for sx in (-1, 1):
        x = cx + sx * ex
        c.ellipse([x - 0.035 * k, ey - 0.02 * k, x + 0.035 * k, ey + 0.02 * k], (245, 245, 245), FEATURE)
        c.ellipse([x - 0.015 * k, ey - 0.015 * k, x + 0.015 * k, ey + 0.015 * k], pupils, FEATURE)
    nose = tuple(int(v * 0.8) for v in skin)
    c.polygon([(cx, ey + 0.01), (cx - 0.025 * k, cy + 0.07 * k), (cx + 0.025 * k, cy + 0.07 * k)], nose, SKIN)

    # mouth: open (dark, with teeth) or closed (a line)
    my, mw = cy + 0.165 * k, 0.065 * k
    if attrs["Mouth_Slightly_Open"]:
        c.ellipse([cx - mw, my - 0.03 * k, cx + mw, my + 0.035 * k], (70, 15, 20), FEATURE)
        c.polygon([(cx - mw * 0.6, my - 0.022 * k), (cx + mw * 0.6, my - 0.022 * k),
                   (cx + mw * 0.5, my - 0.005 * k), (cx - mw * 0.5, my - 0.005 * k)], (240, 240, 235), FEATURE)
    else:
        c.line([(cx - mw, my), (cx, my + 0.008 * k), (cx + mw, my)], (150, 50, 55), FEATURE, 0.012 * k)

    # mustache between nose and mouth
    sy = cy + 0.11 * k
    must_pts = [(cx - 0.075 * k, sy + 0.02 * k), (cx - 0.04 * k, sy - 0.012 * k), (cx, sy - 0.004 * k),
                (cx + 0.04 * k, sy - 0.012 * k), (cx + 0.075 * k, sy + 0.02 * k), (cx, sy + 0.012 * k)]
    if attrs["Mustache"]:
        c.polygon(must_pts, mustache, FEATURE)

    # eyeglasses: two rings, a bridge and the arms
    r = 0.058 * k
    if attrs["Eyeglasses"]:
        for sx in (-1, 1):
            x = cx + sx * ex
            c.ellipse([x - r, ey - r * 0.8, x + r, ey + r * 0.8], None, FEATURE, outline=frame, width=0.014)
        c.line([(cx - ex + r, ey), (cx + ex - r, ey)], frame, FEATURE, 0.012)
        c.line([(cx - ex - r, ey), (cx - fw, ey - 0.01)], frame, FEATURE, 0.012)
        c.line([(cx + ex + r, ey), (cx + fw, ey - 0.01)], frame, FEATURE, 0.012)

    # hat: a crown and a brim over the top of the head
    hat_crown = [(cx - fw * 0.95, cy - fh * 0.7), (cx + fw * 0.95, cy - fh * 0.7),
                 (cx + fw * 0.85, cy - fh * 1.45), (cx - fw * 0.85, cy - fh * 1.45)]
    hat_brim = [cx - fw * 1.45, cy - fh * 0.82, cx + fw * 1.45, cy - fh * 0.6]
    if attrs["Wearing_Hat"]:
        c.polygon(hat_crown, hat_colour, HAT)
        c.ellipse(hat_brim, tuple(int(v * 0.8) for v in hat_colour), HAT)

    image = c.rgb.resize((size, size), Image.BOX)  # area average: no ringing outside a region
    lab = np.asarray(c.lab)
    s = c.s

    def poly(pts):
        return lambda d, s: d.polygon([(x * s, y * s) for x, y in pts], fill=255)

    def hat_region(d, s):
        d.polygon([(x * s, y * s) for x, y in hat_crown], fill=255)
        d.ellipse([v * s for v in hat_brim], fill=255)

    def glasses_region(d, s):
        for sx in (-1, 1):
            x = cx + sx * ex
            d.ellipse([(x - r - 0.01) * s, (ey - r * 0.8 - 0.01) * s, (x + r + 0.01) * s, (ey + r * 0.8 + 0.01) * s], fill=255)
        w = max(1, round(0.03 * s))  # the frame's lines, widened
        d.line([((cx - ex + r) * s, ey * s), ((cx + ex - r) * s, ey * s)], fill=255, width=w)
        for sx in (-1, 1):
            d.line([((cx + sx * (ex + r)) * s, ey * s), ((cx + sx * fw) * s, (ey - 0.01) * s)], fill=255, width=w)

    def mouth_region(d, s):
        d.ellipse([(cx - mw - 0.01) * s, (my - 0.035 * k) * s, (cx + mw + 0.01) * s, (my + 0.04 * k) * s], fill=255)

    visible = lambda label: Image.fromarray(np.where(lab == label, 255, 0).astype(np.uint8))  # noqa: E731
    hair_mask = visible(HAIR)
    regions = {
        "Black_Hair": hair_mask, "Blond_Hair": hair_mask, "Brown_Hair": hair_mask,
        "Eyeglasses": _region(size, glasses_region),
        "Mouth_Slightly_Open": _region(size, mouth_region),
        "Mustache": _region(size, poly(must_pts)),
        "Pale_Skin": visible(SKIN),
        "Wearing_Hat": _region(size, hat_region),
    }
    masks = {a: _downsample_mask(m, size) for a, m in regions.items()}
    return image, {a: bool(v) for a, v in attrs.items()}, masks


def read_mask(root: str, image_name: str, attr: str) -> np.ndarray:
    """The ground-truth region of ``attr`` in image ``image_name`` (bool ``[H, W]``)."""
    stem = os.path.splitext(image_name)[0]
    path = os.path.join(root, MASK_DIR, f"{stem}_{attr}.png")
    with Image.open(path) as m:
        return np.asarray(m.convert("L")) >= 128
