"""Round 22: the oracle's -log P(gold labelling) per sequence (and per position) on the first N sequences of a split.

    python3 oracle_nll.py DATA SPLIT N [EXON_LEVELS]
"""
import json
import sys
import time

import numpy as np
import torch

from semicrf import log_likelihood
from semicrf.genomics import oracle
from semicrf.genomics.dataset import load_metadata, load_split

data, split_name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
levels = int(sys.argv[4]) if len(sys.argv) > 4 else None
tables = oracle.build_tables(oracle.config_from_metadata(load_metadata(data)), levels)
split = load_split(data, split_name)
t0, per, positions = time.time(), [], 0
for i in range(n):
    codes = np.asarray(split.sequences[i], np.int64)
    labels = np.asarray(split.labels[i], np.int64)
    em, st, en, lengths = oracle._batch_scores(tables, [codes])
    ll = log_likelihood(em, torch.from_numpy(labels)[None], lengths=lengths, start_scores=st, end_scores=en,
                        backend="cpu", label_classes=torch.from_numpy(tables.state_class),
                        **oracle._engine_args(tables))
    per.append(-float(ll[0]))
    positions += len(labels)
print(json.dumps({"states": tables.num_states, "levels": tables.exon_levels, "nll_per_position": sum(per) / positions,
                  "per_seq": per[:10], "s": time.time() - t0}))
