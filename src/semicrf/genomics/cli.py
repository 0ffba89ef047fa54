"""Command line of the synthetic genomics benchmark: ``semicrf-bench <command> ...``.

Each subcommand is registered by an ``add_<name>_parser(subparsers)``
function listed in ``SUBCOMMANDS``; it sets ``func``, which receives the
parsed arguments and returns an exit status. A ValueError (DataError
included) raised by a command is reported as one line on stderr with exit
status 2 (under torchrun, naming the process).

The command needs the ``genomics`` extra (matplotlib, tqdm, pytorch-crf);
with only the base package installed, every invocation (``--help``
included) prints one line naming ``pip install 'semicrf[genomics]'`` and
exits with status 2. Modules imported at the top of this file and of the
subcommand modules must therefore not import those packages: the check in
:func:`main` runs after them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

from .chains import add_chain_parser
from .compare import add_compare_parser
from .importer import add_import_parser
from .synthetic import CONTENT_KINDS, GeneratorConfig
from .run import add_run_parser


def add_generate_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "generate",
        help="generate a synthetic genomics data set",
        description="Generate train/val/test splits of synthetic gene-structure sequences with known "
        "segment-duration laws, as compressed arrays plus FASTA, GFF3 and BED exports.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--output-dir", required=True, help="directory to write (must be empty or new)")
    p.add_argument("--num-train", type=int, default=1000, help="training sequences (>= 1)")
    p.add_argument("--num-val", type=int, default=200, help="validation sequences (>= 0)")
    p.add_argument("--num-test", type=int, default=200, help="test sequences (>= 0)")
    p.add_argument("--seq-length", type=int, default=20_000, help="target sequence length T (each within +-10%%)")
    p.add_argument("--num-classes", type=int, choices=(3, 5), default=3,
                   help="3: intergenic, exon, intron; 5: adds 5utr, 3utr")
    p.add_argument("--seed", type=int, default=42, help="random seed (>= 0)")
    p.add_argument("--no-splice-motifs", dest="splice_motifs", action="store_false",
                   help="do not place GT...AG (or any splice signal) at introns")
    p.add_argument("--content", choices=CONTENT_KINDS, default="random",
                   help="random: independent bases at GC 0.42; realistic: codon structure, GC contrast, "
                   "splice consensus, polypyrimidine tract")
    p.add_argument("--overwrite", action="store_true", help="replace the data set in a non-empty --output-dir")
    p.set_defaults(func=run_generate)
    return p


def run_generate(args) -> int:
    from tqdm import tqdm

    from .dataset import generate_dataset

    config = GeneratorConfig(
        num_classes=args.num_classes,
        seq_length=args.seq_length,
        splice_motifs=args.splice_motifs,
        content=args.content,
    )
    bar = None

    def progress(n: int) -> None:
        # The bar appears with the first sequence, i.e. only once every input has been validated.
        nonlocal bar
        if bar is None:
            total = args.num_train + args.num_val + args.num_test
            bar = tqdm(total=total, unit="seq", desc="generate", file=sys.stderr, disable=None)
        bar.update(n)

    started = time.perf_counter()
    try:
        meta = generate_dataset(
            args.output_dir,
            config,
            num_train=args.num_train,
            num_val=args.num_val,
            num_test=args.num_test,
            seed=args.seed,
            overwrite=args.overwrite,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    counts = ", ".join(f"{split} {n}" for split, n in meta["splits"].items())
    print(
        f"wrote {args.output_dir}: {counts} sequences of ~{args.seq_length} bp, C={args.num_classes}, "
        f"content {args.content}, splice motifs {'on' if args.splice_motifs else 'off'} "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return 0


# A new subcommand: write its add_<name>_parser and list it here.
SUBCOMMANDS = (add_generate_parser, add_run_parser, add_compare_parser, add_import_parser, add_chain_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Synthetic genomics benchmark of segment-duration learning (semi-Markov CRFs)."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


# The importable module of each distribution of the 'genomics' extra (pyproject.toml).
GENOMICS_EXTRA = {"matplotlib": "matplotlib", "tqdm": "tqdm", "torchcrf": "pytorch-crf"}


def missing_genomics_extra() -> list[str]:
    """The distributions of the ``genomics`` extra that cannot be found, in pyproject order."""
    missing = []
    for module, dist in GENOMICS_EXTRA.items():
        # Looked up, not imported: importing matplotlib would add a fraction of a second to every command.
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dist)
    return missing


def main(argv=None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]), run the command, return its exit status."""
    missing = missing_genomics_extra()
    if missing:
        # Checked before parsing, so that --help and a typo get the same answer as a command. generate needs
        # tqdm and run all three; compare alone would work, but one rule for the whole command is easier to
        # follow than a list of which subcommand needs which package.
        prog = os.path.basename(sys.argv[0]) or "semicrf-bench"
        print(f"{prog}: error: the benchmark needs the 'genomics' extra ({', '.join(missing)} not installed): "
              "pip install 'semicrf[genomics]'", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as e:
        # Under torchrun every process reports; say which one.
        world = os.environ.get("WORLD_SIZE", "1")
        where = f" (process {os.environ.get('RANK', '?')} of {world})" if world not in ("", "1") else ""
        print(f"{parser.prog} {args.command}{where}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
