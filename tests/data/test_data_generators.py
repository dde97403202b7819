"""The ListOps and Pathfinder generators: release formats, published parameters, solvable labels,
and the loaders reading what they write."""
from __future__ import annotations

import csv
import random

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ssm_cli.data import listops_gen, load_dataset, pathfinder_gen
from ssm_cli.errors import UserError

# ---------------------------------------------------------------- ListOps


def read_tsv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f, delimiter="\t"))


def n_tokens(source: str) -> int:
    return sum(t not in ("(", ")") for t in source.split())


@pytest.fixture(scope="module")
def listops_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen") / "lra"
    listops_gen.generate(root, n_train=40, n_val=6, n_test=6, seed=3)
    return root


def test_listops_release_format(listops_dir):
    folder = listops_dir / "listops-1000"
    assert sorted(p.name for p in folder.iterdir()) == ["basic_test.tsv", "basic_train.tsv", "basic_val.tsv"]
    assert (folder / "basic_train.tsv").read_bytes().startswith(b"Source\tTarget\r\n( ")
    sizes = {s: len(read_tsv(folder / f"basic_{s}.tsv")) - 1 for s in ("train", "val", "test")}
    assert sizes == {"train": 40, "val": 6, "test": 6}


def test_listops_targets_match_an_independent_evaluation(listops_dir):
    sources = set()
    for split in ("train", "val", "test"):
        header, *rows = read_tsv(listops_dir / "listops-1000" / f"basic_{split}.tsv")
        assert header == ["Source", "Target"]
        for source, target in rows:
            tree = listops_gen.parse(source)
            assert listops_gen.evaluate(tree) == int(target)
            assert listops_gen.to_source(tree) == source  # the exact release bracketing
            assert 500 < n_tokens(source) < 2000
            sources.add(source)
    assert len(sources) == 52  # no duplicates across splits


def test_listops_tree_parameters():
    """Depth <= 10, 2..10 arguments per operator, only the four operators and digits."""
    rnd = random.Random(0)
    trees = [s for s in (listops_gen.sample(rnd, max_len=400) for _ in range(300)) if s is not None]

    def check(tree, depth=1):
        if isinstance(tree, int):
            assert 0 <= tree <= 9 and depth <= 10
            return
        op, args = tree
        assert op in listops_gen.OPERATORS and 2 <= len(args) <= 10 and depth < 10
        for a in args:
            check(a, depth + 1)

    ops = 0
    for source, value, length in trees:
        tree = listops_gen.parse(source)
        check(tree)
        assert listops_gen.evaluate(tree) == value and n_tokens(source) == length
        ops += source.count("[")
    assert ops > 0 and sum(isinstance(listops_gen.parse(s), int) for s, _, _ in trees) > 150  # P(value) = 0.75


def test_listops_is_deterministic(tmp_path):
    a = listops_gen.generate(tmp_path / "a", n_train=3, n_val=1, n_test=1, seed=7, min_len=10, max_len=200)
    b = listops_gen.generate(tmp_path / "b", n_train=3, n_val=1, n_test=1, seed=7, min_len=10, max_len=200)
    c = listops_gen.generate(tmp_path / "c", n_train=3, n_val=1, n_test=1, seed=8, min_len=10, max_len=200)
    assert (a / "basic_train.tsv").read_bytes() == (b / "basic_train.tsv").read_bytes()
    assert (a / "basic_train.tsv").read_bytes() != (c / "basic_train.tsv").read_bytes()


def test_evaluator_semantics_and_parse_errors():
    assert listops_gen.evaluate(("[MED", [1, 2])) == 1  # median of an even count: mean, floored
    assert listops_gen.evaluate(("[MED", [3, 9, 1])) == 3
    assert listops_gen.evaluate(("[SM", [9, 9, 3])) == 1
    assert listops_gen.evaluate(("[MIN", [4, ("[MAX", [0, 8]), 5])) == 4
    for bad in ("( ( [MAX 4 ) 3 )", "]", "[MAX ]", "4 5", "( ( [FOO 4 ) ] )"):
        with pytest.raises(ValueError):
            listops_gen.parse(bad)


def test_generated_listops_loads(listops_dir):
    b = load_dataset("listops", listops_dir.parent, download=False)
    assert (len(b.train), len(b.val), len(b.test)) == (40, 6, 6)
    header, *rows = read_tsv(listops_dir / "listops-1000" / "basic_train.tsv")
    x, y = b.train[0]
    assert int(y) == int(rows[0][1]) and int((x > 0).sum()) == n_tokens(rows[0][0]) + 1  # + <eos>
    assert int((x == 1).sum()) == 0  # no <unk>


# ---------------------------------------------------------------- Pathfinder


def markers(image: np.ndarray) -> tuple[np.ndarray, int]:
    """Marker discs: the white blobs (paddles are drawn at 0.75 of the markers' intensity)."""
    return ndimage.label(image >= 250)


def markers_connected(image: np.ndarray, bridge: int) -> bool:
    """Whether the two markers lie in one 8-connected component of the inked pixels, after
    closing gaps of up to ``2 * bridge`` pixels between the paddles of a snake."""
    blobs, n = markers(image)
    assert n == 2
    ink = image > 0
    if bridge:
        ink = ndimage.binary_dilation(ink, iterations=bridge)
    comp, _ = ndimage.label(ink, structure=np.ones((3, 3)))
    a, b = (np.unique(comp[blobs == k]) for k in (1, 2))
    return bool(set(a) & set(b))


