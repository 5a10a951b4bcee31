"""Data: the CelebA loader on a small fake tree, the synthetic set, the resumable sampler."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from camfast.data import CelebA, DataError, ResumableBatchSampler, crop_box, open_dataset, synthetic
from camfast.data.celeba import ATTR_FILE, IMAGE_DIR, PARTITION_FILE

NAMES = ["Bald", "Black_Hair", "Eyeglasses", "Male", "Young"]
# file, partition, attributes (+1/-1 in NAMES order)
ROWS = [
    ("000001.jpg", 0, [1, -1, -1, 1, -1]),
    ("000002.jpg", 0, [-1, 1, -1, -1, 1]),
    ("000003.jpg", 0, [-1, 1, 1, 1, 1]),
    ("000004.jpg", 0, [-1, -1, 1, -1, -1]),
    ("000005.jpg", 1, [1, 1, 1, 1, 1]),
    ("000006.jpg", 1, [-1, -1, -1, -1, -1]),
    ("000007.jpg", 2, [1, -1, 1, -1, 1]),
]


def celeba_image(top_colour=(255, 0, 0), colour=(0, 0, 255)):
    """178 x 218 like img_align_celeba: ``top_colour`` in the 20 rows StarGAN's crop removes."""
    a = np.zeros((218, 178, 3), np.uint8)
    a[:] = colour
    a[:20] = top_colour
    a[198:] = top_colour
    return Image.fromarray(a)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "celeba"
    (root / IMAGE_DIR).mkdir(parents=True)
    for name, _, _ in ROWS:
        celeba_image().save(root / IMAGE_DIR / name, quality=95)
    lines = [str(len(ROWS)), " ".join(NAMES)] + [f"{n} " + " ".join(f"{v:2d}" for v in a) for n, _, a in ROWS]
    (root / ATTR_FILE).write_text("\n".join(lines) + "\n")
    (root / PARTITION_FILE).write_text("".join(f"{n} {p}\n" for n, p, _ in ROWS))
    return root


# ---------------------------------------------------------------- CelebA layout

