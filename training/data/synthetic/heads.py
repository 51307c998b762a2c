"""Procedural 3D heads as signed-distance parts, sphere-traced from SAGE cameras.

Each part carries one CelebAMask-HQ label, so the label map of a rendered view is exact. World
frame as in sage_backend.cameras: Y up, the head at the origin facing +Z. The person's left is
+X (CelebA's l_eye appears on the image's right in a frontal view).

Framing follows CelebA-HQ under SAGE's camera (radius 1, fov 12 deg: the image spans about
+-0.105 at the origin): brow to chin is about half the image height. Flesh parts (skin, nose,
lips, ears, neck) are joined by a smooth union so the face reads as one surface; eye openings
and ear bowls are carved out of the skin; eyeballs sit in the openings. Beards and moustaches
are labelled `hair` (CelebAMask-HQ has no beard class).

Heads v3: the face parts sit on the face as a real face's do, so none shows from behind the head
(past training.metrics.BACK_YAW): the eye row is a flatter plate than the skull, eyeballs sit in
skin sockets, brows and lips bend along the face in short segments, and a temple ridge and the
cheeks beside the mouth hide their outer ends. `python benchmarks/class_shares.py` measures it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from sage_backend.cameras import camera_rays
from sage_backend.config import FieldConfig
from sage_backend.labels import LABEL_IDS

# Everything is cut to the generator's box (the cube its field maps to [-1, 1]^3) so it can represent every pixel.
BOX_HALF = FieldConfig().box_warp / 2
L = LABEL_IDS
FLESH = (L["skin"], L["nose"], L["u_lip"], L["l_lip"], L["l_ear"], L["r_ear"], L["neck"])  # smoothly joined
BLEND = 0.0025  # smooth-union radius of the flesh parts (world units)
FAR = 1.0  # a distance beyond the box
BROW_RIDGE = 0.8  # the brow ridge's half-width, in skull half-widths
MARGIN = 0.008  # small parts are evaluated within this of their bounding box: there the smooth union has faded


@dataclass(frozen=True)
class Ellipsoid:
    label: int
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    clip_y_above: float | None = None  # keep only the part above this height (hair caps, hats) ...
    clip_tilt: float = 0.0  # ... which rises by clip_tilt per unit of +z (a hairline higher over the forehead)
    clip_z_below: float | None = None  # keep only the part behind this depth (hair that leaves the face free)
    clip_y_below: float | None = None  # keep only the part below this height (beards, a bald head's fringe)


@dataclass(frozen=True)
class Capsule:
    """A round bar from a to b (spectacle bridges and temples)."""
    label: int
    a: tuple[float, float, float]
    b: tuple[float, float, float]
    radius: float


@dataclass(frozen=True)
class Torus:
    """A ring of tube radius `radius` around an ellipse of half-axes `ring` in the local x-y plane;
    `axes` holds the local x, y, z (ring normal) axes as world unit vectors (rims, hoops, necklaces)."""
    label: int
    center: tuple[float, float, float]
    axes: tuple[tuple[float, float, float], ...]
    ring: tuple[float, float]
    radius: float


@dataclass(frozen=True)
class Carve:
    """A lens-shaped prism cut out of every part with label `target`: the intersection of two discs
    (centres in the two axes other than `axis`, radii) extruded along `axis` on the side where
    sign * p[axis] > offset (eye openings in the skin, the bowl of an ear)."""
    target: int
    axis: int
    sign: float
    offset: float
    discs: tuple[tuple[float, float, float], tuple[float, float, float]]  # (u, v, radius) x 2


@dataclass(frozen=True)
class Eye:
    """An eyeball for iris/pupil colouring: label, centre, radius, gaze (unit vector)."""
    label: int
    center: tuple[float, float, float]
    radius: float
    gaze: tuple[float, float, float]


@dataclass(frozen=True)
class HeadParams:
    parts: tuple[Ellipsoid, ...]
    colors: dict[int, tuple[float, float, float]]  # label -> RGB in [0, 1]
    light: tuple[float, float, float]
    iris: tuple[float, float, float]
    background: tuple[tuple[float, float, float], tuple[float, float, float]]  # top and bottom colours
    capsules: tuple[Capsule, ...] = ()
    tori: tuple[Torus, ...] = ()
    carves: tuple[Carve, ...] = ()
    eyes: tuple[Eye, ...] = ()
    traits: dict[str, str] = field(default_factory=dict)  # hairstyle, accessories: for statistics and tests


SKIN_TONES = ((0.98, 0.84, 0.74), (0.94, 0.76, 0.63), (0.85, 0.65, 0.50), (0.72, 0.52, 0.38), (0.58, 0.40, 0.28),
              (0.44, 0.30, 0.21), (0.32, 0.21, 0.15))
IRIS_TONES = ((0.30, 0.18, 0.08), (0.15, 0.10, 0.06), (0.25, 0.40, 0.55), (0.30, 0.45, 0.25), (0.45, 0.35, 0.20))
HAIR_TONES = ((0.08, 0.06, 0.05), (0.18, 0.11, 0.06), (0.30, 0.18, 0.09), (0.55, 0.38, 0.20), (0.80, 0.65, 0.40),
              (0.45, 0.12, 0.06))
HAIRSTYLES = ("short", "volume", "long", "bangs", "parted", "bun", "bald")
HAIRSTYLE_WEIGHTS = (0.2, 0.1, 0.25, 0.15, 0.14, 0.08, 0.08)
# Chances per head; visible in fewer views (hair hides ears, the chin hides a necklace, ...).
RATES = {"eye_g": 0.15, "ear_r": 0.25, "neck_l": 0.15, "hat": 0.1, "beard": 0.12, "moustache": 0.15}


Uniform = Callable[[float, float], float]


@dataclass
class _Face:
    """The face surface that features are placed on (world units): the skin ellipsoids, the eyes' row."""
    skull: Ellipsoid
    jaw: Ellipsoid
    chin: Ellipsoid
    surfaces: list[Ellipsoid]
    eye_x: float
    eye_y: float

    def front(self, x: float, y: float) -> float:
        return max(_front_z(e, x, y) for e in self.surfaces)

    def on_face(self, x: float, y: float, protrusion: float, depth: float) -> float:
        """Centre z of a feature of half-depth `depth` that sticks out `protrusion` from the face at (x, y)."""
        return self.front(x, y) + protrusion - depth


