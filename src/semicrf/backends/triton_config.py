"""The Triton backend's settings: :class:`TritonConfig`, the exactness guard's constants and the
choosers of block shapes by the problem's size (:func:`chunk_config`, :func:`viterbi_inner_block`,
:func:`viterbi_end_block`).

Plain Python (no Triton, no GPU): :mod:`.triton` re-exports every name, so ``backends.triton.TritonConfig``
and the rest keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

NEG_INF = float("-inf")

#: Largest spread (nats) of finite duration scores per label, and of finite g below its block's
#: largest, that the linear far part takes: products stay within [e^-700, 1]. Part of the
#: exactness guard, not a tuning knob.
SPREAD_D = 300.0
SPREAD_G = 400.0
#: A far-part product glin · w never falls below e^-PRODUCT_SPREAD (``weights_kernel``'s gsp).
PRODUCT_SPREAD = 700.0
#: Test modes of the far-part helpers (:func:`testing_helpers`).
_HELPER_MODES = ("staged", "orphaned")


def _pow2(n: int) -> int:
    """The least power of two >= n (and >= 1)."""
    return 1 << (max(int(n), 1) - 1).bit_length()


@dataclass(frozen=True)
class TritonConfig:
    """Settings of the Triton backend; the defaults are the measured ones (docs/engine_gpu.md).

    Pass one to :func:`forward_backward`, :func:`forward_backward_pair`, :func:`viterbi` or
    :class:`Sweep` (``config=``), or to the engine's functions through :class:`Configured`. None of
    them changes a result beyond rounding; they change speed.
    """

    #: Positions per chunk of the chunked sweep (a power of two); None: :func:`chunk_config`.
    chunk: int | None = None
    #: Warps per program of the chunked sweep (a power of two); None: :func:`chunk_config`.
    chunk_warps: int | None = None
    #: Far-part tile of the chunked sweep: about this many values per thread per sub-block, for the
    #: log semiring and for max-plus (Viterbi); 0 cuts a block into sub-blocks of one start.
    far_tile: int = 32
    far_tile_max: int = 8
    #: Far-part helpers of the chunked sweeps (both semirings): one more program per row computes
    #: the far part of the row's chunks ahead of it, on SMs the rows leave idle. "auto": on a GPU
    #: when every program fits at once (twice the rows at most the SMs); "off".
    split_far: str = "auto"
    #: Blocks of the far part that a row with a helper keeps (the helper takes the ones before).
    near_blocks: int = 1
    #: Polls of a hand-over counter before a program gives up and flags its row for the exact kernel.
    spin_limit: int = 1 << 22
    #: Positions per tile of the duration-gradient kernel (rounded up to a power of two:
    #: :attr:`dgrad_positions`); ``--checkpoint-interval`` of the gradient check.
    dgrad_chunk: int = 16
    #: Durations per tile and warps per program of the duration-gradient kernel.
    dgrad_block_d: int = 64
    dgrad_warps: int = 4
    # Test hook (see :func:`testing_helpers`), not a constructor argument: a user's config always
    # has None.
    _helpers_test: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        def pow2(name, v):
            if v is not None and (int(v) < 1 or _pow2(v) != v):
                raise ValueError(f"TritonConfig.{name}: must be a power of two >= 1, got {v!r}")
        pow2("chunk", self.chunk)
        pow2("chunk_warps", self.chunk_warps)
        pow2("dgrad_block_d", self.dgrad_block_d)
        pow2("dgrad_warps", self.dgrad_warps)
        if self.split_far not in ("auto", "off"):
            raise ValueError(f"TritonConfig.split_far: 'auto' or 'off', got {self.split_far!r}")
        for name in ("far_tile", "far_tile_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"TritonConfig.{name}: must be >= 0, got {getattr(self, name)!r}")
        for name in ("near_blocks", "spin_limit", "dgrad_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"TritonConfig.{name}: must be >= 1, got {getattr(self, name)!r}")

    @property
    def dgrad_positions(self) -> int:
        """Positions per tile of the duration-gradient kernel: :attr:`dgrad_chunk` rounded up to a
        power of two."""
        return _pow2(self.dgrad_chunk)


#: The configuration of every call that passes none. Frozen: to change a setting, pass a config.
DEFAULT_CONFIG = TritonConfig()


def testing_helpers(config: TritonConfig, mode: str) -> TritonConfig:
    """For tests only: ``config`` with the far-part helpers forced into a test mode, also under the
    interpreter, where programs run one after another and could never hand over.

    "staged": the helpers and the rows launched one after the other on a finished sweep's blocks
    (checks the arithmetic of the split, not the hand-over); "orphaned": rows expecting helpers
    that never come (every wait gives up; the rows go to the exact kernel).
    """
    if mode not in _HELPER_MODES:
        raise ValueError(f"testing_helpers: mode is one of {_HELPER_MODES}, got {mode!r}")
    out = replace(config)
    object.__setattr__(out, "_helpers_test", mode)
    return out


def chunk_config(K: int, config: TritonConfig = DEFAULT_CONFIG, labels: int | None = None,
                 max_plus: bool = False) -> tuple[int, int]:
    """(positions per chunk, warps per program) of the chunked sweep: ``config.chunk`` and
    ``config.chunk_warps`` where set, else by measurement on an H200 (docs/engine_gpu.md, "Chunk
    and warps"): chunks of 32 with 4 warps for K <= 256, of 64 with 16 warps above; above K = 256 the
    log sweep (not ``max_plus``) of 17 to 32 ``labels`` takes chunks of 32 with 8 warps, of more
    labels chunks of 32 with 16 warps (their tiles of 64 positions spill: "Chunk and warps by labels")."""
    q, w = (32, 4) if K <= 256 else (64, 16)
    if K > 256 and not max_plus and labels is not None and labels > 16:
        q, w = (32, 8) if _pow2(labels) == 32 else (32, 16)
    return (config.chunk or q, config.chunk_warps or w)


def viterbi_inner_block(C: int) -> int:
    """The Viterbi kernels' inner block (the meet kernel's ends, the argmax kernel's durations) for C
    labels: 32, halved for each doubling of the lanes past 32, so that their (32, inner, lanes) tiles
    stay at 32 768 elements. Any block gives the same answer (the tiles only split the search); the
    size is what the compiler has to unroll: at 64 lanes and 32, ``viterbi_meet_kernel`` took 225 s to
    compile for sm_90 (``benchmarks/compile_times.py``, docs/engine_gpu.md "Compile time")."""
    return max(4, min(32, 1024 // _pow2(C)))


def viterbi_end_block(C: int) -> int:
    """The argmax kernel's block of ends for C labels: 32 up to 32 lanes, then 32 768 / lanes^2 (at
    least 1), since its search for the label before each segment holds an (ends, lanes, lanes) tile:
    at 64 lanes, 32 ends made that 131 072 float64 elements, minutes of compiling. Any block gives the
    same answer."""
    lanes = _pow2(C)
    return max(1, min(32, 32768 // (lanes * lanes)))
