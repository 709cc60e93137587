"""Passes over data held by a Dask cluster: the rows stay on the workers, in shards.

`Shards.of` rechunks X to one column block, aligns Y and the sample weights with its row
blocks and packs each (X_i, Y_i, w_i) into one future on its worker, once. A pass then
sends only the parameters: every shard runs the compiled kernel where it lies and returns
d-sized partial results, which the client adds in shard order. So a distributed pass is
deterministic and equals the in-memory one up to the rounding of that sum.

DaskEngine implements the engine interface of fastgd/_problem.py on a Shards, so the whole
training loop (standardization, the automatic step, tol, the solvers) runs on a cluster
unchanged; mini-batches are local epochs averaged once an epoch.

Dask is optional (`pip install "fastgd[dask]"`): this module imports it when first used.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from fastgd import _validation, reference
from fastgd._compiled import kernels
from fastgd._memory import in_memory
from fastgd._problem import Problem, splitmix64
from fastgd._sparse import is_sparse
from fastgd._validation import as_data, as_sample_weight, as_targets
from fastgd.losses import constant_loss_sum


def _client(client):
    try:
        from distributed import default_client
    except ImportError as error:
        raise ImportError("Training on Dask arrays needs dask and distributed: pip install "
                          "'fastgd[dask]'") from error
    if client is not None:
        return client
    try:
        return default_client()
    except ValueError:
        raise ValueError("X is a Dask array but there is no Dask client: start one "
                         "(distributed.Client(...)) or pass client=") from None


def _known_rows(array):
    """array with its row counts known (a filter or a dataframe leaves them unknown)."""
    return array.compute_chunk_sizes() if any(np.isnan(array.chunks[0])) else array


def _pack(X, Y, sample_weight, k, check_targets=None):
    """One shard, on its worker: (X, Y, sample_weight, their weight), arrays the kernels read
    in place (X dense, or scipy.sparse checked into CSR), y and the weights checked as in
    memory (X's values, as in memory, only if a loss comes out non-finite; Y by
    check_targets, the loss's domain, if given)."""
    X = as_data(X if hasattr(X, "tocsr") else np.asarray(X))
    n = X.shape[0]
    Y = as_targets(np.asarray(Y), n, k, X.dtype)
    if check_targets is not None:
        check_targets(Y)
    sample_weight = as_sample_weight(sample_weight, n, X.dtype, shard=True)
    weight = float(n) if sample_weight is None else float(sample_weight.sum(dtype=np.float64))
    return X, Y, sample_weight, weight


def is_dask_array(a) -> bool:
    """Without importing dask: a dask array's class lives in dask.array."""
    return type(a).__module__.startswith("dask.array")


def map_rows(method, X, n_columns, dtype):
    """method(a NumPy block of rows) on each row block of X, lazily: a dask array of
    n_columns columns, or 1-D for n_columns=None (predict on Dask arrays)."""
    X = X.rechunk({1: -1})
    if n_columns is None:
        return X.map_blocks(method, drop_axis=1, dtype=dtype)
    return X.map_blocks(method, chunks=(X.chunks[0], (n_columns,)), dtype=dtype)


def _worker_threads(n_threads):
    """The kernel's threads on this worker: None, all the worker's threads (its nthreads:
    dask starts workers with OMP_NUM_THREADS=1, so OpenMP's own count would be one); -k,
    all but k - 1; k > 0, k."""
    if n_threads is not None and n_threads > 0:
        return n_threads
    from distributed import get_worker

    available = get_worker().state.nthreads
    return available if n_threads is None else max(1, available + n_threads + 1)


def _weight(shard) -> float:
    return shard[3]


def _engine(shard, n_threads):
    """The in-memory engine (fastgd/_memory.py) for a shard's X, on this worker's threads."""
    return in_memory(shard[0], kernels, _worker_threads(n_threads))


def _problem(shard, loss, k, targets=True) -> Problem:
    X, Y, sample_weight, _ = shard
    return Problem(X, Y if targets else None, sample_weight, loss, k)


def _grad_pass(shard, coef, intercept, loss, k, n_threads, zero_targets=False):
    weight = _weight(shard)
    if weight == 0.0:  # carries no gradient (and its mean would be 0 / 0)
        return weight, None
    return weight, _engine(shard, n_threads).loss_and_grad(
        _problem(shard, loss, k, targets=not zero_targets), coef, intercept)


def _hessian_pass(shard, theta, std, loss, k, n_threads):
    weight = _weight(shard)
    if weight == 0.0:
        return weight, None
    return weight, _engine(shard, n_threads).hessian(_problem(shard, loss, k), theta, std)


def _hessian_vector_pass(shard, theta, std, vector, loss, k, n_threads):
    weight = _weight(shard)
    if weight == 0.0:
        return weight, None
    return weight, _engine(shard, n_threads).hessian_vector(_problem(shard, loss, k), theta,
                                                            std, vector)


def _moments_pass(shard, loss, k, n_threads):
    if _weight(shard) == 0.0:
        return None
    return _engine(shard, n_threads).moments(_problem(shard, loss, k))


def _column_stats(shard, n_threads):
    weight = _weight(shard)
    if weight == 0.0:
        return weight, None
    return weight, _engine(shard, n_threads).column_stats(_problem(shard, None, 1, False))


@dataclass
class Shards:
    """X (n, d), Y (n, k) and the sample weights, as futures of row shards on a cluster."""

    client: object
    futures: list
    rows: list  # of each shard, in order
    n_features: int
    sparse: bool = False  # the blocks are scipy.sparse matrices (CSR on the workers)
    _holders: list | None = None  # the worker of each shard, once asked

    @property
    def shape(self):
        return sum(self.rows), self.n_features

    @property
    def starts(self):
        """The first row of each shard."""
        return np.cumsum([0, *self.rows[:-1]]).tolist()

    @classmethod
    def of(cls, X, Y, sample_weight=None, client=None, check_targets=None) -> Shards:
        """Persist X (a dask array), Y and sample_weight (dask or NumPy arrays of as many
        rows) on the cluster as one packed future per row block of X; check_targets(Y of a
        block), if given, runs on its worker."""
        import dask
        import dask.array as da

        client = _client(client)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got a Dask array of shape {X.shape}")
        with client.as_current():  # row counts, if unknown, are counted on this cluster
            X = _known_rows(X).rechunk({1: -1})
            Y = _known_rows(da.asarray(Y))
            if sample_weight is not None:
                sample_weight = _known_rows(da.asarray(sample_weight))
        if Y.ndim not in (1, 2) or Y.shape[0] != X.shape[0]:
            raise ValueError(f"y must have shape ({X.shape[0]},) or ({X.shape[0]}, n_outputs) "
                             f"for X's {X.shape[0]} rows, got {Y.shape}")
        row_chunks = X.chunks[0]
        k = 1 if Y.ndim == 1 else Y.shape[1]
        parts = [X.to_delayed().ravel(),
                 Y.reshape(X.shape[0], k).rechunk((row_chunks, -1)).to_delayed().ravel()]
        if sample_weight is not None:
            parts.append(sample_weight.rechunk((row_chunks,)).to_delayed().ravel())
        # Empty blocks (a filter leaves them) are left out; they hold nothing to train on.
        blocks = [dask.delayed(_pack)(x, y, w[0] if w else None, k, check_targets)
                  for rows, (x, y, *w) in zip(row_chunks, zip(*parts, strict=True),
                                              strict=True) if rows > 0]
        if not blocks:
            raise ValueError("X has 0 rows: at least one sample is required")
        return cls(client, client.compute(blocks), [r for r in row_chunks if r > 0],
                   X.shape[1], is_sparse(getattr(X, "_meta", None)))

    def map(self, function, rows=None, per_shard=None, **arguments) -> list:
        """function(shard, [per_shard[i],] **arguments) on every shard i (or the shards
        numbered `rows`) where it lies; the results in shard order. One task a worker, over
        its shards: a task's trip through the scheduler costs more than a pass over a
        shard of a few hundred MB."""
        numbers = range(len(self.futures)) if rows is None else [int(i) for i in rows]
        extra = (lambda i: ()) if per_shard is None else (lambda i: (per_shard[i],))
        task = partial(_on_shards, partial(function, **arguments))
        groups = self._by_worker(numbers)
        tasks = [self.client.submit(task, [(self.futures[i], *extra(i)) for i in group],
                                    workers=worker and [worker],
                                    allow_other_workers=bool(worker), pure=False)
                 for worker, group in groups.items()]
        results = dict(zip((i for group in groups.values() for i in group),
                           (r for rs in self.client.gather(tasks) for r in rs), strict=True))
        return [results[i] for i in numbers]

    def _by_worker(self, numbers) -> dict:
        """The shard numbers grouped by a worker that holds them."""
        if self._holders is None:
            from distributed import wait

            wait(self.futures)
            held = self.client.who_has(self.futures)
            self._holders = [(held.get(f.key) or [None])[0] for f in self.futures]
        groups = {}
        for i in numbers:
            groups.setdefault(self._holders[i], []).append(i)
        return groups

    def release(self):
        self.client.cancel(self.futures)
        self.futures = []


def _on_shards(function, items):
    """function(shard, *extra) for each (shard, *extra) of one worker's shards."""
    return [function(shard, *extra) for shard, *extra in items]


@contextmanager
def released(data):
    """Release data's shards on leaving (a no-op for arrays in memory)."""
    try:
        yield
    finally:
        if isinstance(data, Shards):
            data.release()


def _weighted_sum(results):
    """Σ weight_i · part_i / Σ weight_i over the shards that carry weight, in shard order."""
    total = sum(weight for weight, part in results if part is not None)
    if total == 0.0:
        raise ValueError("sample_weight must not be all zero")
    combined = None
    for weight, part in results:
        if part is None:
            continue
        scaled = [np.multiply(weight / total, p) for p in part]
        combined = scaled if combined is None else [c + s for c, s in zip(combined, scaled,
                                                                        strict=True)]
    return combined


# The engine interface (fastgd/_problem.py) with X a Shards, which also holds the targets and
# the sample weights: a Problem's Y is that same Shards (None: zero targets), its
# sample_weight None, and its `rows` the numbers of the shards to use.

class DaskEngine:
    """Passes over the shards of a cluster, each summed where it lies and added in shard
    order; n_threads as the estimators take it, resolved on each worker (_worker_threads)."""

    def __init__(self, n_threads=None):
        self.n_threads = n_threads

    def n_rows(self, problem) -> int:
        shards = problem.X
        return shards.shape[0] if problem.rows is None else sum(shards.rows[i]
                                                                 for i in problem.rows)

    def loss_and_grad(self, problem, coef, intercept):
        """(mean loss, gradient in coef (k, d), gradient in intercept (k,)) over the shards."""
        value, grad_coef, grad_intercept = _weighted_sum(self._grad_passes(problem, coef,
                                                                           intercept))
        return float(value), grad_coef, grad_intercept

    def _grad_passes(self, problem, coef, intercept) -> list:
        _held(problem)
        return problem.X.map(_grad_pass, problem.rows, coef=coef, intercept=intercept,
                             loss=problem.loss, k=problem.k, n_threads=self.n_threads,
                             zero_targets=problem.Y is None)

    def hessian(self, problem, theta, std):
        """(mean loss, gradient, Hessian) in the trained parameters: each shard's, added in
        shard order weighted by the shards' weights."""
        _held(problem)
        results = problem.X.map(_hessian_pass, problem.rows, theta=theta, std=std,
                                loss=problem.loss, k=problem.k, n_threads=self.n_threads)
        value, gradient, hessian = _weighted_sum(results)
        return float(value), gradient, hessian

    def hessian_vector(self, problem, theta, std, vector):
        """(mean loss, gradient, H vector): each shard's, added in shard order weighted by
        the shards' weights."""
        _held(problem)
        results = problem.X.map(_hessian_vector_pass, problem.rows, theta=theta, std=std,
                                vector=vector, loss=problem.loss, k=problem.k,
                                n_threads=self.n_threads)
        value, gradient, product = _weighted_sum(results)
        return float(value), gradient, product

    def moments(self, problem):
        """Each shard's moments, merged in shard order (Moments.merged)."""
        _held(problem)
        merged = None
        for part in problem.X.map(_moments_pass, problem.rows, loss=problem.loss,
                                  k=problem.k, n_threads=self.n_threads):
            if part is not None:
                merged = part if merged is None else merged.merged(part)
        if merged is None:
            raise ValueError("sample_weight must not be all zero")
        return merged

    def column_stats(self, problem):
        """Weighted per-column mean and population variance over all shards (Chan et al.'s
        pairwise combination: within-shard variance plus the spread of the shard means)."""
        _held(problem)
        results = [(w, part) for w, part in problem.X.map(_column_stats,
                                                          n_threads=self.n_threads)
                   if part is not None]
        (mean, _) = _weighted_sum(results)
        (variance,) = _weighted_sum([(w, (var + (m - mean) ** 2,)) for w, (m, var) in results])
        return mean, variance

    def run_epoch(self, problem, theta, state, plan):
        """One epoch. Full batch: the gradient summed over the shards and one step on the
        client (its state is d-sized), as fastgd.reference.run_epoch takes it. Mini-batches:
        every shard runs a local epoch of the compiled kernel from the same parameters and
        optimizer state (its batches drawn within the shard, in its own order), and the
        client averages the shards' parameters and states by their weight (local SGD with
        averaging once an epoch; the step count goes on by the largest shard's)."""
        _held(problem)
        if plan.batch_size < self.n_rows(problem):
            return self._local_epochs(problem, theta, state, plan)
        d = problem.n_features
        W, b = reference.original_parameters(theta, len(theta) // (d + 1), d, plan.std)
        results = self._grad_passes(problem, W, b)
        weight = sum(w for w, part in results if part is not None)
        value, grad_W, grad_b = _weighted_sum(results)
        if not np.isfinite(value):
            return weight * value, weight, 0
        reference.take_step(theta, state, grad_W, grad_b, plan, plan.step + 1)
        return weight * value, weight, 1

    def _local_epochs(self, problem, theta, state, plan):
        shards = problem.X
        results = shards.map(_local_epoch, problem.rows, range(len(shards.futures)),
                             theta=theta, state=state, plan=plan, loss=problem.loss,
                             k=problem.k, n_threads=self.n_threads)
        carrying = [(w, part) for w, part in results if part is not None]
        total = sum(part[2] for _, part in carrying)
        weight = sum(w for w, _ in carrying)
        steps = max((part[3] for _, part in carrying), default=0)
        if not np.isfinite(total):  # the loop tells divergence from bad data by the steps
            return total, weight, steps
        names = tuple(state)
        averaged = _weighted_sum([(w, (part[0], *(part[1][name] for name in names)))
                                  for w, part in carrying])
        theta[:] = averaged[0]
        for name, value in zip(names, averaged[1:], strict=True):
            state[name][:] = value
        return total, weight, steps

    def raise_if_nonfinite(self, problem) -> None:
        problem.X.map(_raise_if_nonfinite, None, problem.X.starts)

    def largest_row_norm(self, problem, std) -> float:
        """The largest of the shards' largest rows."""
        _held(problem)
        shards = problem.X
        mean_weight = sum(shards.map(_weight)) / shards.shape[0]
        return max(shards.map(_largest_row_norm, std=std, mean_weight=mean_weight))

    def best_constant(self, problem) -> tuple:
        """Loss.best_constant_and_loss over the shards: each shard's sums, added in shard
        order."""
        _held(problem)
        shards, loss = problem.X, problem.loss
        total = sums = 0.0
        for shard_total, shard_sums in shards.map(_target_sums, loss=loss, k=problem.k):
            total, sums = total + shard_total, sums + shard_sums
        return loss.best_constant_and_loss(total, sums, problem.k, lambda z: sum(
            shards.map(_constant_loss_sum, z=z, loss=loss)))

    def nearest_rows(self, problem, coef, intercept, count: int, direction=None,
                     on=0.0, output=0) -> tuple:
        """Each shard's nearest `count`, the nearest of them all."""
        _held(problem)
        found = problem.X.map(_nearest_rows, problem.rows, coef=coef, intercept=intercept,
                              count=count, direction=direction, on=on, output=output,
                              kink=problem.loss.kink)
        distance, X, Y, weights = (np.concatenate([part[i] for part in found])
                                   for i in range(4))
        nearest = np.argsort(distance, kind="stable")[:count]
        return X[nearest], Y[nearest], weights[nearest], sum(part[4] for part in found)

    def fingerprint(self, problem, digest) -> dict:
        """The row blocks (mini-batch epochs run block by block); no rows are hashed."""
        return {"dtype": None, "blocks": [int(r) for r in problem.X.rows]}


def _held(problem):
    if not (problem.Y is problem.X or problem.Y is None) or problem.sample_weight is not None:
        raise ValueError("the targets and sample weights are held in the shards: a Problem "
                         "on shards has Y=X (or None) and sample_weight=None")


def _local_epoch(shard, number, theta, state, plan, loss, k, n_threads):
    X, Y, sample_weight, _ = shard
    if _weight(shard) == 0.0:  # no rows, or none with weight: nothing to learn here
        return 0.0, None
    theta, state = theta.copy(), {name: value.copy() for name, value in state.items()}
    keys = plan.shuffle_keys
    if keys is not None:  # each shard its own order
        keys = tuple(splitmix64(key ^ number) for key in keys)
    plan = replace(plan, batch_size=min(plan.batch_size, X.shape[0]), shuffle_keys=keys)
    total, weight, steps = _engine(shard, n_threads).run_epoch(
        Problem(X, Y, sample_weight, loss, k), theta, state, plan)
    return weight, (theta, state, total, steps)


def _raise_if_nonfinite(shard, start):
    _validation.raise_if_nonfinite(shard[0], row_offset=start)


def _largest_row_norm(shard, std, mean_weight):
    X, _, sample_weight, _ = shard
    return reference.largest_row_norm(X, sample_weight, std, mean_weight)


def _target_sums(shard, loss, k):
    _, Y, sample_weight, _ = shard
    return loss.target_sums(Y, sample_weight, k)


def _nearest_rows(shard, coef, intercept, count, direction, on, output, kink):
    X, Y, sample_weight, _ = shard
    return reference.nearest_rows(X, Y, sample_weight, coef, intercept, count,
                                  direction=direction, on=on, output=output, kink=kink)


def _constant_loss_sum(shard, z, loss):
    _, Y, sample_weight, _ = shard
    return constant_loss_sum(loss, Y, sample_weight, z)
