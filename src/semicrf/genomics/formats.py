"""Standard genomics files: FASTA, GFF3 and BED12 writers, GFF3 and FASTA readers.

The writers take per-position labels (true or predicted) and derive the gene
models from them, so any label array can be exported:

- a gene is a maximal run of non-intergenic positions; it has one transcript
  (mRNA) ``<seqid>.g<k>.t1`` on the + strand;
- an exon is a maximal run of exon / 5utr / 3utr positions inside a gene (so
  a UTR and the coding part next to it form one exon, as in GFF3 practice);
- an intron, five_prime_UTR or three_prime_UTR is a maximal run of that label.

GFF3 follows specification 1.26: ``##gff-version 3``, one
``##sequence-region <seqid> 1 <length>`` per sequence, 1-based closed
coordinates, sequences in the given order and features sorted by start within
each sequence (parents before children). The GFF3 reader inverts the writer
exactly for every label array. A gene that reaches the end of its sequence may
have been cut there; the files do not mark it.

BED12 has one line per transcript: 0-based half-open ``chromStart, chromEnd``
spanning its exons, the exons as blocks and the coding part (exon-labelled
positions) as ``thickStart, thickEnd``. BED12 cannot express a transcript
that begins or ends with an intron, so such leading or trailing introns are
left out of the line, and a gene without any exonic position has no line.

Imported real data uses the five stranded classes of
:mod:`.gene_structures` (intergenic, exon+, intron+, exon-, intron-); for
those class names the writers and the reader work on strand-aware gene models
instead (:func:`.gene_structures.labels_to_genes`): a gene per maximal run of
one strand's exon/intron positions, written with its strand as gene, mRNA,
exon, CDS (with phase) and intron lines, and as one BED12 line whose blocks are
the coding exons. Intron positions at either end of such a run (possible in
predictions) and runs without any exon position are not written.

Every file is written to a temporary file in the same folder and renamed into
place, so a reader never sees a half-written file.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .features import decode_bases
from .segments import labels_to_segments

KNOWN_CLASSES = ("intergenic", "exon", "intron", "5utr", "3utr")
# Sequence Ontology feature type of each labelled class.
FEATURE_TYPES = {"exon": "exon", "intron": "intron", "5utr": "five_prime_UTR", "3utr": "three_prime_UTR"}
_SEQID = re.compile(r"[a-zA-Z0-9.:^*$@!+_?|-]+")
_BASE_BYTES = np.frombuffer(b"ACGTN", dtype=np.uint8)


@contextmanager
def atomic_output(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private; give it the permissions an ordinary new file would get.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class GeneModel:
    """One gene derived from labels; coordinates 0-based, end exclusive.

    exons, introns, utr5, utr3: (n, 2) int64 rows (start, end), sorted.
    coding: (start, end) of the exon-labelled positions, or None when there are none.
    """

    gene_id: str
    start: int
    end: int
    exons: np.ndarray
    introns: np.ndarray
    utr5: np.ndarray
    utr3: np.ndarray
    coding: tuple[int, int] | None

    @property
    def transcript_id(self) -> str:
        return f"{self.gene_id}.t1"


def _class_ids(class_names: Sequence[str]) -> dict[str, int]:
    names = list(class_names)
    unknown = [n for n in names if n not in KNOWN_CLASSES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct names from {KNOWN_CLASSES}, got {names}")
    for required in ("intergenic", "exon", "intron"):
        if required not in names:
            raise ValueError(f"class_names must include {required!r}, got {names}")
    return {n: i for i, n in enumerate(names)}


def _check_labels(labels: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels of {name!r} must be a 1-D integer array, got {labels.dtype} shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels of {name!r} must lie in [0, {num_classes}), got values {labels.min()}..{labels.max()}")
    return labels


def _check_names(names: Sequence[str], count: int) -> list[str]:
    names = [str(n) for n in names]
    if len(names) != count:
        raise ValueError(f"names has {len(names)} entries but there are {count} sequences")
    bad = [n for n in names if not _SEQID.fullmatch(n)]
    if bad:
        raise ValueError(f"names must use only [a-zA-Z0-9.:^*$@!+_?|-] (GFF3 seqid), got {bad[:3]}")
    if len(set(names)) != len(names):
        raise ValueError("names must be unique")
    return names


def _runs(mask: np.ndarray) -> np.ndarray:
    """(n, 2) rows (start, end) of the maximal runs of True in ``mask``."""
    seg = labels_to_segments(mask.astype(np.int8))
    return seg[seg[:, 2] == 1, :2]


def gene_models(seqid: str, labels: np.ndarray, class_names: Sequence[str]) -> list[GeneModel]:
    """Gene models of one sequence from its (L,) labels."""
    ids = _class_ids(class_names)
    labels = _check_labels(labels, len(ids), seqid)
    genes = _runs(labels != ids["intergenic"])
    if genes.shape[0] == 0:
        return []
    exonic = (labels != ids["intergenic"]) & (labels != ids["intron"])
    parts = {
        "exons": _runs(exonic),
        "introns": _runs(labels == ids["intron"]),
        "utr5": _runs(labels == ids["5utr"]) if "5utr" in ids else np.zeros((0, 2), np.int64),
        "utr3": _runs(labels == ids["3utr"]) if "3utr" in ids else np.zeros((0, 2), np.int64),
        "coding": _runs(labels == ids["exon"]),
    }
    # Every feature lies inside exactly one gene; split each list at the gene starts.
    cuts = {k: np.searchsorted(v[:, 0], genes[:, 0]) for k, v in parts.items()}
    models = []
    for g, (start, end) in enumerate(genes):
        piece = {k: v[cuts[k][g] : (cuts[k][g + 1] if g + 1 < len(genes) else len(v))] for k, v in parts.items()}
        coding = piece.pop("coding")
        models.append(
            GeneModel(
                gene_id=f"{seqid}.g{g + 1}",
                start=int(start),
                end=int(end),
                coding=(int(coding[0, 0]), int(coding[-1, 1])) if len(coding) else None,
                **piece,
            )
        )
    return models


def write_fasta(path, names: Sequence[str], sequences: Sequence[np.ndarray], line_width: int = 60) -> None:
    """FASTA of base-code sequences (uint8 0..4 = A, C, G, T, N), ``line_width`` bases a line."""
    if int(line_width) < 1:
        raise ValueError(f"line_width must be >= 1, got {line_width!r}")
    names = _check_names(names, len(sequences))
    with atomic_output(path) as f:
        for name, codes in zip(names, sequences):
            codes = np.asarray(codes)
            if codes.ndim != 1 or (codes.size and (codes.min() < 0 or codes.max() > 4)):
                raise ValueError(f"sequence {name!r} must be a 1-D array of base codes 0..4")
            f.write(b">" + name.encode() + b"\n")
            f.write(_wrap(_BASE_BYTES[codes], line_width))


def _wrap(chars: np.ndarray, width: int) -> bytes:
    """Bytes of ``chars`` with a newline after every ``width`` characters and at the end."""
    n = chars.size
    full = n // width
    body = np.empty((full, width + 1), dtype=np.uint8)
    body[:, :width] = chars[: full * width].reshape(full, width)
    body[:, width] = ord("\n")
    tail = chars[full * width :].tobytes()
    return body.tobytes() + (tail + b"\n" if tail else b"")


def read_fasta(path) -> dict[str, np.ndarray]:
    """{name: (L,) uint8 base codes} in file order; the name is the header up to the first space."""
    data = Path(path).read_bytes()
    records: dict[str, np.ndarray] = {}
    if data.strip() and not data.lstrip().startswith(b">"):
        raise ValueError(f"{path}: not FASTA (first non-blank character must be '>')")
    for record in data.split(b"\n>"):
        record = record.lstrip(b">")
        if not record.strip():
            continue
        header, _, body = record.partition(b"\n")
        name = header.decode().split()[0] if header.strip() else ""
        if not name or name in records:
            raise ValueError(f"{path}: FASTA record names must be present and unique, got {name!r}")
        records[name] = decode_bases(body.replace(b"\n", b"").replace(b"\r", b""))
    return records


def write_gff3(
    path, names: Sequence[str], labels: Sequence[np.ndarray], class_names: Sequence[str], source: str = "semicrf"
) -> None:
    """GFF3 of the gene models derived from per-sequence labels (see the module docstring)."""
    if _stranded(class_names):
        from .gene_structures import labels_to_genes, write_genes_gff3

        names = _check_names(names, len(labels))
        labels = [_check_labels(l, 5, n) for n, l in zip(names, labels)]
        write_genes_gff3(path, [(n, len(l), labels_to_genes(l)) for n, l in zip(names, labels)], source)
        return
    _class_ids(class_names)
    names = _check_names(names, len(labels))
    if not source or any(ch in source for ch in "\t\n\r"):
        raise ValueError(f"source must be a non-empty string without tabs or newlines, got {source!r}")
    with atomic_output(path, "w") as f:
        f.write("##gff-version 3\n")
        f.write("".join(f"##sequence-region {n} 1 {len(np.asarray(l))}\n" for n, l in zip(names, labels)))
        for name, lab in zip(names, labels):
            f.write("".join(_gff3_lines(name, gene_models(name, lab, class_names), source)))


def _gff3_lines(seqid: str, models: Iterable[GeneModel], source: str) -> list[str]:
    lines = []
    row = f"{seqid}\t{source}\t{{}}\t{{}}\t{{}}\t.\t+\t.\t{{}}\n".format
    for m in models:
        t = m.transcript_id
        lines.append(row("gene", m.start + 1, m.end, f"ID={m.gene_id}"))
        lines.append(row("mRNA", m.start + 1, m.end, f"ID={t};Parent={m.gene_id}"))
        children = []
        for kind, rows, tag, rank in (
            ("exon", m.exons, "exon", 0),
            ("five_prime_UTR", m.utr5, "utr5p", 1),
            ("three_prime_UTR", m.utr3, "utr3p", 2),
            ("intron", m.introns, "intron", 3),
        ):
            for k, (s, e) in enumerate(rows):
                children.append((int(s), rank, row(kind, s + 1, e, f"ID={t}.{tag}{k + 1};Parent={t}")))
        lines.extend(line for _, _, line in sorted(children))
    return lines


def gff3_span(cols: Sequence[str], where: str, error: type[ValueError] = ValueError) -> tuple[int, int]:
    """(start, end) of a GFF3 feature line split at tabs (9 columns), 1-based and inclusive as
    written; raises ``error`` at ``where`` (file:line) unless they are integers with 1 <= start <= end."""
    try:
        start, end = int(cols[3]), int(cols[4])
    except ValueError:
        raise error(f"{where}: start and end must be integers") from None
    if not 1 <= start <= end:
        raise error(f"{where}: need 1 <= start <= end, got {start}..{end}")
    return start, end


def read_gff3(path, class_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Labels from a GFF3 file: {seqid: (L,) int64}, in the order of its sequence-region lines.

    L comes from ``##sequence-region``, which every sequence must have.
    Positions outside genes are intergenic; exon, intron, five_prime_UTR and
    three_prime_UTR features paint their class, UTRs over exons. Other feature
    types (gene, mRNA, CDS, ...) are ignored. ``class_names`` defaults to the
    five-class names if the file has UTR features, else the three-class names.
    """
    if class_names is not None and _stranded(class_names):
        return _read_stranded_gff3(path)
    lengths: dict[str, int] = {}
    features: list[tuple[str, str, int, int, int]] = []
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n\r")
            if lineno == 1 and not line.startswith("##gff-version 3"):
                raise ValueError(f"{path}:1: a GFF3 file must start with '##gff-version 3'")
            if line.startswith("##FASTA"):
                break
            if line.startswith("##sequence-region"):
                parts = line.split()
                if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit() or parts[2] != "1":
                    raise ValueError(f"{path}:{lineno}: expected '##sequence-region <seqid> 1 <length>'")
                lengths[parts[1]] = int(parts[3])
                continue
            if not line or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 9:
                raise ValueError(f"{path}:{lineno}: a feature line needs 9 tab-separated columns, got {len(cols)}")
            if cols[2] not in FEATURE_TYPES.values():
                continue
            start, end = gff3_span(cols, f"{path}:{lineno}")
            features.append((cols[0], cols[2], start - 1, end, lineno))

    types = {t for _, t, _, _, _ in features}
    if class_names is None:
        has_utr = bool(types & {FEATURE_TYPES["5utr"], FEATURE_TYPES["3utr"]})
        class_names = KNOWN_CLASSES if has_utr else KNOWN_CLASSES[:3]
    ids = _class_ids(class_names)
    class_of_type = {t: ids[c] for c, t in FEATURE_TYPES.items() if c in ids}
    missing = sorted(types - set(class_of_type))
    if missing:
        raise ValueError(f"{path}: features of type {missing} have no class in class_names {list(class_names)}")

    labels = {name: np.full(n, ids["intergenic"], dtype=np.int64) for name, n in lengths.items()}
    order = {"exon": 0, "intron": 1, "five_prime_UTR": 2, "three_prime_UTR": 2}
    for seqid, ftype, start, end, lineno in sorted(features, key=lambda r: order[r[1]]):
        if seqid not in labels:
            raise ValueError(f"{path}:{lineno}: sequence {seqid!r} has no ##sequence-region line")
        if end > len(labels[seqid]):
            raise ValueError(f"{path}:{lineno}: feature ends at {end}, past the end of {seqid!r}")
        labels[seqid][start:end] = class_of_type[ftype]
    return labels


