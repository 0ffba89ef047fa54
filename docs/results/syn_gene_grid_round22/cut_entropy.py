"""Round 22: for a semicrf_gene checkpoint, per validation sequence: log P(gold segmentation) (seg, the training
objective), log P(gold labelling) summed over its cuttings and frames (lab), the best single state path of the gold
labelling (best_cut) and the best path of all (viterbi), each less log Z, in nats.

    python3 cut_entropy.py DATA CHECKPOINT N      (the first N validation sequences, CPU)
"""
import sys, json
import numpy as np, torch
from semicrf import viterbi, log_partition
from semicrf.genomics import dataset
from semicrf.genomics.checkpoints import load_checkpoint
from semicrf.genomics.models import ModelConfig, build_model
data, ckpt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ck = load_checkpoint(ckpt)
meta = dataset.load_metadata(data)
cfg = ModelConfig(**{**ck["model_config"], "backend": "cpu", "mixed_precision": False})
model = build_model("semicrf_gene", cfg, meta)
model.load_state_dict(ck["state_dict"])
model.eval()
sp = dataset.load_split(data, "val")
rows = []
with torch.no_grad():
    for i in range(n):
        codes = torch.as_tensor(np.asarray(sp.sequences[i], np.int64))[None]
        labels = torch.as_tensor(np.asarray(sp.labels[i], np.int64))[None]
        L = torch.tensor([codes.shape[1]])
        x = torch.nn.functional.one_hot(codes, 5).float()
        em, st, en = model._scores(x, L)
        crf = model.crf
        seg = float(crf.path_log_likelihood(em, st, en, labels, L))
        lab = float(crf.log_likelihood(em, st, en, labels, L))
        tabs = crf.state_tables()
        logz = float(log_partition(em, lengths=L, start_scores=st, end_scores=en, backend="cpu", **tabs))
        ce, cs, cn = crf.constrain(em, st, en, labels)
        best_cut = float(viterbi(ce, lengths=L, start_scores=cs, end_scores=cn, backend="cpu", **tabs).score) - logz
        vit = viterbi(em, lengths=L, start_scores=st, end_scores=en, backend="cpu", **tabs)
        vit_score = float(vit.score) - logz
        rows.append(dict(seg=seg, lab=lab, best_cut=best_cut, viterbi=vit_score, T=int(L)))
        print(json.dumps(rows[-1]), flush=True)
for k in ("seg", "lab", "best_cut", "viterbi"):
    print(k, "mean nats/seq", np.mean([r[k] for r in rows]))
