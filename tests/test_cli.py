"""`fastgd demo` (what `make demo` runs) and the entry points."""

import subprocess
import sys

from fastgd.cli import main, seed_walkthrough


def test_seed_walkthrough_table():
    rows = seed_walkthrough(epochs=2)
    (e1, loss1, gw1, gb1, w1, b1), (e2, loss2, gw2, gb2, w2, b2) = rows
    assert (e1, e2) == (1, 2)
    assert [round(v, 3) for v in (loss1, gw1, gb1, w1, b1)] == [18.667, -18.667, -8.0, 1.867, 0.8]
    assert [round(v, 4) for v in (loss2, gw2, gb2, w2, b2)] == [0.2963, 1.9556, 1.0667, 1.6711,
                                                                0.6933]


def test_demo_prints_walkthrough_and_speed(capsys):
    assert main(["demo", "--rows", "20000", "--features", "10"]) == 0
    out = capsys.readouterr().out
    assert "    2     0.2963     1.9556     1.0667    1.6711    0.6933" in out
    assert "arithmetic" in out and "0.34" in out
    assert "One gradient pass on 20,000 x 10 float64" in out and "faster" in out


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "fastgd", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("fastgd ")
