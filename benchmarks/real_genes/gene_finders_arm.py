#!/usr/bin/env python3
"""The field's gene finders on a whole chromosome arm, scored at the test loci that lie in it.

    python3 benchmarks/real_genes/gene_finders_arm.py --fasta chr2R.fa \
        --trained results/gene_finders [--systems augustus_trained,...] [--data-dir data/fly] \
        --output-dir results/gene_finders_arm [--overwrite]

The same four systems as ``gene_finders.py`` (whose ``--output-dir`` given as ``--trained`` holds the
AUGUSTUS species and the SNAP HMM it trained on the 486 loci), each run on the whole FASTA as its
users run it: AUGUSTUS on the whole sequence (it cuts a long one into overlapping pieces itself,
``maxDNAPieceSize``), SNAP on the whole sequence. Each system's predictions are written as GFF3 (the
CDS without the stop codon, as the annotation has it) and scored at the test loci with
``score_arm.py``: the decode of the arm, judged on the genes a per-locus run is judged on. Times are the
wall seconds of each command on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gene_finders as gf  # noqa: E402
from decode_chromosome import read_fasta_records  # noqa: E402
from score_arm import ArmError, score_arm  # noqa: E402

from semicrf.genomics import gene_metrics  # noqa: E402
from semicrf.genomics.gene_structures import read_genes_gff3, write_genes_gff3  # noqa: E402


def _augustus(t: dict, system: str, trained: Path, fasta: Path, out: Path, log: Path) -> float:
    if system == "augustus_trained":
        config = trained / "work" / "augustus_config"
        if not (config / "species" / gf.SPECIES).is_dir():
            raise gf.Skip(f"{config} has no species {gf.SPECIES}: run gene_finders.py --output-dir {trained} first")
        env = {**os.environ, "AUGUSTUS_CONFIG_PATH": str(config)}
        cmd = [t["augustus"], f"--species={gf.SPECIES}", "--gff3=on", str(fasta)]
    else:
        env = {**os.environ, "AUGUSTUS_CONFIG_PATH": str(gf.AUGUSTUS_CONFIG)}
        cmd = [t["augustus"], "--species=fly", "--stopCodonExcludedFromCDS=true", "--UTR=off", "--gff3=on", str(fasta)]
    return gf.run(cmd, log, env=env, stdout=out)


def run_system(t: dict, system: str, trained: Path, fasta: Path, seq: str, seqid: str, work: Path, log: Path):
    """(genes of the arm, predict seconds) of one system on the plain FASTA ``fasta``."""
    if system.startswith("augustus"):
        raw = work / f"{system}.out"
        seconds = _augustus(t, system, trained, fasta, raw, log)
        gff = work / f"{system}.raw.gff3"
        gff.write_text(gf.augustus_predictions(raw.read_text()))
        pred, _ = read_genes_gff3(gff, coding_types=("CDS",))  # stopCodonExcludedFromCDS: no stop in the CDS
        return pred.get(seqid, []), seconds
    hmm = trained / "work" / "snap_train" / f"{gf.SPECIES}.hmm" if system == "snap_trained" else gf.snap_fly_hmm()
    if not hmm.is_file():
        raise gf.Skip(f"{hmm} is missing: run gene_finders.py --output-dir {trained} first")
    zff = work / f"{system}.zff"
    seconds = gf.snap_predict(t, hmm, fasta, zff, log)
    raw = gf.parse_snap_zff(zff.read_text(), str(zff))
    return [gf.without_stop(seq, g) for g in raw.get(seqid, [])], seconds  # SNAP's exons end with the stop


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fasta", required=True, help="the chromosome (one record, plain or gzipped)")
    ap.add_argument("--trained", default="results/gene_finders", help="gene_finders.py's --output-dir")
    ap.add_argument("--systems", default=",".join(gf.SYSTEMS), help=f"comma-separated subset of {gf.SYSTEMS}")
    ap.add_argument("--data-dir", default="data/fly", help="the imported data set whose test loci to score at")
    ap.add_argument("--output-dir", default="results/gene_finders_arm", help="where to write (new or empty)")
    ap.add_argument("--overwrite", action="store_true", help="replace the results in a non-empty --output-dir")
    args = ap.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    if not systems or any(s not in gf.SYSTEMS for s in systems):
        ap.error(f"--systems must name some of {gf.SYSTEMS}, got {args.systems!r}")
    out = Path(args.output_dir)
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        ap.error(f"--output-dir {out} is not empty; pass --overwrite to replace its results")
    try:
        t = gf.tools()
    except gf.Skip as e:
        print(f"gene_finders_arm: skipped: {e}")
        return 0
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    log.write_text("")
    fasta = gf.plain_copy(Path(args.fasta), work / "arm.fa")
    records = read_fasta_records(fasta)
    if len(records) != 1:
        ap.error(f"--fasta must hold one record (the decoded chromosome), it has {len(records)}")
    seqid, codes = records[0]
    seq = "".join("ACGTN"[c] for c in codes)
    report = {"fasta": str(args.fasta), "seqid": seqid, "length": len(seq), "systems": {}}
    for system in systems:
        print(f"running {system} on {seqid} ({len(seq)} bases) ...", flush=True)
        try:
            genes, seconds = run_system(t, system, Path(args.trained), fasta, seq, seqid, work, log)
        except gf.Skip as e:
            print(f"gene_finders_arm: {system} skipped: {e}")
            continue
        gff3 = out / f"{system}.gff3"
        write_genes_gff3(gff3, [(seqid, len(seq), genes)], source=system)
        valid = subprocess.run([t["gt"], "gff3validator", str(gff3)], capture_output=True, text=True).returncode == 0
        try:
            scored = score_arm(gff3, fasta, args.data_dir)
        except ArmError as e:
            print(f"gene_finders_arm: {e}", file=sys.stderr)
            return 2
        report["systems"][system] = {"predict_seconds": seconds, "genes": len(genes),
                                     "exons": sum(len(g.exons) for g in genes), "gff3": gff3.name,
                                     "gff3_valid": valid, "accuracy": scored["accuracy"]}
        print(gene_metrics.format_accuracy_row(system, scored["accuracy"]) + f"   {seconds:.1f} s, {len(genes)} genes")
        (out / "gene_finders_arm.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
