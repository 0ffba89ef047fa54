"""Backends behind one dispatcher.

- ``"reference"``: plain PyTorch (any device); the specification every other backend is tested against.
- ``"cpu"``: compiled with numba; the fast path on the CPU. CUDA inputs are computed on the host.
- ``"triton"``: GPU kernels (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``).
- ``"auto"``: ``"triton"`` for CUDA tensors when Triton is usable, otherwise ``"cpu"``.

``"streaming"`` is accepted as another name for ``"auto"``: every backend streams over the
sequence in O(B·T·C + K·C) memory.
"""

from __future__ import annotations

import importlib
import os

#: The backends' names, and other names for them: the one list (command-line choices are built from
#: these two).
NAMES = ("auto", "reference", "cpu", "triton")
ALIASES = {"streaming": "auto"}


def _load(name: str):
    """The module of a concrete backend (every name of NAMES but "auto" is its module's)."""
    return importlib.import_module(f"{__name__}.{name}")


def triton_usable() -> bool:
    """True when the Triton backend can run here (a CUDA GPU with Triton, or the interpreter)."""
    try:
        mod = _load("triton")
    except ImportError:
        return False
    return mod.usable()


def resolve(name: str, device) -> str:
    """The concrete backend that ``name`` means for tensors on ``device``."""
    if not isinstance(name, str) or name.lower() not in NAMES + tuple(ALIASES):
        raise ValueError(f"`backend`: unknown backend {name!r}; choose one of "
                         f"{', '.join(repr(n) for n in NAMES + tuple(ALIASES))}")
    name = ALIASES.get(name.lower(), name.lower())
    if name != "auto":
        return name
    if getattr(device, "type", str(device)) == "cuda" and os.environ.get("SEMICRF_NO_TRITON") != "1" \
            and triton_usable():
        return "triton"
    return "cpu"


def get(name, problem):
    """The backend module for ``name`` and the problem's device. ``name`` may also be a backend
    object with its own settings (:class:`semicrf.backends.triton.Configured`), used as it is."""
    if not isinstance(name, str) and hasattr(name, "forward_backward"):
        mod = name
    else:
        concrete = resolve(name, problem.emissions.device)
        try:
            mod = _load(concrete)
        except ImportError as exc:
            raise ValueError(f"`backend`: the {concrete!r} backend is not available here ({exc}); "
                             "use backend='reference' or install what it needs") from exc
    check = getattr(mod, "check_problem", None)
    if check is not None:
        check(problem)
    return mod


def forward_backward_pair(backend, problem, need_marginals: bool):
    """(unconstrained, constrained to ``problem.labels``) forward-backward of ``backend``: in one
    call where the backend offers it (the Triton backend runs both sweeps in one launch)."""
    pair = getattr(backend, "forward_backward_pair", None)
    if pair is not None:
        return pair(problem, need_marginals=need_marginals)
    return (backend.forward_backward(problem, constrained=False, need_marginals=need_marginals),
            backend.forward_backward(problem, constrained=True, need_marginals=need_marginals))