def load_generated(root):
    rows = []
    for meta in sorted((root / "metadata").glob("*.npy"), key=lambda f: int(f.stem)):
        rows += [line.split() for line in meta.read_text().splitlines()]
    images = [np.asarray(Image.open(root / r[0] / r[1])) for r in rows]
    return rows, images


@pytest.fixture(scope="module")
def pathfinder32(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("pf")
    root = pathfinder_gen.generate(data_dir / "lra", size=32, n_samples=40, seed=1, images_per_folder=16)
    return data_dir, root


def test_pathfinder_release_layout(pathfinder32):
    data_dir, root = pathfinder32
    assert root == data_dir / "lra" / "pathfinder32" / "curv_contour_length_14"
    assert sorted(p.name for p in (root / "imgs").iterdir()) == ["0", "1", "2"]
    assert sorted(p.name for p in (root / "metadata").iterdir()) == ["0.npy", "1.npy", "2.npy"]
    rows, _ = load_generated(root)
    assert rows[0][:4] == ["imgs/0", "sample_0.png", "0", rows[0][3]] and len(rows[0]) == 11
    assert rows[16][:3] == ["imgs/1", "sample_0.png", "0"]
    # continuity, contour length, distractor length, paddle length, thickness, margin (docs/papers.md §6)
    assert rows[0][4:10] == ["1", "14", "4", "2", "0.5", "1"]


def test_pathfinder_images_and_labels(pathfinder32):
    _, root = pathfinder32
    rows, images = load_generated(root)
    labels = [int(r[3]) for r in rows]
    assert len(images) == 40 and sum(labels) == 20  # exactly balanced
    with Image.open(root / "imgs" / "0" / "sample_0.png") as im:
        assert im.mode == "L" and im.size == (32, 32)
    for image in images:
        assert image.shape == (32, 32) and image.dtype == np.uint8 and image.max() == 255
        assert markers(image)[1] == 2  # two marker discs
        assert (image > 0).mean() > 0.1  # snakes and distractors are drawn
    connected = [markers_connected(im, bridge=0) for im in images]
    pos = [c for c, y in zip(connected, labels) if y == 1]
    neg = [c for c, y in zip(connected, labels) if y == 0]
    assert all(pos)
    assert np.mean(neg) <= 0.2


def test_pathx_images_are_solvable(tmp_path):
    root = pathfinder_gen.generate(tmp_path / "lra", size=128, n_samples=8, seed=2)
    rows, images = load_generated(root)
    labels = [int(r[3]) for r in rows]
    assert sum(labels) == 4 and all(im.shape == (128, 128) for im in images)
    assert {r[9] for r in rows} <= {"2", "3"} and rows[0][4:9] == ["1.8", "14", "4", "5", "1.5"]
    # the paddle gaps (margins 2-3 px) are closed by a one-pixel dilation
    connected = [markers_connected(im, bridge=1) for im in images]
    assert all(c for c, y in zip(connected, labels) if y == 1)
    assert not any(c for c, y in zip(connected, labels) if y == 0)
    b = load_dataset("pathx", tmp_path, download=False, val_split=0.25, test_split=0.25)
    assert (len(b.train), len(b.val), len(b.test)) == (4, 2, 2)


def test_generated_pathfinder_loads(pathfinder32):
    data_dir, root = pathfinder32
    b = load_dataset("pathfinder", data_dir, download=False, tokenize=True)
    assert (len(b.train), len(b.val), len(b.test)) == (32, 4, 4)
    rows, images = load_generated(root)
    j = int(b.train.index[0])
    x, y = b.train[0]
    assert x.tolist() == (images[j].reshape(-1).astype(np.int64) + 1).tolist() and int(y) == int(rows[j][3])


def test_pathfinder_is_deterministic_and_validates_parameters(tmp_path):
    a = pathfinder_gen.generate(tmp_path / "a", n_samples=3, seed=5)
    b = pathfinder_gen.generate(tmp_path / "b", n_samples=3, seed=5)
    for i in range(3):
        assert (a / "imgs/0" / f"sample_{i}.png").read_bytes() == (b / "imgs/0" / f"sample_{i}.png").read_bytes()
    with pytest.raises(UserError, match="size 48; valid: 32, 128"):
        pathfinder_gen.generate(tmp_path / "c", size=48, n_samples=1)
    with pytest.raises(UserError, match="unknown pathfinder parameter.*paddle_lenght"):
        pathfinder_gen.generate(tmp_path / "c", n_samples=1, paddle_lenght=3)


def test_presets_follow_the_published_parameters():
    p = pathfinder_gen.PRESETS[32]
    assert (p.contour_length, p.paddle_length, p.paddle_thickness, p.marker_radius, p.seed_distance) == (14, 2, 0.5, 1.5, 7)
    assert (p.continuity, p.paddle_margins, p.n_distractors, p.distractor_length, p.antialias_scale) == (1.0, (1.0,), 5, 4, 2)
    q = pathfinder_gen.PRESETS[128]
    assert (q.contour_length, q.paddle_thickness, q.marker_radius, q.seed_distance, q.continuity) == (14, 1.5, 3, 20, 1.8)
    assert q.paddle_margins == (2.0, 3.0)
