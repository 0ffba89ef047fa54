"""Round 22: round 21's counting-start probe with the synthetic grammar's first_exon -> intergenic forbidden (genes of
two exons or more, as the generator makes them).

    python3 probe_no_single_exon_genes.py DATA OUT plain --gene-exon-ends gene      (from the repository root)
"""
import runpy, sys
import numpy as np
from semicrf.genomics import gene_grammar as gg, gene_crf as gc
orig = gg.grammar_mask
def masked(states=gg.STATES, layout=gg.SYNTHETIC):
    m = orig(states, layout)
    if not layout.codons:
        for i, s in enumerate(states):
            if s.kind == "open":
                for j, t in enumerate(states):
                    if t.kind == "intergenic":
                        m[i, j] = -np.inf
    return m
gc.grammar_mask = masked
sys.argv = ["probe"] + sys.argv[1:]
runpy.run_path("docs/results/syn_gene_exon_ends_round21/counts_start_probe.py", run_name="__main__")
