"""Tests of ghn_core.data on the real CIFAR-10 copy and on tiny synthetic folders.

Tests marked by the ``cifar_dir`` fixture need the real ImageFolder copy (``$GHN_NAS_DATA``, else
``../shared/data/cifar10`` next to the repo) and skip without it; the rest build their own data.
Every cache goes to a temporary folder, never the user's home.
"""
from __future__ import annotations

import hashlib
import logging
import pickle
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.io import encode_jpeg, write_file, write_png

from ghn_core import data as D
from ghn_core.errors import DataError
from ghn_core.utils import torch_generator

# The helpers below encode JPEGs with torchvision, whose codecs warn about their deprecation.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torchvision.io")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def _no_user_env(monkeypatch):
    # Resolution tests set these themselves; a developer's own settings must not leak in.
    monkeypatch.delenv(D.DATA_ENV, raising=False)
    monkeypatch.delenv(D.CACHE_ENV, raising=False)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def train_full(cifar_dir, cache_dir) -> D.ImageSet:
    return D.load_split("cifar10", "train_full", data_dir=cifar_dir, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def test_set(cifar_dir, cache_dir) -> D.ImageSet:
    return D.load_split("cifar10", "test", data_dir=cifar_dir, cache_dir=cache_dir)


def _make_tree(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """A CIFAR-10-shaped ImageFolder tree of random 32x32 JPEGs."""
    gen = torch_generator(seed)
    for split, n in per_class.items():
        for name in CIFAR10_CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                img = torch.randint(0, 256, (3, 32, 32), generator=gen, dtype=torch.uint8)
                write_file(str(root / split / name / f"{i:04d}.jpg"), encode_jpeg(img, quality=95))
    return root


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return _make_tree(tmp_path_factory.mktemp("tiny"), {"train": 6, "test": 2})


# ---------------------------------------------------------------------------------------------
# Table and records


def test_dataset_table():
    assert set(D.DATASETS) == {"cifar10", "cifar100", "imagenet"}
    c10 = D.get_dataset_info("cifar10")
    assert (c10.num_classes, c10.image_size, c10.noise_sigma) == (10, 32, 0.08)
    assert c10.mean == (0.4914, 0.4822, 0.4465) and c10.std == (0.2470, 0.2435, 0.2616)
    assert D.get_dataset_info("imagenet").noise_sigma == 0.18
    for info in D.DATASETS.values():  # the paper holds 10% of the training set out
        assert info.val_per_class * info.num_classes in (5_000, 50_000)
    with pytest.raises(ValueError, match="cifar100.*imagenet"):
        D.get_dataset_info("mnist")


def test_image_set_checks_its_tensors():
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        D.ImageSet(images.float(), torch.zeros(4, dtype=torch.int64), ["a"], "cifar10")
    with pytest.raises(ValueError, match="int64"):
        D.ImageSet(images, torch.zeros(3, dtype=torch.int64), ["a"], "cifar10")
    with pytest.raises(ValueError, match="dataset"):
        D.ImageSet(images, torch.zeros(4, dtype=torch.int64), ["a"], "svhn")
    sub = D.ImageSet(images, torch.arange(4), ["a"], "cifar10").subset(torch.tensor([3, 1]))
    assert len(sub) == 2 and sub.labels.tolist() == [3, 1]


# ---------------------------------------------------------------------------------------------
# Real CIFAR-10: splits, layout, pixels


def test_split_sizes_and_class_balance(cifar_dir, cache_dir, train_full, test_set):
    train = D.load_split("cifar10", "train", data_dir=cifar_dir, cache_dir=cache_dir)
    val = D.load_split("cifar10", "val", data_dir=cifar_dir, cache_dir=cache_dir)
    assert (len(train_full), len(train), len(val), len(test_set)) == (50_000, 45_000, 5_000, 10_000)
    assert torch.bincount(val.labels).tolist() == [500] * 10
    assert torch.bincount(train.labels).tolist() == [4500] * 10
    assert torch.bincount(test_set.labels).tolist() == [1000] * 10


def test_val_subset_is_seeded_disjoint_and_not_the_tail(cifar_dir, cache_dir, train_full):
    val = D.val_indices(train_full.labels, 500, seed=0)
    assert torch.equal(val, D.val_indices(train_full.labels, 500, seed=0))
    assert not torch.equal(val, D.val_indices(train_full.labels, 500, seed=1))
    assert not torch.equal(val, torch.arange(45_000, 50_000))
    assert len(val.unique()) == 5_000

    # load_split's train and val are exactly the complement and the subset.
    train_idx = torch.tensor(sorted(set(range(50_000)) - set(val.tolist())))
    assert len(train_idx) == 45_000
    train = D.load_split("cifar10", "train", data_dir=cifar_dir, cache_dir=cache_dir)
    held = D.load_split("cifar10", "val", data_dir=cifar_dir, cache_dir=cache_dir)
    assert torch.equal(held.images, train_full.images[val])
    assert torch.equal(held.labels, train_full.labels[val])
    assert torch.equal(train.images, train_full.images[train_idx])
    other = D.load_split("cifar10", "val", data_dir=cifar_dir, cache_dir=cache_dir, seed=1)
    assert not torch.equal(other.images, held.images)
    with pytest.raises(ValueError, match="val_per_class"):
        D.val_indices(train_full.labels, 5_000, seed=0)


def test_layout_and_class_order(train_full, test_set):
    for data in (train_full, test_set):
        assert data.classes == CIFAR10_CLASSES
        assert data.images.dtype == torch.uint8 and data.images.shape[1:] == (3, 32, 32)
        assert data.images.is_contiguous()
        assert data.labels.dtype == torch.int64
        assert data.dataset == "cifar10"
    # The folder is ordered by class: file i of train/ has label i // 5000.
    assert torch.equal(train_full.labels, torch.arange(50_000) // 5_000)


def test_test_split_pixel_statistics_match_readme(test_set):
    x = test_set.images.double() / 255
    mean = x.mean(dim=(0, 2, 3))
    std = x.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1)
    assert torch.allclose(mean, torch.tensor([0.494, 0.485, 0.450], dtype=torch.double), atol=1.5e-3)
    assert torch.allclose(std, torch.tensor([0.245, 0.242, 0.261], dtype=torch.double), atol=1.5e-3)


def test_second_load_reads_the_cache(cifar_dir, cache_dir, test_set, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded JPEGs although a cache exists")

    monkeypatch.setattr(D, "_decode_files", no_decoding)
    again = D.load_split("cifar10", "test", data_dir=cifar_dir, cache_dir=cache_dir)
    assert torch.equal(again.images, test_set.images) and torch.equal(again.labels, test_set.labels)
    assert len(list(cache_dir.glob("*.pt"))) == 2  # train and test; no stray temp files


# ---------------------------------------------------------------------------------------------
# Cache behaviour on small synthetic trees


def _count_decodes(monkeypatch) -> list[int]:
    calls: list[int] = []
    decode = D._decode_files

    def counting(files, *args, **kwargs):
        calls.append(len(files))
        return decode(files, *args, **kwargs)

    monkeypatch.setattr(D, "_decode_files", counting)
    return calls


def test_corrupt_cache_is_rebuilt_with_a_warning(tiny_dir, tmp_path, monkeypatch, caplog):
    first = D.load_split("cifar10", "train_full", data_dir=tiny_dir, cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("*.pt")
    cache_file.write_bytes(cache_file.read_bytes()[:1000])  # truncated, e.g. by a full disk
    calls = _count_decodes(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="ghn_core.data"):
        second = D.load_split("cifar10", "train_full", data_dir=tiny_dir, cache_dir=tmp_path)
    assert calls == [60] and "rebuilding" in caplog.text
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert torch.load(cache_file, weights_only=True)["images"].shape == (60, 3, 32, 32)


def test_cache_follows_changes_to_the_folder(tiny_dir, tmp_path, monkeypatch):
    tree = shutil.copytree(tiny_dir, tmp_path / "tree")
    cache = tmp_path / "cache"
    calls = _count_decodes(monkeypatch)
    D.load_split("cifar10", "test", data_dir=tree, cache_dir=cache)
    D.load_split("cifar10", "test", data_dir=tree, cache_dir=cache)
    assert calls == [20]
    shutil.copy(tree / "test" / "cat" / "0000.jpg", tree / "test" / "cat" / "0099.jpg")
    assert len(D.load_split("cifar10", "test", data_dir=tree, cache_dir=cache)) == 21
    assert calls == [20, 21]


def test_decode_resizes_other_sizes_and_reads_png(tmp_path):
    # A 64x128 black image with a white centre square: resize shorter side then centre crop keeps
    # the square in the middle; squashing or a corner crop would not.
    img = torch.zeros(3, 64, 128, dtype=torch.uint8)
    img[:, 16:48, 48:80] = 255
    write_png(img, str(tmp_path / "wide.png"))
    write_file(str(tmp_path / "small.jpg"), encode_jpeg(torch.full((3, 32, 32), 77, dtype=torch.uint8)))
    out = D._decode_files([str(tmp_path / "small.jpg"), str(tmp_path / "wide.png")], D.DATASETS["cifar10"])
    assert out.shape == (2, 3, 32, 32)
    assert (out[0].int() - 77).abs().max() <= 2
    assert out[1, :, 10:22, 10:22].min() > 200
    assert out[1, :, :, :6].max() < 50 and out[1, :, :, 26:].max() < 50

    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.jpg"):
        D._decode_files([str(tmp_path / "broken.jpg")], D.DATASETS["cifar10"])


# ---------------------------------------------------------------------------------------------
# torchvision source


def _write_fake_cifar10(root: Path, train: D.ImageSet, test: D.ImageSet, monkeypatch) -> None:
    """The ``cifar-10-batches-py`` pickles of ``train``/``test``, with checksums torchvision accepts."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name: str, obj: dict) -> list[str]:
        (folder / name).write_bytes(pickle.dumps(obj))
        return [name, hashlib.md5((folder / name).read_bytes()).hexdigest()]

    def batch(data: D.ImageSet, idx: torch.Tensor) -> dict:
        # One row per image: 1024 red, 1024 green, 1024 blue values (CHW order), as in the release.
        return {"data": data.images[idx].reshape(len(idx), -1).numpy(), "labels": data.labels[idx].tolist()}

    parts = torch.arange(len(train)).chunk(5)
    train_list = [dump(f"data_batch_{i + 1}", batch(train, part)) for i, part in enumerate(parts)]
    test_list = [dump("test_batch", batch(test, torch.arange(len(test))))]
    name, md5 = dump("batches.meta", {"label_names": train.classes})
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", train_list)
    monkeypatch.setattr(cls, "test_list", test_list)
    monkeypatch.setattr(cls, "meta", {"filename": name, "key": "label_names", "md5": md5})


def test_torchvision_path_gives_the_image_folder_tensors(tiny_dir, tmp_path, monkeypatch):
    splits = ("train_full", "test")
    folder = {s: D.load_split("cifar10", s, data_dir=tiny_dir, cache_dir=tmp_path / "cache") for s in splits}
    _write_fake_cifar10(tmp_path / "tv", folder["train_full"], folder["test"], monkeypatch)
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path / "tv"))
    for split in splits:
        tv = D.load_split("cifar10", split)
        assert tv.images.dtype == torch.uint8 and tv.images.is_contiguous()
        assert tv.labels.dtype == torch.int64
        assert torch.equal(tv.images, folder[split].images)
        assert torch.equal(tv.labels, folder[split].labels)
        assert tv.classes == folder[split].classes == CIFAR10_CLASSES
    val = D.load_split("cifar10", "val", val_per_class=2)
    assert torch.bincount(val.labels).tolist() == [2] * 10
    assert not list((tmp_path / "tv").glob("*.tar.gz"))  # verified files are not downloaded again


def test_failed_download_is_a_data_error(tmp_path, monkeypatch):
    def offline(self):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    with pytest.raises(DataError, match=D.DATA_ENV) as err:
        D.load_split("cifar10", "test", data_dir=tmp_path)
    assert str(tmp_path) in str(err.value) and "no network" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Bad folders and resolution


def test_missing_folder_is_a_data_error(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=D.DATA_ENV) as err:
        D.load_split("cifar10", "test", data_dir=missing)
    assert str(missing) in str(err.value) and isinstance(err.value, FileNotFoundError)
    monkeypatch.setenv(D.DATA_ENV, str(missing))
    with pytest.raises(DataError, match=str(missing)):
        D.load_split("cifar10", "test")
    with pytest.raises(DataError, match="ImageFolder"):
        D.load_split("imagenet", "test", data_dir=tmp_path)  # exists, but no tree and no download


@pytest.mark.parametrize("problem", ["no_class_folders", "empty_class", "no_test_split", "class_mismatch"])
def test_malformed_folder_is_a_data_error(tiny_dir, tmp_path, problem):
    tree = tmp_path / "tree"
    if problem == "no_class_folders":
        (tree / "train").mkdir(parents=True)
        (tree / "train" / "0001.jpg").write_bytes(b"")
        split, expected = "train_full", "class folders"
    else:
        shutil.copytree(tiny_dir, tree)
        split, expected = "test", "train/<class>"
        if problem == "empty_class":
            shutil.rmtree(tree / "test" / "dog")
            (tree / "test" / "dog").mkdir()
            expected = "'dog' holds no"
        elif problem == "no_test_split":
            shutil.rmtree(tree / "test")
            expected = "no test/ or val/"
        else:
            (tree / "test" / "dog").rename(tree / "test" / "doggo")
            expected = "differ"
    with pytest.raises(DataError, match=expected) as err:
        D.load_split("cifar10", split, data_dir=tree, cache_dir=tmp_path / "cache")
    assert str(tree) in str(err.value) and D.DATA_ENV in str(err.value)


def test_wrong_number_of_classes_is_a_data_error(tiny_dir, tmp_path):
    with pytest.raises(DataError, match="expected 100 class folders for cifar100, found 10"):
        D.load_split("cifar100", "test", data_dir=tiny_dir, cache_dir=tmp_path)


def test_imagenet_val_folder_is_its_test_split(tmp_path):
    tree = _make_tree(tmp_path / "tree", {"train": 2, "val": 1})
    data = D.load_split("cifar10", "test", data_dir=tree, cache_dir=tmp_path / "cache")
    assert len(data) == 10 and data.labels.tolist() == list(range(10))


def test_resolve_dirs_precedence(tmp_path, monkeypatch):
    assert D.resolve_data_dir() == D.DEFAULT_DATA_DIR.expanduser().resolve()
    assert D.resolve_cache_dir() == D.DEFAULT_CACHE_DIR.expanduser().resolve()
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path / "env"))
    monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "cenv"))
    assert D.resolve_data_dir() == tmp_path / "env"
    assert D.resolve_cache_dir() == tmp_path / "cenv"
    assert D.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert D.resolve_cache_dir(tmp_path / "carg") == tmp_path / "carg"


def test_unknown_split_lists_the_splits():
    with pytest.raises(ValueError, match="train_full"):
        D.load_split("cifar10", "valid")


# ---------------------------------------------------------------------------------------------
# Batched tensor ops


def _random_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch_generator(seed), dtype=torch.uint8)


def test_augment_is_a_padded_crop_or_its_mirror():
    images = _random_images(64)
    out = D.augment(images, torch_generator(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, D.augment(images, torch_generator(0)))
    assert not torch.equal(out, D.augment(images, torch_generator(1)))

    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    matches = torch.zeros(64, dtype=torch.long)
    offsets, flips = set(), 0
    for dy in range(9):
        for dx in range(9):
            crop = padded[:, :, dy:dy + 32, dx:dx + 32]
            for flip, candidate in ((False, crop), (True, crop.flip(-1))):
                hit = (candidate == out).flatten(1).all(1)
                matches += hit
                if hit.any():
                    offsets.add((dy, dx))
                    flips += int(hit.sum()) if flip else 0
    assert matches.tolist() == [1] * 64  # every output is exactly one crop, flipped or not
    assert 12 < flips < 52 and len(offsets) > 20  # flips happen about half the time; offsets vary


def test_add_noise_has_the_requested_sigma_and_stays_in_range():
    grey = torch.full((64, 3, 32, 32), 0.5)
    noisy = D.add_noise(grey, 0.08, torch_generator(0))
    assert abs((noisy - grey).std().item() - 0.08) < 0.002  # 0.5 is 6 sigma from the clip
    assert torch.equal(noisy, D.add_noise(grey, 0.08, torch_generator(0)))
    bright = D.add_noise(torch.full((8, 3, 32, 32), 0.98), 0.18, torch_generator(0))
    assert bright.min() >= 0 and bright.max() == 1  # clipped, not wrapped


def test_to_float_and_normalize():
    info = D.DATASETS["cifar10"]
    x = D.to_float(torch.tensor([0, 255], dtype=torch.uint8))
    assert x.dtype == torch.float32 and x.tolist() == [0.0, 1.0]
    mean = torch.tensor(info.mean)[None, :, None, None].expand(2, 3, 4, 4)
    std = torch.tensor(info.std)[None, :, None, None]
    assert torch.allclose(D.normalize(mean, info), torch.zeros(2, 3, 4, 4), atol=1e-6)
    assert torch.allclose(D.normalize(mean + std, info), torch.ones(2, 3, 4, 4), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Loader


def test_batch_loader_plain_pass_is_the_normalised_set(test_set):
    loader = D.BatchLoader(test_set, 256, shuffle=False, augment=False, device="cpu", seed=0)
    assert len(loader) == 40
    assert len(D.BatchLoader(test_set, 256, shuffle=False, augment=False, seed=0, drop_last=True)) == 39
    batches = list(loader)
    assert len(batches) == 40 and batches[-1][0].shape == (16, 3, 32, 32)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert torch.equal(y, test_set.labels)
    assert torch.allclose(x, D.normalize(D.to_float(test_set.images), D.DATASETS["cifar10"]))
    mean = x.mean(dim=(0, 2, 3))
    std = x.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1)
    assert mean.abs().max() < 0.05 and (std - 1).abs().max() < 0.05


def test_batch_loader_epochs_are_seeded(test_set):
    def first_batch(loader):
        return next(iter(loader))

    def make(seed):
        return D.BatchLoader(
            test_set, 128, shuffle=True, augment=True, noise_sigma=0.08, device="cpu", seed=seed
        )

    loader = make(0)
    epoch0 = first_batch(loader)
    epoch1 = first_batch(loader)
    assert epoch0[0].shape == (128, 3, 32, 32) and epoch0[0].dtype == torch.float32
    assert epoch0[1].dtype == torch.int64
    assert not torch.equal(epoch0[1], epoch1[1])  # reshuffled
    again = make(0)
    assert all(torch.equal(a, b) for a, b in zip(epoch0, first_batch(again)))
    again.set_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(epoch1, first_batch(again)))
    assert not torch.equal(epoch0[1], first_batch(make(1))[1])
    # Noise and augmentation change the pixels of the same images.
    clean = D.BatchLoader(test_set, 128, shuffle=True, augment=False, device="cpu", seed=0)
    noisy_x, noisy_y = first_batch(make(0))
    clean_x, clean_y = first_batch(clean)
    assert torch.equal(noisy_y, clean_y) and not torch.allclose(noisy_x, clean_x)
