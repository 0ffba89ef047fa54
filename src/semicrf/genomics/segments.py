"""Per-position labels as segment lists.

A segment is ``(start, end, label)`` with ``end`` exclusive, the convention used
throughout the package (engine, data, metrics, exports).
"""

from __future__ import annotations

import numpy as np


def labels_to_segments(labels: np.ndarray) -> np.ndarray:
    """Maximal runs of equal labels, as an (n, 3) int64 array of (start, end, label).

    Adjacent positions with the same label always form one segment, so two
    same-label segments that touch are merged.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    n = labels.shape[0]
    if n == 0:
        return np.zeros((0, 3), dtype=np.int64)
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [n]))
    return np.stack([starts, ends, labels[starts].astype(np.int64)], axis=1).astype(np.int64)


def segment_durations(labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Durations of the maximal runs of each class: a list of int64 arrays, one per class."""
    seg = labels_to_segments(labels)
    dur = seg[:, 1] - seg[:, 0]
    return [dur[seg[:, 2] == c] for c in range(num_classes)]
