"""Padded batches of one split: base codes gathered in a background thread a few batches ahead of
the model, features computed on the model's device.

Shapes: features (B, T, D) float32, labels (B, T) int64, lengths (B,) int64,
T the longest sequence of the batch.
"""

from __future__ import annotations

import queue
import threading

import numpy as np
import torch

from . import dataset, features
from .distributed import Processes


class Batcher:
    """Padded batches of one split: features (B, T, D) float32, labels (B, T) int64, lengths (B,).

    A background thread gathers each batch's base codes and labels (one byte a
    position) a couple of batches ahead of the model; the features are
    computed from the codes on the model's device
    (:func:`features.encode_batch`: on a GPU, the k-mer features of a batch at
    the spec's size take milliseconds, where the host took longer than a
    training step), so only the codes travel.

    With ``processes`` of several ranks, each global batch (``batch_size``
    sequences, in the one-process order) is split: this rank takes every
    ``world``-th sequence of it, starting at its rank.
    """

    def __init__(self, split: dataset.Split, feature_kind: str, batch_size: int, device: torch.device,
                 processes: Processes = Processes()):
        self.split, self.kind, self.batch_size, self.device = split, feature_kind, batch_size, device
        self.processes = processes
        self.lengths = np.array([len(s) for s in split.sequences], dtype=np.int64)
        features.feature_dim(feature_kind)  # an unknown kind is refused here, not in the thread
        self._small_labels = all(int(lab.max(initial=0)) < 256 for lab in split.labels)

    def _host_batch(self, index: np.ndarray):
        lengths = self.lengths[index]
        total = int(lengths.max())
        codes = np.full((len(index), total), 4, dtype=np.uint8)
        labels = np.zeros((len(index), total), dtype=np.uint8 if self._small_labels else np.int64)
        for row, i in enumerate(index):
            n = lengths[row]
            codes[row, :n] = self.split.sequences[i]
            labels[row, :n] = self.split.labels[i]
        return index, torch.from_numpy(codes), torch.from_numpy(labels), torch.from_numpy(lengths)

    def _batches(self, indices: list[np.ndarray]):
        for index, codes, labels, lengths in prefetched(map(self._host_batch, indices)):
            codes, lengths = codes.to(self.device), lengths.to(self.device)
            x = features.encode_batch(codes, lengths, self.kind)
            yield index, (x, labels.to(self.device).long(), lengths)

    def shuffled(self, seed: int, epoch: int, start: int = 0):
        """This rank's part of each batch from batch ``start`` on, in an order drawn from (seed, epoch).

        The order does not depend on ``start``: a run resumed mid-epoch sees
        the batches the uninterrupted run would have seen (the skipped ones
        are not computed).

        Yields (features, labels, lengths, share): ``share`` = this rank's
        positions x world / the global batch's positions, the factor that
        turns this rank's mean loss per position into its part of the global
        batch's mean under DDP's gradient averaging (1.0 in one process). A
        rank left without a sequence in a short last batch gets the batch's
        first sequence with share 0, so that it still joins the step.
        """
        rank, world = self.processes.rank, self.processes.world
        order = np.random.default_rng([seed, epoch]).permutation(len(self.lengths))
        parts, shares = [], []
        for s in range(0, len(order), self.batch_size):
            batch = order[s:s + self.batch_size]
            mine = batch[rank::world]
            if len(mine):
                parts.append(mine)
                shares.append(float(self.lengths[mine].sum()) * world / float(self.lengths[batch].sum()))
            else:
                parts.append(batch[:1])
                shares.append(0.0)
        for share, (_, batch) in zip(shares[start:], self._batches(parts[start:])):
            yield (*batch, share)

    def in_length_order(self):
        """(index, batch) pairs over this rank's shard of the split, longest first (little padding).

        The shard is every ``world``-th sequence in length order, in batches
        of ``ceil(batch_size / world)``: together the ranks hold as many
        sequences at once as one process would.
        """
        rank, world = self.processes.rank, self.processes.world
        order = np.argsort(-self.lengths, kind="stable")[rank::world]
        size = -(-self.batch_size // world)
        return self._batches([order[s:s + size] for s in range(0, len(order), size)])

    def __len__(self):
        return -(-len(self.lengths) // self.batch_size)


def prefetched(items, depth: int = 2):
    """Iterate ``items`` while a background thread computes up to ``depth`` of them ahead."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def hand_over(item):
        # Waits for room in short polls, so a consumer that stopped (stop set) frees the thread.
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce():
        try:
            for item in items:
                hand_over(item)
                if stop.is_set():
                    return
            item = done
        except BaseException as e:  # handed to the consumer, which raises it
            item = e
        hand_over(item)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # The worker ends at its next poll; waiting for it leaves no thread inside PyTorch's C++ code
        # when the process exits (a thread cut there at interpreter shutdown aborts the process).
        stop.set()
        worker.join()
