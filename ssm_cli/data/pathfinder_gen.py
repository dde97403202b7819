"""Generator of the Pathfinder / Path-X images (Linsley et al. 2018, as used by LRA), own implementation.

Each image holds two long "snakes" of ``contour_length`` paddles (short line segments) whose seeds
lie ``seed_distance`` apart, plus ``n_distractors`` short snakes of ``distractor_length`` paddles.
Two markers (discs of ``marker_radius``) sit on snake ends: on the origin and terminal end of the
same snake (label 1, connected) or on the origin of one snake and the terminal end of the other
(label 0). Both classes always draw two long snakes, so counting ink tells nothing.

A snake grows paddle by paddle: the heading turns by ``delta`` with density ``cos(continuity *
delta)**2`` on ``|delta| < pi / (2 continuity)`` (the original's weighting: larger continuity =
smoother), the next paddle starts ``margin`` further along the new heading (the gap between
paddles), and every paddle keeps ``2 margin + paddle_thickness`` of clearance (centre lines) from
every other snake, from the marker discs and from its own non-adjacent paddles. Geometry is in
output pixels; the image is drawn with PIL at ``antialias_scale`` x the resolution and box-filtered
down, then scaled so that its maximum is 255 (markers are white, paddles ``paddle_contrast``).

Output layout (the LRA release's):
``out_root/pathfinder{size}/curv_contour_length_{L}/imgs/<k>/sample_<i>.png`` (8-bit grayscale) and
``.../metadata/<k>.npy``, a text file (despite its name, as in the release) with one line per image:
``imgs/<k> sample_<i>.png <i> <label> <continuity> <contour_length> <distractor_length>
<paddle_length> <paddle_thickness> <paddle_margin> 1``; readers use fields 0, 1 (path) and 3 (label).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ssm_cli.errors import UserError


@dataclass(frozen=True)
class PathfinderParams:
    """Generation parameters, in output pixels (docs/papers.md §6; LRA's builders list the same values)."""

    size: int = 32
    contour_length: int = 14
    paddle_length: float = 2.0
    paddle_thickness: float = 0.5
    paddle_margins: tuple[float, ...] = (1.0,)  # one is drawn per image
    marker_radius: float = 1.5
    seed_distance: float = 7.0
    continuity: float = 1.0
    distractor_length: int = 4
    n_distractors: int = 5
    antialias_scale: int = 2
    padding: float = 1.0
    paddle_contrast: float = 0.75
    max_paddle_trials: int = 12
    max_distractor_trials: int = 5

    def clearance(self, margin: float) -> float:
        """Minimum centre-line distance between paddles that must not touch."""
        return 2 * margin + self.paddle_thickness


PRESETS: dict[int, PathfinderParams] = {
    32: PathfinderParams(),
    # Path-X: 35 / (14 / 3) distractor snakes of 14 // 3 paddles; the paddle length is the
    # original generator's default (5), which LRA did not override.
    128: PathfinderParams(
        size=128, paddle_length=5.0, paddle_thickness=1.5, paddle_margins=(2.0, 3.0), marker_radius=3.0,
        seed_distance=20.0, continuity=1.8, distractor_length=4, n_distractors=7,
    ),
}


def params_for(size: int, contour_length: int = 14, **overrides) -> PathfinderParams:
    """The preset for ``size`` (32 or 128) with ``overrides`` applied; bad names are a UserError."""
    if size not in PRESETS:
        raise UserError(f"unknown pathfinder size {size}; valid: {', '.join(map(str, PRESETS))}")
    valid = {f.name for f in fields(PathfinderParams)} - {"size"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise UserError(f"unknown pathfinder parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    if "paddle_margins" in overrides:
        overrides["paddle_margins"] = tuple(overrides["paddle_margins"])
    return replace(PRESETS[size], contour_length=contour_length, **overrides)


# ---------------------------------------------------------------- geometry


def _point_seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from points p (..., 2) to segments a-b (..., 2), broadcast: (...)."""
    abx, aby = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    apx, apy = p[..., 0] - a[..., 0], p[..., 1] - a[..., 1]
    t = (apx * abx + apy * aby) / np.maximum(abx * abx + aby * aby, 1e-12)
    t = np.minimum(np.maximum(t, 0.0), 1.0)
    return np.hypot(apx - t * abx, apy - t * aby)


class _Scene:
    """Placed paddles and markers (preallocated arrays), with the clearance test for a new paddle."""

    CAPACITY = 512

    def __init__(self, p: PathfinderParams, margin: float):
        self.p, self.margin, self.clear = p, margin, p.clearance(margin)
        self.a = np.zeros((self.CAPACITY, 2))
        self.b = np.zeros((self.CAPACITY, 2))
        self.owner = np.zeros(self.CAPACITY, dtype=np.int64)
        self.index = np.zeros(self.CAPACITY, dtype=np.int64)  # position in its snake (-1: a marker)
        self.radius = np.zeros(self.CAPACITY)  # markers are zero-length segments with a radius
        self.n = 0
        # points along a candidate paddle, at most half a pixel apart
        k = max(2, int(math.ceil(p.paddle_length / 0.5)) + 1)
        self._t = np.linspace(0.0, 1.0, k)[:, None, None]  # (k, 1, 1)

    def add(self, a, b, owner: int, index: int, radius: float = 0.0) -> None:
        i = self.n
        self.a[i], self.b[i], self.owner[i], self.index[i], self.radius[i] = a, b, owner, index, radius
        self.n += 1

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the placed items where ``mask`` ((n,) bool) holds."""
        m = int(mask.sum())
        for arr in (self.a, self.b, self.owner, self.index, self.radius):
            arr[:m] = arr[: self.n][mask]
        self.n = m

    def distances(self, a: np.ndarray, b: np.ndarray, sel: np.ndarray) -> np.ndarray:
        """Distances (up to a quarter pixel) from candidate segments a-b ((T, 2) each) to the
        selected placed items, less their radius: (T, K)."""
        qa, qb = self.a[: self.n][sel], self.b[: self.n][sel]  # (K, 2)
        pts = a[:, None, None, :] + self._t[None] * (b - a)[:, None, None, :]  # (T, k, 1, 2)
        d1 = _point_seg_dist(pts, qa, qb).min(1)  # (T, K)
        ends = np.stack([qa, qb])[None]  # (1, 2, K, 2)
        d2 = _point_seg_dist(ends, a[:, None, None, :], b[:, None, None, :]).min(1)  # (T, K)
        return np.minimum(d1, d2) - self.radius[: self.n][sel]

    def fits(self, a: np.ndarray, b: np.ndarray, owner: int, index: int) -> np.ndarray:
        """Which candidate paddles a-b ((T, 2) each) of snake ``owner`` at position ``index`` fit
        inside the padded image with clearance from everything else: (T,) bool."""
        lo, hi = self.p.padding, self.p.size - self.p.padding
        ok = (np.minimum(a, b).min(1) >= lo) & (np.maximum(a, b).max(1) <= hi)
        if self.n == 0 or not ok.any():
            return ok
        # a paddle may touch its own predecessor only
        sel = ~((self.owner[: self.n] == owner) & (self.index[: self.n] >= index - 1))
        # items far from every candidate cannot be within the clearance (speed only): candidates
        # lie within margin + paddle_length of a[0]'s origin, items within paddle_length of their ends
        reach = 2 * self.p.paddle_length + 2 * self.margin + self.clear + self.p.marker_radius + 1.0
        centre = a.mean(0)
        sel &= np.abs(self.a[: self.n] - centre).max(1) < reach
        if not sel.any():
            return ok
        return ok & (self.distances(a, b, sel) >= self.clear).all(1)


def _direction(theta):
    """Unit vector(s) of heading(s) theta: (..., 2)."""
    return np.stack([np.cos(theta), np.sin(theta)], axis=-1)


def _turns(rng: np.random.Generator, continuity: float, n: int) -> np.ndarray:
    """``n`` heading changes with density cos(continuity * delta)^2 on |delta| < pi / (2 continuity)
    (rejection sampling; the acceptance rate is 1/2)."""
    half = math.pi / (2 * continuity)
    out = np.empty(0)
    while len(out) < n:
        delta = rng.uniform(-half, half, size=4 * n)
        out = np.concatenate([out, delta[rng.random(4 * n) < np.cos(continuity * delta) ** 2]])
    return out[:n]


class _Snake:
    """A growing snake; ``history`` keeps (heading, end) per paddle so that it can back up."""

    def __init__(self, owner: int, origin: np.ndarray, heading: float):
        self.owner, self.origin = owner, origin
        self.history: list[tuple[float, np.ndarray]] = [(heading, origin)]

    @property
    def n(self) -> int:
        return len(self.history) - 1

    @property
    def end(self) -> np.ndarray:
        return self.history[-1][1]

    def grow(self, scene: _Scene, rng: np.random.Generator) -> bool:
        """Add one paddle: the first of ``max_paddle_trials`` sampled turns that fits, else False."""
        p = scene.p
        last_heading, end = self.history[-1]
        if self.n == 0:  # the seed paddle's heading is given
            headings = np.array([last_heading])
            starts = end[None]
        else:
            headings = last_heading + _turns(rng, p.continuity, p.max_paddle_trials)
            starts = end + scene.margin * _direction(headings)
        stops = starts + p.paddle_length * _direction(headings)
        fit = np.flatnonzero(scene.fits(starts, stops, self.owner, self.n))
        if len(fit) == 0:
            return False
        j = fit[0]
        scene.add(starts[j], stops[j], self.owner, self.n)
        self.history.append((float(headings[j]), stops[j]))
        return True

    def back_up(self, scene: _Scene, k: int) -> None:
        """Remove the last ``k`` paddles (never the seed paddle)."""
        k = min(k, self.n - 1)
        if k <= 0:
            return
        del self.history[-k:]
        owner, index = scene.owner[: scene.n], scene.index[: scene.n]
        scene.keep(~((owner == self.owner) & (index >= self.n)))


def _grow_to(snake: _Snake, length: int, scene: _Scene, rng: np.random.Generator, budget: list[int]) -> bool:
    """Grow ``snake`` by one paddle toward ``length``, backing up two paddles on a dead end."""
    while not snake.grow(scene, rng):
        if budget[0] <= 0 or snake.n <= 1:
            return False
        budget[0] -= 1
        snake.back_up(scene, 2)
    return True


def _layout(p: PathfinderParams, label: int, rng: np.random.Generator, margin: float):
    """One attempt at a scene: (scene, marker centres) or None when the snakes did not fit."""
    scene = _Scene(p, margin)
    lo, hi = p.padding + 1, p.size - p.padding - 1
    o1 = rng.uniform(lo, hi, size=2)
    o2 = o1 + p.seed_distance * _direction(rng.uniform(0, 2 * math.pi))
    if o2.min() < lo or o2.max() > hi:
        return None
    snakes = [_Snake(k, o, rng.uniform(0, 2 * math.pi)) for k, o in enumerate((o1, o2))]
    budget = [4 * p.contour_length]
    while any(s.n < p.contour_length for s in snakes):  # grow the two target snakes in turn
        for s in snakes:
            if s.n < p.contour_length and not _grow_to(s, p.contour_length, scene, rng, budget):
                return None
    k = int(rng.integers(2))
    m = k if label == 1 else 1 - k
    markers = [(snakes[k].origin, k), (snakes[m].end, m)]
    for c, owner in markers:  # a marker must not touch the snake it does not belong to
        d = scene.distances(c[None], c[None], scene.owner[: scene.n] != owner)
        if (d < p.marker_radius + scene.clear).any():
            return None
    if np.hypot(*(markers[0][0] - markers[1][0])) < 2 * p.marker_radius + scene.clear:
        return None
    for c, owner in markers:
        scene.add(c, c, owner=-1, index=-1, radius=p.marker_radius)
    for j in range(p.n_distractors):  # short distractor snakes; skipped when they cannot fit
        for _ in range(p.max_distractor_trials):
            saved = scene.n
            s = _Snake(2 + j, rng.uniform(lo, hi, size=2), rng.uniform(0, 2 * math.pi))
            if all(s.grow(scene, rng) for _ in range(p.distractor_length)):
                break
            scene.n = saved
    return scene, [c for c, _ in markers]


def render(p: PathfinderParams, scene: _Scene, markers: list[np.ndarray]) -> np.ndarray:
    """Draw at antialias scale and box-filter down: ``(size, size) uint8``, max 255."""
    s = p.antialias_scale
    img = Image.new("L", (p.size * s, p.size * s), 0)
    draw = ImageDraw.Draw(img)
    width = max(1, round(p.paddle_thickness * s))
    fill = round(255 * p.paddle_contrast)
    for a, b, idx in zip(scene.a[: scene.n], scene.b[: scene.n], scene.index[: scene.n]):
        if idx >= 0:
            draw.line([tuple(a * s - 0.5), tuple(b * s - 0.5)], fill=fill, width=width)
    r = p.marker_radius * s
    for c in markers:
        x, y = c * s - 0.5
        draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    small = np.asarray(img.resize((p.size, p.size), Image.BOX), dtype=np.float32)
    return np.round(small * (255.0 / max(small.max(), 1.0))).astype(np.uint8)


def sample_image(p: PathfinderParams, label: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One image of class ``label``: ``((size, size) uint8, paddle margin used)``."""
    while True:
        margin = float(p.paddle_margins[int(rng.integers(len(p.paddle_margins)))])
        out = _layout(p, label, rng, margin)
        if out is not None:
            return render(p, *out), margin


# ---------------------------------------------------------------- dataset writer


def _write_folder(job: tuple) -> int:
    """Write folder ``k`` (images ``first .. first + count``) and its metadata file."""
    p, root, seed, k, first, labels = job
    folder = root / "imgs" / str(k)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, label in enumerate(labels):
        rng = np.random.default_rng([seed, first + i])
        image, margin = sample_image(p, int(label), rng)
        Image.fromarray(image, mode="L").save(folder / f"sample_{i}.png")
        lines.append(
            f"imgs/{k} sample_{i}.png {i} {int(label)} {p.continuity:g} {p.contour_length} "
            f"{p.distractor_length} {p.paddle_length:g} {p.paddle_thickness:g} {margin:g} 1\n"
        )
    meta = root / "metadata" / f"{k}.npy"
    tmp = meta.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(meta)  # written last: a folder counts only once its metadata exists
    return len(labels)


def generate(
    out_root: Path,
    size: int = 32,
    n_samples: int = 200_000,
    seed: int = 0,
    contour_length: int = 14,
    images_per_folder: int = 1000,
    workers: int = 1,
    progress: bool = False,
    **overrides,
) -> Path:
    """Write a Pathfinder (size 32) or Path-X (size 128) dataset in the release layout.

    Returns ``out_root/pathfinder{size}/curv_contour_length_{contour_length}``. Labels are exactly
    balanced (n_samples // 2 positives) in random order; every image has its own random stream
    ``(seed, image index)``, so the result does not depend on ``workers``. ``overrides`` are
    ``PathfinderParams`` fields (e.g. ``n_distractors=0``).
    """
    p = params_for(size, contour_length, **overrides)
    root = Path(out_root) / f"pathfinder{size}" / f"curv_contour_length_{contour_length}"
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    labels = np.arange(n_samples) % 2
    np.random.default_rng([seed, 2**31]).shuffle(labels)
    jobs = [
        (p, root, seed, k, first, labels[first : first + images_per_folder])
        for k, first in enumerate(range(0, n_samples, images_per_folder))
    ]
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress()
        bar.start()
        task = bar.add_task(f"pathfinder{size} images", total=n_samples)
    try:
        if min(workers, len(jobs)) > 1:
            with get_context("spawn").Pool(min(workers, len(jobs))) as pool:
                for n in pool.imap_unordered(_write_folder, jobs):
                    if bar is not None:
                        bar.update(task, advance=n)
        else:
            for job in jobs:
                n = _write_folder(job)
                if bar is not None:
                    bar.update(task, advance=n)
    finally:
        if bar is not None:
            bar.stop()
    return root
