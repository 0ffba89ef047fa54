"""benchmarks/synthetic_genomics/table_swap.py: the swaps it decodes are the parameter sets they name."""

import importlib.util
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location(
    "table_swap", Path(__file__).resolve().parents[1] / "benchmarks" / "synthetic_genomics" / "table_swap.py")
table_swap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(table_swap)

NAMES = ("encoder.lstm.weight", "emission.weight", "boundary_head.bias", "sites.weight", "crf.durations")


def _states():
    return {k: {n: torch.full((2,), float(i + 10 * j)) for j, n in enumerate(NAMES)}
            for i, k in enumerate(("best", "last"))}


def test_groups_split_the_encoder_from_the_tables():
    state = _states()["best"]
    enc, tab = table_swap.group_names(state, "encoder"), table_swap.group_names(state, "tables")
    assert set(enc) == set(NAMES[:3]) and set(tab) == set(NAMES[3:]) and not set(enc) & set(tab)
    assert table_swap.group_names(state, "crf.durations") == ["crf.durations"]


def test_a_swap_takes_each_named_group_from_its_donor():
    states = _states()
    got = table_swap.parse_swap("last:sites.weight=best", states)
    assert all(torch.equal(got[n], states["best" if n == "sites.weight" else "last"][n]) for n in NAMES)
    # Both groups from the other checkpoint: that checkpoint whole.
    whole = table_swap.parse_swap("last:encoder=best,tables=best", states)
    assert all(torch.equal(whole[n], states["best"][n]) for n in NAMES)
    assert table_swap.parse_swap("best", states).keys() == states["best"].keys()


@pytest.mark.parametrize("text,message", [("first", "best or last"), ("last:sites=best", "neither encoder"),
                                          ("last:tables", "GROUP=best")])
def test_bad_swaps_are_refused_clearly(text, message):
    with pytest.raises(SystemExit, match=message):
        table_swap.parse_swap(text, _states())
