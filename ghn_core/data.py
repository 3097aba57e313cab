"""Image data: CIFAR-10/100 and ImageNet as uint8 tensors, augmented and normalised on the device.

Two sources give the same thing, an :class:`ImageSet` of uint8 (N, 3, H, W) images:

- an ImageFolder tree ``train/<class>/*.jpg`` + ``test/<class>/*.jpg`` (ImageNet: ``val/``),
  decoded once and cached as one ``.pt`` file, so later loads never touch the JPEGs;
- for CIFAR-10/100 without such a tree, torchvision's download (already-decoded pickles).

The paper's split holds a class-balanced 10% of the training images out as validation
(:func:`val_indices`); the test split stays separate. :class:`BatchLoader` keeps a whole
set on the device and does crop/flip augmentation, Gaussian noise and normalisation
there on whole batches::

    train = load_split("cifar10", "train")        # 45k images
    for x, y in BatchLoader(train, 64, shuffle=True, augment=True, seed=0):
        ...                                        # x: (64, 3, 32, 32) float, normalised
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tarfile
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from .errors import DataError
from .utils import resolve_device, torch_generator

__all__ = [
    "DATASETS", "IMAGE_SPLITS", "DatasetInfo", "get_dataset_info", "ImageSet", "load_split", "val_indices",
    "resolve_data_dir", "resolve_cache_dir", "augment", "to_float", "add_noise", "normalize", "resize", "BatchLoader",
]

logger = logging.getLogger(__name__)

DATA_ENV = "GHN_NAS_DATA"
CACHE_ENV = "GHN_NAS_CACHE"
DEFAULT_DATA_DIR = Path("~/.cache/ghn-nas/data")  # torchvision's download root
DEFAULT_CACHE_DIR = Path("~/.cache/ghn-nas")
IMAGE_SPLITS = ("train", "val", "test", "train_full")  # of the image data sets (DeepNets-1M splits: deepnets.SPLITS)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CACHE_FORMAT = 1  # bump when the cached tensors change meaning; old files are then ignored
DECODE_CHUNK = 1024  # files per batched decode_jpeg call


@dataclass(frozen=True)
class DatasetInfo:
    """What the code needs to know about a data set; looked up by name in :data:`DATASETS`."""

    num_classes: int
    image_size: int  # side of the square images stored in the cache
    resize_size: int  # shorter side before the centre crop at decode time (no-op when == image_size)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    noise_sigma: float  # Gaussian noise of the robustness proxy, on [0, 1] pixels
    val_per_class: int  # training images per class held out as validation (10% in all)


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        num_classes=10, image_size=32, resize_size=32,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        noise_sigma=0.08, val_per_class=500,
    ),
    "cifar100": DatasetInfo(
        num_classes=100, image_size=32, resize_size=32,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        noise_sigma=0.08, val_per_class=50,
    ),
    # Evaluation-style preprocessing (resize 256, centre crop 224) at decode time.
    "imagenet": DatasetInfo(
        num_classes=1000, image_size=224, resize_size=256,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        noise_sigma=0.18, val_per_class=50,
    ),
}
# torchvision is imported where images are decoded or downloaded: it costs seconds per process.
_TORCHVISION = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}


def get_dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; an unknown name raises and lists the known ones."""
    if name not in DATASETS:
        raise ValueError(f"expected a dataset in {sorted(DATASETS)}, got {name!r} instead")
    return DATASETS[name]


@dataclass
class ImageSet:
    """A labelled image set held as tensors (on any device)."""

    images: Tensor  # (N, 3, H, W) uint8
    labels: Tensor  # (N,) int64, indices into ``classes``
    classes: list[str]
    dataset: str  # key of DATASETS: sets the normalisation and noise level

    def __post_init__(self) -> None:
        get_dataset_info(self.dataset)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(
                f"expected uint8 images of shape (N, 3, H, W), got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)} instead"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"expected int64 labels of shape ({len(self.images)},), got {self.labels.dtype} "
                f"of shape {tuple(self.labels.shape)} instead"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Tensor) -> ImageSet:
        """A new set of the images at ``indices`` (a copy, in that order)."""
        indices = indices.to(self.images.device)
        return ImageSet(self.images[indices], self.labels[indices], list(self.classes), self.dataset)


# ---------------------------------------------------------------------------------------------
# Where the data and the cache live


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir`` if given, else ``$GHN_NAS_DATA``, else the download root."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser().resolve()


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$GHN_NAS_CACHE``, else ``~/.cache/ghn-nas``."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(cache_dir).expanduser().resolve()