@dataclass
class _Mouth:
    y: float
    lip_w: float
    up_h: float
    low_h: float


@dataclass
class _Build:
    """What random_head's steps add to: the parts and the extra shapes, with the traits drawn."""
    parts: list[Ellipsoid]
    carves: list[Carve] = field(default_factory=list)
    eyes: list[Eye] = field(default_factory=list)
    capsules: list[Capsule] = field(default_factory=list)
    tori: list[Torus] = field(default_factory=list)
    traits: dict[str, str] = field(default_factory=dict)


def random_head(rng: np.random.Generator) -> HeadParams:
    """A head with randomised face shape, features, age, colours, hair, facial hair, accessories and lighting.

    The draws from `rng` come in a fixed order (a data set is reproducible from its seed), so the steps
    below must keep their order."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    age = u(0.0, 1.0)
    face = _face(u)
    build = _Build(face.surfaces + [
        Ellipsoid(L["neck"], (0.0, -0.095, -0.012), (u(0.030, 0.036), 0.06, 0.036)),
        Ellipsoid(L["cloth"], (0.0, -0.152, -0.015), (0.16, 0.058, 0.075)),
    ])
    half_w, brow_y = _eyes_brows_ears(u, face, age, build)
    _nose(u, face, age, build)
    mouth = _lips(u, face, age, build)
    hairstyle = HAIRSTYLES[rng.choice(len(HAIRSTYLES), p=HAIRSTYLE_WEIGHTS)]
    if age > 0.75 and rng.random() < 0.4:
        hairstyle = "bald"
    build.parts += _hair(rng, hairstyle, face.skull, brow_y)
    build.traits["hairstyle"] = hairstyle
    _facial_hair(rng, face, mouth, build)
    _accessories(rng, u, face, half_w, brow_y, build)
    colors = _colors(rng, u, age)
    iris = IRIS_TONES[rng.integers(len(IRIS_TONES))]
    light = rng.normal([0.4, 0.6, 1.0], 0.35)
    background = (tuple(rng.uniform(0.2, 1.0, 3)), tuple(rng.uniform(0.1, 0.9, 3)))
    return HeadParams(tuple(build.parts), colors, tuple(float(x) for x in light / np.linalg.norm(light)), iris, background,
                      tuple(build.capsules), tuple(build.tori), tuple(build.carves), tuple(build.eyes), build.traits)


def _face(u: Uniform) -> _Face:
    """Skull, jaw, chin, cheeks and the brow ridge; where the eyes sit."""
    hw, hh, hd = u(0.054, 0.064), u(0.080, 0.088), u(0.074, 0.082)
    skull = Ellipsoid(L["skin"], (0.0, 0.012, -0.008), (hw, hh, hd))
    jaw_w = u(0.72, 0.92)
    jaw = Ellipsoid(L["skin"], (0.0, -0.036, 0.006), (hw * jaw_w, 0.046, 0.060))
    chin_y = u(-0.070, -0.064)
    chin = Ellipsoid(L["skin"], (0.0, chin_y, 0.036), (u(0.013, 0.02), 0.013, 0.018))
    cheek_x, cheek_y = u(0.026, 0.032), u(-0.014, -0.006)
    eye_x, eye_y = u(0.026, 0.031), u(0.002, 0.010)
    surfaces = [skull, jaw, chin] + [Ellipsoid(L["skin"], (s * cheek_x, cheek_y, 0.034), (0.024, 0.024, 0.028)) for s in (1, -1)]
    face = _Face(skull, jaw, chin, surfaces, eye_x, eye_y)
    brow_ridge = Ellipsoid(L["skin"], (0.0, eye_y + 0.014, face.on_face(0.0, eye_y + 0.014, 0.002, 0.016)), (hw * BROW_RIDGE, 0.011, 0.016))
    # The eye row is flatter than the skull: on a round skull the outer eye corners face sideways and
    # show from behind the head. On this plate they face within ~35 degrees of forward, so past ~125
    # degrees of yaw they turn away from the camera, as a real face's do.
    eye_plate = Ellipsoid(L["skin"], (0.0, eye_y - 0.004, face.on_face(0.0, eye_y - 0.004, 0.0, 0.02)), (hw * 0.86, 0.02, 0.02))
    surfaces += [brow_ridge, eye_plate]  # brows and eyes sit on them
    return face


def _eyes_brows_ears(u: Uniform, face: _Face, age: float, build: _Build) -> tuple[float, float]:
    """Eyes (an eyeball behind an almond opening cut in the skin; the rim of the cut reads as lids), brows
    and ears, left and right. Returns the eye opening's half width and the brows' height."""
    eye_x, eye_y = face.eye_x, face.eye_y
    half_w, half_h = u(0.0115, 0.0140), u(0.0048, 0.0062) * (1.0 - 0.2 * age)
    tilt, radius = u(-0.05, 0.12), u(0.0110, 0.0125)
    gaze = np.array([u(-0.12, 0.12), u(-0.06, 0.06), 1.0])
    gaze = tuple(float(g) for g in gaze / np.linalg.norm(gaze))
    brow_lift, brow_arch, brow_thick = u(0.015, 0.020) * (1.0 - 0.15 * age), u(0.001, 0.005), u(0.0026, 0.0045)
    for side, (eye, brow, ear) in ((1, ("l_eye", "l_brow", "l_ear")), (-1, ("r_eye", "r_brow", "r_ear"))):
        x = side * eye_x
        zc = face.front(x, eye_y) - 0.85 * radius
        rx = min(half_w + 0.0015, radius * 1.1)
        build.parts.append(Ellipsoid(L[eye], (x, eye_y, zc), (rx, radius, radius)))
        # the socket: skin round the eyeball, opened only by the almond carve, so the eyeball's outer
        # side is never bare where the face turns back towards the ear (it showed from behind)
        build.parts.append(Ellipsoid(L["skin"], (x + side * 0.004, eye_y, zc - 0.003), (rx, radius + 0.002, radius)))
        build.eyes.append(Eye(L[eye], (x, eye_y, zc), radius, gaze))
        build.carves.append(Carve(L["skin"], 2, 1.0, zc, _almond(x, eye_y, half_w, half_h, side * tilt)))
        # brow: a tapering arch of short segments, each set on the face where it lies, the outer end kept
        # inside the brow ridge (a brow tip past the ridge sticks out sideways and shows from behind)
        outer = min(eye_x + 1.2 * half_w, 0.72 * BROW_RIDGE * face.skull.radii[0])
        for t in np.linspace(0.0, 1.0, 6):
            bx = side * (eye_x - 0.9 * half_w + t * (outer - eye_x + 0.9 * half_w))
            by = eye_y + brow_lift + brow_arch * math.sin(math.pi * min(t / 0.7, 1.0) * 0.5 + (t > 0.7) * (t - 0.7) * 2) - 0.002 * t**2
            thick = brow_thick * (1.3 - 0.6 * t)
            build.parts.append(Ellipsoid(L[brow], (bx, by, face.on_face(bx, by, 0.0008, 0.004)), (0.005, thick, 0.004)))
        # the temple ridge past the brow's outer end hides the brow from behind the head
        tx = side * (outer + 0.005)
        build.parts.append(Ellipsoid(L["skin"], (tx, by, face.on_face(tx, by, 0.0, 0.01) - 0.001), (0.009, 0.012, 0.01)))
        ear_y, ear_h = eye_y - u(0.012, 0.017), u(0.019, 0.024)
        ear_x = side * (_half_width(face.skull, ear_y, -0.004) + 0.002)
        build.parts.append(Ellipsoid(L[ear], (ear_x, ear_y, -0.006), (0.0065, ear_h, 0.012)))
        build.carves.append(Carve(L[ear], 0, side, side * ear_x - 0.001, _almond(ear_y + 0.002, -0.004, 0.0085, ear_h * 0.7, 0.0, axis_swap=True)))
    return half_w, eye_y + brow_lift


def _nose(u: Uniform, face: _Face, age: float, build: _Build) -> None:
    """Root, bridge, tip and the two wings, smoothly joined."""
    eye_y = face.eye_y
    tip_y, size = u(-0.026, -0.018), u(0.85, 1.2) * (1.0 + 0.12 * age)
    tip_out, nose_w = u(0.012, 0.017) * size, u(0.0055, 0.0075) * size
    for k, (y, out, wx) in enumerate(((eye_y - 0.002, 0.002, 0.0045), ((eye_y + tip_y) / 2, tip_out * 0.55, 0.0045), (tip_y + 0.003, tip_out, nose_w * 0.8))):
        build.parts.append(Ellipsoid(L["nose"], (0.0, y, face.on_face(0.0, y, out, 0.010)), (wx, 0.012 if k < 2 else 0.0075, 0.010)))
    for s in (1, -1):
        build.parts.append(Ellipsoid(L["nose"], (s * nose_w, tip_y + 0.001, face.on_face(s * nose_w, tip_y, 0.005 * size, 0.007)), (0.0045, 0.0045, 0.007)))


def _lips(u: Uniform, face: _Face, age: float, build: _Build) -> _Mouth:
    """Lips with a parting line between them."""
    mouth_y, lip_w = u(-0.047, -0.041), u(0.018, 0.024)
    up_h, low_h = u(0.0028, 0.0045) * (1 - 0.3 * age), u(0.0038, 0.0058) * (1 - 0.3 * age)
    for label, y, w, h, out, depth in (("u_lip", mouth_y + 0.8 * up_h, lip_w, up_h + 0.0004, 0.0035, 0.008),
                                       ("l_lip", mouth_y - 0.8 * low_h, lip_w * 0.88, low_h + 0.0004, 0.0035, 0.008),
                                       ("mouth", mouth_y, lip_w * 0.9, 0.0007, 0.0022, 0.006)):
        build.parts += _along_face(face, L[label], w, y, h, out, depth)
    for side in (1, -1):  # the cheeks beside the mouth: from behind the head they hide the lips
        x = side * (lip_w + 0.008)
        build.parts.append(Ellipsoid(L["skin"], (x, mouth_y, face.on_face(x, mouth_y, 0.0, 0.02) + 0.006), (0.017, 0.018, 0.02)))
    return _Mouth(mouth_y, lip_w, up_h, low_h)


def _along_face(face: _Face, label: int, half_w: float, y: float, half_h: float, protrusion: float, depth: float,
                segments: int = 5) -> list[Ellipsoid]:
    """A lens-shaped feature (lips, the mouth line) of half-width half_w across x = 0, bent along the
    face: short segments, each set on the face where it lies and tapering to the corners. One straight
    ellipsoid would stick its ends out of the curved face, and those sideways-facing ends show from
    behind the head."""
    seg_w = half_w / (segments - 1) * 1.25
    parts = []
    for t in np.linspace(-1.0, 1.0, segments):
        x, taper = t * (half_w - seg_w * 0.6), (1.0 - 0.75 * t * t) ** 0.5
        parts.append(Ellipsoid(label, (x, y, face.on_face(x, y, protrusion, depth)), (seg_w, half_h * taper, depth)))
    return parts


def _facial_hair(rng: np.random.Generator, face: _Face, mouth: _Mouth, build: _Build) -> None:
    """Beard and moustache (labelled hair), on about half the heads' share of RATES each."""
    male = rng.random() < 0.5
    jaw, chin = face.jaw, face.chin
    if male and rng.random() < RATES["beard"] * 2:
        build.traits["beard"] = "1"
        build.parts.append(Ellipsoid(L["hair"], (0.0, jaw.center[1] - 0.003, jaw.center[2] + 0.004),
                                     (jaw.radii[0] * 1.06, jaw.radii[1] * 1.08, jaw.radii[2] * 1.08), clip_y_below=mouth.y - mouth.low_h * 1.6))
        build.parts.append(Ellipsoid(L["hair"], chin.center, tuple(r * 1.15 for r in chin.radii), clip_y_below=mouth.y - mouth.low_h * 1.6))
    if male and rng.random() < RATES["moustache"] * 2:
        build.traits["moustache"] = "1"
        my = mouth.y + 2 * mouth.up_h + 0.003
        build.parts.append(Ellipsoid(L["hair"], (0.0, my, face.on_face(0.0, my, 0.003, 0.006)), (mouth.lip_w * 0.95, 0.0032, 0.006)))


