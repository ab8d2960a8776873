"""benchmarks/ek605_bisect.py (issue #25): it names the pre-import that breaks Dataset.from_list, in this venv."""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "ek605_bisect.py"
# What the GPU machine's layout does to dill: pyarrow seen outside every prefix and site-packages folder.
MOVE_PYARROW = "import pyarrow; pyarrow.__file__ = '/elsewhere/pyarrow/__init__.py'"


@pytest.mark.train
def test_the_bisection_names_the_bad_pre_import_and_the_bad_pth_file(tmp_path):
    pytest.importorskip("datasets")
    fake = tmp_path / "system-site"
    (fake / "badmod").mkdir(parents=True)
    (fake / "badmod" / "__init__.py").write_text(MOVE_PYARROW + "\n")
    (fake / "goodmod.py").write_text("import json\n")
    (fake / "bad.pth").write_text(MOVE_PYARROW + "\n")
    (fake / "good.pth").write_text("import os\n")
    pythonpath = ":".join(site.getsitepackages())  # -S leaves the venv's packages out: hand them over
    out = tmp_path / "ek605.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--pythonpath", pythonpath, "--site", str(fake),
                           "--workers", "3", "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["failing"] == [f"pth:{fake / 'bad.pth'}", "import:badmod"], report["variants"]
    assert report["verdict"] == f"fails only with: pth:{fake / 'bad.pth'}, import:badmod"
    assert {"isolated", "as-site-packages", "normal", "import:goodmod", f"pth:{fake / 'good.pth'}"} == {
        r["variant"] for r in report["variants"] if r["ok"]}
    failed = next(r for r in report["variants"] if r["variant"] == "import:badmod")
    assert "MonthDayNano" in failed["error"] and failed["dill_pickles_pyarrow_by_reference"] is False
    assert report["versions"]["pyarrow"][0] and report["versions"]["dill"][0] and report["python"]
