#!/usr/bin/env python3
"""Synthetic genomics data: the generating model and the on-disk format.

The code lives in ``semicrf.genomics``; this file re-exports it for the
benchmark folder. Run as a script, it is ``synthetic_benchmark.py generate``.
"""

import sys
from pathlib import Path

try:
    import semicrf  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from semicrf.genomics.dataset import (  # noqa: E402,F401
    SPLITS,
    DataError,
    Split,
    duration_statistics,
    generate_dataset,
    load_metadata,
    load_split,
    save_split,
)
from semicrf.genomics.features import FEATURE_KINDS, decode_bases, encode, feature_dim  # noqa: E402,F401
from semicrf.genomics.formats import read_fasta, read_gff3, write_bed, write_fasta, write_gff3  # noqa: E402,F401
from semicrf.genomics.synthetic import (  # noqa: E402,F401
    CLASS_NAMES,
    DEFAULT_DURATIONS,
    DurationModel,
    GeneratorConfig,
    RealisticContent,
    SyntheticSequence,
    class_names,
    generate_sequence,
    generate_sequences,
    sample_segments,
    sequence_seed,
)

if __name__ == "__main__":
    from semicrf.genomics.cli import main

    sys.exit(main(["generate", *sys.argv[1:]]))