def _data_error(root: Path, problem: str) -> DataError:
    return DataError(
        f"{problem} (looked in {root}). Set {DATA_ENV} or pass --data-dir to a folder laid out as "
        f"train/<class>/*.jpg and test/<class>/*.jpg (ImageNet: val/<class>/*.jpg); with neither set, "
        f"CIFAR-10/100 are downloaded by torchvision into {DEFAULT_DATA_DIR}."
    )


# ---------------------------------------------------------------------------------------------
# Splits


def val_indices(labels: Tensor, val_per_class: int, seed: int) -> Tensor:
    """Sorted indices of the class-balanced validation subset: ``val_per_class`` images per class.

    A pure function of its arguments: one ``torch.randperm(N)`` drawn from ``seed`` orders all
    images, and each class contributes its first ``val_per_class`` images in that order. Never
    "the last 5k files", which in a class-ordered folder would be one or two whole classes.
    """
    labels = labels.cpu()
    counts = torch.bincount(labels)
    if val_per_class < 1 or int(counts.min()) <= val_per_class:
        raise ValueError(
            f"expected 1 <= val_per_class < the smallest class ({int(counts.min())} images), "
            f"got {val_per_class} instead"
        )
    perm = torch.randperm(len(labels), generator=torch_generator(seed))
    # A stable sort by label keeps the random order within each class.
    by_class = perm[torch.sort(labels[perm], stable=True).indices]
    first_of_class = counts.cumsum(0) - counts
    rank = torch.arange(len(labels)) - first_of_class[labels[by_class]]  # position within its class
    return by_class[rank < val_per_class].sort().values


def load_split(
    dataset: str = "cifar10",
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    val_per_class: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """Load one split as uint8 tensors on the CPU.

    Splits: ``train_full`` (all training images), ``val`` (``val_per_class`` per class held out of
    them, default ``DATASETS[dataset].val_per_class``: 500 for CIFAR-10, 50 for CIFAR-100 and
    ImageNet, see :func:`val_indices`), ``train`` (``train_full`` minus ``val``), ``test``.

    ``data_dir`` (else ``$GHN_NAS_DATA``, else ``~/.cache/ghn-nas/data``) is either an ImageFolder
    tree, decoded once into ``cache_dir`` (else ``$GHN_NAS_CACHE``, else ``~/.cache/ghn-nas``), or
    for CIFAR a torchvision root, downloaded when the files are missing. Raises DataError when
    neither works.
    """
    info = get_dataset_info(dataset)
    if split not in IMAGE_SPLITS:
        raise ValueError(f"expected a split in {list(IMAGE_SPLITS)}, got {split!r} instead")
    if split == "test":
        return _load_source(dataset, "test", data_dir, cache_dir)
    full = _load_source(dataset, "train", data_dir, cache_dir)
    if split == "train_full":
        return full
    val = val_indices(full.labels, info.val_per_class if val_per_class is None else val_per_class, seed)
    if split == "val":
        return full.subset(val)
    keep = torch.ones(len(full), dtype=torch.bool)
    keep[val] = False
    return full.subset(keep.nonzero().squeeze(1))


def _load_source(
    dataset: str, split: str, data_dir: str | os.PathLike | None, cache_dir: str | os.PathLike | None
) -> ImageSet:
    """The train or test split of whatever ``data_dir`` resolves to."""
    root = resolve_data_dir(data_dir)
    explicit = data_dir is not None or bool(os.environ.get(DATA_ENV))
    if explicit and not root.is_dir():
        # Only the default root is created for a download: an explicit missing path is a typo.
        raise _data_error(root, f"the data folder for {dataset} does not exist")
    if any((root / name).exists() for name in ("train", "test", "val")):
        return _load_image_folder(root, dataset, split, resolve_cache_dir(cache_dir))
    if dataset in _TORCHVISION:
        return _load_torchvision(root, dataset, split)
    raise _data_error(root, f"no ImageFolder tree for {dataset}, and torchvision cannot download it")


# ---------------------------------------------------------------------------------------------
# torchvision source (CIFAR-10/100)


def _load_torchvision(root: Path, dataset: str, split: str) -> ImageSet:
    """CIFAR through torchvision: downloads when the files are missing, else only checks them.

    The pickles are already decoded uint8 arrays, as fast to read as a cache, so none is written.
    """
    import torchvision

    root.mkdir(parents=True, exist_ok=True)
    try:
        ds = getattr(torchvision.datasets, _TORCHVISION[dataset])(str(root), train=split == "train", download=True)
    except (OSError, RuntimeError, tarfile.TarError) as err:  # OSError covers URLError
        raise _data_error(root, f"could not download or read {dataset} with torchvision: {err}") from err
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) -> (N, 3, H, W)
    return ImageSet(images, torch.tensor(ds.targets, dtype=torch.int64), list(ds.classes), dataset)


