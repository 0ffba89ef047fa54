#!/usr/bin/env python3
"""The field's gene finders on the AUGUSTUS tutorial's fly genes, reproducibly.

Four systems, all from the Debian packages (``apt-get install augustus
augustus-data augustus-doc snap genometools``), on the tutorial's 486
training and 100 test loci (D. melanogaster chr2R, one gene per locus, ~1 kb
flanks; ``/usr/share/doc/augustus/tutorial/results/genes.gb.{train,test}``,
gzipped or not):

augustus_trained
    The tutorial's step 3: ``new_species.pl`` into a writable copy of the
    AUGUSTUS config directory (``AUGUSTUS_CONFIG_PATH``), the species'
    ``stopCodonExcludedFromCDS`` set to true (the tutorial's CDS exclude the
    stop codon), ``etraining`` on the training loci, then ``augustus`` on the
    test loci (GenBank input: AUGUSTUS predicts from the bases and prints its
    own evaluation against the annotation).
augustus_fly
    The shipped fly parameters: ``--species=fly --stopCodonExcludedFromCDS=true --UTR=off``.
snap_trained
    SNAP trained on the same loci: ZFF (the stop codon added to each
    terminal exon, as SNAP models it), ``fathom -categorize/-export``,
    ``forge``, ``hmm-assembler.pl``; then ``snap-hmm`` on the test FASTA.
snap_fly
    SNAP's shipped D. melanogaster HMM (``/usr/share/snap/HMM/fly``).

Every prediction is scored with :mod:`semicrf.genomics.gene_metrics` against
the test annotation (coding exons without the stop codon, SNAP's predicted
stop codons trimmed), and AUGUSTUS's own evaluation report is parsed beside
it. Writes to ``--output-dir`` (default ``results/gene_finders``):
``<system>.gff3`` (validated with ``gt gff3validator``), ``gene_finders.json``
(measures, counts, timings, tool versions, input digests) and ``work/``
(the tools' own files and logs). Prints a table. When a tool or the data is
missing it prints why and exits 0 without writing anything.

    PYTHONPATH=src python3 benchmarks/real_genes/gene_finders.py [--output-dir DIR] [--overwrite]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from semicrf.genomics import gene_metrics
from semicrf.genomics.gene_structures import Gene, make_gene, read_genes_gff3, write_genes_gff3
from semicrf.genomics.importer import Record, read_genbank

TUTORIAL = Path("/usr/share/doc/augustus/tutorial/results")
AUGUSTUS_CONFIG = Path("/usr/share/augustus/config")
AUGUSTUS_SCRIPTS = Path("/usr/share/augustus/scripts")
SNAP_HMM_DIR = Path("/usr/share/snap/HMM")
SPECIES = "semicrf_fly"
SYSTEMS = ("augustus_trained", "augustus_fly", "snap_trained", "snap_fly")
INSTALL = "apt-get install augustus augustus-data augustus-doc snap genometools"
_BASES = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}
STOPS = {"TAA", "TAG", "TGA"}


class Skip(Exception):
    """A tool or input is missing: the reason to print."""


# ----------------------------------------------------------------------------
# locating tools and data


def find_tool(name: str, *extra_dirs: Path) -> str:
    found = shutil.which(name)
    for d in extra_dirs:
        if not found and (d / name).is_file():
            found = str(d / name)
    if not found:
        raise Skip(f"{name} is not installed ({INSTALL})")
    return found


def find_data(name: str, folder: Path) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise Skip(f"{folder / name}[.gz] is missing ({INSTALL})")


def snap_fly_hmm() -> Path:
    for name in ("fly", "D.melanogaster.hmm"):
        if (SNAP_HMM_DIR / name).is_file():
            return SNAP_HMM_DIR / name
    raise Skip(f"SNAP's fly HMM is missing from {SNAP_HMM_DIR} ({INSTALL})")


def tools() -> dict:
    """Paths of every program the comparison runs; raises Skip naming the first one missing."""
    found = {
        "augustus": find_tool("augustus"),
        "etraining": find_tool("etraining"),
        "new_species.pl": find_tool("new_species.pl", AUGUSTUS_SCRIPTS),
        "fathom": find_tool("fathom"),
        "forge": find_tool("forge"),
        "hmm-assembler.pl": find_tool("hmm-assembler.pl"),
        "snap": find_tool("snap-hmm", Path("/usr/lib/debian-med/bin")) if shutil.which("snap-hmm")
        else find_tool("snap", Path("/usr/lib/debian-med/bin")),
        "gt": find_tool("gt"),
    }
    if not (AUGUSTUS_CONFIG / "species" / "fly").is_dir():
        raise Skip(f"AUGUSTUS's config with the fly parameters is missing from {AUGUSTUS_CONFIG} ({INSTALL})")
    return found


# ----------------------------------------------------------------------------
# converters (pure; tested in tests/test_gene_finders.py)


def reverse_complement(seq: str) -> str:
    return "".join(_BASES.get(c, "N") for c in reversed(seq.upper()))


def coding_sequence(seq: str, gene: Gene) -> str:
    """The gene's coding bases, 5' to 3' (reverse complement on -)."""
    cds = "".join(seq[s:e] for s, e in gene.exons)
    return cds.upper() if gene.strand == "+" else reverse_complement(cds)


