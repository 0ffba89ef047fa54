"""The README's claims that a file on disk can contradict: the layout lists every module, the commands exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:] if end < 0 else README[start:end]


def test_layout_lists_every_module():
    layout = _section("Layout")
    for folder in ("src/semicrf", "src/semicrf/backends", "src/semicrf/backends/triton_kernels",
                   "src/semicrf/genomics"):
        # The folder's line and its continuation lines, up to the next folder's line.
        m = re.search(rf"^{re.escape(folder)}/ +(.*?)(?=^\S)", layout, re.S | re.M)
        assert m, f"README's Layout has no line for {folder}/"
        listed = set(re.findall(r"[\w]+\.py", m.group(1)))
        # __init__.py of the genomics package is empty: nothing to say about it.
        on_disk = {p.name for p in (ROOT / folder).glob("*.py") if p.stat().st_size > 0}
        assert on_disk <= listed, f"README's Layout misses {sorted(on_disk - listed)} of {folder}/"
        assert listed <= on_disk | {p.name for p in (ROOT / folder).glob("*.py")}, \
            f"README's Layout lists {sorted(listed - on_disk)}, not in {folder}/"


def test_make_targets_named_in_the_readme_exist():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"`?make ([\w-]+)", README))
    assert named and named <= targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"

