"""``semicrf-bench`` with only the base package installed: one line naming the extra, status 2, no traceback.

The test environment has the ``genomics`` extra, so a base install is simulated in a subprocess by an
import hook that makes matplotlib, tqdm and torchcrf unfindable, as they are when not installed.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from semicrf.genomics.cli import missing_genomics_extra

ROOT = Path(__file__).resolve().parents[1]
MESSAGE = "pip install 'semicrf[genomics]'"

# Runs before anything of semicrf is imported, so the hook also catches a module-level import of these.
BLOCK = """
import sys
class NotInstalled:
    names = ("matplotlib", "tqdm", "torchcrf")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
"""

ARGVS = [
    ["--help"],
    [],
    ["generate", "--help"],
    ["generate", "--output-dir", "{tmp}/data", "--num-train", "1", "--num-val", "0", "--num-test", "0",
     "--seq-length", "100"],
    ["run", "--help"],
    ["run", "--data-dir", "{tmp}/data", "--output-dir", "{tmp}/results", "--device", "cpu", "--encoder", "bilstm"],
    ["compare", "--results-dir", "{tmp}/results"],
    ["no-such-command"],
]


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_every_invocation_names_the_extra_without_a_traceback(tmp_path):
    # One interpreter for every argv (each start imports torch); SystemExit is caught so that an argparse exit
    # (what --help would do if the check came after parsing) shows up as a failure, not as the end of the run.
    code = """
import contextlib, io, json
from semicrf.genomics.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = f"SystemExit({e.code})"
    out.append([argv, rc, err.getvalue()])
print(json.dumps(out))
"""
    argvs = [[a.format(tmp=tmp_path) for a in argv] for argv in ARGVS]
    p = _run(code, json.dumps(argvs))
    assert p.returncode == 0, p.stderr
    for argv, rc, err in json.loads(p.stdout):
        assert rc == 2, (argv, rc, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (argv, err)
        assert MESSAGE in lines[0] and "matplotlib, tqdm, pytorch-crf not installed" in lines[0], (argv, err)
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


@pytest.mark.slow  # a fresh interpreter each; the test above already covers main() without the extra
@pytest.mark.parametrize("entry", ["module", "script"])
def test_entry_points_exit_2_with_the_message(entry, tmp_path):
    # The whole process as a user starts it: ``python -m semicrf.genomics.cli`` and the benchmark folder's script.
    if entry == "module":
        code = "import runpy; sys.argv[0] = 'semicrf-bench'; runpy.run_module('semicrf.genomics.cli', run_name='__main__')"
    else:
        script = ROOT / "benchmarks" / "synthetic_genomics" / "synthetic_benchmark.py"
        code = f"import runpy; sys.argv[0] = {str(script)!r}; runpy.run_path({str(script)!r}, run_name='__main__')"
    p = _run(code, "generate", "--output-dir", str(tmp_path / "d"))
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and MESSAGE in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_the_full_install_passes_the_check():
    # The test environment installs '.[test]', which includes the extra: nothing may be reported missing here,
    # or every other CLI test would be testing the refusal.
    assert missing_genomics_extra() == []