def _accessories(rng: np.random.Generator, u: Uniform, face: _Face, half_w: float, brow_y: float, build: _Build) -> None:
    """Glasses, earrings (studs or hoops), a necklace and a hat, each at its RATES chance."""
    eye_x, eye_y, skull = face.eye_x, face.eye_y, face.skull
    if rng.random() < RATES["eye_g"]:
        build.traits["eye_g"] = "1"
        rim_w, rim_h, tube = half_w + u(0.003, 0.006), u(0.009, 0.013), u(0.0011, 0.0018)
        zg = face.front(eye_x, eye_y) + u(0.008, 0.011)
        for s in (1, -1):
            build.tori.append(Torus(L["eye_g"], (s * eye_x, eye_y - 0.001, zg), ((1, 0, 0), (0, 1, 0), (0, 0, 1)), (rim_w, rim_h), tube))
            build.capsules.append(Capsule(L["eye_g"], (s * (eye_x + rim_w), eye_y + 0.002, zg),
                                          (s * (_half_width(skull, eye_y, -0.01) + 0.003), eye_y, -0.012), tube))
        build.capsules.append(Capsule(L["eye_g"], (eye_x - rim_w, eye_y + 0.003, zg), (-(eye_x - rim_w), eye_y + 0.003, zg), tube))
    if rng.random() < RATES["ear_r"]:
        build.traits["ear_r"] = "1"
        for p in [p for p in build.parts if p.label in (L["l_ear"], L["r_ear"])]:
            s, lobe = math.copysign(1.0, p.center[0]), p.center[1] - p.radii[1] + 0.003
            if rng.random() < 0.5:  # stud
                build.parts.append(Ellipsoid(L["ear_r"], (p.center[0] + s * 0.004, lobe, p.center[2] + 0.002), (0.0026,) * 3))
            else:  # hoop in the ear's plane
                build.tori.append(Torus(L["ear_r"], (p.center[0] + s * 0.002, lobe - 0.006, p.center[2] + 0.002),
                                        ((0, 1, 0), (0, 0, 1), (1, 0, 0)), (0.0065, 0.0065), 0.0012))
    if rng.random() < RATES["neck_l"]:
        build.traits["neck_l"] = "1"
        drop = u(0.25, 0.45)  # the front of the chain hangs lower than the back
        build.tori.append(Torus(L["neck_l"], (0.0, -0.090, -0.012), ((1, 0, 0), (0, -math.sin(drop), math.cos(drop)), (0, math.cos(drop), math.sin(drop))),
                                (0.040, 0.044), u(0.0012, 0.0022)))
    if rng.random() < RATES["hat"]:
        build.traits["hat"] = "1"
        hw, hh, hd = skull.radii
        y_hat = brow_y + u(0.02, 0.03)
        build.parts.append(Ellipsoid(L["hat"], (0.0, skull.center[1] + 0.006, skull.center[2]), (hw * 1.2, hh * 1.08, hd * 1.16),
                                     clip_y_above=y_hat - 0.25 * 0.07, clip_tilt=0.25))
        if rng.random() < 0.5:  # brim
            build.parts.append(Ellipsoid(L["hat"], (0.0, y_hat - 0.02 * 0.25 + 0.002, skull.center[2] + 0.004), (min(hw * 1.55, 0.1), 0.0025, min(hd * 1.38, 0.105))))


