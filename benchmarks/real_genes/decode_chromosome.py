"""Decode a whole chromosome in one pass, on the CPU or one GPU, with a trained model of the ``run`` command.

    python3 benchmarks/real_genes/decode_chromosome.py --checkpoint results/fly_cpu/checkpoints/semicrf_best.pt \
        --fasta chr2R.fa --output-gff3 chr2R.semicrf.gff3 [--prefix-bases N] [--chunk 1000000] [--threads 1] \
        [--device cpu|cuda]

With ``--device cuda`` the model, its features and the Viterbi run on the GPU (the model's own
engine backend choice, its bfloat16 autocast if it trained with it) and the report adds the GPU's
peak memory; the default is the CPU as described below. The GPU's whole-sequence Viterbi keeps about
164 bytes per position and state (:data:`GPU_VITERBI_BYTES`): 215 GB for semicrf_gene's 62 states over
21 Mbp, more than an H200 holds, so such a decode is refused before it starts, with the way out:
``--viterbi-device cpu`` keeps the encoder (and semicrf_gene's state scores, block by block) on the GPU
and runs the CPU's streamed Viterbi (``--threads`` threads): the CPU decode's path, bit for bit.

Loads the model from the checkpoint (its ``model_config``, ``state_dict`` and
the run's ``--features``), computes the features, runs the encoder and then
the engine's Viterbi (``backend="cpu"``) over the whole sequence at once (no
windows: one segmentation of the full length), turns the labels into genes
(:func:`semicrf.genomics.gene_structures.labels_to_genes`) and writes them as
GFF3 (:func:`~semicrf.genomics.gene_structures.write_genes_gff3`). It prints,
and with ``--json`` writes, the wall time of each step and the process's peak
memory (``resource.getrusage``'s ``ru_maxrss``).

The encoder is evaluated piece by piece so that its activations never exist
for the whole chromosome at once (a bilstm of width 64 would hold 5 GB per
layer output at 21 Mbp), but the result is the one-pass result: the features
and the stem (per-position or convolutional, with a known receptive field)
are computed on each piece with ``--halo`` extra bases of real sequence on
each side, which are then dropped; each LSTM runs over the pieces in order
(the backward one in reverse order) carrying its hidden and cell state from
piece to piece, which is exactly one LSTM pass. Only the bilstm encoder is
streamed; other encoders run on the whole sequence in one call (memory
permitting). ``tests/test_decode_chromosome.py`` checks that the streamed
scores equal the model's own.

Models: ``semicrf``, ``semicrf_uniform``, ``linear`` (the engine's Viterbi),
``semicrf_gene`` (the engine's Viterbi over its gene states: the pieces give
its class, codon and boundary scores, C + 6 + 2C columns; on the CPU the states'
scores are built block by block, ``--state-block`` positions at a time, from them
and the bases, and fed to :func:`semicrf.viterbi_blocks`, whose only tables over
the whole sequence are its traceback links, 3 bytes per position and state:
3.9 GB at 21 Mbp and 62 states, where the whole-sequence sweep's float64 tables
took 4.7 GB per Mbp; the path is the same bit for bit; on a GPU the states' scores
are built once for the whole sequence) and ``softmax`` (per-position argmax).
``pytorch-crf`` is refused: its decoder is a Python loop over positions.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from semicrf import viterbi_blocks
from semicrf.genomics import features
from semicrf.genomics.encoders import CUDNN_LSTM_MAX_STEPS
from semicrf.genomics.gene_structures import STRANDED_CLASSES, labels_to_genes, write_genes_gff3
from semicrf.genomics.gene_model import GeneSemiCRFTagger
from semicrf.genomics.models import ModelConfig, SemiCRFTagger, SoftmaxTagger, build_model

#: Bases of real sequence added on each side of a piece: more than the conv stem's reach
#: (28) plus the k-mer window's half (32).
DEFAULT_HALO = 128
#: Positions per block of semicrf_gene's state scores on the CPU (a multiple of 3: an exon state's frame
#: is its position mod 3).
DEFAULT_STATE_BLOCK = 240_000


def state_context(model) -> int:
    """Bases of context on each side of a block of semicrf_gene's state scores: what its scores read
    (``GeneSemiCRFTagger.state_context``: codon and splice rules, content k-mers, sites), rounded up to a
    multiple of 3 so that a block's frames are the whole sequence's."""
    return -(-model.state_context // 3) * 3


class DecodeError(ValueError):
    """A checkpoint or FASTA this script cannot decode; the message says what to change."""


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, MiB (ru_maxrss is KiB on Linux)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def read_fasta_records(path) -> list[tuple[str, np.ndarray]]:
    """[(name, (L,) uint8 base codes)] of a FASTA file, plain or gzipped; IUPAC codes and other letters are N."""
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"--fasta {path} does not exist")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if not raw.lstrip().startswith(b">"):
        raise DecodeError(f"{path}: not FASTA (the first non-blank character must be '>')")
    records = []
    for block in raw.lstrip()[1:].split(b"\n>"):
        header, _, body = block.partition(b"\n")
        name = header.decode(errors="replace").split()[0] if header.strip() else ""
        if not name:
            raise DecodeError(f"{path}: a FASTA record without a name")
        codes = features.decode_bases(body.replace(b"\n", b"").replace(b"\r", b"").replace(b" ", b""))
        records.append((name, codes))
    return records


def load_model(path, device: str = "cpu") -> tuple[torch.nn.Module, str, str]:
    """(model in eval mode on ``device``, model name, feature kind) from a ``run`` checkpoint. On the CPU
    the engine's CPU backend and float32 throughout; on a GPU the run's own settings (its backend
    choice, bfloat16 autocast of the encoder if it trained with it)."""
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"--checkpoint {path} does not exist (the run writes checkpoints/<model>_best.pt)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "model_config", "state_dict"):
        if key not in ckpt:
            raise DecodeError(f"{path} has no {key!r}: not a checkpoint of the run command")
    if tuple(ckpt.get("class_names", ())) != STRANDED_CLASSES:
        raise DecodeError(f"{path}: the model's classes are {ckpt.get('class_names')}, not the five stranded "
                          f"classes {STRANDED_CLASSES} of imported genomes; genes cannot be read from its labels")
    name = ckpt["model"]
    on_cpu = torch.device(device).type == "cpu"
    # A checkpoint from before --gene-long-runs holds a model without tail states or splice sites.
    config = ModelConfig(**{"gene_long_runs": "pieces", "gene_splice_sites": False, **ckpt["model_config"],
                            **({"backend": "cpu", "mixed_precision": False} if on_cpu else {})})
    model = build_model(name, config)
    if not isinstance(model, (SemiCRFTagger, SoftmaxTagger, GeneSemiCRFTagger)):
        raise DecodeError(f"{path}: model {name!r} cannot decode a chromosome here; use a semicrf, "
                          "semicrf_uniform, semicrf_gene, linear or softmax checkpoint")
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    kind = model.feature_kind or (ckpt.get("config") or {}).get("features", "onehot")
    return model, name, kind


def piece_length(chunk: int, device: torch.device) -> int:
    """The bases per encoder piece: ``chunk``, at most :data:`CUDNN_LSTM_MAX_STEPS` on a CUDA device."""
    return min(chunk, CUDNN_LSTM_MAX_STEPS) if device.type == "cuda" else chunk


def _pieces(length: int, chunk: int):
    return [(s, min(s + chunk, length)) for s in range(0, length, chunk)]


def _features(codes: np.ndarray, kind: str, lo: int, hi: int, halo: int) -> tuple[torch.Tensor, int]:
    """Features of codes[lo:hi] computed with ``halo`` bases of context, as (1, hi - lo + ..., D), and the offset."""
    a, b = max(0, lo - halo), min(len(codes), hi + halo)
    return torch.from_numpy(features.encode(codes[a:b], kind))[None], lo - a


@torch.no_grad()
def scores(model, codes: np.ndarray, kind: str, chunk: int = 1_000_000, halo: int = DEFAULT_HALO) -> dict:
    """The output layer's inputs for the whole sequence: {"emissions", "start", "end"} (1, L, C) float32 or None.

    For a bilstm encoder the work is streamed over pieces of ``chunk`` bases (exactly the one-pass
    result; on a GPU at most :data:`CUDNN_LSTM_MAX_STEPS`); for any other encoder the model's encoder runs
    once on the whole sequence.
    """
    length = len(codes)
    enc = model.encoder
    dev = next(model.parameters()).device
    if chunk < 1 or halo < 0:
        raise DecodeError(f"--chunk must be >= 1 and --halo >= 0, got {chunk}, {halo}")

    def head(hidden):  # (1, n, H) -> emissions, start, end
        if isinstance(model, SemiCRFTagger):
            return model._scores(hidden)
        if isinstance(model, GeneSemiCRFTagger):  # class and codon scores; the states come in decode()
            return model.heads(hidden)
        return model.classifier(hidden), None, None

    if type(enc).__name__ != "BiLSTMEncoder":
        x = torch.from_numpy(features.encode(codes, kind))[None].to(dev)
        em, st, en = head(model.encode(x, torch.tensor([length], device=dev)))
        return {"emissions": em, "start": st, "end": en}

    pieces = _pieces(length, piece_length(chunk, dev))

    def stem(lo, hi):
        x, off = _features(codes, kind, lo, hi, halo)
        return enc.stem(x.to(dev), torch.tensor([x.shape[1]], device=dev))[:, off:off + hi - lo]

    layer_input = None  # (1, L, H) output of the previous layer (None: the stem, recomputed per piece)
    num_layers = len(enc.forward_lstms)
    out = None
    for i, (fwd, bwd) in enumerate(zip(enc.forward_lstms, enc.backward_lstms)):
        def inp(lo, hi):
            return stem(lo, hi) if layer_input is None else layer_input[:, lo:hi]

        half = fwd.hidden_size
        forward_out = torch.empty(1, length, half, device=dev)
        state = None
        for lo, hi in pieces:
            y, state = fwd(inp(lo, hi), state)
            forward_out[:, lo:hi] = y
        last = i == num_layers - 1
        out = {"emissions": None, "start": None, "end": None} if last else torch.empty(1, length, 2 * half, device=dev)
        state = None
        for lo, hi in reversed(pieces):
            y, state = bwd(torch.flip(inp(lo, hi), dims=[1]), state)
            h = torch.cat([forward_out[:, lo:hi], torch.flip(y, dims=[1])], dim=-1)
            if not last:
                out[:, lo:hi] = h
                continue
            for key, value in zip(("emissions", "start", "end"), head(h)):
                if value is None:
                    continue
                if out[key] is None:
                    out[key] = torch.empty(1, length, value.shape[-1], device=dev)
                out[key][:, lo:hi] = value
        del forward_out
        layer_input = None if last else out
    return out


def _check_state_block(block: int) -> None:
    if block < 3 or block % 3:
        raise DecodeError(f"--state-block must be a positive multiple of 3, got {block}")


def gene_state_blocks(model, s: dict, base: torch.Tensor, block: int = DEFAULT_STATE_BLOCK):
    """semicrf_gene's engine inputs over its states, (emissions, start, end) each (W, S), for consecutive
    blocks of ``block`` positions (a multiple of 3): each built from the class-level scores and the bases of
    the block and :func:`state_context` bases either side, then cropped, which is exactly the block of the
    whole sequence's states (the frame is the position mod 3; the grid of ``--gene-long-runs grid`` is told
    where the block lies)."""
    _check_state_block(block)
    L = s["emissions"].shape[1]
    context = state_context(model)
    for lo in range(0, L, block):
        hi = min(L, lo + block)
        a, b = max(0, lo - context), min(L, hi + context)
        em, start, end = model.states_from_heads(s["emissions"][:, a:b], s["start"][:, a:b], s["end"][:, a:b],
                                                 base[:, a:b], torch.tensor([b - a], device=base.device),
                                                 first_position=a, at_end=b == L)
        yield em[0, lo - a:hi - a], start[0, lo - a:hi - a], end[0, lo - a:hi - a]


#: Bytes per position and state of the GPU's whole-sequence Viterbi, about: the two half-sequence rows'
#: seven float64 tables (prefix sums, start and end scores, alpha, u, g, best values) and int64 links,
#: and the states' scores in float32 and as the engine's float64 copies.
GPU_VITERBI_BYTES = 8 * (2 * 7 + 2 + 3) + 4 * 3


def check_gpu_viterbi_fits(length: int, states: int, free_bytes: int) -> None:
    """Refuse, before any work, a GPU Viterbi whose tables would not fit the GPU's free memory."""
    need = GPU_VITERBI_BYTES * length * states
    if need > free_bytes:
        raise DecodeError(f"the GPU Viterbi of {length} positions and {states} states needs about "
                          f"{need / 2**30:.0f} GiB, more than the {free_bytes / 2**30:.0f} GiB free on the GPU; "
                          "add --viterbi-device cpu (the encoder stays on the GPU, the Viterbi streams on the CPU), "
                          "or decode fewer bases (--prefix-bases)")


