"""Round 21's probes of semicrf_gene's counting start, untrained (one step at --lr 1e-12, the encoder's heads
at zero), on the spec's data: which of its tables makes it put exons everywhere.

    python3 counts_start_probe.py DATA OUT VARIANT [run flags ...]

VARIANT: plain (the start as it is), kmer1 / kmer3 (content chains of order 0 / 2 instead of 5),
no-sites (every site table at zero), no-exon-sites (the exon class's start and end tables at zero).
Decodes the first 50 test sequences on the CPU; add --max-duration 3000 for K = 3 000.
"""
import functools
import sys

import numpy as np

from semicrf.genomics import gene_model as gm
from semicrf.genomics import gene_priors as gp
from semicrf.genomics.cli import main

data, out, variant, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
sites = gp.site_log_odds
if variant.startswith("kmer"):
    gm.CONTENT_KMER = int(variant[4:])
    gp.content_log_odds = functools.partial(gp.content_log_odds, k=gm.CONTENT_KMER)
elif variant == "no-sites":
    gp.site_log_odds = lambda split, C, **kw: np.zeros_like(sites(split, C, **kw))
elif variant == "no-exon-sites":
    def _no_exon(split, C, **kw):
        s = sites(split, C, **kw).copy()
        s[:, 1] = 0.0
        return s
    gp.site_log_odds = _no_exon
elif variant != "plain":
    raise SystemExit(f"unknown VARIANT {variant!r}")
sys.exit(main(["run", "--data-dir", data, "--output-dir", out, "--models", "semicrf_gene", "--device", "cpu",
               "--threads", "2", "--max-test", "50", "--max-val", "2", "--encoder", "bilstm", "--hidden-dim", "64",
               "--num-layers", "1", "--stem", "conv", "--epochs", "1", "--step-budget", "semicrf_gene=1", "--lr",
               "1e-12", "--batch-size", "2", "--no-progress", *extra]))