def _colors(rng: np.random.Generator, u: Uniform, age: float) -> dict[int, tuple[float, float, float]]:
    """Label -> RGB in [0, 1]: skin between two neighbouring tones, hair (greying with age), lips from the skin."""
    tone = rng.uniform(0, len(SKIN_TONES) - 1)  # continuous: between two neighbouring tones
    lo = int(tone)
    skin = np.array(SKIN_TONES[lo]) * (1 - (tone - lo)) + np.array(SKIN_TONES[min(lo + 1, len(SKIN_TONES) - 1)]) * (tone - lo)
    hair = np.array(HAIR_TONES[rng.integers(len(HAIR_TONES))])
    if rng.random() < age**2 * 0.8:  # greying with age
        hair = hair * 0.3 + np.array([0.72, 0.72, 0.70]) * 0.7
    lips = skin * np.array([u(0.75, 0.9), u(0.45, 0.6), u(0.48, 0.62)])
    colors = {label: tuple(skin) for label in (L["skin"], L["nose"], L["l_ear"], L["r_ear"], L["neck"])}
    metal = np.array((0.85, 0.7, 0.3)) if rng.random() < 0.5 else np.array((0.8, 0.8, 0.82))
    colors.update({
        L["hair"]: tuple(hair), L["l_brow"]: tuple(hair * 0.7), L["r_brow"]: tuple(hair * 0.7),
        L["l_eye"]: (0.93, 0.92, 0.90), L["r_eye"]: (0.93, 0.92, 0.90),
        L["u_lip"]: tuple(lips), L["l_lip"]: tuple(lips * 1.05), L["mouth"]: (0.22, 0.07, 0.07),
        L["eye_g"]: tuple(rng.uniform(0.02, 0.5, 3)) if rng.random() < 0.7 else tuple(metal), L["hat"]: tuple(rng.uniform(0.1, 0.9, 3)),
        L["ear_r"]: tuple(metal), L["neck_l"]: tuple(metal), L["cloth"]: tuple(rng.uniform(0.05, 0.95, 3)),
    })
    return {k: tuple(float(c) for c in np.clip(v, 0, 1)) for k, v in colors.items()}


