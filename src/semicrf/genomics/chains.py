"""``semicrf-bench chain``: annotated loci joined into genome-like sequences by intergenic filler.

A gene set cut into loci, such as the AUGUSTUS tutorial's fly genes (one gene
with about a kbp of flank on each side), never shows a model a long stretch
between two genes: every intergenic run it trains on is a kbp or two. On a
whole chromosome, where genes lie kbp to tens of kbp apart, such a model reads
a long non-coding stretch between two genes as an intron and merges them
(``docs/real_genes.md``, "The K = 1 000 model on the whole arm").

This command rewrites the chosen splits of an imported data set (``train``
and ``val`` by default; ``test`` is copied unchanged, so per-locus scores stay
comparable) as chains: the loci in an order drawn with the seed, ``loci`` of
them a chain, and between two neighbours a filler of intergenic sequence whose
length is drawn from an exponential law of mean ``filler_mean`` (rounded to
whole bases). The filler is made of the split's own flanks (the intergenic
runs that open and close its sequences: real non-coding sequence, labelled
intergenic by the annotation), pieces drawn at random and the last one cut to
length, so it adds no base and no label that the split did not already hold,
and no split borrows another's sequence. Every locus keeps its bases and
labels; its place in its chain is recorded in the metadata
(``config.chains``), as are the settings and the data set it came from.

The default mean, 4 000 bases, with a locus's own two flanks of about a kbp
puts about 6 kbp of intergenic sequence between neighbouring genes: about the
fly's density, 13 601 genes in about 120 Mbp of euchromatin (Adams et al.
2000, Science 287:2185), one gene per 8.8 kbp with genes of 2 to 3 kbp.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import dataset
from .importer import AnnotationError, is_imported, write_dataset

INTERGENIC = "intergenic"


@dataclass(frozen=True)
class ChainConfig:
    """How :func:`chain_dataset` joins loci: ``loci`` per chain (the last chain of a split may hold
    fewer), fillers of mean ``filler_mean`` bases between neighbours, drawn with ``seed``, for the
    data set's ``splits``."""

    loci: int = 2
    filler_mean: float = 4000.0
    seed: int = 0
    splits: tuple[str, ...] = ("train", "val")

    def __post_init__(self):
        if isinstance(self.loci, bool) or not isinstance(self.loci, (int, np.integer)) or self.loci < 1:
            raise ValueError(f"loci (--loci) must be an integer >= 1, got {self.loci!r}")
        if isinstance(self.filler_mean, bool) or not isinstance(self.filler_mean, (int, float)) \
                or not 0 <= self.filler_mean < float("inf"):
            raise ValueError(f"filler_mean (--filler-mean) must be a number of bases >= 0, got {self.filler_mean!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed (--seed) must be an integer >= 0, got {self.seed!r}")
        unknown = [s for s in self.splits if s not in dataset.SPLITS]
        if unknown or not self.splits or len(set(self.splits)) != len(self.splits):
            raise ValueError(f"splits (--splits) must be distinct names among {', '.join(dataset.SPLITS)}, "
                             f"got {', '.join(self.splits) or 'none'}")


def flanks(split: dataset.Split, intergenic: int) -> list[np.ndarray]:
    """The base codes of the intergenic run that opens each sequence and of the one that closes it
    (a sequence that is intergenic throughout gives itself once; runs of length 0 are left out)."""
    out = []
    for codes, labels in zip(split.sequences, split.labels):
        other = np.flatnonzero(labels != intergenic)
        if other.size == 0:
            if len(codes):
                out.append(codes)
            continue
        for piece in (codes[:other[0]], codes[other[-1] + 1:]):
            if len(piece):
                out.append(piece)
    return out


