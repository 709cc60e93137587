"""optimizer="auto": the solver that reaches the optimum soonest, from what is known before
training (the shape, the loss, the penalty, the batches, the memory a Hessian takes).

Measured here (benchmarks/time_to_model.py; benchmarks/README.md has the table): a Newton
iteration is one Hessian pass, which costs about 1 + pairs (d + 1) / HESSIAN_PASSES_PER
gradient passes (its multiply-adds against a pass's reads of X), and Newton needs about
NEWTON_ITERATIONS of them (a quadratic loss, least squares, one: its moments pass, as
costly); L-BFGS about LBFGS_PASSES gradient passes. Newton-CG (the Hessian too large to
form) costs a pass a conjugate-gradient iteration, tens a Newton step: more than L-BFGS
on the dense problems where it was measured; on sparse X, where a pass costs its stored
entries and the problems are ill-conditioned (unscaled text, one-hot columns), it took
26 s to 1e-6 of the optimum on benchmarks/sparse.py's text-200k against L-BFGS's 77 s,
and 155 s against 148 s on one-hot-1M. So:

- mini-batches (batch_size), a schedule, clipping or an L1 penalty: "nesterov", the
  first-order default (and partial_fit's);
- a loss with a kink (the pinball loss): "newton", the only full-batch solver that takes
  it (it smooths the kink; Newton-CG where the Hessian is too large);
- a Hessian larger than HESSIAN_BYTES (or than a quarter of X, dense): "lbfgs", or for
  sparse X "newton" (Newton-CG: the Hessian-vector pass);
- else "newton" where its passes cost less than L-BFGS's, or take a few milliseconds in all
  (then the steps' fixed costs rule, and Newton takes few), "lbfgs" where they do not.
"""

from __future__ import annotations

from fastgd.solvers.newton import HESSIAN_BYTES

FIRST_ORDER = "nesterov"      # for mini-batches and L1 penalties (and partial_fit)
HESSIAN_PASSES_PER = 20.0     # pairs (d + 1) per gradient pass a Hessian pass costs (17 at
                              # 1M x 100, 24 at 100k x 1,000)
NEWTON_ITERATIONS = 8         # Newton iterations of a non-quadratic loss, typically (7-9)
LBFGS_PASSES = 25             # gradient passes of L-BFGS to 1e-6, typically (19-29)
SMALL_HESSIAN = 2e7           # multiply-adds of a Hessian pass under a few milliseconds:
                              # there Newton's few iterations beat L-BFGS's many Python steps


def choose(n_rows: int, n_features: int, k: int, loss, *, l1: float, first_order: bool,
           itemsize: int, sparse: bool = False) -> str:
    """The optimizer "auto" stands for, for n_rows x n_features data of `itemsize` bytes
    a value, a model of k outputs with this loss and an L1 penalty l1; first_order: the
    settings ask for first-order epochs (mini-batches, a schedule, clipping). A sparse X
    is judged by its shape, as X.toarray() would be (the same solver, the same model),
    but for a Hessian too large to form: Newton-CG, not L-BFGS."""
    if first_order or l1 > 0:
        return FIRST_ORDER
    if not loss.smooth:  # a kink: L-BFGS cannot take it; Newton smooths it (smoothing.py)
        return "newton"
    dp = n_features + 1
    hessian_bytes = 8 * (k * dp) ** 2
    if hessian_bytes > min(HESSIAN_BYTES, max(n_rows * n_features * itemsize // 4, 1 << 20)):
        return "newton" if sparse else "lbfgs"
    pairs = len(loss.hessian_pairs(k))
    if n_rows * pairs * dp * dp <= SMALL_HESSIAN:
        return "newton"
    hessian_pass = 1.0 + pairs * dp / HESSIAN_PASSES_PER
    iterations = 1 if loss.quadratic else NEWTON_ITERATIONS
    return "newton" if iterations * hessian_pass <= LBFGS_PASSES else "lbfgs"
