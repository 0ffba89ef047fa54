"""The data of a ``run``: the three splits (cut to ``--max-*``) and the data set's fingerprint."""

from __future__ import annotations

import hashlib
import json

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
