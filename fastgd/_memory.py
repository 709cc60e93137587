"""The engines for data in this process: NumPy arrays and scipy.sparse CSR matrices.

`InMemory` implements the engine interface (fastgd/_problem.py) for NumPy arrays on top of a
module of passes with one signature: the compiled kernels (fastgd/_kernels.pxi, the
default) or fastgd.reference (plain NumPy, the definition of correct). Its other reads of
the data are NumPy code shared by both, so `engine="numpy"` checks the compiled engine step
for step through the very same training loop. `Sparse` is the same over CSR X
(fastgd/_sparse.py): the modules' csr_* passes, its other reads from the stored entries.
A Dask worker runs its shard through these too (fastgd/_dask.py).
"""

from __future__ import annotations

from dataclasses import replace
import numpy as np

from fastgd import _prefetch, _sparse, reference
from fastgd._moments import Moments
from fastgd._problem import EpochPlan, Problem
from fastgd._validation import raise_if_nonfinite
from fastgd.losses import constant_loss_sum

SAMPLED_ROWS = 64  # rows of X, y and the weights hashed into a fingerprint


def in_memory(X, module, n_threads: int):
    """The engine for X in this process: Sparse for a (checked) scipy.sparse X, else
    InMemory, over `module`'s passes on n_threads threads."""
    return (Sparse if _sparse.is_sparse(X) else InMemory)(module, n_threads)


class InMemory:
    """An engine over NumPy arrays: a module's grad_pass, hessian_pass, column_stats and
    run_epoch."""

    def __init__(self, module, n_threads: int):
        self.module, self.n_threads = module, n_threads
        self._zeros = None  # the zero targets of the curvature's passes, made once

    @property
    def shares_cores(self) -> bool:
        """Whether its passes run on several OpenMP threads (the compiled module's)."""
        return self.module is not reference and self.n_threads > 1

    def n_rows(self, problem: Problem) -> int:
        return problem.X.shape[0] if problem.rows is None else len(problem.rows)

    def loss_and_grad(self, problem: Problem, coef, intercept):
        problem = self.with_targets(problem)
        return self.module.grad_pass(problem, coef, intercept, n_threads=self.n_threads)

    def with_targets(self, problem: Problem) -> Problem:
        """The problem as the kernels take it: Y None (the curvature's passes) becomes
        targets of zero."""
        if problem.Y is None:
            return replace(problem, Y=self.zero_targets(problem.X))
        return problem

    def zero_targets(self, X):
        """Targets of zero (n, 1) in X's dtype, allocated once for all the passes of X."""
        if self._zeros is None or self._zeros.shape[0] != X.shape[0] or (
                self._zeros.dtype != X.dtype):
            self._zeros = np.zeros((X.shape[0], 1), dtype=X.dtype)
        return self._zeros

    def hessian(self, problem: Problem, theta, std):
        problem = self.with_targets(problem)
        return self.module.hessian_pass(problem, theta, std, n_threads=self.n_threads)

    def hessian_vector(self, problem: Problem, theta, std, vector):
        problem = self.with_targets(problem)
        return self.module.hessian_vector_pass(problem, theta, std, vector,
                                               n_threads=self.n_threads)

    def moments(self, problem: Problem) -> Moments:
        return Moments.of(self.module.moments_pass(problem, n_threads=self.n_threads),
                          problem.n_features)

    def column_stats(self, problem: Problem):
        return self.module.column_stats(problem, n_threads=self.n_threads)

    def run_epoch(self, problem: Problem, theta, state: dict, plan: EpochPlan):
        with _prefetch.ahead(problem, plan, self.module) as plan:
            return self.module.run_epoch(problem, theta, state, plan,
                                         n_threads=self.n_threads)

    def raise_if_nonfinite(self, problem: Problem) -> None:
        raise_if_nonfinite(problem.X)

    def largest_row_norm(self, problem: Problem, std) -> float:
        sample_weight = problem.sample_weight
        mean_weight = 1.0 if sample_weight is None else float(
            sample_weight.mean(dtype=np.float64))
        return reference.largest_row_norm(problem.X, sample_weight, std, mean_weight)

    def best_constant(self, problem: Problem) -> tuple:
        """Y is read by blocks of rows (bounded temporaries); X not at all."""
        loss, Y, sample_weight = problem.loss, problem.Y, problem.sample_weight
        return loss.best_constant_and_loss(
            *loss.target_sums(Y, sample_weight, problem.k), problem.k,
            lambda z: constant_loss_sum(loss, Y, sample_weight, z))

    def nearest_rows(self, problem: Problem, coef, intercept, count: int,
                     direction=None, on=0.0, output=0) -> tuple:
        """In NumPy by blocks of rows (bounded temporaries), for both modules."""
        return reference.nearest_rows(problem.X, problem.Y, problem.sample_weight, coef,
                                      intercept, count, problem.rows, direction, on,
                                      output, problem.loss.kink)[1:]

    def fingerprint(self, problem: Problem, digest) -> dict:
        """A hash of SAMPLED_ROWS whole rows of X, Y and the weights, and X's dtype."""
        n = problem.X.shape[0]
        rows = np.unique(np.linspace(0, n - 1, min(n, SAMPLED_ROWS)).astype(np.intp))
        for part in self.sampled(problem.X, rows) + tuple(
                part[rows] for part in (problem.Y, problem.sample_weight) if part is not None):
            digest.update(np.ascontiguousarray(part).tobytes())
        return {"dtype": problem.X.dtype.str, "blocks": None}

    def sampled(self, X, rows) -> tuple:
        """What a fingerprint hashes of X's sampled rows: the rows."""
        return (X[rows],)


class Sparse(InMemory):
    """An engine over CSR X (fastgd/_sparse.py: checked, canonical): the module's csr_grad_pass
    and csr_column_stats, its other reads from the stored entries. Per pass O(nnz + d),
    standardization included (implicit, as for dense X)."""

    def __init__(self, module, n_threads: int):
        super().__init__(module, n_threads)
        self.workspace = {}  # the passes' buffers, kept from one pass to the next

    def loss_and_grad(self, problem: Problem, coef, intercept):
        problem = self.with_targets(problem)
        return self.module.csr_grad_pass(problem, coef, intercept, n_threads=self.n_threads,
                                         workspace=self.workspace)

    def column_stats(self, problem: Problem):
        return self.module.csr_column_stats(problem, n_threads=self.n_threads)

    def run_epoch(self, problem: Problem, theta, state: dict, plan: EpochPlan):
        with _prefetch.ahead(problem, plan, self.module) as plan:
            return self.module.csr_run_epoch(problem, theta, state, plan,
                                             n_threads=self.n_threads)

    def hessian(self, problem: Problem, theta, std):
        problem = self.with_targets(problem)
        return self.module.csr_hessian_pass(problem, theta, std, n_threads=self.n_threads)

    def hessian_vector(self, problem: Problem, theta, std, vector):
        problem = self.with_targets(problem)
        return self.module.csr_hessian_vector_pass(problem, theta, std, vector,
                                                   n_threads=self.n_threads,
                                                   workspace=self.workspace)

    def moments(self, problem: Problem) -> Moments:
        """Not on CSR rows (their centered cross-products are dense): Newton reads a
        quadratic loss's Hessian pass instead (solvers/newton.py: reads_moments)."""
        raise ValueError("sparse X has no moments pass: its Newton steps read the Hessian "
                         "pass")

    def sampled(self, X, rows) -> tuple:
        """The sampled rows' stored entries (a checkpoint resumes on the same data in the
        same format)."""
        sample = X[rows]
        return sample.indptr, sample.indices, sample.data
