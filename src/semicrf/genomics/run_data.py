"""The data of a ``run``: the three splits (cut to ``--max-*``) and what identifies the data set.

Two identities, both recorded in checkpoints and compared by ``--resume``:
:func:`data_fingerprint` (what the metadata says defines the set: generator
settings, seed, sizes, classes) and :func:`data_files_hash` (the bytes of the
files the runner reads), which catches a set that was edited, or regenerated
by another version of the generator, under the same metadata.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import dataset
from .run_config import RunConfig

SPLITS = ("train", "val", "test")


def load_run_data(config: RunConfig) -> tuple[dict, dict[str, dataset.Split]]:
    """(metadata, {split: Split}) of ``config.data_dir``; raises DataError for a missing or empty split."""
    meta = dataset.load_metadata(config.data_dir)
    splits = {}
    for split, limit in zip(SPLITS, (config.max_train, config.max_val, config.max_test)):
        if split not in meta["splits"]:
            raise dataset.DataError(f"{config.data_dir} has no {split} split; generate a data set with train, val "
                                    "and test splits")
        data = dataset.load_split(config.data_dir, split)
        if limit is not None:
            data = dataset.Split(data.sequences[:limit], data.labels[:limit], data.names[:limit])
        if len(data) == 0:
            raise dataset.DataError(f"the {split} split of {config.data_dir} has no sequences; the benchmark needs "
                                    f"at least one (generate with --num-{split} >= 1)")
        splits[split] = data
    return meta, splits


def data_fingerprint(meta: dict) -> str:
    """A short hash of what defines a data set (generator config, seed, split sizes, classes)."""
    key = {k: meta.get(k) for k in ("config", "seed", "splits", "class_names")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def data_files_hash(data_dir) -> str:
    """A short SHA-256 of the metadata and split files the runner reads.

    The split files are compressed arrays (tens of MB for the default set),
    so this costs well under a second; the exports (FASTA, GFF3, BED) are not
    read by the runner and are left out.
    """
    digest = hashlib.sha256()
    files = [dataset.METADATA_FILE] + [f"{split}.npz" for split in SPLITS]
    for name in files:
        digest.update(name.encode() + b"\0")
        with open(Path(data_dir) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