def write_bed(path, names: Sequence[str], labels: Sequence[np.ndarray], class_names: Sequence[str]) -> None:
    """BED12 of the transcripts derived from per-sequence labels (see the module docstring)."""
    if _stranded(class_names):
        names = _check_names(names, len(labels))
        with atomic_output(path, "w") as f:
            for name, lab in zip(names, labels):
                f.write("".join(_stranded_bed_lines(name, _check_labels(lab, 5, name))))
        return
    _class_ids(class_names)
    names = _check_names(names, len(labels))
    with atomic_output(path, "w") as f:
        for name, lab in zip(names, labels):
            f.write("".join(_bed_line(name, m) for m in gene_models(name, lab, class_names) if len(m.exons)))


def _bed_line(seqid: str, m: GeneModel) -> str:
    start, end = int(m.exons[0, 0]), int(m.exons[-1, 1])
    thick = m.coding if m.coding is not None else (start, start)
    sizes = ",".join(str(int(e - s)) for s, e in m.exons)
    offsets = ",".join(str(int(s - start)) for s, _ in m.exons)
    return (
        f"{seqid}\t{start}\t{end}\t{m.transcript_id}\t0\t+\t{thick[0]}\t{thick[1]}\t0\t"
        f"{len(m.exons)}\t{sizes},\t{offsets},\n"
    )


