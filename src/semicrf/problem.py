"""Input checking and the float64 problem every backend works on.

The public functions accept tensors in any floating dtype; everything is
validated here once, at the boundary, with messages that name the argument and
say what is expected. Backends then receive a :class:`Problem` whose scores are
float64, whose padding past each length has been zeroed (so it can hold
anything, NaN included), and whose optional inputs are either tensors or None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Problem", "make_problem"]


@dataclass
class Problem:
    """One batch of semi-CRF inputs, checked and converted to float64.

    Shapes: ``emissions`` (B, T, C); ``transitions`` (C, C); ``durations`` (K, C);
    ``initial``, ``final`` (C,); ``start_scores``, ``end_scores`` (B, T, C) or None;
    ``lengths`` (B,) int64 in [1, T]; ``labels`` (B, T) int64 in [0, C) or None
    (zero past each length); ``label_classes`` (C,) int64 or None: when given, ``labels``
    name classes, label c belongs to class ``label_classes[c]``, and a segment of label c is
    consistent with ``labels`` where they equal its class (the backends compute the runs of the
    class values, in C columns since classes lie in [0, C), and label c reads its class's column).
    """

    emissions: Tensor
    transitions: Tensor
    durations: Tensor
    initial: Tensor
    final: Tensor
    start_scores: Tensor | None
    end_scores: Tensor | None
    lengths: Tensor
    labels: Tensor | None = None
    label_classes: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.emissions.shape[0]

    @property
    def num_positions(self) -> int:
        return self.emissions.shape[1]

    @property
    def num_classes(self) -> int:
        return self.emissions.shape[2]

    @property
    def max_duration(self) -> int:
        return self.durations.shape[0]

    def padding_mask(self) -> Tensor:
        """(B, T) bool, True at positions inside each sequence."""
        t = torch.arange(self.num_positions, device=self.lengths.device)
        return t[None, :] < self.lengths[:, None]


def _fail(name: str, message: str) -> None:
    raise ValueError(f"`{name}`: {message}")


def _check_float(name: str, x, shape: tuple, shape_text: str, device) -> Tensor:
    if not isinstance(x, Tensor):
        _fail(name, f"expected a torch.Tensor of shape {shape_text}, got {type(x).__name__}")
    if not x.is_floating_point():
        _fail(name, f"expected a floating-point tensor, got dtype {x.dtype}; convert it with .float()")
    if x.dim() != len(shape):
        _fail(name, f"expected {len(shape)} dimensions {shape_text}, got shape {tuple(x.shape)}")
    for got, want in zip(x.shape, shape):
        if want is not None and got != want:
            _fail(name, f"expected shape {shape_text} = {tuple(w if w is not None else g for g, w in zip(x.shape, shape))}, "
                  f"got {tuple(x.shape)}")
    if x.device != device:
        _fail(name, f"is on {x.device} but emissions are on {device}; put all inputs on one device")
    return x


def _bad_values(x: Tensor, allow_neg_inf: bool) -> Tensor:
    """A 0-d bool tensor, on x's device: x holds NaN or +inf (or -inf, unless allowed)."""
    return ~(x < float("inf")).all() if allow_neg_inf else ~torch.isfinite(x).all()


def _fail_values(name: str, x: Tensor) -> None:
    """Raise the error for x, which :func:`_bad_values` flagged."""
    if torch.isnan(x).any():
        _fail(name, "contains NaN")
    if torch.isposinf(x).any():
        _fail(name, "contains +inf; scores must be finite (or -inf to forbid a choice)")
    _fail(name, "contains -inf; emissions must be finite (forbid a label with -inf in "
          "start_scores/end_scores, transitions or durations instead)")


def _check_shapes(emissions, transitions, durations, initial, final, start_scores, end_scores):
    """Type, shape and device of every score tensor (no values read). Returns (B, T, C, device)."""
    if not isinstance(emissions, Tensor):
        _fail("emissions", f"expected a torch.Tensor of shape (B, T, C), got {type(emissions).__name__}")
    if emissions.dim() != 3:
        _fail("emissions", f"expected 3 dimensions (B, T, C), got shape {tuple(emissions.shape)}")
    B, T, C = emissions.shape
    if B == 0:
        _fail("emissions", "the batch is empty (B = 0); pass at least one sequence")
    if T == 0:
        _fail("emissions", "has no positions (T = 0); sequences need at least one position")
    if C == 0:
        _fail("emissions", "has no classes (C = 0)")
    device = emissions.device
    _check_float("emissions", emissions, (B, T, C), "(B, T, C)", device)
    _check_float("transitions", transitions, (C, C), "(C, C)", device)
    if not isinstance(durations, Tensor) or durations.dim() != 2:
        _fail("durations", "expected a tensor of shape (K, C), K the longest segment, got "
              + (str(tuple(durations.shape)) if isinstance(durations, Tensor) else type(durations).__name__))
    if durations.shape[0] < 1:
        _fail("durations", "has K = 0 rows; K (the longest segment) must be at least 1")
    _check_float("durations", durations, (None, C), "(K, C)", device)
    if initial is not None:
        _check_float("initial", initial, (C,), "(C,)", device)
    if final is not None:
        _check_float("final", final, (C,), "(C,)", device)
    if start_scores is not None:
        _check_float("start_scores", start_scores, (B, T, C), "(B, T, C)", device)
    if end_scores is not None:
        _check_float("end_scores", end_scores, (B, T, C), "(B, T, C)", device)
    return B, T, C, device


def _lengths64(lengths, B: int, T: int, device, checks: list) -> Tensor:
    """(B,) int64 on ``device``, T for every sequence when None; the range check goes on ``checks``."""
    if lengths is None:
        return torch.full((B,), T, dtype=torch.int64, device=device)
    if not isinstance(lengths, Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dtype == torch.bool or lengths.is_floating_point() or lengths.is_complex():
        _fail("lengths", f"expected an integer tensor of shape (B,), got dtype {lengths.dtype}")
    if lengths.shape != (B,):
        _fail("lengths", f"expected shape (B,) = ({B},), got {tuple(lengths.shape)}")
    lengths64 = lengths.to(device=device, dtype=torch.int64)

    def bad_lengths():
        bad = lengths64[(lengths64 < 1) | (lengths64 > T)][0].item()
        _fail("lengths", f"every length must be in [1, T] = [1, {T}], got {bad}")
    checks.append((((lengths64 < 1) | (lengths64 > T)).any(), bad_lengths))
    return lengths64


def _label_classes64(label_classes, labels, C: int, device, checks: list) -> Tensor | None:
    """(C,) int64 class of each label, or None; value checks go on ``checks``."""
    if label_classes is None:
        return None
    if labels is None:
        _fail("label_classes", "is only used with labels (log_likelihood); leave it out here")
    if not isinstance(label_classes, Tensor) or label_classes.dtype == torch.bool or \
            label_classes.is_floating_point() or label_classes.is_complex():
        _fail("label_classes", f"expected an integer torch.Tensor of shape (C,) = ({C},), got "
              f"{label_classes.dtype if isinstance(label_classes, Tensor) else type(label_classes).__name__}")
    if label_classes.shape != (C,):
        _fail("label_classes", f"expected shape (C,) = ({C},), one class per label, got {tuple(label_classes.shape)}")
    if label_classes.device != device:
        _fail("label_classes", f"is on {label_classes.device} but emissions are on {device}")
    classes = label_classes.to(torch.int64)
    bad = (classes < 0) | (classes >= C)

    def bad_classes():
        c = bad.nonzero()[0].item()
        _fail("label_classes", f"classes must lie in [0, C) = [0, {C}); label {c} has class {classes[c].item()}")
    checks.append((bad.any(), bad_classes))
    return classes


def _labels64(labels, inside: Tensor, C: int, device, checks: list, classes: Tensor | None = None) -> Tensor | None:
    """(B, T) int64 labels, zero past each length (``inside`` (B, T) bool), or None; the range
    check goes on ``checks``. With ``classes`` the labels are classes: each must be the class of
    some label."""
    if labels is None:
        return None
    B, T = inside.shape
    if not isinstance(labels, Tensor):
        _fail("labels", f"expected an integer torch.Tensor of shape (B, T), got {type(labels).__name__}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        _fail("labels", f"expected an integer tensor, got dtype {labels.dtype}")
    if labels.shape != (B, T):
        _fail("labels", f"expected shape (B, T) = ({B}, {T}), got {tuple(labels.shape)}")
    if labels.device != device:
        _fail("labels", f"is on {labels.device} but emissions are on {device}")
    labels64 = torch.where(inside, labels.to(torch.int64), torch.zeros((), dtype=torch.int64, device=device))
    bad = inside & ((labels64 < 0) | (labels64 >= C))
    if classes is not None:
        present = torch.zeros(C, dtype=torch.bool, device=device)
        present[classes.clamp(0, C - 1)] = True
        bad = bad | (inside & ~present[labels64.clamp(0, C - 1)])

    def bad_labels():
        b, pos = bad.nonzero()[0].tolist()
        if classes is not None:
            _fail("labels", f"with label_classes, labels are classes: each must be the class of some label "
                  f"(one of {sorted(set(classes.tolist()))}); sequence {b} has {labels[b, pos].item()} "
                  f"at position {pos}")
        _fail("labels", f"labels must lie in [0, C) = [0, {C}) within each length; "
              f"sequence {b} has {labels[b, pos].item()} at position {pos}")
    checks.append((bad.any(), bad_labels))
    return labels64


def _raise_first_failed(checks: list) -> None:
    """Reads every flag of ``checks`` (flag, raise) in one host sync; raises the first failed one's error."""
    flags = torch.stack([flag for flag, _ in checks]).tolist()
    for failed, (_, raise_it) in zip(flags, checks):
        if failed:
            raise_it()


def make_problem(emissions, transitions, durations, lengths=None, initial=None, final=None,
                 start_scores=None, end_scores=None, labels=None, label_classes=None) -> Problem:
    """Validate the public inputs and convert them to a float64 :class:`Problem`."""
    B, T, C, device = _check_shapes(emissions, transitions, durations, initial, final, start_scores, end_scores)
    # Every value check is a flag on the device, read once at the end (one host sync), so a call
    # on a GPU waits for the device once; a failing check then raises its own message, in order.
    checks = []  # (flag, raise)
    lengths64 = _lengths64(lengths, B, T, device, checks)
    t = torch.arange(T, device=device)
    inside = t[None, :] < lengths64[:, None]  # (B, T)
    mask3 = inside[:, :, None]

    def seq64(name, x):
        x = x.detach().to(torch.float64)
        # Padding past each length may hold anything; it must not reach the sums.
        x = torch.where(mask3, x, torch.zeros((), dtype=torch.float64, device=device))
        checks.append((_bad_values(x, allow_neg_inf=name != "emissions"), lambda: _fail_values(name, x)))
        return x

    def par64(name, x, default_shape):
        if x is None:
            return torch.zeros(default_shape, dtype=torch.float64, device=device)
        x = x.detach().to(torch.float64)
        checks.append((_bad_values(x, allow_neg_inf=True), lambda: _fail_values(name, x)))
        return x

    classes64 = _label_classes64(label_classes, labels, C, device, checks)
    labels64 = _labels64(labels, inside, C, device, checks, classes64)
    p = Problem(
        emissions=seq64("emissions", emissions),
        transitions=par64("transitions", transitions, (C, C)),
        durations=par64("durations", durations, None),
        initial=par64("initial", initial, (C,)),
        final=par64("final", final, (C,)),
        start_scores=None if start_scores is None else seq64("start_scores", start_scores),
        end_scores=None if end_scores is None else seq64("end_scores", end_scores),
        lengths=lengths64,
        labels=labels64,
        label_classes=classes64,
    )
    _raise_first_failed(checks)
    return p


def reverse_problem(p: Problem) -> Problem:
    """The same model on each sequence read backwards.

    Position t of a sequence of length L maps to L - 1 - t; transitions are
    transposed, ``initial``/``final`` and ``start_scores``/``end_scores`` swap.
    Forward quantities of the reversed problem are backward quantities of ``p``.
    """
    B, T, C = p.emissions.shape
    t = torch.arange(T, device=p.lengths.device)
    L = p.lengths[:, None]
    idx = torch.where(t[None, :] < L, L - 1 - t[None, :], t[None, :])  # (B, T)

    def flip(x):
        if x is None:
            return None
        return torch.gather(x, 1, idx[:, :, None].expand(-1, -1, x.shape[-1]) if x.dim() == 3 else idx)

    return Problem(
        emissions=flip(p.emissions),
        transitions=p.transitions.t().contiguous(),
        durations=p.durations,
        initial=p.final,
        final=p.initial,
        start_scores=flip(p.end_scores),
        end_scores=flip(p.start_scores),
        lengths=p.lengths,
        labels=flip(p.labels),
        label_classes=p.label_classes,
    )