def with_stop(seq: str, gene: Gene) -> Gene:
    """The gene with the 3 bases after its coding end added (its stop codon), when they are a stop codon."""
    if gene.strand == "+":
        s, e = gene.exons[-1]
        if e + 3 <= len(seq) and seq[e:e + 3].upper() in STOPS:
            return make_gene("+", gene.exons[:-1] + ((s, e + 3),), gene.name, gene.complete)
    else:
        s, e = gene.exons[0]
        if s >= 3 and reverse_complement(seq[s - 3:s]) in STOPS:
            return make_gene("-", ((s - 3, e),) + gene.exons[1:], gene.name, gene.complete)
    return gene


def without_stop(seq: str, gene: Gene) -> Gene:
    """The gene without its last 3 coding bases when they are a stop codon (else unchanged)."""
    cds = coding_sequence(seq, gene)
    if len(cds) < 6 or cds[-3:] not in STOPS:
        return gene
    exons = [list(x) for x in gene.exons]
    trim = 3
    order = range(len(exons) - 1, -1, -1) if gene.strand == "+" else range(len(exons))
    for i in order:  # from the 3' end: the stop codon may be split by an intron
        length = exons[i][1] - exons[i][0]
        cut = min(trim, length)
        if gene.strand == "+":
            exons[i][1] -= cut
        else:
            exons[i][0] += cut
        trim -= cut
        if trim == 0:
            break
    return make_gene(gene.strand, [(s, e) for s, e in exons if e > s], gene.name, gene.complete)


def zff_lines(seqid: str, genes: list[Gene]) -> list[str]:
    """SNAP's short ZFF of one sequence: '>seqid' and per exon 'Label begin end group' (begin > end on -)."""
    lines = [f">{seqid}\n"]
    for k, g in enumerate(genes, 1):
        group = f"{seqid}.g{k}"
        n = len(g.exons)
        ordered = list(g.exons) if g.strand == "+" else list(reversed(g.exons))  # 5' to 3'
        for i, (s, e) in enumerate(ordered):
            label = "Esngl" if n == 1 else "Einit" if i == 0 else "Eterm" if i == n - 1 else "Exon"
            begin, end = (s + 1, e) if g.strand == "+" else (e, s + 1)
            lines.append(f"{label}\t{begin}\t{end}\t{group}\n")
    return lines


