"""``semicrf-bench import``: annotated real sequence into the benchmark's data format.

Inputs, each given to ``--train``, ``--val`` or ``--test`` (several per flag):

- a GenBank file: one record per sequence (``LOCUS`` name and length,
  ``FEATURES`` with ``CDS`` locations, ``ORIGIN`` bases). Every CDS feature
  is one gene. Locations may be ``a..b``, ``join(...)``, ``complement(...)``
  and any nesting of these; partial (``<``, ``>``), ``order(...)``, between
  (``a^b``) and remote (``X:a..b``) locations are refused.
- ``FASTA:GFF3``, a FASTA file and its GFF3 annotation joined by a colon
  (``genome.fa:genes.gff3``): every transcript (the CDS and stop_codon lines
  sharing a Parent) is one gene.

Any file may be gzipped (recognised by its first bytes, whatever its name).

The result is exactly what ``generate`` writes (see :mod:`.dataset`), with the
five stranded classes of :mod:`.gene_structures` (intergenic, exon+, intron+,
exon-, intron-): coding exons and the introns between them on each strand,
everything else intergenic. Each sequence keeps its own name. Rules:

- bases: A, C, G, T, N in either case (soft-masked lowercase is plain
  sequence); the other IUPAC ambiguity codes (R Y S W K M B D H V) become N;
  anything else (digits inside FASTA, ``-``, ``*``, ``U``, ...) is refused.
- genes that overlap (on either strand), genes outside their sequence, and
  sequences without any gene are refused, naming the file and the gene or
  record; so are sequence names that GFF3 cannot carry and names used twice
  (also across splits: the same locus in training and test data would leak).
- validation split: ``--val FILE...``, or ``--val-fraction F`` (default
  0.1 when ``--val`` is not given) draws that share of the training
  sequences with ``--seed``; the rest stay in training, in file order.

The metadata names the classes and says where the data came from
(``config.source = "imported"``, input file names and SHA-256 digests); it
records no generator, so the oracle model refuses it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from . import dataset, formats
from .gene_structures import STRANDED_CLASSES, Gene, GeneStructureError, genes_to_labels, make_gene, open_text
from .gene_structures import read_genes_gff3

SOURCE = "imported"
_IUPAC_N = "RYSWKMBDHV"
_CODE = np.full(256, 255, dtype=np.uint8)  # 255: refused
for _i, _c in enumerate("ACGTN"):
    _CODE[ord(_c)] = _CODE[ord(_c.lower())] = _i
for _c in _IUPAC_N:
    _CODE[ord(_c)] = _CODE[ord(_c.lower())] = 4
_SEQID = re.compile(r"[a-zA-Z0-9.:^*$@!+_?|-]+")


class AnnotationError(ValueError):
    """Input that cannot be imported; the message names the file, line or feature and what to change."""


@dataclass
class Record:
    """One annotated sequence: name, (L,) uint8 base codes, its genes, and where it came from."""

    name: str
    codes: np.ndarray
    genes: list[Gene]
    where: str


def encode_bases(text: str, where: str) -> np.ndarray:
    """Base codes of sequence text (whitespace already removed); raises AnnotationError on a bad character."""
    raw = np.frombuffer(text.encode("latin-1", errors="replace"), dtype=np.uint8)
    codes = _CODE[raw]
    bad = np.flatnonzero(codes == 255)
    if bad.size:
        ch = text[int(bad[0])]
        raise AnnotationError(f"{where}: base {int(bad[0]) + 1} is {ch!r}, which is not a nucleotide; allowed are "
                              f"ACGTN (either case) and the IUPAC codes {_IUPAC_N} (read as N); fix or remove it")
    return codes


# ----------------------------------------------------------------------------
# GenBank


def parse_location(text: str, where: str) -> tuple[str, list[tuple[int, int]]]:
    """(strand, [(start, end), ...] 0-based end-exclusive) of a GenBank CDS location string."""
    s = text.replace(" ", "")
    for bad, why in (("<", "partial (<)"), (">", "partial (>)"), ("order(", "order(...)"), ("^", "between (^)"),
                     (":", "remote (accession:)")):
        if bad in s:
            raise AnnotationError(f"{where}: location {text!r} is {why}; only complete coding sequences "
                                  "(a..b, join(...), complement(...)) can be labelled: drop this feature")
    pos = 0

    def parse(flip: bool) -> list[tuple[int, int, bool]]:
        nonlocal pos
        for word, inner_flip in (("complement(", not flip), ("join(", flip)):
            if s.startswith(word, pos):
                pos += len(word)
                out = parse(inner_flip)
                while word == "join(" and pos < len(s) and s[pos] == ",":
                    pos += 1
                    out += parse(inner_flip)
                if pos >= len(s) or s[pos] != ")":
                    raise AnnotationError(f"{where}: location {text!r}: expected ')' at character {pos + 1}")
                pos += 1
                return out
        m = re.compile(r"(\d+)(?:\.\.(\d+))?").match(s, pos)
        if not m:
            raise AnnotationError(f"{where}: location {text!r}: cannot read it at character {pos + 1}; expected "
                                  "a..b, join(...) or complement(...)")
        pos = m.end()
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 1 <= a <= b:
            raise AnnotationError(f"{where}: location {text!r}: range {a}..{b} must have 1 <= start <= end")
        return [(a - 1, b, flip)]

    parts = parse(False)
    if pos != len(s):
        raise AnnotationError(f"{where}: location {text!r}: unexpected text after character {pos}")
    flips = {f for _, _, f in parts}
    if len(flips) > 1:
        raise AnnotationError(f"{where}: location {text!r} mixes strands; trans-spliced genes are not supported")
    return ("-" if flips.pop() else "+"), [(a, b) for a, b, _ in parts]


def read_genbank(path) -> list[Record]:
    """The records of a GenBank file (possibly gzipped), with one gene per CDS feature."""
    path = Path(path)
    records: list[Record] = []
    state = "between"
    name = length = locus_line = None
    features: list[list] = []  # [key, location, first line, qualifiers text]
    seq_chunks: list[str] = []

    def finish(lineno: int) -> None:
        where = f"{path}:{locus_line}: record {name}"
        seq = "".join(seq_chunks)
        if length is not None and len(seq) != length:
            raise AnnotationError(f"{where}: LOCUS says {length} bp but ORIGIN holds {len(seq)} bases; "
                                  "the record is truncated or its LOCUS line is wrong")
        codes = encode_bases(seq, f"{where}, ORIGIN")
        genes = []
        for key, loc, fline, quals in features:
            if key != "CDS":
                continue
            fwhere = f"{path}:{fline}: record {name}, CDS"
            strand, parts = parse_location(loc, fwhere)
            m = re.search(r'/(?:gene|locus_tag|protein_id)="([^"]*)"', quals)
            gname = m.group(1) if m else f"CDS{len(genes) + 1}"
            try:
                genes.append(make_gene(strand, parts, gname))
            except GeneStructureError as e:
                raise AnnotationError(f"{fwhere}: {e}") from None
        records.append(Record(name, codes, genes, where))

    with open_text(path) as f:
        lineno = 0
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n\r")
            if line.startswith("LOCUS"):
                if state != "between":
                    raise AnnotationError(f"{path}:{lineno}: LOCUS before the previous record ended with '//'")
                cols = line.split()
                if len(cols) < 2:
                    raise AnnotationError(f"{path}:{lineno}: LOCUS line without a name")
                name, locus_line, features, seq_chunks = cols[1], lineno, [], []
                length = int(cols[2]) if len(cols) > 2 and cols[2].isdigit() else None
                state = "header"
            elif line.startswith("//"):
                if state == "between":
                    raise AnnotationError(f"{path}:{lineno}: '//' without a LOCUS line before it")
                finish(lineno)
                state = "between"
            elif state == "between":
                if line.strip():
                    raise AnnotationError(f"{path}:{lineno}: expected a LOCUS line, got {line[:40]!r}; "
                                          "is this a GenBank file?")
            elif line.startswith("FEATURES"):
                state = "features"
            elif line.startswith("ORIGIN"):
                state = "origin"
            elif state == "features" and line[:1] == " ":
                key = line[5:21].strip()
                body = line[21:].strip()
                if key:
                    features.append([key, body, lineno, ""])
                elif features:
                    feat = features[-1]
                    if body.startswith("/") or feat[3]:
                        feat[3] += " " + body
                    else:
                        feat[1] += body
            elif state == "features":
                state = "header"  # another section (BASE COUNT, CONTIG, ...)
            elif state == "origin":
                seq_chunks.append(re.sub(r"[\s\d]", "", line))
        if state != "between":
            raise AnnotationError(f"{path}:{lineno}: the file ends inside record {name!r}; the record needs "
                                  "a closing '//' line")
    if not records:
        raise AnnotationError(f"{path}: no GenBank record (LOCUS ... //) found")
    return records


# ----------------------------------------------------------------------------
# FASTA + GFF3


def read_fasta_records(path) -> list[tuple[str, np.ndarray, int]]:
    """[(name, codes, header line)] of a FASTA file (possibly gzipped)."""
    path = Path(path)
    out, name, chunks, header = [], None, [], 0
    seen = set()

    def finish():
        out.append((name, encode_bases("".join(chunks), f"{path}:{header}: FASTA record {name}"), header))

    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n\r")
            if line.startswith(">"):
                if name is not None:
                    finish()
                parts = line[1:].split()
                name, chunks, header = (parts[0] if parts else ""), [], lineno
                if not name or name in seen:
                    raise AnnotationError(f"{path}:{lineno}: FASTA record names must be present and unique, "
                                          f"got {name!r}")
                seen.add(name)
            elif line.strip():
                if name is None:
                    raise AnnotationError(f"{path}:{lineno}: not FASTA (the first record must start with '>')")
                chunks.append("".join(line.split()))
    if name is not None:
        finish()
    if not out:
        raise AnnotationError(f"{path}: no FASTA record found")
    return out


def read_fasta_gff3(fasta, gff3) -> list[Record]:
    """Records of a FASTA file annotated by a GFF3 file (genes = transcripts' CDS)."""
    try:
        genes, lengths = read_genes_gff3(gff3)
    except GeneStructureError as e:
        raise AnnotationError(str(e)) from None
    seqs = read_fasta_records(fasta)
    names = {n for n, _, _ in seqs}
    orphan = [s for s in genes if s not in names]
    if orphan:
        raise AnnotationError(f"{gff3}: genes on sequences {orphan[:3]} that {fasta} does not hold; give the FASTA "
                              "file of this annotation")
    records = []
    for name, codes, header in seqs:
        where = f"{fasta}:{header}: record {name} (annotated by {gff3})"
        if name in lengths and lengths[name] != len(codes):
            raise AnnotationError(f"{where}: the GFF3 ##sequence-region says {lengths[name]} bp but the FASTA "
                                  f"record has {len(codes)}; the files do not belong together")
        records.append(Record(name, codes, genes.get(name, []), where))
    return records


# ----------------------------------------------------------------------------
# inputs and the data set


def _is_genbank(path: Path) -> bool:
    with open_text(path) as f:
        for line in f:
            if line.strip():
                return line.startswith("LOCUS")
    return False


def resolve_input(spec: str) -> tuple[str, list[Path]]:
    """("genbank", [path]) or ("fasta+gff3", [fasta, gff3]) of one input argument; checks the files exist."""
    path = Path(spec)
    if path.is_file():
        if not _is_genbank(path):
            raise AnnotationError(f"{spec}: not a GenBank file (it must start with a LOCUS line); a FASTA file "
                                  "needs its annotation: FASTA:GFF3 (e.g. genome.fa:genes.gff3)")
        return "genbank", [path]
    if ":" in spec:
        fa, gff = spec.rsplit(":", 1)
        missing = [p for p in (fa, gff) if not Path(p).is_file()]
        if not missing:
            return "fasta+gff3", [Path(fa), Path(gff)]
        raise AnnotationError(f"{spec}: read as FASTA:GFF3, but {missing} is not a file")
    raise AnnotationError(f"{spec}: no such file; give a GenBank file or FASTA:GFF3 (e.g. genome.fa:genes.gff3)")


def read_input(spec: str) -> tuple[list[Record], dict]:
    """Records of one input argument and its description for the metadata."""
    kind, paths = resolve_input(spec)
    records = read_genbank(paths[0]) if kind == "genbank" else read_fasta_gff3(*paths)
    desc = {"kind": kind, "files": [{"name": p.name, "sha256": _sha256(p)} for p in paths], "sequences": len(records)}
    return records, desc


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _validate(records: list[Record]) -> list[np.ndarray]:
    """Labels of each record; refuses what cannot be labelled (see the module docstring)."""
    unannotated = [r for r in records if not r.genes]
    if unannotated:
        r = unannotated[0]
        more = f" (and {len(unannotated) - 1} more)" if len(unannotated) > 1 else ""
        raise AnnotationError(f"{r.where}: has no gene (no CDS){more}; sequences without annotation are refused "
                              "(their intergenic labels would be guesses): remove them from the input")
    labels = []
    for r in records:
        if not _SEQID.fullmatch(r.name):
            raise AnnotationError(f"{r.where}: the name {r.name!r} has characters a GFF3 seqid cannot hold; "
                                  "use only [a-zA-Z0-9.:^*$@!+_?|-]")
        try:
            labels.append(genes_to_labels(len(r.codes), r.genes, r.where))
        except GeneStructureError as e:
            raise AnnotationError(str(e)) from None
    return labels


def _check_fraction(val_fraction) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise AnnotationError(f"val_fraction (--val-fraction) must be a number in [0, 1), got {val_fraction!r}")
    return float(val_fraction)


def import_dataset(output_dir, train, test, val=None, val_fraction=None, seed: int = 42,
                   overwrite: bool = False) -> dict:
    """Import annotated sequence into ``output_dir``; returns the metadata written.

    train, test, val: lists of input arguments (GenBank paths or FASTA:GFF3).
    Without ``val``, ``val_fraction`` (default 0.1) of the training sequences,
    drawn with ``seed``, form the validation split. Every input is read and
    checked before anything is written.
    """
    fraction = _check_import_args(train, test, val, val_fraction, seed)
    output_dir = dataset.check_output_dir(output_dir, overwrite)
    read, inputs = _read_splits(train, val, test)
    label_of = {}
    for split in dataset.SPLITS:
        label_of.update(zip(map(id, read[split]), _validate(read[split])))
    if not val:
        _draw_validation(read, fraction, seed)
    _check_unique_names(read)
    labels = {split: [label_of[id(r)] for r in read[split]] for split in dataset.SPLITS}

    # Everything is validated: from here on files are written.
    splits = {split: dataset.Split([r.codes for r in read[split]], labels[split], [r.name for r in read[split]])
              for split in dataset.SPLITS}
    config = {
        "source": SOURCE,
        "generator": None,
        "inputs": inputs,
        "validation": "files" if val else {"fraction": fraction, "seed": int(seed), "drawn_from": "train"},
        "genes": {s: sum(len(r.genes) for r in read[s]) for s in dataset.SPLITS},
    }
    return write_dataset(output_dir, splits, config, seed)


#: What each of the five stranded classes covers, in every imported data set's metadata.
CLASS_MEANING = {
    "intergenic": "outside coding sequence (UTRs and flanks included)",
    "exon+": "coding exon, gene on the + strand", "intron+": "intron between coding exons, + strand",
    "exon-": "coding exon, gene on the - strand", "intron-": "intron between coding exons, - strand",
}


def write_dataset(output_dir, splits: dict[str, dataset.Split], config: dict, seed: int) -> dict:
    """Write the splits (labelled with the five stranded classes) and their metadata into ``output_dir``,
    the metadata last; ``config`` is recorded as the metadata's ``config`` with the split counts added.
    Returns the metadata. The caller has validated everything and checked ``output_dir``."""
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AnnotationError(f"output_dir (--output-dir) {str(output_dir)!r} cannot be created ({e.strerror})") \
            from None
    (output_dir / dataset.METADATA_FILE).unlink(missing_ok=True)
    names = list(STRANDED_CLASSES)
    counts, lengths, stats = _write_splits(output_dir, splits, names)
    meta = {
        "format": dataset.FORMAT,
        "format_version": dataset.FORMAT_VERSION,
        "version": __version__,
        "seed": int(seed),
        "num_classes": len(names),
        "class_names": names,
        "class_meaning": dict(CLASS_MEANING),
        "splits": counts,
        "config": {**config, "num_train": counts["train"], "num_val": counts["val"], "num_test": counts["test"]},
        "sequence_lengths": lengths,
        "duration_stats": stats,
        "duration_stats_scope": "maximal label runs, excluding each sequence's last (cut) segment",
        "files": {s: {"arrays": f"{s}.npz", "fasta": f"{s}.fa", "gff3": f"{s}.gff3", "bed": f"{s}.bed"}
                  for s in dataset.SPLITS},
    }
    with formats.atomic_output(output_dir / dataset.METADATA_FILE, "w") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    return meta


def _check_import_args(train, test, val, val_fraction, seed) -> float:
    """The arguments of :func:`import_dataset` that need no file; returns the validation fraction
    (0.1 by default, 0 with ``val``)."""
    if not train or not test:
        raise AnnotationError("give at least one --train and one --test input")
    if val and val_fraction is not None:
        raise AnnotationError("--val and --val-fraction contradict each other; give one")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise AnnotationError(f"seed (--seed) must be an integer >= 0, got {seed!r}")
    return _check_fraction(0.1 if val_fraction is None and not val else (val_fraction or 0.0))


def _read_splits(train, val, test) -> tuple[dict[str, list[Record]], dict[str, list[dict]]]:
    """Every input read: (split -> its records, split -> a description of each input)."""
    read: dict[str, list[Record]] = {}
    inputs: dict[str, list[dict]] = {}
    for split, specs in (("train", train), ("val", val or []), ("test", test)):
        read[split], inputs[split] = [], []
        for spec in specs:
            records, desc = read_input(str(spec))
            read[split] += records
            inputs[split].append(desc)
    return read, inputs


def _draw_validation(read: dict[str, list[Record]], fraction: float, seed: int) -> None:
    """Moves ``fraction`` of the training records (at least one when fraction > 0), drawn with
    ``seed``, to ``read["val"]``; the rest keep their order."""
    pool = read["train"]
    n_val = int(round(fraction * len(pool)))
    if fraction > 0 and n_val == 0:
        n_val = 1
    if n_val >= len(pool):
        raise AnnotationError(f"--val-fraction {fraction} leaves no training sequence out of {len(pool)}; "
                              "lower it or give more training data")
    chosen = set(np.random.default_rng(seed).permutation(len(pool))[:n_val].tolist())
    read["val"] = [r for i, r in enumerate(pool) if i in chosen]
    read["train"] = [r for i, r in enumerate(pool) if i not in chosen]


def _check_unique_names(read: dict[str, list[Record]]) -> None:
    """One name per sequence across all splits (one locus in two splits would leak)."""
    seen: dict[str, str] = {}
    for split in dataset.SPLITS:
        for r in read[split]:
            if r.name in seen:
                raise AnnotationError(f"{r.where}: the name {r.name!r} is used twice (first in {seen[r.name]}); "
                                      "each sequence needs its own name, and one locus in two splits would leak")
            seen[r.name] = r.where


def _write_splits(output_dir, splits: dict[str, dataset.Split], names) -> tuple[dict, dict, dict]:
    """Each split's arrays, FASTA, GFF3 and BED files; returns (split -> sequence count, split -> its
    sequence lengths' total, min, max, mean, split -> its duration statistics)."""
    counts, lengths, stats = {}, {}, {}
    for split in dataset.SPLITS:
        data = splits[split]
        counts[split] = len(data)
        dataset.save_split(output_dir, split, data)
        formats.write_fasta(output_dir / f"{split}.fa", data.names, data.sequences)
        formats.write_gff3(output_dir / f"{split}.gff3", data.names, data.labels, names)
        formats.write_bed(output_dir / f"{split}.bed", data.names, data.labels, names)
        stats[split] = dataset.duration_statistics(data.labels, names)
        seq_len = np.array([len(s) for s in data.sequences])
        lengths[split] = (
            {"total": int(seq_len.sum()), "min": int(seq_len.min()), "max": int(seq_len.max()),
             "mean": float(seq_len.mean())}
            if seq_len.size else {"total": 0, "min": None, "max": None, "mean": None}
        )
    return counts, lengths, stats


def is_imported(meta: dict) -> bool:
    """True for the metadata of a data set written by :func:`import_dataset`."""
    cfg = meta.get("config") if isinstance(meta, dict) else None
    return isinstance(cfg, dict) and cfg.get("source") == SOURCE


# ----------------------------------------------------------------------------
# the command


def add_import_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "import",
        help="import annotated real sequence (GenBank, or FASTA:GFF3) as a data set",
        description="Turn annotated sequence into the benchmark's data format (the files generate writes), "
        "labelled intergenic, exon+, intron+, exon-, intron- (coding exons and the introns between them on "
        "each strand). An input is a GenBank file (one gene per CDS feature) or FASTA:GFF3, a FASTA file and "
        "its GFF3 joined by a colon (one gene per transcript's CDS). Files may be gzipped. IUPAC ambiguity "
        "codes become N; overlapping genes, genes outside their sequence and sequences without genes are "
        "refused. Nothing is written unless every input is valid.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--train", nargs="+", required=True, metavar="FILE", help="training inputs")
    p.add_argument("--test", nargs="+", required=True, metavar="FILE", help="test inputs")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--val", nargs="+", metavar="FILE", help="validation inputs (instead of --val-fraction)")
    g.add_argument("--val-fraction", type=float, default=None,
                   help="share of the training sequences drawn (with --seed) for validation; 0.1 if neither "
                   "--val nor --val-fraction is given")
    p.add_argument("--output-dir", required=True, help="directory to write (must be empty or new)")
    p.add_argument("--seed", type=int, default=42, help="seed of the validation draw (>= 0)")
    p.add_argument("--overwrite", action="store_true", help="replace the data set in a non-empty --output-dir")
    p.set_defaults(func=run_import)
    return p


def run_import(args) -> int:
    started = time.perf_counter()
    meta = import_dataset(args.output_dir, args.train, args.test, val=args.val, val_fraction=args.val_fraction,
                          seed=args.seed, overwrite=args.overwrite)
    counts = ", ".join(f"{s} {n}" for s, n in meta["splits"].items())
    genes = ", ".join(f"{s} {n}" for s, n in meta["config"]["genes"].items())
    print(f"wrote {args.output_dir}: {counts} sequences ({genes} genes), classes "
          f"{', '.join(meta['class_names'])} ({time.perf_counter() - started:.1f} s)")
    return 0
