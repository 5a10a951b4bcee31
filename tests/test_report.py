"""experiments/report.py regenerates the tables and figures of docs/results.md from committed
results: here from a small hand-made sample whose means and spreads are known."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "tests", "data", "results-sample")
DOC = """# Results

Text that stays.

<!-- begin demo-claim -->
old table
<!-- end demo-claim -->

More text.

<!-- begin demo-runs -->
<!-- end demo-runs -->

<!-- begin demo-targets -->
<!-- end demo-targets -->
"""


def run_report(tmp_path, *extra):
    doc = tmp_path / "results.md"
    doc.write_text(DOC)
    img = tmp_path / "img"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "report.py"), "--results", SAMPLE,
                           "--doc", str(doc), "--img", str(img), *extra], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return doc.read_text(), img


def test_tables_are_regenerated_between_their_markers(tmp_path):
    text, _ = run_report(tmp_path, "--no-figures")
    assert "Text that stays." in text and "More text." in text and "old table" not in text
    claim = text.split("<!-- begin demo-claim -->")[1].split("<!-- end demo-claim -->")[0]
    rows = [r for r in claim.splitlines() if r.startswith("| attgan")]
    assert len(rows) == 2 and rows[0].startswith("| attgan | base | 0/0 | 0,1 |")   # baseline first
    # edit accuracy 0.81 and 0.85: mean 0.830, sample standard deviation 0.028
    assert "0.830 ± 0.028" in rows[0]
    # +CAM: outside L1 0.030 and 0.034: mean 0.0320 ± 0.0028
    assert rows[1].startswith("| attgan | cam | 100/1 |") and "0.0320 ± 0.0028" in rows[1]
    runs = text.split("<!-- begin demo-runs -->")[1].split("<!-- end demo-runs -->")[0]
    assert "| attgan-base-s0 | 100 | 1.0 | 0.810 |" in runs and "Black_Hair 0.71" in runs
    targets = text.split("<!-- begin demo-targets -->")[1].split("<!-- end demo-targets -->")[0]
    rows = [r for r in targets.splitlines() if r.startswith("| attgan")]   # the baseline only
    assert len(rows) == 1 and rows[0].startswith("| attgan | 0,1 |") and "0.830 ± 0.028" in rows[0]


def test_figures_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    _, img = run_report(tmp_path)
    for name in ("curves-demo.png", "tradeoff-demo.png"):
        assert (img / name).stat().st_size > 1000, name


def test_a_missing_marker_is_reported_not_silently_skipped(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("# nothing to fill\n")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "report.py"), "--results", SAMPLE,
                           "--doc", str(doc), "--no-figures"], capture_output=True, text=True)
    assert proc.returncode == 0 and "no <!-- begin demo-claim --> block" in proc.stderr


def test_committed_results_regenerate(tmp_path):
    """The real results (when committed) regenerate docs/results.md's blocks without error."""
    results = os.path.join(ROOT, "experiments", "results")
    if not os.path.isdir(results) or not os.listdir(results):
        pytest.skip("no committed experiment results yet")
    doc = tmp_path / "results.md"
    shutil.copy(os.path.join(ROOT, "docs", "results.md"), doc)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "report.py"), "--doc", str(doc),
                           "--no-figures"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "no <!-- begin" not in proc.stderr, proc.stderr
