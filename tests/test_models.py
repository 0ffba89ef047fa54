"""The model registry and the five heads over a shared encoder."""

import numpy as np
import pytest
import torch

from semicrf.genomics import models
from semicrf.genomics.models import MODEL_NAMES, ModelConfig, build_model, parse_model_list, register_model

CONFIG = ModelConfig(input_dim=4, num_classes=3, encoder="bilstm", hidden_dim=8, num_layers=1, max_duration=12,
                     backend="cpu")


# Small tensors: one thread is faster and immune to other processes on the machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(seed=0, lengths=(30, 22, 9)):
    g = torch.Generator().manual_seed(seed)
    total = max(lengths)
    x = torch.randn(len(lengths), total, 4, generator=g)
    # Labels in runs, as segments are.
    runs = torch.randint(0, 3, (len(lengths), total // 3 + 1), generator=g)
    y = runs.repeat_interleave(3, dim=1)[:, :total].contiguous()
    return x, y, torch.tensor(lengths)


def _model(name, seed=0, config=CONFIG):
    torch.manual_seed(seed)
    return build_model(name, config).double()


def test_registry_holds_the_five_models_in_order():
    assert MODEL_NAMES == ("softmax", "pytorch-crf", "linear", "semicrf", "semicrf_uniform")
    assert models.available_models()[:5] == MODEL_NAMES
    assert parse_model_list("all") == list(MODEL_NAMES) + ["oracle"]
    assert parse_model_list("semicrf, linear") == ["semicrf", "linear"]
    with pytest.raises(ValueError, match="unknown model"):
        parse_model_list("semicrf,hmm")
    with pytest.raises(ValueError, match="once"):
        parse_model_list("linear,linear")
    with pytest.raises(ValueError, match="already registered"):
        register_model("linear", lambda cfg, meta: None)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_loss_and_predictions_have_the_right_form(name):
    model = _model(name)
    x, y, lengths = _batch()
    loss = model.loss(x.double(), y, lengths)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() >= 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    preds = model.predict(x.double(), lengths)
    assert [len(p) for p in preds] == lengths.tolist()
    assert all(p.dtype == np.int64 and p.min() >= 0 and p.max() < 3 for p in preds)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_loss_is_the_mean_per_position_and_ignores_padding(name):
    # The batch loss is the position-weighted mean of the per-sequence losses,
    # whatever the padding holds.
    model = _model(name)
    x, y, lengths = _batch(seed=3)
    x, y = x.double(), y.clone()
    x[1, lengths[1]:] = 1e3
    y[1, lengths[1]:] = 2
    with torch.no_grad():
        whole = model.loss(x, y, lengths).item()
        parts = [model.loss(x[i:i + 1, :n], y[i:i + 1, :n], lengths[i:i + 1]).item() for i, n in
                 enumerate(lengths.tolist())]
    expected = sum(p * n for p, n in zip(parts, lengths.tolist())) / lengths.sum().item()
    assert whole == pytest.approx(expected, rel=1e-5)


def test_softmax_loss_is_cross_entropy_over_real_positions():
    model = _model("softmax")
    x, y, lengths = _batch()
    with torch.no_grad():
        logits = model.classifier(model.encode(x.double(), lengths))
        terms = [torch.log_softmax(logits[i, :n], -1)[torch.arange(n), y[i, :n]] for i, n in
                 enumerate(lengths.tolist())]
        expected = -torch.cat(terms).mean()
        assert model.loss(x.double(), y, lengths).item() == pytest.approx(expected.item(), rel=1e-6)


def test_linear_matches_pytorch_crf_with_the_same_scores():
    # The engine with K = 1 is a linear-chain CRF: given pytorch-crf's weights
    # it must give the same likelihood and the same best labels.
    ext = _model("pytorch-crf", seed=1)
    ours = _model("linear", seed=1)
    with torch.no_grad():
        ext.crf.transitions.normal_()
        ext.crf.start_transitions.normal_()
        ext.crf.end_transitions.normal_()
        ours.encoder.load_state_dict(ext.encoder.state_dict())
        ours.emission.load_state_dict(ext.emission.state_dict())
        ours.crf.transitions.copy_(ext.crf.transitions)
        ours.crf.initial.copy_(ext.crf.start_transitions)
        ours.crf.final.copy_(ext.crf.end_transitions)
        ours.crf.durations.zero_()
        x, y, lengths = _batch(seed=4)
        x = x.double()
        assert ours.loss(x, y, lengths).item() == pytest.approx(ext.loss(x, y, lengths).item(), rel=1e-7)
        for a, b in zip(ours.predict(x, lengths), ext.predict(x, lengths)):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ["semicrf", "semicrf_uniform", "linear"])
def test_segmentation_objective_scores_the_gold_path(name):
    import dataclasses

    import semicrf

    x, y, lengths = _batch(seed=5)
    seg = _model(name, config=dataclasses.replace(CONFIG, objective="segmentation"))
    lab = _model(name)
    with torch.no_grad():
        hidden = seg.encode(x.double(), lengths)
        em, st, en = seg._scores(hidden)
        c = seg.crf
        truth = -semicrf.segmentation_log_likelihood(em, y, c.transitions, c.durations, lengths, c.initial, c.final,
                                                     st, en, backend="cpu")
        got = seg.loss(x.double(), y, lengths).item()
        other = lab.loss(x.double(), y, lengths).item()
    assert got == pytest.approx(truth.sum().item() / lengths.sum().item(), rel=1e-9)
    if name == "linear":  # K = 1: one segmentation per labelling, the two objectives agree
        assert got == pytest.approx(other, rel=1e-9)
    else:  # one path of the labelling's many: a larger loss
        assert got > other
    with pytest.raises(ValueError, match="objective"):
        ModelConfig(input_dim=4, num_classes=3, objective="paths")


def test_semicrf_variants_differ_only_in_the_duration_table():
    learned, uniform = _model("semicrf"), _model("semicrf_uniform")
    names_l = {n for n, _ in learned.named_parameters()}
    names_u = {n for n, _ in uniform.named_parameters()}
    assert names_l - names_u == {"crf.durations"} and not names_u - names_l
    assert learned.duration_scores().shape == (CONFIG.max_duration, 3)
    assert uniform.duration_scores() is None
    assert torch.equal(uniform.crf.durations, torch.zeros(CONFIG.max_duration, 3, dtype=torch.float64))
    assert learned.max_duration == uniform.max_duration == CONFIG.max_duration
    assert _model("linear").max_duration == 1


def test_same_seed_gives_every_model_the_same_initial_encoder():
    states = [_model(name, seed=7).encoder.state_dict() for name in MODEL_NAMES]
    for other in states[1:]:
        assert all(torch.equal(states[0][k], other[k]) for k in states[0])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_each_model_learns_an_easy_labelling(name):
    # Features announce the label outright; a few steps of Adam must find it.
    torch.manual_seed(0)
    model = build_model(name, ModelConfig(input_dim=3, num_classes=3, encoder="bilstm", hidden_dim=8, num_layers=1,
                                          max_duration=8, backend="cpu"))
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (4, 10), generator=g).repeat_interleave(4, dim=1)
    x = torch.nn.functional.one_hot(y, 3).float() * 3
    lengths = torch.tensor([40, 40, 37, 30])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        model.loss(x, y, lengths).backward()
        opt.step()
    with torch.no_grad():
        preds = model.predict(x, lengths)
    acc = np.mean(np.concatenate([p == y[i, :len(p)].numpy() for i, p in enumerate(preds)]))
    assert acc > 0.95


def test_a_registered_untrained_model_can_be_built():
    class Fixed(models.SequenceLabeler):
        trainable = False

        def predict(self, features, lengths):
            return [np.zeros(n, dtype=np.int64) for n in lengths.tolist()]

    register_model("_test_fixed", lambda cfg, meta: Fixed(cfg), "test only")
    try:
        m = build_model("_test_fixed", CONFIG, {"class_names": ["a", "b", "c"]})
        assert m.trainable is False and m.model_name == "_test_fixed"
        assert models.model_summary("_test_fixed") == "test only"
        assert "_test_fixed" in parse_model_list("_test_fixed,softmax")
    finally:
        models._REGISTRY.pop("_test_fixed")