def draw_filler(pool: list[np.ndarray], length: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Pieces of ``pool`` drawn at random (with replacement), the last cut to its first bases, whose
    lengths add up to ``length``."""
    pieces, left = [], int(length)
    while left > 0:
        piece = pool[int(rng.integers(len(pool)))][:left]
        pieces.append(piece)
        left -= len(piece)
    return pieces


def chain_split(split: dataset.Split, config: ChainConfig, intergenic: int, rng: np.random.Generator,
                prefix: str) -> tuple[dataset.Split, list[dict]]:
    """``split`` as chains named ``<prefix>_chain_000000``...; returns them and, for each, its loci's
    names, their start offsets in it, and its fillers' lengths."""
    if len(split) == 0:
        return dataset.Split([], [], []), []
    pool = flanks(split, intergenic)
    if not pool and config.filler_mean > 0 and config.loci > 1 and len(split) > 1:
        raise AnnotationError(f"the {prefix} split has no intergenic flank to make filler of; give --filler-mean 0 "
                              "or leave the split out of --splits")
    order = rng.permutation(len(split))
    chains, records = dataset.Split([], [], []), []
    for c, first in enumerate(range(0, len(order), config.loci)):
        members = order[first:first + config.loci]
        codes, labels, starts, fillers, at = [], [], [], [], 0
        for k, i in enumerate(members):
            if k:
                length = int(round(rng.exponential(config.filler_mean))) if config.filler_mean > 0 else 0
                pieces = draw_filler(pool, length, rng)
                codes += pieces
                labels.append(np.full(length, intergenic, dtype=np.int64))
                fillers.append(length)
                at += length
            starts.append(at)
            codes.append(split.sequences[i])
            labels.append(np.asarray(split.labels[i], dtype=np.int64))
            at += len(split.sequences[i])
        name = f"{prefix}_chain_{c:06d}"
        chains.sequences.append(np.concatenate(codes).astype(np.uint8))
        chains.labels.append(np.concatenate(labels))
        chains.names.append(name)
        records.append({"name": name, "loci": [split.names[i] for i in members], "starts": starts,
                        "fillers": fillers})
    return chains, records


def chain_dataset(data_dir, output_dir, config: ChainConfig = ChainConfig(), overwrite: bool = False) -> dict:
    """Write ``data_dir`` with ``config.splits`` as chains into ``output_dir``; returns its metadata.
    ``data_dir`` must be an imported data set (``semicrf-bench import``); it is read whole and checked
    before anything is written, and is never changed."""
    meta = dataset.load_metadata(data_dir)
    if not is_imported(meta):
        raise AnnotationError(f"data_dir (--data-dir) {str(data_dir)!r} was not written by semicrf-bench import; "
                              "chain joins imported loci (a generated data set's sequences are whole already)")
    if INTERGENIC not in meta["class_names"]:
        raise AnnotationError(f"data_dir (--data-dir) {str(data_dir)!r} has no {INTERGENIC!r} class to fill with")
    if Path(output_dir).resolve() == Path(data_dir).resolve():
        raise AnnotationError("output_dir (--output-dir) must differ from data_dir (--data-dir): the input is "
                              "never changed")
    output_dir = dataset.check_output_dir(output_dir, overwrite)
    splits = {s: dataset.load_split(data_dir, s) for s in dataset.SPLITS}
    intergenic = meta["class_names"].index(INTERGENIC)
    rng = np.random.default_rng(config.seed)
    chained = {}
    for s in config.splits:
        splits[s], chained[s] = chain_split(splits[s], config, intergenic, rng, s)
    source = {k: v for k, v in meta["config"].items() if k not in ("num_train", "num_val", "num_test")}
    record = {**asdict(config), "splits": list(config.splits), "from": str(data_dir),
              "from_splits": meta["splits"], "chains": chained}
    return write_dataset(output_dir, splits, {**source, "chains": record}, meta["seed"])


# ----------------------------------------------------------------------------
# the command


def add_chain_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "chain",
        help="join an imported data set's loci into genome-like sequences with intergenic filler",
        description="Rewrite the chosen splits of an imported data set (semicrf-bench import) as chains of "
        "--loci loci with intergenic filler between neighbours (exponential lengths of mean --filler-mean, "
        "made of the split's own flanks), so that a model trains on the long stretches between genes that "
        "a chromosome has and loci with a kbp of flank lack. The other splits are copied unchanged.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data-dir", required=True, help="imported data set to read (never changed)")
    p.add_argument("--output-dir", required=True, help="directory to write (must be empty or new)")
    p.add_argument("--loci", type=int, default=ChainConfig.loci, help="loci per chain (>= 1)")
    p.add_argument("--filler-mean", type=float, default=ChainConfig.filler_mean,
                   help="mean filler length in bases between two loci of a chain (exponential; >= 0)")
    p.add_argument("--splits", default=",".join(ChainConfig.splits), help="comma-separated splits to chain")
    p.add_argument("--seed", type=int, default=ChainConfig.seed, help="seed of the order and the fillers (>= 0)")
    p.add_argument("--overwrite", action="store_true", help="replace the data set in a non-empty --output-dir")
    p.set_defaults(func=run_chain)
    return p


def run_chain(args) -> int:
    started = time.perf_counter()
    config = ChainConfig(loci=args.loci, filler_mean=args.filler_mean, seed=args.seed,
                         splits=tuple(s.strip() for s in args.splits.split(",") if s.strip()))
    meta = chain_dataset(args.data_dir, args.output_dir, config, overwrite=args.overwrite)
    counts = ", ".join(f"{s} {n}" for s, n in meta["splits"].items())
    bases = ", ".join(f"{s} {v['total']}" for s, v in meta["sequence_lengths"].items())
    print(f"wrote {args.output_dir}: {counts} sequences ({bases} bases; {', '.join(config.splits)} chained) "
          f"({time.perf_counter() - started:.1f} s)")
    return 0