def _hair(rng: np.random.Generator, style: str, skull: Ellipsoid, brow_y: float) -> list[Ellipsoid]:
    """Hair volumes for `style`; every style covers the back of the head down to the nape."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    (cx, cy, cz), (hw, hh, hd) = skull.center, skull.radii
    hair = L["hair"]
    bulk = u(1.06, 1.1) if style != "volume" else u(1.16, 1.24)
    front_line = brow_y + (u(0.004, 0.009) if style == "bangs" else u(0.022, 0.034))  # hairline height over the forehead
    back_line = -0.045  # nape
    tilt = (front_line - back_line) / 0.16
    cap = Ellipsoid(hair, (cx, cy + 0.004, cz - 0.002), (hw * bulk, min(hh * bulk, 0.104 - cy), min(hd * bulk, 0.11)),
                    clip_y_above=front_line - tilt * 0.075, clip_tilt=tilt)
    nape = Ellipsoid(hair, (0.0, -0.022, -0.036), (hw * 0.98, 0.048, 0.05), clip_z_below=-0.024)
    if style == "bald":  # a fringe round the back, skin on top
        return [Ellipsoid(hair, cap.center, (hw * 1.04, hh * 1.04, hd * 1.04), clip_z_below=-0.01, clip_y_below=cy + 0.005), nape]
    parts = [cap, nape]
    if style == "long":
        parts.append(Ellipsoid(hair, (0.0, -0.04, -0.02), (hw * u(1.25, 1.45), u(0.085, 0.1), hd * 0.92), clip_z_below=u(0.0, 0.018)))
    elif style == "parted":  # a swept side: more volume on one side of the parting
        s = 1 if rng.random() < 0.5 else -1
        parts.append(Ellipsoid(hair, (s * 0.018, cy + 0.03, cz + 0.01), (hw * 0.85, hh * 0.72, hd * 1.02),
                               clip_y_above=front_line + 0.006 - tilt * 0.075, clip_tilt=tilt))
        if rng.random() < 0.5:
            parts.append(Ellipsoid(hair, (0.0, -0.03, -0.025), (hw * 1.2, 0.07, hd * 0.85), clip_z_below=0.0))
    elif style == "bun":
        parts.append(Ellipsoid(hair, (0.0, u(0.07, 0.085), u(-0.06, -0.035)), (0.022, 0.02, 0.022)))
    return parts


def _almond(cx: float, cy: float, half_w: float, half_h: float, tilt: float, axis_swap: bool = False
            ) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Two discs whose intersection is an almond of half-width half_w and half-heights half_h (top)
    and 0.8 half_h (bottom) around (cx, cy), rotated by `tilt` (rad); axis_swap makes it tall instead."""
    discs = []
    for h, up in ((half_h, 1.0), (0.8 * half_h, -1.0)):
        r = (half_w**2 + h**2) / (2 * h)
        ox, oy = 0.0, -up * (r - h)  # the disc whose rim passes through both corners and the top (bottom) point
        if axis_swap:
            ox, oy = oy, ox
        c, s = math.cos(tilt), math.sin(tilt)
        discs.append((cx + c * ox - s * oy, cy + s * ox + c * oy, r))
    return discs[0], discs[1]


