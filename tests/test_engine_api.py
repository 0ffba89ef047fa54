"""Bad input gets a clear ValueError naming the argument; the SemiCRF module is a thin wrapper."""

import math

import pytest
import torch

import semicrf

B, T, C, K = 2, 5, 3, 4


def good(**over):
    kw = dict(emissions=torch.randn(B, T, C), transitions=torch.randn(C, C), durations=torch.randn(K, C))
    kw.update(over)
    return kw


@pytest.mark.parametrize("over,name", [
    (dict(emissions=torch.randn(T, C)), "emissions"),
    (dict(emissions=torch.zeros(0, T, C)), "emissions"),
    (dict(emissions=torch.zeros(B, T, C, dtype=torch.int64)), "emissions"),
    (dict(transitions=torch.randn(C, C + 1)), "transitions"),
    (dict(durations=torch.randn(K, C + 1)), "durations"),
    (dict(durations=torch.randn(0, C)), "durations"),
    (dict(durations=torch.randn(K)), "durations"),
    (dict(initial=torch.randn(C + 1)), "initial"),
    (dict(final=torch.randn(2, C)), "final"),
    (dict(start_scores=torch.randn(B, T + 1, C)), "start_scores"),
    (dict(end_scores=torch.randn(B + 1, T, C)), "end_scores"),
    (dict(lengths=torch.tensor([0, 3])), "lengths"),
    (dict(lengths=torch.tensor([T + 1, 3])), "lengths"),
    (dict(lengths=torch.tensor([3.0, 3.0])), "lengths"),
    (dict(lengths=torch.tensor([3])), "lengths"),
    (dict(transitions=torch.tensor([[math.nan] * C] * C)), "transitions"),
    (dict(durations=torch.full((K, C), math.inf)), "durations"),
    (dict(emissions=torch.full((B, T, C), -math.inf)), "emissions"),
    (dict(emissions=torch.full((B, T, C), math.nan)), "emissions"),
    (dict(transitions=torch.ones(C, C, dtype=torch.bool)), "transitions"),
])
def test_bad_inputs_name_the_argument(over, name):
    for fn in (semicrf.log_partition, semicrf.viterbi, semicrf.marginals):
        with pytest.raises(ValueError, match=f"`{name}`"):
            fn(**good(**over))


def test_value_checks_report_in_argument_order():
    """The value checks are read from the device together; the first failing argument (lengths,
    labels, then the scores in signature order) is the one reported, with its own message."""
    bad = dict(lengths=torch.tensor([0, 3]), transitions=torch.full((C, C), math.nan),
               end_scores=torch.full((B, T, C), math.inf))
    with pytest.raises(ValueError, match="`lengths`: every length"):
        semicrf.log_likelihood(labels=torch.full((B, T), 7), **good(**bad))
    del bad["lengths"]
    with pytest.raises(ValueError, match="`labels`: labels must lie"):
        semicrf.log_likelihood(labels=torch.full((B, T), 7), **good(**bad))
    with pytest.raises(ValueError, match="`transitions`: contains NaN"):
        semicrf.log_partition(**good(**bad))
    with pytest.raises(ValueError, match=r"`end_scores`: contains \+inf"):
        semicrf.log_partition(**good(end_scores=bad["end_scores"]))
    with pytest.raises(ValueError, match="`durations`: contains NaN"):
        semicrf.log_partition(**good(durations=torch.full((K, C), -math.inf).index_fill(0, torch.tensor([1]), math.nan)))
    semicrf.log_partition(**good(durations=torch.full((K, C), -math.inf).index_fill(0, torch.tensor([1]), 0.0)))


@pytest.mark.parametrize("labels,msg", [
    (torch.full((B, T), 3), r"\[0, C\)"),
    (torch.full((B, T), -1), r"\[0, C\)"),
    (torch.zeros(B, T + 1, dtype=torch.long), "shape"),
    (torch.zeros(B, T), "integer"),
])
def test_bad_labels(labels, msg):
    with pytest.raises(ValueError, match=msg):
        semicrf.log_likelihood(labels=labels, **good())


def test_labels_past_lengths_are_ignored():
    kw = good(lengths=torch.tensor([5, 2]))
    labels = torch.zeros(B, T, dtype=torch.long)
    a = semicrf.log_likelihood(labels=labels, **kw)
    labels[1, 2:] = 99
    assert torch.equal(semicrf.log_likelihood(labels=labels, **kw), a)


def test_loss_is_non_negative_and_long_runs_need_no_special_case():
    torch.manual_seed(0)
    kw = good(durations=torch.randn(2, C) * 5)  # K = 2, runs of 5
    labels = torch.tensor([[0] * 5, [1, 1, 1, 1, 2]])
    ll = semicrf.log_likelihood(labels=labels, **kw)
    assert torch.all(ll < 0) and torch.all(torch.isfinite(ll))


def test_backend_name_is_checked():
    with pytest.raises(ValueError, match="`backend`"):
        semicrf.log_partition(**good(), backend="gpu-please")


def test_module_learned_and_uniform():
    torch.manual_seed(0)
    crf = semicrf.SemiCRF(3, 6, duration="learned")
    uni = semicrf.SemiCRF(3, 6, duration="uniform")
    assert "durations" in dict(crf.named_parameters())
    assert "durations" not in dict(uni.named_parameters()) and "durations" in dict(uni.named_buffers())
    em = torch.randn(2, 20, 3, requires_grad=True)
    labels = torch.randint(0, 3, (2, 20))
    nll = crf.nll(em, labels, lengths=torch.tensor([20, 11]))
    assert nll.shape == (2,) and torch.all(nll >= 0)
    nll.sum().backward()
    assert crf.durations.grad is not None and crf.transitions.grad is not None and em.grad is not None
    ref = -semicrf.log_likelihood(em, labels, crf.transitions, crf.durations, torch.tensor([20, 11]),
                                  crf.initial, crf.final, backend="reference")
    torch.testing.assert_close(nll, ref)
    out = crf.decode(em.detach())
    assert out.labels.shape == (2, 20) and len(out.segments) == 2
    m = uni.marginals(em.detach())
    torch.testing.assert_close(m.sum(-1), torch.ones(2, 20, dtype=torch.float64))
    with pytest.raises(ValueError, match="duration"):
        semicrf.SemiCRF(3, 6, duration="gaussian")
    with pytest.raises(ValueError, match="max_duration"):
        semicrf.SemiCRF(3, 0)


def test_module_trains():
    # A few steps of gradient descent on one labelled sequence raise its likelihood.
    torch.manual_seed(0)
    crf = semicrf.SemiCRF(2, 8)
    em = torch.randn(1, 40, 2)
    labels = (torch.arange(40) // 8 % 2)[None]
    opt = torch.optim.Adam(crf.parameters(), lr=0.1)
    first = crf.nll(em, labels).item()
    for _ in range(30):
        opt.zero_grad()
        loss = crf.nll(em, labels).sum()
        loss.backward()
        opt.step()
    assert loss.item() < first - 5