def test_splits_attributes_and_values(tree):
    ds = CelebA(str(tree), ["Young", "Bald"], 64, crop="stargan", split="train")
    assert len(ds) == 4 and ds.attrs == ["Young", "Bald"]
    x, a = ds[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert -1 <= x.min() and x.max() <= 1
    assert a.tolist() == [0.0, 1.0]                     # Young -1, Bald 1: in the requested order
    assert len(CelebA(str(tree), NAMES, 64, split="val")) == 2
    assert len(CelebA(str(tree), NAMES, 64, split="test")) == 1
    assert len(CelebA(str(tree), NAMES, 64, split="all")) == 7


def test_crop_boxes():
    assert crop_box("stargan", 178, 218) == (0, 20, 178, 198)   # CenterCrop(178)
    assert crop_box("attgan", 178, 218) == (4, 24, 174, 194)    # CenterCrop(170), the PyTorch port
    assert crop_box("none", 64, 64) == (0, 0, 64, 64)
    assert crop_box("stargan", 89, 109) == (0, 10, 89, 99)      # scaled with the width


def test_stargan_crop_removes_the_top_and_bottom_rows(tree):
    x, _ = CelebA(str(tree), NAMES, 64, crop="stargan")[0]
    red = (x[0] > 0.5) & (x[2] < -0.5)
    assert not red.any()
    x, _ = CelebA(str(tree), NAMES, 64, crop="none")[0]
    assert ((x[0] > 0.5) & (x[2] < -0.5)).any()


@pytest.mark.parametrize("victim", [ATTR_FILE, PARTITION_FILE, IMAGE_DIR])
def test_missing_file_is_named(tree, victim):
    path = tree / victim
    if path.is_dir():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    else:
        path.unlink()
    with pytest.raises(DataError, match=victim):
        CelebA(str(tree), NAMES, 64)


def test_missing_image_is_named(tree):
    (tree / IMAGE_DIR / "000003.jpg").unlink()
    with pytest.raises(DataError, match="missing image: .*000003.jpg"):
        CelebA(str(tree), NAMES, 64)


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        CelebA(str(tmp_path / "nowhere"), NAMES, 64)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_error_names_the_file(tree, damage):
    path = tree / IMAGE_DIR / "000002.jpg"
    data = path.read_bytes()
    path.write_bytes(b"not a jpeg at all" if damage == "garbage" else data[: len(data) // 3])
    ds = CelebA(str(tree), NAMES, 64)
    ds[0]                                               # others still load
    with pytest.raises(DataError, match=r"cannot read image .*000002\.jpg"):
        ds[1]


def test_unknown_attribute_lists_the_available_ones(tree):
    with pytest.raises(DataError, match=r"no attribute\(s\) \['Smiling'\].*Eyeglasses"):
        CelebA(str(tree), ["Smiling"], 64)


def test_malformed_attribute_line(tree):
    lines = (tree / ATTR_FILE).read_text().splitlines()
    lines[4] = "000003.jpg 1 2 3"
    (tree / ATTR_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"{ATTR_FILE}: line 5"):
        CelebA(str(tree), NAMES, 64)


def test_count_line_must_match(tree):
    lines = (tree / ATTR_FILE).read_text().splitlines()
    lines[0] = "99"
    (tree / ATTR_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="says 99 images but 7"):
        CelebA(str(tree), NAMES, 64)


def test_open_dataset_defaults_on_celeba(tree):
    # attrs=None on CelebA means the backbone's own list, which this small tree lacks.
    with pytest.raises(DataError, match=r"no attribute\(s\) \['Blond_Hair'"):
        open_dataset(str(tree), "stargan", None, 64)
    assert open_dataset(str(tree), "attgan", ["Bald", "Male"], 64).crop == "attgan"
    assert open_dataset(str(tree), "stargan", ["Bald"], 64).crop == "stargan"


# ---------------------------------------------------------------- synthetic set

def test_synthetic_is_deterministic(tmp_path):
    p = synthetic.params(n_images=12, image_size=32, seed=3)
    synthetic.generate(str(tmp_path / "a"), p, progress=False)
    synthetic.generate(str(tmp_path / "b"), p, progress=False)
    synthetic.generate(str(tmp_path / "c"), synthetic.params(12, 32, 4), progress=False)
    files = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "a")
                   for d, _, fs in os.walk(tmp_path / "a") for f in fs)
    assert len(files) == 12 * (1 + len(synthetic.ATTRIBUTES)) + 3
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    img = os.path.join(IMAGE_DIR, "000001.jpg")
    assert (tmp_path / "a" / img).read_bytes() != (tmp_path / "c" / img).read_bytes()


def test_synthetic_reads_with_the_celeba_loader(tmp_path):
    root = synthetic.ensure(n_images=20, image_size=32, seed=0, cache=str(tmp_path), progress=False)
    assert os.path.basename(root).startswith("synthetic-")
    ds = open_dataset(root, "stargan", None, 64)          # crop auto -> none; attrs -> all synthetic
    assert ds.attrs == synthetic.ATTRIBUTES and ds.crop == "none" and len(ds) == 16
    x, a = ds[0]
    assert x.shape == (3, 64, 64) and set(a.tolist()) <= {0.0, 1.0}
    assert synthetic.read_mask(root, ds.files[0], "Wearing_Hat").shape == (32, 32)
    assert synthetic.ensure(20, 32, 0, cache=str(tmp_path)) == root    # cached: same folder


@pytest.mark.parametrize("attr", synthetic.ATTRIBUTES)
def test_synthetic_masks_cover_what_the_attribute_changes(attr):
    """Draw each face with the attribute off and on: every changed pixel is inside its mask."""
    changed_somewhere = False
    for seed in range(12):
        images, masks = [], []
        for value in (False, True):
            override = {attr: value}
            if attr in synthetic.HAIR_COLOURS and value:
                override.update({h: False for h in synthetic.HAIR_COLOURS if h != attr})
            image, attrs, m = synthetic.draw_face(np.random.default_rng([5, seed]), 64, override)
            assert attrs[attr] is value
            images.append(np.asarray(image, np.int32))
            masks.append(np.asarray(m[attr]) > 0)
        changed = np.abs(images[0] - images[1]).sum(-1) > 0
        region = masks[0] | masks[1]
        assert not (changed & ~region).any(), f"seed {seed}: {int((changed & ~region).sum())} px outside the mask"
        assert region.mean() < (0.5 if attr == "Pale_Skin" else 0.25)    # a local region, not the image
        changed_somewhere |= bool(changed.any())
    assert changed_somewhere


def test_interrupted_generation_leaves_no_data_set(tmp_path, monkeypatch):
    real_generate = synthetic.generate

    def dies_halfway(out, p, progress=True):
        real_generate(out, dict(p, n_images=3), progress=False)
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "generate", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure(n_images=10, image_size=16, cache=str(tmp_path))
    assert os.listdir(tmp_path) == []                      # neither a final nor a temporary folder
    monkeypatch.setattr(synthetic, "generate", real_generate)
    root = synthetic.ensure(n_images=10, image_size=16, cache=str(tmp_path), progress=False)
    assert len(os.listdir(os.path.join(root, IMAGE_DIR))) == 10


def test_cache_location_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMFAST_CACHE", str(tmp_path / "env"))
    assert synthetic.cache_root() == str(tmp_path / "env")
    assert synthetic.cache_root(str(tmp_path / "flag")) == str(tmp_path / "flag")   # --data-cache wins


def test_bad_synthetic_parameters():
    with pytest.raises(ValueError, match="image_size"):
        synthetic.params(n_images=10, image_size=8)


# ---------------------------------------------------------------- sampler

def test_sampler_resumes_mid_epoch_and_splits_ranks():
    s = ResumableBatchSampler(22, 4, seed=1)
    full = [b for b, _ in zip(iter(s), range(12))]       # 5 batches per epoch: crosses two epochs
    s.start_at(7)
    assert [b for b, _ in zip(iter(s), range(5))] == full[7:12]
    assert s.position(7) == {"epoch": 1, "batch": 2}
    r0, r1 = (ResumableBatchSampler(22, 4, seed=1, rank=r, world=2) for r in range(2))
    e0, e1 = (sum((b for b, _ in zip(iter(r), range(2))), []) for r in (r0, r1))
    assert not set(e0) & set(e1) and len(e0) == len(e1) == 8
    with pytest.raises(ValueError, match="batch_size"):
        ResumableBatchSampler(5, 4, world=2)