# ---------------------------------------------------------------------------------------------
# ImageFolder source, with the decoded cache


@dataclass(frozen=True)
class _Listing:
    """The image files of one split folder, in torchvision ImageFolder order."""

    files: list[str]
    labels: list[int]
    classes: list[str]
    fingerprint: str  # file count, total size, newest mtime: changes when the folder does


def _split_dir(root: Path, split: str) -> Path:
    names = ["train"] if split == "train" else ["test", "val"]  # ImageNet calls its test split val/
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise _data_error(root, f"no {' or '.join(n + '/' for n in names)} folder for the {split} split")


def _class_names(split_dir: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def _scan(split_dir: Path) -> _Listing:
    classes = _class_names(split_dir)
    if not classes:
        raise _data_error(split_dir, "no class folders: expected <class>/*.jpg inside the split folder")
    files, labels, total_size, newest = [], [], 0, 0
    for label, name in enumerate(classes):
        count = len(files)
        for folder, _, names in sorted(os.walk(split_dir / name, followlinks=True)):
            for fname in sorted(names):
                if fname.lower().endswith(IMAGE_EXTENSIONS):
                    path = os.path.join(folder, fname)
                    stat = os.stat(path)
                    files.append(path)
                    total_size += stat.st_size
                    newest = max(newest, stat.st_mtime_ns)
        if len(files) == count:
            kinds = "/".join(IMAGE_EXTENSIONS)
            raise _data_error(split_dir / name, f"class folder {name!r} holds no {kinds} images")
        labels += [label] * (len(files) - count)
    return _Listing(files, labels, classes, f"{len(files)}:{total_size}:{newest}")


def _load_image_folder(root: Path, dataset: str, split: str, cache_dir: Path) -> ImageSet:
    info = DATASETS[dataset]
    split_dir = _split_dir(root, split)
    listing = _scan(split_dir)
    if len(listing.classes) != info.num_classes:
        problem = f"expected {info.num_classes} class folders for {dataset}, found {len(listing.classes)}"
        raise _data_error(split_dir, problem)
    if split != "train" and (root / "train").is_dir() and _class_names(root / "train") != listing.classes:
        # Labels are positions in the sorted class list, so both splits must list the same classes.
        raise _data_error(split_dir, f"the class folders differ from those of {root / 'train'}")

    key = f"{CACHE_FORMAT}|{split_dir}|{info.image_size}|{info.resize_size}|{listing.fingerprint}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    cache_file = cache_dir / f"{root.name}-{split}-{info.image_size}px-{digest}.pt"
    cached = _read_cache(cache_file, listing)
    if cached is not None:
        images, labels = cached
    else:
        start = time.perf_counter()
        images = _decode_files(listing.files, info, desc=f"decoding {split_dir}")
        seconds = time.perf_counter() - start
        logger.info("decoded %d images from %s in %.1f s", len(images), split_dir, seconds)
        labels = torch.tensor(listing.labels, dtype=torch.int64)
        _write_cache(cache_file, {"images": images, "labels": labels, "classes": listing.classes})
    return ImageSet(images, labels, list(listing.classes), dataset)


def _read_cache(path: Path, listing: _Listing) -> tuple[Tensor, Tensor] | None:
    """The cached (images, labels), or None when there is no usable cache (a bad one is warned about)."""
    if not path.exists():
        return None
    try:
        # mmap: pages are read as batches touch them, so loading costs nothing up front.
        blob = torch.load(path, mmap=True, weights_only=True)
        images, labels = blob["images"], blob["labels"]
        if blob["classes"] != listing.classes or not len(images) == len(labels) == len(listing.files):
            raise ValueError("its contents do not match the image folder")
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, TypeError, pickle.UnpicklingError,
            zipfile.BadZipFile) as err:
        logger.warning("decoded cache %s is unreadable (%s); rebuilding it", path, err)
        return None
    logger.info("loaded %d decoded images from %s", len(images), path)
    return images, labels