def _front_z(e: Ellipsoid, x: float, y: float) -> float:
    """The +Z surface of an ellipsoid at (x, y), or -inf where (x, y) is outside it."""
    q = 1.0 - ((x - e.center[0]) / e.radii[0]) ** 2 - ((y - e.center[1]) / e.radii[1]) ** 2
    return e.center[2] + e.radii[2] * q**0.5 if q > 0 else float("-inf")


def _half_width(e: Ellipsoid, y: float, z: float) -> float:
    """The +X surface of an ellipsoid at (y, z)."""
    q = 1.0 - ((y - e.center[1]) / e.radii[1]) ** 2 - ((z - e.center[2]) / e.radii[2]) ** 2
    return e.center[0] + e.radii[0] * max(q, 0.0) ** 0.5


class _PartSet:
    """Vectorised per-part distances of some parts of a head."""

    def __init__(self, ps: list[Ellipsoid], capsules: list[Capsule], tori: list[Torus], carves: list[Carve]) -> None:
        self.centers = torch.tensor([p.center for p in ps], dtype=torch.float32).reshape(-1, 3)
        self.radii = torch.tensor([p.radii for p in ps], dtype=torch.float32).reshape(-1, 3)
        inf = float("inf")
        self.clip_y = torch.tensor([p.clip_y_above if p.clip_y_above is not None else -inf for p in ps])
        tilt = torch.tensor([p.clip_tilt for p in ps])
        self.tilt, self.tilt_norm = tilt, (1.0 + tilt**2).sqrt()
        self.clip_z = torch.tensor([p.clip_z_below if p.clip_z_below is not None else inf for p in ps])
        self.clip_y_below = torch.tensor([p.clip_y_below if p.clip_y_below is not None else inf for p in ps])
        self.caps = [(torch.tensor(c.a, dtype=torch.float32), torch.tensor(c.b, dtype=torch.float32), c.radius) for c in capsules]
        self.tori = [(torch.tensor(t.center, dtype=torch.float32), torch.tensor(t.axes, dtype=torch.float32).T, t.ring, t.radius) for t in tori]
        part_labels = [p.label for p in ps]
        self.carve_list = [c for c in carves if c.target in part_labels]
        self.carve_masks = {c.target: torch.tensor([lab == c.target for lab in part_labels]) for c in self.carve_list}
        self.inv_radii = 1.0 / self.radii
        self.labels = torch.tensor(part_labels + [c.label for c in capsules] + [t.label for t in tori])

    def parts(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) -> (N, P) per-part signed distances (ellipsoid bound of Inigo Quilez, clipped by half-spaces,
        carved; then capsules and tori)."""
        # Per-axis (N, P) arithmetic: much faster on CPU than reducing a trailing axis of 3.
        x, y, z = (points[:, a : a + 1] for a in range(3))
        qx, qy, qz = ((c - self.centers[:, a]) * self.inv_radii[:, a] for a, c in enumerate((x, y, z)))
        k0 = (qx * qx + qy * qy + qz * qz).sqrt()
        ux, uy, uz = qx * self.inv_radii[:, 0], qy * self.inv_radii[:, 1], qz * self.inv_radii[:, 2]
        d = k0 * (k0 - 1.0) / (ux * ux + uy * uy + uz * uz).sqrt().clamp_min(1e-9)
        d = torch.maximum(d, (self.clip_y + self.tilt * z - y) / self.tilt_norm)  # keep y >= clip
        d = torch.maximum(d, z - self.clip_z)  # keep z <= clip_z
        d = torch.maximum(d, y - self.clip_y_below)  # keep y <= clip_y_below
        cuts: dict[int, torch.Tensor] = {}
        for c in self.carve_list:  # carving several shapes out of the same parts: subtract their union
            uv = [points[:, a] for a in range(3) if a != c.axis]
            cut = torch.maximum(*(((uv[0] - du) ** 2 + (uv[1] - dv) ** 2).sqrt() - r for du, dv, r in c.discs))
            cut = torch.maximum(cut, c.offset - c.sign * points[:, c.axis])
            cuts[c.target] = torch.minimum(cuts[c.target], cut) if c.target in cuts else cut
        for target, cut in cuts.items():
            mask = self.carve_masks[target]
            d = torch.where(mask, torch.maximum(d, -cut[:, None]), d)
        extra = []
        for a, b, r in self.caps:
            ab = b - a
            h = ((points - a) @ ab / ab.dot(ab)).clamp(0.0, 1.0)
            extra.append((points - a - h[:, None] * ab).norm(dim=-1) - r)
        for c, axes, (rx, ry), r in self.tori:
            local = (points - c) @ axes
            ring = ((local[:, 0] / rx) ** 2 + (local[:, 1] / ry) ** 2).sqrt() - 1.0
            extra.append((ring.square() * min(rx, ry) ** 2 + local[:, 2].square()).sqrt() - r)
        if extra:
            d = torch.cat([d, torch.stack(extra, -1)], -1)
        return torch.maximum(d, (points.abs().amax(-1, keepdim=True) - BOX_HALF))

    def bounds(self, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
        """An axis-aligned box (lo (3,), hi (3,)) holding every part, grown by `margin`."""
        lo = [self.centers - self.radii] + [torch.minimum(a, b)[None] - r for a, b, r in self.caps]
        hi = [self.centers + self.radii] + [torch.maximum(a, b)[None] + r for a, b, r in self.caps]
        for c, _, (rx, ry), r in self.tori:
            lo.append(c[None] - max(rx, ry) - r)
            hi.append(c[None] + max(rx, ry) + r)
        return torch.cat(lo).amin(0) - margin, torch.cat(hi).amax(0) + margin


class HeadSDF:
    """Vectorised SDF of all parts: distance to the union and the label of the nearest part.

    Small parts (features, accessories) are grouped by place; a group is evaluated only for points
    near its bounding box, elsewhere the distance to the box stands in (a lower bound, so sphere
    tracing stays safe): most points of a trace are far from the eyes and ears.
    """

    def __init__(self, params: HeadParams) -> None:
        groups: dict[str, tuple[list, list, list]] = {k: ([], [], []) for k in ("big", "face", "left", "right", "low")}

        def place(center: tuple[float, float, float]) -> str:
            x, y, _ = center
            return "low" if y < -0.075 else "left" if x > 0.035 else "right" if x < -0.035 else "face"

        for p in params.parts:
            groups["big" if max(p.radii) >= 0.025 else place(p.center)][0].append(p)
        for c in params.capsules:
            groups[place(tuple((a + b) / 2 for a, b in zip(c.a, c.b)))][1].append(c)
        for t in params.tori:
            groups[place(t.center)][2].append(t)
        self.sets = [_PartSet(*g, list(params.carves)) for g in groups.values() if any(g)]
        self.boxes = [None] + [s.bounds(MARGIN) for s in self.sets[1:]]
        self.labels = torch.cat([s.labels for s in self.sets])
        self.flesh = torch.isin(self.labels, torch.tensor(FLESH))
        self.flesh_idx, self.other_idx = self.flesh.nonzero().squeeze(1), (~self.flesh).nonzero().squeeze(1)

    def parts(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3) -> (N, P) per-part signed distances, exact near each part (FAR where a small part's
        group was skipped), and (N,) a lower bound of the distance to the skipped groups."""
        blocks, bound = [], torch.full((points.shape[0],), FAR)
        for s, box in zip(self.sets, self.boxes):
            if box is None:
                blocks.append(s.parts(points))
                continue
            lo, hi = box
            outside = torch.maximum(lo - points, points - hi).clamp_min(0.0).norm(dim=-1)
            near = (outside <= 0).nonzero().squeeze(1)
            d = torch.full((points.shape[0], s.labels.numel()), FAR)
            if near.numel():
                d[near] = s.parts(points[near])
            bound = torch.minimum(bound, torch.where(outside > 0, outside + MARGIN, FAR))  # the box is grown by MARGIN
            blocks.append(d)
        return torch.cat(blocks, 1), bound

    def __call__(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d, bound = self.parts(points)
        _, idx = d.min(dim=1)
        flesh = -BLEND * torch.logsumexp(-d[:, self.flesh_idx] / BLEND, dim=1)
        dist = torch.minimum(flesh, d[:, self.other_idx].amin(1)) if self.other_idx.numel() else flesh
        return torch.minimum(dist, bound), self.labels[idx]


@dataclass
class Hits:
    hit: torch.Tensor  # (N,) bool
    labels: torch.Tensor  # (N,) label ids (0 where missed)
    points: torch.Tensor  # (N, 3)
    normals: torch.Tensor  # (N, 3)
    depth: torch.Tensor  # (N,) ray distance (far where missed)
    eye_uv: torch.Tensor | None = None  # (N, 2) on an eyeball: offset from its gaze axis in eyeball radii, else 9


def trace(sdf: HeadSDF, origins: torch.Tensor, dirs: torch.Tensor, far: float, steps: int = 64) -> Hits:
    """Sphere tracing of (N,) rays inside the box; the ellipsoid bound is conservative, so steps are scaled by 0.9."""
    # Rays start where they enter the box and stop where they leave it; rays that miss it are never traced.
    with torch.no_grad():
        inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
        t_a, t_b = (-BOX_HALF - origins) * inv, (BOX_HALF - origins) * inv
        t_in = torch.minimum(t_a, t_b).amax(-1).clamp_min(0.0)
        t_out = torch.maximum(t_a, t_b).amin(-1)
    t = t_in.clone()
    active = t_in < t_out
    for _ in range(steps):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        dist, _ = sdf(origins[idx] + dirs[idx] * t[idx, None])
        t[idx] += 0.9 * dist.clamp_min(0.0) + 1e-5
        done = (dist < 2e-4) | (t[idx] > t_out[idx])
        active[idx[done]] = False
    points = origins + dirs * t[:, None]
    n = origins.shape[0]
    hit = torch.zeros(n, dtype=torch.bool)
    labels = torch.zeros(n, dtype=torch.long)
    normals = torch.zeros_like(origins)
    candidates = ((t_in < t_out) & (t <= t_out)).nonzero().squeeze(1)
    dist, cand_labels = sdf(points[candidates])
    close = dist < 1e-3
    idx = candidates[close]
    hit[idx], labels[idx] = True, cand_labels[close]
    offsets = torch.eye(3) * 5e-4
    p = points[idx]
    grad = torch.stack([sdf(p + o)[0] - sdf(p - o)[0] for o in offsets], dim=-1)
    normals[idx] = torch.nn.functional.normalize(grad, dim=-1)
    return Hits(hit, labels, points, normals, torch.where(hit, t, torch.full_like(t, far)))


def eye_coordinates(params: HeadParams, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, 2): for points labelled as an eye, the offset from that eyeball's gaze axis in the plane
    across it (right, up), in eyeball radii (iris about r < 0.45, pupil r < 0.18); 9 elsewhere."""
    uv = torch.full((points.shape[0], 2), 9.0)
    for eye in params.eyes:
        gaze = torch.tensor(eye.gaze)
        right = torch.nn.functional.normalize(torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0]), gaze), dim=0)
        up = torch.linalg.cross(gaze, right)
        on = labels == eye.label
        rel = (points[on] - torch.tensor(eye.center)) / eye.radius
        uv[on] = torch.where((rel @ gaze > 0)[:, None], torch.stack([rel @ right, rel @ up], -1), torch.full_like(rel[:, :2], 9.0))
    return uv


def render_hits(params: HeadParams, cam2world: torch.Tensor, fov_deg: float, resolution: int) -> Hits:
    """Trace every pixel of each camera (B, 4, 4): fields shaped (B, H*W, ...)."""
    sdf = HeadSDF(params)
    origins, dirs = camera_rays(cam2world.float(), fov_deg, resolution, resolution)
    distance = float(cam2world[:, :3, 3].norm(dim=-1).max())
    hits = trace(sdf, origins.reshape(-1, 3), dirs.reshape(-1, 3), far=distance + 0.3)
    hits.eye_uv = eye_coordinates(params, hits.points, hits.labels)
    b = cam2world.shape[0]
    return Hits(*(x.reshape(b, resolution * resolution, *x.shape[1:]) for x in
                  (hits.hit, hits.labels, hits.points, hits.normals, hits.depth, hits.eye_uv)))