@torch.no_grad()
def decode(model, s: dict, codes: np.ndarray | None = None, state_block: int = DEFAULT_STATE_BLOCK,
           viterbi_device: str | None = None) -> np.ndarray:
    """(L,) int64 labels: the engine's Viterbi for a semi-CRF model (the CPU backend for scores on the CPU,
    the model's own backend choice on a GPU), argmax for softmax. ``codes``: the bases (semicrf_gene reads
    its start and stop codons from them); ``state_block``: semicrf_gene's block of states on the CPU;
    ``viterbi_device``: "cpu" to decode scores that lie on a GPU with the CPU Viterbi (semicrf_gene's states
    are still built on the GPU, block by block), None for the scores' device."""
    em = s["emissions"]
    if isinstance(model, SoftmaxTagger):
        return em[0].argmax(-1).cpu().numpy().astype(np.int64)
    on_cpu = (viterbi_device or em.device.type) == "cpu"
    length = torch.tensor([em.shape[1]], device=em.device)
    if isinstance(model, GeneSemiCRFTagger):
        if codes is None:
            raise DecodeError("semicrf_gene decodes from its scores and the bases: pass codes")
        base = torch.from_numpy(codes.astype(np.int64))[None].to(em.device)
        if not on_cpu:  # the scores lie on a GPU, and so would the Viterbi's tables
            check_gpu_viterbi_fits(em.shape[1], model.crf.num_states, torch.cuda.mem_get_info(em.device)[0])
        if on_cpu:
            tables = model.crf.state_tables()
            result = viterbi_blocks(gene_state_blocks(model, s, base, state_block), em.shape[1], tables["transitions"],
                                    tables["durations"], tables["initial"], tables["final"])
            states = result.labels[0]
            return torch.where(states >= 0, model.crf.state_class.cpu()[states.clamp(min=0)], -1).numpy()
        classes, _ = model.crf.decode(*model.states_from_heads(em, s["start"], s["end"], base, length), length)
        return classes[0].cpu().numpy()
    crf = model.crf
    if on_cpu and em.device.type != "cpu":
        s = {k: (v.cpu() if v is not None else None) for k, v in s.items()}
        em, length, crf = s["emissions"], length.cpu(), copy.deepcopy(crf).cpu()
    result = crf.decode(em, length, start_scores=s["start"], end_scores=s["end"], backend="cpu" if on_cpu else None)
    return result.labels[0].cpu().numpy()