def _write_cache(path: Path, blob: dict) -> None:
    """Write atomically (temp file + rename); a failure costs only the next load's time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(blob, f)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as err:
        logger.warning("could not write the decoded cache %s (%s); the next load decodes again", path, err)
        return
    logger.info("wrote decoded cache %s", path)


def _decode_files(files: list[str], info: DatasetInfo, desc: str = "decoding") -> Tensor:
    """Decode image files into one uint8 (N, 3, S, S) tensor, S = ``info.image_size``.

    JPEGs are decoded in batches by torchvision (libjpeg-turbo), roughly 4x faster than PIL here;
    images of another size get the shorter side resized to ``info.resize_size`` and a centre crop.
    """
    import torchvision.transforms.v2.functional as TF

    size = info.image_size
    images = torch.empty((len(files), 3, size, size), dtype=torch.uint8)
    with tqdm(total=len(files), desc=desc, unit="img", leave=False) as bar, warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs in favour of TorchCodec and warns on every
        # call; pyproject pins torchvision < 0.30, so they stay until that pin moves.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        for start in range(0, len(files), DECODE_CHUNK):
            chunk = files[start:start + DECODE_CHUNK]
            for i, img in enumerate(_decode_chunk(chunk), start):
                if img.shape[-2:] != (size, size):
                    img = TF.resize(img, [info.resize_size], antialias=True)  # shorter side
                    img = TF.center_crop(img, [size, size])
                images[i] = img
            bar.update(len(chunk))
    return images


def _decode_chunk(files: list[str]) -> list[Tensor]:
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

    raw = [read_file(f) for f in files]
    try:
        return decode_jpeg(raw, mode=ImageReadMode.RGB)
    except RuntimeError:
        pass  # a PNG, or a PNG named .jpg (ImageNet has some): decode one by one, by content
    decoded = []
    for path, data in zip(files, raw):
        try:
            decoded.append(decode_image(data, mode=ImageReadMode.RGB))
        except RuntimeError as err:
            raise DataError(f"cannot decode image {path}: {err}") from err
    return decoded


# ---------------------------------------------------------------------------------------------
# Batched tensor ops (any device; the generator must live on the images' device)


def augment(images: Tensor, generator: torch.Generator, *, padding: int = 4) -> Tensor:
    """Random crop with zero padding plus random horizontal flip, for a whole uint8 batch at once.

    Each image gets its own crop offset in [0, 2 * padding] per axis and a flip with probability
    1/2, all drawn from ``generator``. Returns a new (B, C, H, W) uint8 tensor.
    """
    b, c, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (padding, padding, padding, padding))  # (B, C, H + 2p, W + 2p)
    dy = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator, device=dev)
    flip = torch.rand((b, 1), generator=generator, device=dev) < 0.5
    rows = dy + torch.arange(h, device=dev)  # (B, H)
    cols = dx + torch.arange(w, device=dev)  # (B, W)
    cols = torch.where(flip, cols.flip(1), cols)  # a flipped crop reads its columns right to left
    batch = torch.arange(b, device=dev)[:, None, None, None]
    channel = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def to_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return images.float().div_(255)


def add_noise(x01: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """Add N(0, sigma^2) noise to [0, 1] images and clip back to [0, 1] (the robustness proxy)."""
    noise = torch.randn(x01.shape, generator=generator, device=x01.device, dtype=x01.dtype)
    return (x01 + sigma * noise).clamp_(0, 1)


def resize(images: Tensor, side: int | None) -> Tensor:
    """Float images (B, C, H, W) resized to ``side`` x ``side`` (bilinear, antialiased); ``None``: as they are."""
    if side is None or (side == images.shape[-2] and side == images.shape[-1]):
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def normalize(x01: Tensor, info: DatasetInfo) -> Tensor:
    """Per-channel ``(x - mean) / std`` of [0, 1] images (B, 3, H, W)."""
    mean = torch.tensor(info.mean, device=x01.device, dtype=x01.dtype)[:, None, None]
    std = torch.tensor(info.std, device=x01.device, dtype=x01.dtype)[:, None, None]
    return (x01 - mean) / std


# ---------------------------------------------------------------------------------------------
# Loader


class BatchLoader:
    """Iterate ``(x, y)`` batches of an :class:`ImageSet` on the device: x normalised float, y int64.

    The uint8 set is moved to the device once; each batch is indexed, augmented, converted,
    noised and normalised there. Every pass over the loader is one epoch whose order, crops, flips
    and noise come from a generator seeded by ``(seed, epoch)``, so epoch k is the same whenever it
    runs (``set_epoch`` picks k when resuming). Streams differ between CPU and CUDA generators.
    """

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        noise_sigma: float = 0.0,
        device: str | torch.device = "auto",
        seed: int,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {batch_size} instead")
        self.info = get_dataset_info(data.dataset)
        self.device = resolve_device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.noise_sigma = noise_sigma
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (e.g. when resuming a run)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        # SeedSequence mixes (seed, epoch) into one well-spread seed: no two pairs share a stream.
        epoch_seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        gen = torch_generator(epoch_seed, self.device)
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=gen, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.images[idx]
            if self.augment:
                x = augment(x, gen)
            x = to_float(x)
            if self.noise_sigma > 0:
                x = add_noise(x, self.noise_sigma, gen)
            yield normalize(x, self.info), self.labels[idx]
