"""On-disk format of a synthetic data set, and the pipeline that writes one.

A data directory holds::

    metadata.json                  config, seed, version, split sizes, duration statistics
    train.npz  val.npz  test.npz   the splits (arrays below)
    <split>.fa  <split>.gff3  <split>.bed   the same splits for external tools

Each ``<split>.npz`` is a zip of ``.npy`` arrays (deflate-compressed)::

    codes    (N,)    uint8   base codes 0..4 = A, C, G, T, N of all sequences, concatenated
    labels   (N,)    uint8   class ids, concatenated
    offsets  (n+1,)  int64   sequence i is [offsets[i], offsets[i+1])
    names    (n,)    str     sequence names (``train_000000``, ...)

``metadata.json`` is written last; a directory without it is incomplete.
Nothing in any file depends on the time or the machine, so the same seed and
settings give byte-identical files.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from . import formats
from .segments import labels_to_segments
from .synthetic import GeneratorConfig, generate_sequence, sequence_seed

SPLITS = ("train", "val", "test")
FORMAT = "semicrf-synthetic-genomics"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so archives do not record when they were written
_REQUIRED_KEYS = ("format", "format_version", "class_names", "num_classes", "config", "seed", "version", "splits")


class DataError(ValueError):
    """A data directory that is missing, incomplete or corrupt; the message says what to do."""


@dataclass
class Split:
    """One split in memory.

    sequences: list of (L_i,) uint8 base codes. labels: list of (L_i,) int64
    class ids. names: list of sequence names.
    """

    sequences: list[np.ndarray]
    labels: list[np.ndarray]
    names: list[str]

    def __len__(self) -> int:
        return len(self.sequences)


def sequence_names(split: str, count: int) -> list[str]:
    """``<split>_000000``, ... (at least six digits, so names sort like indices)."""
    width = max(6, len(str(max(count - 1, 0))))
    return [f"{split}_{i:0{width}d}" for i in range(count)]


def _regenerate_hint(data_dir) -> str:
    return f"generate it again with: semicrf-bench generate --output-dir {data_dir} --overwrite"


def load_metadata(data_dir) -> dict:
    """The metadata of a data directory (see the module docstring); raises DataError."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data directory {str(data_dir)!r} does not exist; create it with: "
                        f"semicrf-bench generate --output-dir {data_dir}")
    path = data_dir / METADATA_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing, so {data_dir} is not a complete data set "
                        f"(was generation interrupted?); {_regenerate_hint(data_dir)}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is unreadable ({e}); {_regenerate_hint(data_dir)}") from None
    missing = [k for k in _REQUIRED_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise DataError(f"{path} lacks {missing}; {_regenerate_hint(data_dir)}")
    if meta["format"] != FORMAT or meta["format_version"] != FORMAT_VERSION:
        raise DataError(f"{path} describes format {meta['format']!r} version {meta['format_version']!r}, "
                        f"this package reads {FORMAT!r} version {FORMAT_VERSION}; {_regenerate_hint(data_dir)}")
    return meta


def load_split(data_dir, split: str) -> Split:
    """Split ``split`` of a data directory; raises DataError if missing or inconsistent."""
    meta = load_metadata(data_dir)
    if split not in meta["splits"]:
        raise DataError(f"split must be one of {list(meta['splits'])}, got {split!r}")
    path = Path(data_dir) / f"{split}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            codes, labels, offsets, names = (z[k] for k in ("codes", "labels", "offsets", "names"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing; {_regenerate_hint(data_dir)}") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path} is corrupt ({type(e).__name__}: {e}); {_regenerate_hint(data_dir)}") from None
    n = int(meta["splits"][split])
    problem = None
    if offsets.shape != (n + 1,) or names.shape != (n,):
        problem = f"it holds {names.shape[0]} sequences, metadata says {n}"
    elif codes.shape != labels.shape or codes.ndim != 1 or offsets[0] != 0 or offsets[-1] != codes.shape[0]:
        problem = "its arrays have inconsistent lengths"
    elif np.any(np.diff(offsets) < 0):
        problem = "its offsets decrease"
    elif codes.size and (codes.max() > 4 or labels.max() >= meta["num_classes"]):
        problem = "it has base codes above 4 or labels outside the classes"
    if problem:
        raise DataError(f"{path} does not match {METADATA_FILE}: {problem}; {_regenerate_hint(data_dir)}")
    labels = labels.astype(np.int64)
    spans = list(zip(offsets[:-1].tolist(), offsets[1:].tolist()))
    return Split(
        sequences=[codes[a:b] for a, b in spans],
        labels=[labels[a:b] for a, b in spans],
        names=[str(s) for s in names],
    )


def save_split(data_dir, split: str, split_data: Split) -> Path:
    """Write ``<split>.npz`` atomically and deterministically; returns its path."""
    lengths = np.array([len(s) for s in split_data.sequences], dtype=np.int64)
    if any(len(l) != len(s) for l, s in zip(split_data.labels, split_data.sequences)) or len(split_data.labels) != len(
        split_data.sequences
    ) or len(split_data.names) != len(split_data.sequences):
        raise ValueError("Split must have one label array and one name per sequence, each label array as long as it")
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    arrays = {
        "codes": _concat(split_data.sequences, np.uint8),
        "labels": _concat(split_data.labels, np.uint8),
        "offsets": offsets,
        "names": np.array(split_data.names, dtype=str) if split_data.names else np.zeros(0, dtype="<U1"),
    }
    path = Path(data_dir) / f"{split}.npz"
    with formats.atomic_output(path) as f:
        # Level 1: random bases barely compress further at higher levels, which cost 10x the time.
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for key, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arr, allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getbuffer(), compresslevel=1)
    return path