def parse_snap_zff(text: str, where: str = "SNAP output") -> dict[str, list[Gene]]:
    """Genes of SNAP's ZFF output (long format: label begin end strand ... group; or the short format).

    A gene is complete when it has an Einit and an Eterm exon, or is one Esngl.
    """
    genes: dict[str, list[Gene]] = {}
    groups: dict[tuple[str, str], dict] = {}
    seqid = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith(">"):
            seqid = line[1:].split()[0]
            genes.setdefault(seqid, [])
            continue
        cols = line.split()
        if seqid is None or len(cols) < 3:
            raise ValueError(f"{where}:{lineno}: expected '>name' then 'Label begin end ...', got {line[:60]!r}")
        label, a, b = cols[0], int(cols[1]), int(cols[2])
        if len(cols) >= 9 and cols[3] in "+-":
            strand, group = cols[3], cols[8]
        else:
            strand, group = ("+" if a <= b else "-"), (cols[3] if len(cols) > 3 else f"line{lineno}")
        lo, hi = min(a, b), max(a, b)
        g = groups.setdefault((seqid, group), {"strand": strand, "parts": [], "labels": set()})
        g["parts"].append((lo - 1, hi))
        g["labels"].add(label)
    for (seqid, group), g in groups.items():
        labels = g["labels"]
        complete = labels == {"Esngl"} or {"Einit", "Eterm"} <= labels
        genes[seqid].append(make_gene(g["strand"], g["parts"], group, complete))
    for seqid in genes:
        genes[seqid].sort(key=lambda x: (x.start, x.end))
    return genes


def parse_augustus_evaluation(text: str) -> dict | None:
    """AUGUSTUS's own accuracy report (the 'Evaluation of gene prediction' block), or None if absent."""
    if "Evaluation of gene prediction" not in text:
        return None
    text = text[text.index("Evaluation of gene prediction"):]
    num = r"([-+0-9.eEnaif]+)"
    out = {}
    m = re.search(rf"nucleotide level\s*\|\s*{num}\s*\|\s*{num}", text)
    if m:
        out["nucleotide"] = {"sensitivity": float(m[1]), "specificity": float(m[2])}
    m = re.search(rf"exon level\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|[-\s|]*\|\s*{num}\s*\|\s*{num}", text)
    if m:
        out["exon"] = {"num_pred": int(m[1]), "num_true": int(m[2]), "tp": int(m[3]),
                       "sensitivity": float(m[4]), "specificity": float(m[5])}
    m = re.search(rf"gene level\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*{num}\s*\|\s*{num}",
                  text)
    if m:
        out["gene"] = {"num_pred": int(m[1]), "num_true": int(m[2]), "tp": int(m[3]),
                       "sensitivity": float(m[6]), "specificity": float(m[7])}
    return out or None


def augustus_predictions(text: str) -> str:
    """The GFF3 of AUGUSTUS's own predictions in its output (the annotation it echoes has source 'database')."""
    lines = ["##gff-version 3\n"]
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) == 9 and cols[1] == "AUGUSTUS":
            lines.append(line + "\n")
    return "".join(lines)


# ----------------------------------------------------------------------------
# running the tools


def run(cmd: list[str], log: Path, cwd: Path | None = None, env: dict | None = None, stdout: Path | None = None
        ) -> float:
    """Run ``cmd``; its stderr (and stdout unless ``stdout``) go to ``log``. Returns wall seconds."""
    started = time.perf_counter()
    with open(log, "a") as lf:
        lf.write(f"$ {' '.join(cmd)}\n")
        lf.flush()
        out = open(stdout, "w") if stdout else lf
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=lf)
        finally:
            if stdout:
                out.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit status {proc.returncode}; see {log}")
    return time.perf_counter() - started


