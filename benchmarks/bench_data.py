"""Speed of ghn_core.data: JPEG decoding, cache loads, and BatchLoader epochs.

    python benchmarks/bench_data.py --data-dir ../shared/data/cifar10

Decodes into a fresh temporary cache (so the first load always decodes), then times the cached
loads and one epoch of each loader mode on every available device.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time

import torch

from ghn_core.data import DATASETS, BatchLoader, load_split

logger = logging.getLogger("bench_data")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def epoch(loader: BatchLoader) -> None:
    for x, _ in loader:
        x.sum()  # touch every batch
    if loader.device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="ImageFolder tree (default: $GHN_NAS_DATA)")
    parser.add_argument("--dataset", default="cifar10", choices=sorted(DATASETS))
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory() as cache_dir:
        kwargs = dict(data_dir=args.data_dir, cache_dir=cache_dir)
        for split in ("test", "train_full"):
            data, seconds = timed(lambda: load_split(args.dataset, split, **kwargs))
            rate = len(data) / seconds
            logger.info("decode %-10s %6d images  %6.2f s  (%.0f img/s)", split, len(data), seconds, rate)
        for split in ("test", "train_full", "train", "val"):
            data, seconds = timed(lambda: load_split(args.dataset, split, **kwargs))
            logger.info("cached %-10s %6d images  %6.2f s", split, len(data), seconds)

        train = load_split(args.dataset, "train", **kwargs)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            for augment, noise in ((False, 0.0), (True, 0.0), (True, DATASETS[args.dataset].noise_sigma)):
                loader = BatchLoader(train, args.batch_size, shuffle=True, augment=augment,
                                     noise_sigma=noise, device=device, seed=0)
                _, seconds = timed(lambda: epoch(loader))
                logger.info("epoch  %-4s augment=%-5s noise=%.2f  %6.2f s  (%.0f img/s)",
                            device, augment, noise, seconds, len(train) / seconds)


if __name__ == "__main__":
    main()
