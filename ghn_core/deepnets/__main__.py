"""``python -m ghn_core.deepnets generate --split train --n N --out DIR``: make a DeepNets-1M split."""
from __future__ import annotations

import argparse
import logging
import sys
import time

from ..utils import user_errors
from .generate import DEFAULT_CHUNK_SIZE, generate_split
from .sampler import SPLITS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ghn_core.deepnets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate (or resume) one split into an HDF5 store")
    gen.add_argument("--split", required=True, choices=sorted(SPLITS))
    gen.add_argument("--n", type=int, default=None, help="number of nets (default: the published split size)")
    gen.add_argument("--out", required=True, help="output folder; the file is deepnets1m_<split>.h5")
    gen.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    gen.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    gen.add_argument("--no-graphs", action="store_true", help="do not keep each net's graph (about 4x faster)")
    gen.add_argument("--overwrite", action="store_true", help="replace a finished or differently-set store")
    gen.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with user_errors(args.debug, interrupted="the chunks written so far are kept; the same command resumes"):
        start = time.perf_counter()
        store = generate_split(args.split, args.n, args.out, workers=args.workers, chunk_size=args.chunk_size,
                               graphs=not args.no_graphs, overwrite=args.overwrite)
        print(f"{store.path}: {len(store)} nets of the {store.split} split "
              f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