def version(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (p.stdout + p.stderr).strip().splitlines()
    return text[0] if text else "?"


def plain_copy(src: Path, dst: Path) -> Path:
    """``src`` decompressed (if gzipped) to ``dst``."""
    with open(src, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with (gzip.open(src, "rb") if gz else open(src, "rb")) as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dst


def write_fasta(path: Path, records: list[Record]) -> None:
    with open(path, "w") as f:
        for r in records:
            seq = "".join("ACGTN"[c] for c in r.codes)
            f.write(f">{r.name}\n")
            f.write("".join(seq[i:i + 60] + "\n" for i in range(0, len(seq), 60)))


def augustus_trained(t: dict, work: Path, train_gb: Path, test_gb: Path, log: Path) -> dict:
    config = work / "augustus_config"
    if config.exists():
        shutil.rmtree(config)
    shutil.copytree(AUGUSTUS_CONFIG, config, ignore=lambda d, names: [
        n for n in names if Path(d) == AUGUSTUS_CONFIG / "species" and n != "generic"])
    env = {**os.environ, "AUGUSTUS_CONFIG_PATH": str(config)}
    run(["perl", t["new_species.pl"], f"--species={SPECIES}", f"--AUGUSTUS_CONFIG_PATH={config}"], log, env=env)
    params = config / "species" / SPECIES / f"{SPECIES}_parameters.cfg"
    text = params.read_text()
    text, n = re.subn(r"(?m)^stopCodonExcludedFromCDS\s+\S+", "stopCodonExcludedFromCDS true", text)
    if n != 1:
        raise RuntimeError(f"{params}: no stopCodonExcludedFromCDS line to set")
    params.write_text(text)
    train_s = run([t["etraining"], f"--species={SPECIES}", str(train_gb)], log, env=env,
                  stdout=work / "etraining.out")
    out = work / "augustus_trained.out"
    predict_s = run([t["augustus"], f"--species={SPECIES}", "--gff3=on", str(test_gb)], log, env=env, stdout=out)
    return {"output": out, "train_seconds": train_s, "predict_seconds": predict_s}


def augustus_fly(t: dict, work: Path, test_gb: Path, log: Path) -> dict:
    env = {**os.environ, "AUGUSTUS_CONFIG_PATH": str(AUGUSTUS_CONFIG)}
    out = work / "augustus_fly.out"
    predict_s = run([t["augustus"], "--species=fly", "--stopCodonExcludedFromCDS=true", "--UTR=off", "--gff3=on",
                     str(test_gb)], log, env=env, stdout=out)
    return {"output": out, "train_seconds": None, "predict_seconds": predict_s}


def snap_train(t: dict, work: Path, train: list[Record], log: Path) -> tuple[Path, float]:
    d = work / "snap_train"
    if d.exists():
        shutil.rmtree(d)
    (d / "params").mkdir(parents=True)
    with open(d / "train.ann", "w") as f:
        for r in train:
            seq = "".join("ACGTN"[c] for c in r.codes)
            f.write("".join(zff_lines(r.name, [with_stop(seq, g) for g in r.genes])))
    write_fasta(d / "train.dna", train)
    started = time.perf_counter()
    run([t["fathom"], "train.ann", "train.dna", "-gene-stats"], log, cwd=d, stdout=d / "gene-stats.log")
    run([t["fathom"], "train.ann", "train.dna", "-validate"], log, cwd=d, stdout=d / "validate.log")
    run([t["fathom"], "train.ann", "train.dna", "-categorize", "1000"], log, cwd=d)
    run([t["fathom"], "uni.ann", "uni.dna", "-export", "1000", "-plus"], log, cwd=d)
    run([t["forge"], "../export.ann", "../export.dna"], log, cwd=d / "params")
    hmm = d / f"{SPECIES}.hmm"
    run(["perl", t["hmm-assembler.pl"], SPECIES, "params"], log, cwd=d, stdout=hmm)
    return hmm, time.perf_counter() - started


def snap_predict(t: dict, hmm: Path, test_fa: Path, out: Path, log: Path) -> float:
    return run([t["snap"], str(hmm), str(test_fa)], log, stdout=out)


# ----------------------------------------------------------------------------
# the comparison


def score(test: list[Record], pred: dict[str, list[Gene]]) -> dict:
    truth = {r.name: r.genes for r in test}
    return gene_metrics.gene_accuracy(truth, {k: v for k, v in pred.items() if k in truth})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output-dir", default="results/gene_finders", help="where to write (new or empty)")
    ap.add_argument("--data-dir", default=str(TUTORIAL), help="folder of genes.gb.train and genes.gb.test")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {SYSTEMS}")
    ap.add_argument("--overwrite", action="store_true", help="replace the results in a non-empty --output-dir")
    args = ap.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    bad = [s for s in systems if s not in SYSTEMS]
    if bad or not systems:
        ap.error(f"--systems must name some of {SYSTEMS}, got {args.systems!r}")
    out = Path(args.output_dir)
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        ap.error(f"--output-dir {out} is not empty; pass --overwrite to replace its results")
    try:
        t = tools()
        train_src = find_data("genes.gb.train", Path(args.data_dir))
        test_src = find_data("genes.gb.test", Path(args.data_dir))
        fly_hmm = snap_fly_hmm()
    except Skip as e:
        print(f"gene_finders: skipped: {e}")
        return 0

    train, test = read_genbank(train_src), read_genbank(test_src)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    log.write_text("")
    train_gb = plain_copy(train_src, work / "genes.gb.train")
    test_gb = plain_copy(test_src, work / "genes.gb.test")
    test_fa = work / "test.fa"
    write_fasta(test_fa, test)
    seqs = {r.name: "".join("ACGTN"[c] for c in r.codes) for r in test}
    lengths = {r.name: len(r.codes) for r in test}

    results = {}
    for system in systems:
        print(f"running {system} ...", flush=True)
        if system.startswith("augustus"):
            res = (augustus_trained(t, work, train_gb, test_gb, log) if system == "augustus_trained"
                   else augustus_fly(t, work, test_gb, log))
            text = res.pop("output").read_text()
            gff = work / f"{system}.raw.gff3"
            gff.write_text(augustus_predictions(text))
            # stopCodonExcludedFromCDS=true: the CDS lines leave out the stop codon, like the annotation
            pred, _ = read_genes_gff3(gff, coding_types=("CDS",))
            res["augustus_report"] = parse_augustus_evaluation(text)
        else:
            if system == "snap_trained":
                hmm, train_s = snap_train(t, work, train, log)
            else:
                hmm, train_s = fly_hmm, None
            zff = work / f"{system}.zff"
            predict_s = snap_predict(t, hmm, test_fa, zff, log)
            raw = parse_snap_zff(zff.read_text(), str(zff))
            # SNAP's terminal exons end with the stop codon; the annotation's CDS do not
            pred = {k: [without_stop(seqs[k], g) for g in v] for k, v in raw.items()}
            res = {"train_seconds": train_s, "predict_seconds": predict_s, "augustus_report": None}
        res["accuracy"] = score(test, pred)
        gff3 = out / f"{system}.gff3"
        write_genes_gff3(gff3, [(r.name, lengths[r.name], pred.get(r.name, [])) for r in test], source=system)
        check = subprocess.run([t["gt"], "gff3validator", str(gff3)], capture_output=True, text=True)
        res["gff3"] = gff3.name
        res["gff3_valid"] = check.returncode == 0
        res["gff3_validator"] = (check.stdout + check.stderr).strip()
        results[system] = res

    doc = {
        "data": {"train": {"file": str(train_src), "sha256": _sha256(train_src), "loci": len(train)},
                 "test": {"file": str(test_src), "sha256": _sha256(test_src), "loci": len(test),
                          "genes": sum(len(r.genes) for r in test)}},
        "truth": "coding exons of the GenBank CDS features (stop codon excluded)",
        "measures": "semicrf.genomics.gene_metrics (per strand; exon = both ends; gene = all coding exons, complete)",
        "versions": {"augustus": version([t["augustus"], "--version"]), "snap": version(["dpkg-query", "-W", "snap"]),
                     "genometools": version([t["gt"], "--version"])},
        "systems": results,
    }
    with open(out / "gene_finders.json", "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print()
    print(format_table(results))
    print(f"\nresults in {out}")
    return 0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def format_table(results: dict) -> str:
    head = (f"{'system':<18} {'nucleotide Sn/Sp':>17} {'exon Sn/Sp':>15} {'gene Sn/Sp':>15}   "
            f"{'AUGUSTUS eval (nuc | exon | gene)':<40} {'train s':>8} {'pred s':>7}  gff3")
    rows = [head, "-" * len(head)]
    for name, r in results.items():
        a = r["accuracy"]
        cells = [f"{a[lv]['sensitivity']:.3f}/{a[lv]['specificity']:.3f}" for lv in gene_metrics.LEVELS]
        rep = r.get("augustus_report")
        own = " | ".join(f"{rep[lv]['sensitivity']:.3g}/{rep[lv]['specificity']:.3g}" if lv in rep else "?"
                         for lv in gene_metrics.LEVELS) if rep else "-"
        train_s = f"{r['train_seconds']:.1f}" if r["train_seconds"] is not None else "-"
        rows.append(f"{name:<18} {cells[0]:>17} {cells[1]:>15} {cells[2]:>15}   {own:<40} {train_s:>8} "
                    f"{r['predict_seconds']:>7.1f}  {'valid' if r['gff3_valid'] else 'INVALID'}")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
