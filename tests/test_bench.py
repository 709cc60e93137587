"""`fastgd bench` runs and writes its JSON and chart (small sizes: this is no timing)."""

import json

import pytest

from fastgd import bench, cli


def test_bench_writes_a_table_json_and_a_chart(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(bench, "QUICK_GRID", [(3000, 4), (500, 60)])
    monkeypatch.setattr(bench, "QUICK_PEER_SHAPE", (2000, 5))
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert cli.main(["bench", "--quick", "--repeats", "1", "--json", str(out_json),
                     "--plot", str(out_png)]) == 0
    table = capsys.readouterr().out
    assert "fastgd bench: " in table and "| 3,000 x 4 | float64 | C |" in table
    results = json.loads(out_json.read_text())
    assert len(results["grid"]) == 2 * 2 * 2 * len({1, results["machine"]["threads"]})
    case = results["grid"][0]
    assert set(case["seconds"]) == {"fastgd", "reference", "gemv"}
    assert case["vs_reference"] > 0 and isinstance(case["bounds_met"], bool)
    assert "scikit-learn SGDRegressor (batch 1)" in results["peers"]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_is_also_python_m_fastgd_bench():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "fastgd.bench", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--quick" in out and "--json" in out and "--plot" in out