def decode_fasta(checkpoint, fasta, output_gff3, prefix_bases: int | None = None, chunk: int = 1_000_000,
                 halo: int = DEFAULT_HALO, threads: int | None = 1, log=print, device: str = "cpu",
                 state_block: int = DEFAULT_STATE_BLOCK, viterbi_device: str | None = None) -> dict:
    """Decode every record of ``fasta`` (its first ``prefix_bases`` bases if given); returns the report.
    ``viterbi_device``: "cpu" to run the Viterbi on the CPU after a GPU encoder (None: ``device``)."""
    _check_state_block(state_block)
    if viterbi_device not in (None, "cpu", device):
        raise DecodeError(f"--viterbi-device must be cpu or the --device ({device}), got {viterbi_device}")
    if threads:
        torch.set_num_threads(threads)
    report = {"checkpoint": str(checkpoint), "fasta": str(fasta), "output_gff3": str(output_gff3),
              "prefix_bases": prefix_bases, "chunk": chunk, "halo": halo, "threads": threads, "device": device,
              "viterbi_device": viterbi_device or device, "state_block": state_block,
              "sequences": []}
    gpu = torch.device(device).type == "cuda"
    if gpu and not torch.cuda.is_available():
        raise DecodeError("--device cuda: no CUDA GPU here; use --device cpu")
    t0 = time.perf_counter()
    model, name, kind = load_model(checkpoint, device)
    records = read_fasta_records(fasta)
    if prefix_bases is not None:
        if prefix_bases < 1:
            raise DecodeError(f"--prefix-bases must be >= 1, got {prefix_bases}")
        records = [(n, c[:prefix_bases]) for n, c in records]
    report.update(model=name, features=kind, max_duration=model.max_duration,
                  encoder=model.config.encoder, hidden_dim=model.config.hidden_dim,
                  load_seconds=time.perf_counter() - t0)
    out = []
    for seqid, codes in records:
        row = {"seqid": seqid, "length": int(len(codes))}
        sync = torch.cuda.synchronize if gpu else (lambda: None)
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        s = scores(model, codes, kind, chunk, halo)
        sync()
        row["encoder_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        labels = decode(model, s, codes, state_block, viterbi_device)
        del s
        sync()
        row["viterbi_seconds"] = time.perf_counter() - t
        if gpu:
            row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        t = time.perf_counter()
        genes = labels_to_genes(labels)
        row["genes"] = len(genes)
        row["exons"] = sum(len(g.exons) for g in genes)
        row["coding_fraction"] = float(np.isin(labels, (1, 3)).mean()) if len(labels) else 0.0
        row["genes_seconds"] = time.perf_counter() - t
        row["peak_rss_mb"] = peak_rss_mb()
        out.append((seqid, len(codes), genes))
        report["sequences"].append(row)
        log(f"{seqid}: {len(codes)} bases, encoder {row['encoder_seconds']:.1f} s, Viterbi "
            f"{row['viterbi_seconds']:.1f} s, {row['genes']} genes ({row['exons']} exons), peak RSS "
            f"{row['peak_rss_mb']:.0f} MiB")
    t = time.perf_counter()
    write_genes_gff3(output_gff3, out, source=f"semicrf:{name}")
    report["write_seconds"] = time.perf_counter() - t
    report["total_seconds"] = time.perf_counter() - t0
    report["peak_rss_mb"] = peak_rss_mb()
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoints/<model>_best.pt of a run on imported data")
    ap.add_argument("--fasta", required=True, help="FASTA file (plain or gzipped); every record is decoded")
    ap.add_argument("--output-gff3", required=True, help="where to write the predicted genes")
    ap.add_argument("--prefix-bases", type=int, default=None, help="decode only the first N bases of each record")
    ap.add_argument("--chunk", type=int, default=1_000_000,
                    help="bases per encoder piece (does not change results; at most 65 535 on a GPU, cuDNN's limit)")
    ap.add_argument("--halo", type=int, default=DEFAULT_HALO, help="context bases on each side of a piece")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (0: PyTorch's choice)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="where the encoder and the Viterbi run (cuda: one GPU, the whole sequence at once)")
    ap.add_argument("--viterbi-device", default=None, choices=("cpu", "cuda"),
                    help="where the Viterbi runs (default: --device); cpu after a cuda encoder: the CPU's streamed "
                         "Viterbi over --threads threads, for state spaces whose GPU tables do not fit (semicrf_gene "
                         "at chromosome length)")
    ap.add_argument("--state-block", type=int, default=DEFAULT_STATE_BLOCK,
                    help="semicrf_gene on the CPU: positions per block of its state scores (a multiple of 3; does "
                         "not change results)")
    ap.add_argument("--json", default=None, help="also write the report (times, peak memory) here")
    args = ap.parse_args(argv)
    try:
        report = decode_fasta(args.checkpoint, args.fasta, args.output_gff3, args.prefix_bases, args.chunk,
                              args.halo, args.threads, device=args.device, state_block=args.state_block,
                              viterbi_device=args.viterbi_device)
    except DecodeError as e:
        print(f"decode_chromosome: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output_gff3}: {sum(r['genes'] for r in report['sequences'])} genes; "
          f"total {report['total_seconds']:.1f} s, peak RSS {report['peak_rss_mb']:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
