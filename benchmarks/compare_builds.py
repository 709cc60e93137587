"""Two builds of fastgd timed side by side in one process: is a change no slower beyond noise?

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/compare_builds.py \\
        --before <rev> [--only core|epochs] [--rows N] [--features D] [--repeats R] [--rounds K]

(the two OpenBLAS variables are unset in benchmark commands only, as for benchmarks/run.py).
"before" is revision <rev> of this repository, "after" the fastgd this interpreter imports.
<rev> is exported with `git archive` to $TMPDIR/fastgd-before-<commit>-<python tag>, its
package renamed fastgd_before (its own imports and cimports with it) and built in place by
this interpreter, once: later runs for the same commit reuse the build. The tables are
run.py's core and epochs measurements. Both builds run in the same rounds, one after the
other for each measurement, so a slow phase of this shared VM slows both; after/before is
the median of the rounds' ratios, and the spread of those ratios is the noise to beat.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import tokenize
import types
from pathlib import Path

import numpy as np

import fastgd
from fastgd.bench import block_medians, describe, machine, problem

OLD, NEW = "fastgd", "fastgd_before"
SOURCES = (".py", ".pyx", ".pxd", ".pxi")
STAMP = "built.stamp"  # written last: a directory without it is an interrupted build
WARMUP = 0.3  # as benchmarks/run.py
# Build switches of setup.py: the before build is always the release build (the "after"
# build's kind is printed beside it).
BUILD_SWITCHES = ("FASTGD_NO_OPENMP", "FASTGD_DEBUG", "FASTGD_SANITIZE")


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def rename_module_references(text: str) -> str:
    """Every NAME token `fastgd` renamed: the imports, the cimports and attribute reads of
    the imported package. Tokens leave strings ("fastgd demo", "fastgd.json"), comments and
    longer names (fastgd_team_wait, FASTGD_LINE) alone; Cython's syntax tokenizes as Python."""
    lines = text.splitlines(keepends=True)
    names = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
             if t.type == tokenize.NAME and t.string == OLD]
    for token in reversed(names):  # right to left: earlier columns stay valid
        row, col = token.start
        lines[row - 1] = lines[row - 1][:col] + NEW + lines[row - 1][col + len(OLD):]
    return "".join(lines)


def rename_setup(text: str) -> str:
    """setup.py names its extensions and their files in strings: "fastgd._kernels",
    "fastgd/_simd.h", include_dirs "fastgd". Strings only, not the comments' paths."""
    return re.sub(r"(?<=[\"'])fastgd(?=[./\"'])", NEW, text)