def _concat(arrays, dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if len(arrays) else np.zeros(0, dtype=dtype)


def duration_statistics(labels: list[np.ndarray], class_names, exclude_last: bool = True) -> dict:
    """{class_name: {count, mean, median, p5, p95, min, max}} of segment lengths (maximal label runs).

    exclude_last: leave out each sequence's last segment, which the generator
    cuts at the sequence end (so the statistics describe complete segments).
    Values are None for a class with no segment.
    """
    per_class = [[] for _ in class_names]
    for lab in labels:
        seg = labels_to_segments(lab)
        if exclude_last:
            seg = seg[:-1]
        dur = seg[:, 1] - seg[:, 0]
        for c in range(len(class_names)):
            per_class[c].append(dur[seg[:, 2] == c])
    out = {}
    for name, parts in zip(class_names, per_class):
        d = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if d.size == 0:
            out[name] = {k: (0 if k == "count" else None) for k in ("count", "mean", "median", "p5", "p95", "min", "max")}
            continue
        p5, median, p95 = np.percentile(d, [5, 50, 95])
        out[name] = {
            "count": int(d.size),
            "mean": float(d.mean()),
            "median": float(median),
            "p5": float(p5),
            "p95": float(p95),
            "min": int(d.min()),
            "max": int(d.max()),
        }
    return out


def check_output_dir(output_dir, overwrite: bool) -> Path:
    """Refuse an existing non-empty directory (or a file) unless ``overwrite``; creates nothing."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir (--output-dir) {str(output_dir)!r} is a file; choose a directory path")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise ValueError(
            f"output_dir (--output-dir) {str(output_dir)!r} is not empty; choose another directory "
            f"or pass --overwrite to replace the data set in it"
        )
    return output_dir


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        flag = "--" + name.replace("_", "-")
        raise ValueError(f"{name} ({flag}) must be an integer >= {minimum}, got {value!r}")
    return int(value)


def generate_dataset(
    output_dir,
    config: GeneratorConfig,
    num_train: int = 1000,
    num_val: int = 200,
    num_test: int = 200,
    seed: int = 42,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Generate all splits into ``output_dir`` and return the metadata written.

    Everything is validated before anything is written. With ``overwrite``, the
    data-set files in the directory are replaced (other files are left alone);
    the old metadata is removed first so an interrupted run leaves an
    incomplete, not a mixed, data set. ``progress(n)`` is called after every n
    generated sequences.
    """
    counts = {
        "train": _check_count("num_train", num_train, 1),
        "val": _check_count("num_val", num_val, 0),
        "test": _check_count("num_test", num_test, 0),
    }
    sequence_seed(seed, 0, 0)  # validates the seed
    if not isinstance(config, GeneratorConfig):
        raise ValueError(f"config must be a GeneratorConfig, got {type(config).__name__}")
    output_dir = check_output_dir(output_dir, overwrite)

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"output_dir (--output-dir) {str(output_dir)!r} cannot be created ({e.strerror})") from None
    (output_dir / METADATA_FILE).unlink(missing_ok=True)
    names = config.class_names
    stats, lengths = {}, {}
    for split_index, split in enumerate(SPLITS):
        data = _generate_split(config, split, split_index, counts[split], seed, progress)
        save_split(output_dir, split, data)
        formats.write_fasta(output_dir / f"{split}.fa", data.names, data.sequences)
        formats.write_gff3(output_dir / f"{split}.gff3", data.names, data.labels, names)
        formats.write_bed(output_dir / f"{split}.bed", data.names, data.labels, names)
        stats[split] = duration_statistics(data.labels, names)
        seq_len = np.array([len(s) for s in data.sequences])
        lengths[split] = (
            {"total": int(seq_len.sum()), "min": int(seq_len.min()), "max": int(seq_len.max()), "mean": float(seq_len.mean())}
            if seq_len.size
            else {"total": 0, "min": None, "max": None, "mean": None}
        )
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": __version__,
        "seed": int(seed),
        "num_classes": config.num_classes,
        "class_names": list(names),
        "splits": counts,
        "config": {**config.to_dict(), "num_train": counts["train"], "num_val": counts["val"], "num_test": counts["test"]},
        "sequence_lengths": lengths,
        "duration_stats": stats,
        "duration_stats_scope": "maximal label runs, excluding each sequence's last (cut) segment",
        "files": {s: {"arrays": f"{s}.npz", "fasta": f"{s}.fa", "gff3": f"{s}.gff3", "bed": f"{s}.bed"} for s in SPLITS},
    }
    with formats.atomic_output(output_dir / METADATA_FILE, "w") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    return meta


def _generate_split(config, split, split_index, count, seed, progress) -> Split:
    sequences, labels = [], []
    for i in range(count):
        s = generate_sequence(config, sequence_seed(seed, split_index, i))
        sequences.append(s.codes)
        labels.append(s.labels.astype(np.uint8))  # a byte per position while the split is held in memory
        if progress is not None:
            progress(1)
    return Split(sequences=sequences, labels=labels, names=sequence_names(split, count))
