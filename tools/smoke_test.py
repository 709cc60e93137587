"""Does an installed fastgd work? Run by tools/check_wheel.py inside a fresh virtual
environment, from outside the source tree, with nothing but the wheel and NumPy installed.

    python tools/smoke_test.py [--source-tree DIR] [--expect-openmp-inside]

Exits non-zero (an AssertionError) on the first thing that is wrong.
"""

import argparse
import os
import sys

import numpy as np

import fastgd
from fastgd import _compiled


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-tree", help="fastgd must not be imported from here")
    parser.add_argument("--expect-openmp-inside", action="store_true",
                        help="the OpenMP runtime must be the copy vendored in the wheel")
    args = parser.parse_args(argv)

    package = os.path.dirname(fastgd.__file__)
    if args.source_tree:
        source = os.path.join(args.source_tree, "fastgd")
        assert not os.path.samefile(package, source), f"imported the source tree's {package}"
    fastgd.show_config()
    config = fastgd.show_config("dicts")

    rng = np.random.default_rng(0)
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 1e-5)):
        X = rng.standard_normal((5000, 23)).astype(dtype)
        y = X @ rng.standard_normal(23).astype(dtype)
        coef = rng.standard_normal(23)
        expected = fastgd.reference.loss_and_grad(X, y, coef, 0.5)
        one = fastgd.loss_and_grad(X, y, coef, 0.5, n_threads=1)
        two = fastgd.loss_and_grad(X, y, coef, 0.5, n_threads=2)
        for got, want in zip(one, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=rtol)
        for a, b in zip(one, two, strict=True):
            assert np.array_equal(a, b), "results differ between 1 and 2 threads"

    seed_walkthrough()

    if args.expect_openmp_inside:
        library = config["build"]["openmp_library"] or ""
        assert config["build"]["openmp"], "the wheel was built without OpenMP"
        inside = os.path.normcase(os.path.realpath(os.path.dirname(package))) + os.sep
        assert os.path.normcase(os.path.realpath(library)).startswith(inside), (
            f"OpenMP runtime {library!r} is not the one vendored in the wheel")
    print(f"smoke test passed: fastgd {fastgd.__version__} from {package}, "
          f"SIMD {_compiled.SIMD}, Python {sys.version.split()[0]}, NumPy {np.__version__}")


def seed_walkthrough():
    """Two epochs of the seed example through the training loop, its solver, engine,
    loss and optimizer (what the estimators run, without scikit-learn): w = 1.6711,
    b = 0.6933."""
    from fastgd import _engines, _training, losses, optimizers
    from fastgd._problem import Problem
    from fastgd.solvers.first_order import FirstOrder

    problem = Problem(np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [4.0], [6.0]]), None,
                      losses.get("squared"))
    result = _training.train(_engines.engine_for(problem.X), problem,
                             FirstOrder(optimizers.get("sgd"), 0.1), coef=np.zeros((1, 1)),
                             intercept=np.zeros(1), standardize=False, max_epochs=2, tol=None)
    np.testing.assert_allclose([result.coef[0, 0], result.intercept[0]], [1.67111, 0.69333],
                               atol=1e-5)


if __name__ == "__main__":
    main()