def build_before(root: Path, commit: str) -> Path:
    """The directory holding fastgd_before built from `commit` (cached)."""
    target = Path(tempfile.gettempdir()) / (f"fastgd-before-{commit[:12]}-"
                                            f"{sys.implementation.cache_tag}")
    if (target / STAMP).exists():
        return target
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    archive = subprocess.run(["git", "-C", str(root), "archive", commit, "fastgd", "setup.py"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(staging, filter="data")
    (staging / OLD).rename(staging / NEW)
    for path in (staging / NEW).rglob("*"):
        if path.suffix in SOURCES:
            path.write_text(rename_module_references(path.read_text()))
    setup = staging / "setup.py"
    setup.write_text(rename_setup(setup.read_text()))
    env = {k: v for k, v in os.environ.items() if k not in BUILD_SWITCHES}
    print(f"Building {commit[:12]} in {staging} (log: build.log) ...", file=sys.stderr,
          flush=True)
    with open(staging / "build.log", "w") as log:
        built = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                               cwd=staging, env=env, stdout=log, stderr=subprocess.STDOUT)
    if built.returncode:
        sys.exit(f"building {commit[:12]} failed; see {staging / 'build.log'}")
    (staging / STAMP).touch()
    if target.exists():  # an interrupted build's leftovers: set aside, not trusted
        target.rename(tempfile.mkdtemp(prefix=target.name + ".stale.", dir=target.parent))
    staging.rename(target)
    return target


def import_before(target: Path) -> types.ModuleType:
    sys.path.insert(0, str(target))
    before = importlib.import_module(NEW)
    importlib.import_module(f"{NEW}.bench")
    check_builds(before, target)
    return before


def check_builds(before: types.ModuleType, target: Path) -> None:
    """Each build runs its own compiled kernels, and no module of the old one holds the
    current package (an import the renaming missed would time the new code twice)."""
    old, new = (Path(m._compiled.kernels.__file__).resolve() for m in (before, fastgd))
    if not (old.is_relative_to(target.resolve()) and old.name.endswith(".so")):
        sys.exit(f"fastgd_before's kernels are {old}, not a build in {target}")
    if not (new.is_relative_to(Path(fastgd.__file__).resolve().parent)
            and not new.is_relative_to(target.resolve())):
        sys.exit(f"fastgd's kernels are {new}, not the current build's")
    for name, module in list(sys.modules.items()):
        if name == NEW or name.startswith(NEW + "."):
            leaks = [key for key, value in vars(module).items()
                     if isinstance(value, types.ModuleType)
                     and (value.__name__ == OLD or value.__name__.startswith(OLD + "."))]
            if leaks:
                sys.exit(f"{name} refers to the current fastgd ({', '.join(leaks)})")


def describe_build(label: str, build: types.ModuleType, revision: str) -> str:
    kernels = build._compiled.kernels
    return (f"- {label}: {revision}; {kernels.__file__} ({build._compiled.SIMD}, OpenMP "
            f"{'on' if kernels.openmp_enabled() else 'off'})")


def after_revision(root: Path) -> str:
    """The commit the imported fastgd comes from, if it is this working tree."""
    if not Path(fastgd.__file__).resolve().is_relative_to(root):
        return "fastgd installed outside this repository"
    return git(root, "describe", "--always", "--dirty=, with uncommitted changes", "--abbrev=12")


def fit(build, X, y, epochs):
    return lambda: build.GDRegressor(optimizer="sgd", learning_rate=0.1, max_epochs=epochs,
                                     tol=None).fit(X, y)


def core_timings(builds: dict, X, y, repeats, rounds):
    """run.py's core_rows for both builds: a gradient pass four ways and a GDRegressor epoch."""
    coef = np.zeros(X.shape[1])
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    XF = np.asfortranarray(X)
    cases = {"pass": (X, y, {}), "pass_1t": (X, y, {"n_threads": 1}),
             "pass32": (X32, y32, {}), "pass_F": (XF, y, {})}
    candidates = {"gemv": lambda: X @ coef}
    for key, (A, b, kw) in cases.items():
        for name, build in builds.items():
            candidates[f"{name} {key}"] = (
                lambda f=build.loss_and_grad, A=A, b=b, kw=kw: f(A, b, coef, 0.0, **kw))
    t = block_medians(candidates, repeats, rounds=rounds, warmup=WARMUP)
    fits = block_medians({f"{name} {e}": fit(build, X, y, e)
                          for name, build in builds.items() for e in (1, 21)},
                         2, rounds=rounds, warmup=WARMUP)
    for name in builds:
        t.rounds[f"{name} epoch"] = [(b - a) / 20 for a, b in zip(
            fits.rounds[f"{name} 1"], fits.rounds[f"{name} 21"], strict=True)]
    rows = [("`loss_and_grad` float64", "pass"), ("`loss_and_grad` float64, 1 thread", "pass_1t"),
            ("`loss_and_grad` float32", "pass32"), ("`loss_and_grad` float64, F order", "pass_F"),
            ("GDRegressor cost per epoch ((21 - 1 epochs) / 20)", "epoch")]
    return t, rows, f"GDRegressor per epoch: {rounds} rounds of 2 fits of 21 and of 1 epoch"


EPOCHS = {  # row key: (label, optimizer, batch size, shuffled, n_threads)
    "sgd32": ("epoch, sgd, batch 32", "sgd", 32, False, None),
    "sgd32_shuffled": ("epoch, sgd, batch 32, shuffled", "sgd", 32, True, None),
    "sgd32_shuffled_1t": ("epoch, sgd, batch 32, shuffled, 1 thread", "sgd", 32, True, 1),
    "sgd256": ("epoch, sgd, batch 256", "sgd", 256, False, None),
    "adam32": ("epoch, adam, batch 32", "adam", 32, False, None),
}


def epoch_callables(builds: dict, X, y):
    """Each build's bench.fastgd_epoch (the engine's run_epoch alone), each run once here;
    if either build's fails, one-epoch GDRegressor fits for both, so the two stay alike."""
    try:
        made = {f"{name} {key}": build.bench.fastgd_epoch(X, y, opt, batch, engine=None,
                                                          shuffled=shuffled, n_threads=threads)
                for key, (_, opt, batch, shuffled, threads) in EPOCHS.items()
                for name, build in builds.items()}
        for run in made.values():
            run()
        return made, "epochs: each build's bench.fastgd_epoch (the engine's run_epoch)"
    except Exception as error:
        made = {f"{name} {key}": build.GDRegressor(
                    optimizer=opt, batch_size=batch, max_epochs=1, learning_rate=1e-6,
                    tol=None, shuffle=shuffled, random_state=0, n_threads=threads).fit
                for key, (_, opt, batch, shuffled, threads) in EPOCHS.items()
                for name, build in builds.items()}
        return ({name: (lambda f=f: f(X, y)) for name, f in made.items()},
                f"epochs: GDRegressor(max_epochs=1).fit, set-up included, for both builds "
                f"(fastgd_epoch failed: {error!r})")


def epoch_timings(builds: dict, X, y, repeats, rounds):
    """run.py's epoch_rows for both builds: one epoch of mini-batch training, five ways."""
    made, method = epoch_callables(builds, X, y)
    t = block_medians({"gemv": lambda: X @ np.zeros(X.shape[1]), **made}, repeats,
                      rounds=rounds, warmup=WARMUP)
    return t, [(label, key) for key, (label, *_) in EPOCHS.items()], method


def table(t, rows) -> list[str]:
    lines = []
    for label, key in rows:
        b, a = f"before {key}", f"after {key}"
        spread = [x / y for x, y in zip(t.rounds[a], t.rounds[b], strict=True)]
        lines.append(f"| {label} | {t[b] * 1e3:.1f} | {t[a] * 1e3:.1f} | {t.ratio(a, b):.3f} | "
                     f"{t.best_ratio(a, b):.3f} | {min(spread):.2f}-{max(spread):.2f} | "
                     f"{t.ratio(b, 'gemv'):.2f} | {t.ratio(a, 'gemv'):.2f} |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, metavar="REV",
                        help="the git revision to compare with (e.g. 42b64cf)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5, help="runs per block")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", choices=["core", "epochs"], help="one table only")
    args = parser.parse_args()
    root = Path(git(Path(__file__).resolve().parent, "rev-parse", "--show-toplevel"))
    commit = git(root, "rev-parse", "--verify", f"{args.before}^{{commit}}")
    before = import_before(build_before(root, commit))
    builds = {"before": before, "after": fastgd}
    X, y = problem(args.rows, args.features, np.float64)
    print(f"Machine: {describe(machine())}\n")
    print(describe_build("before", before, f"{commit[:12]} (--before {args.before})"))
    print(describe_build("after", fastgd, after_revision(root)) + "\n")
    print(f"Problem: {args.rows:,} x {args.features} float64, C order unless noted; "
          f"{args.rounds} rounds of {args.repeats} runs, the builds one after the other "
          f"in each round; time: median of the rounds' medians; after/before: median of the "
          f"rounds' ratios; best round: ratio of the two fastest rounds; / GEMV: against one "
          f"`X @ coef` (float64, the memory floor) timed in the same rounds.\n")
    print("| measurement | before ms | after ms | after/before | best round | rounds' "
          "after/before | before / GEMV | after / GEMV |")
    print("|---|---|---|---|---|---|---|---|")
    notes = []
    for name, timings in (("core", core_timings), ("epochs", epoch_timings)):
        if args.only in (None, name):
            t, rows, note = timings(builds, X, y, args.repeats, args.rounds)
            print(f"| one `X @ coef` (GEMV, float64), {name} rounds, both builds' floor | "
                  f"{t['gemv'] * 1e3:.1f} | | | | | | |")
            print("\n".join(table(t, rows)), flush=True)
            notes.append(note)
    print("\n" + "; ".join(notes) + ".")


if __name__ == "__main__":
    main()