# ----------------------------------------------------------------------------
# stranded classes (imported real data)


def _stranded(class_names) -> bool:
    from .gene_structures import STRANDED_CLASSES

    return tuple(class_names) == STRANDED_CLASSES


def _stranded_bed_lines(seqid: str, labels: np.ndarray) -> list[str]:
    from .gene_structures import labels_to_genes

    lines = []
    for k, g in enumerate(labels_to_genes(labels), 1):
        sizes = ",".join(str(e - s) for s, e in g.exons)
        offsets = ",".join(str(s - g.start) for s, _ in g.exons)
        lines.append(f"{seqid}\t{g.start}\t{g.end}\t{seqid}.g{k}.t1\t0\t{g.strand}\t{g.start}\t{g.end}\t0\t"
                     f"{len(g.exons)}\t{sizes},\t{offsets},\n")
    return lines


def _read_stranded_gff3(path) -> dict[str, np.ndarray]:
    """Stranded labels of a GFF3 file: every sequence-region is intergenic but its genes' CDS and introns."""
    from .gene_structures import genes_to_labels, read_genes_gff3

    genes, lengths = read_genes_gff3(path, coding_types=("CDS",))
    missing = [s for s in genes if s not in lengths]
    if missing:
        raise ValueError(f"{path}: sequences {missing[:3]} have genes but no ##sequence-region line")
    return {name: genes_to_labels(n, genes.get(name, []), f"{path}: {name}").astype(np.int64)
            for name, n in lengths.items()}
