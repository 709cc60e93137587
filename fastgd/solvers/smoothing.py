"""Newton's method for a loss with a kink (the pinball and hinge losses): Newton on
smoothed forms of the loss, the smoothing shrinking toward the loss itself (a
continuation), then the step to the exact optimum: for quantile regression the crossover
to a vertex, for a ridge-penalized fit (a support vector machine) the polish.

The loss's smoothed form of width h (Loss.smoothed) is quadratic on a band of width h
about the kink and at most h / 2 below the loss elsewhere, so the objective f_h is within
h / 2 of f, and at the minimizer theta_h of f_h, f(theta_h) - min f <= h / 2. Each step of
training is one width: a pass measures the loss itself at the step's start (the history's
loss), then Newton (fastgd/solvers/newton.py, its line search and its convergence tests)
minimizes f_h from there, and the next width is SHRINK times smaller (the first: the mean
loss at the start, the residuals' scale). Training has converged when h / 2 is within
the loop's threshold (tol times the best constant's loss).

The optimum of the pinball loss without a penalty is a vertex of a linear program (the
one QuantileRegressor solves): the model through d + 1 of the rows. Once the band holds
far fewer rows than that, `crossover` goes from near it to it, as interior-point methods
cross over to the simplex method, and checks it by linear programming duality: the exact
optimum, in a few passes, where the continuation alone would creep toward it.

With a ridge penalty the optimum is a quadratic program's, no vertex: `polish` solves the
small program that the rows near the kink leave once the others' sides are settled (an
active-set method), and certifies it by one pass along the move to it.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from dataclasses import replace

import numpy as np

from fastgd._state import as_theta, in_original_units
from fastgd.solvers import Step, loss_and_gradient, penalty, smooth_objective

SHRINK = 10.0         # the widths' ratio from one step to the next
MAX_NEWTON = 50       # Newton iterations at one width
INNER = 1e-2          # ... until the decrease Newton predicts is within this times the width
SMALLEST = 1e-14      # a width below this times the loss changes nothing in float64
CROSSOVER = 1e-3      # the crossover once the band holds about this times d + 1 rows
                      # (about: it is n width / loss): later crossovers take fewer
                      # pivots; 1M x 20, q = 0.9: 203 pivots, 10.8 s at 1; 19, 3.9 s at
                      # 1e-3 (benchmarks/README.md has the others)
DUAL_SLACK = 1e-9     # the multipliers' rounding allowed beyond the subdifferential
ROUNDING = 1e4        # ulps of a residual's terms that the crossover takes for 0
MAX_PIVOTS = 500      # simplex pivots of a crossover (two passes each): 6-30 measured
                      # from the nearest rows' vertex at 100k-1M rows
PIVOT_ROWS = 4        # rows ahead on an edge read for a pivot, times d + 1
POLISH_ROWS = 4       # rows nearest the kink read for a penalized fit's polish, times d + 1
POLISH_ROUNDS = 8     # ... each adding the rows the last one's move crossed
POLISH_FEATURES = 200  # the polish's dense solves (p + rows on their kinks)^2 a step, and
                      # its rows read, dense: for wider data, the continuation alone


def check_smooth(solver: str, loss) -> None:
    """A ValueError for a solver that needs the loss's gradient everywhere, given a loss
    with a kink."""
    if not loss.smooth:
        raise ValueError(
            f"optimizer={solver!r} needs a loss with a gradient everywhere; the "
            f"{loss.name} loss has a kink: use optimizer=\"newton\" (\"auto\"), which "
            f"smooths the kink and shrinks the smoothing to the optimum, or a first-order "
            f"optimizer (subgradient steps) with a numeric learning_rate and a decaying "
            f"schedule (\"invscaling\")")


def step(newton, engine, problem, state, epoch: int) -> Step:
    """One width of the continuation, from state.theta (the optimum at the last width) in
    place: the loss there (one pass), then Newton on the loss smoothed at the next width,
    from the point the last two optima predict for it."""
    slots, theta = state.slots, state.theta
    loss = float(loss_and_gradient(engine, problem, theta, state.std)[0])
    last, before = (float(w) for w in slots["widths"])
    width = loss if math.isnan(last) else last / SHRINK
    if not math.isfinite(loss) or width <= SMALLEST * loss:  # 0: nothing to smooth
        if math.isfinite(loss * last) and penalized(newton):  # (Newton never settled)
            polish(newton, engine, problem, state, problem.loss.smoothed(last))
        return Step(loss, 1.0, 0, 0.0, converged=math.isfinite(loss))
    optimum = theta.copy()
    if math.isfinite(before):
        # While the band holds the same rows, the smoothed optimum moves along a line in
        # the width (the band's residuals are the width times fixed fractions): the last
        # two optima predict the next, where Newton's first step is then exact.
        theta += (theta - slots["optimum_before"]) * ((last - width) / (before - last))
    slots["optimum_before"][:] = optimum
    smoothed = replace(problem, loss=problem.loss.smoothed(width))
    slots["objective"][()] = math.nan  # the last width's: Newton's first pass evaluates it
    inner = copy.copy(newton)  # converged at this width within a share of the width
    inner.threshold = INNER * width
    updates, settled = 0, False
    for _ in range(MAX_NEWTON):
        newton_step = inner.step(engine, smoothed, state, epoch)
        updates += newton_step.updates
        if newton_step.converged:
            settled = True
            break
    slots["objective"][()] = math.nan  # the next width's pass evaluates it
    slots["widths"][:] = (width, last)
    threshold = newton.threshold
    # f(theta) - min f <= width / 2 + what Newton left at this width (within INNER width)
    within = threshold is not None and width / 2 <= threshold
    converged = settled and within
    if penalized(newton):  # a quadratic program: its optimum, once within tol of it
        if within:  # (tried earlier, at 1e-2 to 1e-4 of the loss, it failed: slower)
            converged = polish(newton, engine, problem, state, smoothed.loss) or converged
    # the band holds about n width / (the residuals' scale, the loss) rows: well below the
    # p = d + 1 rows of a vertex, the nearest rows are the optimum's, or a few pivots away
    elif not converged and width * engine.n_rows(problem) <= (
            CROSSOVER * (problem.n_features + 1) * loss):
        converged = crossover(newton, engine, problem, state)
    return Step(loss, 1.0, updates, 1.0, converged=converged)


def crossover(newton, engine, problem, state) -> bool:
    """Where the optimum is a vertex of a linear program (the pinball loss, unpenalized:
    quantile regression, one linear program an output), the step from near it to it, as
    interior-point methods cross over to the simplex method (vertex, for each output). At
    the optimum, state.theta becomes it (True); else it is left as it was (False), and the
    continuation goes on (degenerate data, ties: more than p rows at residual 0)."""
    d = problem.n_features
    if newton.l2 or not problem.loss.linear_program:
        return False
    coef, intercept = (part.copy() for part in in_original_units(state.std, state.theta, d))
    for output in range(problem.k):
        found = vertex(engine, problem, coef, intercept, output)
        if found is None:
            return False
        coef[output], intercept[output] = found[:d], found[d]
    std = state.std
    state.theta[:] = as_theta(*(std.from_original(coef, intercept) if std
                                else (coef, intercept)))
    return True


def vertex(engine, problem, coef, intercept, output: int):
    """The optimum of one output's linear program near the model (coef (k, d), intercept
    (k,), original units), as (coef, intercept) of that output (d + 1,), or None if not
    found within MAX_PIVOTS. The p = d + 1 rows nearest the model define a vertex, the
    model that interpolates them. It is the optimum when the multipliers mu that the
    subgradient condition asks of those rows (sum over the others of w l'(z) a + sum over
    these of w mu a = 0) lie in the loss's subdifferential at its
    kink, [-q, 1 - q] (Loss.kink_subgradients; linear programming duality); else the row
    furthest outside leaves, and the objective's slope along the edge that opens tells
    which row enters: the first whose residual reaching 0 turns the slope up (a simplex
    pivot, as Barrodale and Roberts's for least absolute deviations). Two passes a
    vertex."""
    d = problem.n_features
    X, Y, weights, total = engine.nearest_rows(problem, coef, intercept, d + 1,
                                               output=output)
    low, high = problem.loss.kink_subgradients(Y[:, output])  # the same for every row
    if len(X) < d + 1:
        return None
    A, y = np.hstack([X, np.ones((d + 1, 1))]), Y[:, output].copy()
    coef, intercept = coef.copy(), intercept.copy()
    for _ in range(MAX_PIVOTS):
        M = equilibration(A)
        B = A @ M  # the same rows in centred, scaled columns: the same vertex, conditioned
        if np.linalg.cond(B) > 1.0 / np.sqrt(np.finfo(float).eps):
            return None
        solution = M @ np.linalg.solve(B, y)
        coef[output], intercept[output] = solution[:d], solution[d]
        # the rounding of a residual of 0 (the vertex's rows'), from the sizes of its terms
        rounding = ROUNDING * np.finfo(float).eps * float(
            np.max(np.abs(A) @ np.abs(solution) + np.abs(y)))
        gradient = others_gradient(engine, problem, coef, intercept, output, rounding)
        multipliers = np.linalg.solve(B.T, -M.T @ gradient) * total / weights
        excess = np.maximum(multipliers - high, low - multipliers)
        if excess.max() <= DUAL_SLACK:
            return solution
        leaving = int(np.argmax(excess))
        side = 1.0 if multipliers[leaving] > high else -1.0
        edge = M @ np.linalg.solve(B, side * np.eye(d + 1)[leaving])
        # the objective's slope along the edge, times the total weight, then each row it
        # reaches adds its weight times |x edge|
        slope = -weights[leaving] * excess[leaving]
        X_ahead, Y_ahead, w_ahead, _ = engine.nearest_rows(
            problem, coef, intercept, PIVOT_ROWS * (d + 1), direction=(edge[:d], edge[d]),
            on=rounding, output=output)
        rises = np.cumsum(w_ahead * np.abs(X_ahead @ edge[:d] + edge[d])) + slope
        if not len(rises):
            return None
        entering = min(int(np.searchsorted(rises, 0.0)), len(rises) - 1)
        A[leaving], y[leaving] = np.append(X_ahead[entering], 1.0), Y_ahead[entering, output]
        weights[leaving] = w_ahead[entering]
    return None


def penalized(newton) -> bool:
    """A ridge penalty alone: the optimum is a quadratic program's (polish)."""
    return bool(newton.l2) and not newton.l1


def polish(newton, engine, problem, state, smoothed) -> bool:
    """A ridge-penalized fit's exact optimum, from near it: True if found (state.theta
    becomes it), else False (state.theta as it was). Near the optimum the rows away from
    the kink keep their sides, and the optimum solves the small quadratic program the
    rows near it leave (active_set, from the rows on the band of the `smoothed` loss held
    on their kinks): the optimum of the whole once no other row crosses its kink on the
    way there (then every row's term of the KKT conditions is as assumed); the rows that
    do join those near it, and the program is solved again. Taken if the objective is no
    higher. Smaller widths would get there only through Newton systems of curvature
    1 / width on the rows at the kink: ill-conditioned, where a hinge fit's support
    vectors stalled 1e-6 from the optimum. Two passes, and two or more in NumPy for
    each output; none for more than POLISH_FEATURES features (the continuation's model
    stands, within tol)."""
    d, std = problem.n_features, state.std
    if d > POLISH_FEATURES:
        return False
    coef, intercept = in_original_units(std, state.theta, d)
    loss, grad_w, grad_b = engine.loss_and_grad(problem, coef, intercept)
    ridge = newton.l2 * np.append(std.scale ** 2 if std else np.ones(d), 0.0)  # in coef
    new_coef, new_intercept = coef.copy(), intercept.copy()
    for output in range(problem.k):
        theta = np.append(coef[output], intercept[output])
        gradient = np.append(grad_w[output], grad_b[output])
        X, Y, weights, total = engine.nearest_rows(problem, coef, intercept,
                                                   POLISH_ROWS * (d + 1), output=output)
        for _ in range(POLISH_ROUNDS):
            A, y, w = np.hstack([X, np.ones((len(X), 1))]), Y[:, output], weights / total
            z = A @ theta
            # the gradient without these rows' own terms (their derivatives at width 0)
            others = gradient - (w * problem.loss.derivative(z, y)) @ A
            found = active_set(A, w, problem.loss, y, others, ridge, theta,
                               smoothed.derivative(z, y))
            if found is None:
                return False
            crossed = rows_crossed(engine, problem, coef, intercept, found - theta, output,
                                   len(X) + POLISH_ROWS * (d + 1))
            new = unread(np.column_stack([X, Y]), np.column_stack(crossed[:2]))
            if not len(new):
                break
            X, Y, weights = (np.concatenate([part, crossed[j][new]])
                             for j, part in enumerate((X, Y, weights)))
        else:
            return False
        new_coef[output], new_intercept[output] = found[:d], found[d]
    candidate = as_theta(*(std.from_original(new_coef, new_intercept) if std
                           else (new_coef, new_intercept)))
    # the objective here, from the first pass's loss, and there (one more pass)
    here = float(loss) + penalty(state.theta, d, 0.0, newton.l2)
    if not smooth_objective(engine, problem, candidate, std, newton.l2)[1] <= here:
        return False
    state.theta[:] = candidate
    return True


def unread(read, crossed) -> list:
    """The indices of the `crossed` rows that are not among the rows `read` (rows of X
    and Y; as a multiset: of k copies of a row read, a (k + 1)-th crossing is new)."""
    left = Counter(row.tobytes() for row in read)
    new = []
    for i, row in enumerate(crossed):
        key = row.tobytes()
        if left[key] > 0:
            left[key] -= 1
        else:
            new.append(i)
    return new


def rows_crossed(engine, problem, coef, intercept, move, output, count: int) -> tuple:
    """(X, Y, weights) of the rows (up to `count`, the first reached) whose kink `output`
    crosses as its parameters move by `move` (p,) from (coef, intercept)."""
    d = problem.n_features
    X, Y, weights, _ = engine.nearest_rows(problem, coef, intercept, count,
                                           direction=(move[:d], move[d]), output=output)
    distance = problem.loss.kink(Y[:, output]) - (X @ coef[output] + intercept[output])
    with np.errstate(divide="ignore", invalid="ignore"):
        reached = distance / (X @ move[:d] + move[d]) <= 1.0
    return X[reached], Y[reached], weights[reached]


def active_set(A, w, loss, y, others, penalty, theta, smoothed_derivative):
    """The parameters (p,) of one output minimizing theta^T P theta / 2 + others . theta
    + the sum over the rows A (m, p) of weights w (targets y) of their loss, from theta:
    the other rows' terms linear (their gradient `others`), P = diag(penalty). A primal
    active-set method (Nocedal and Wright, 16.5) on the rows' sides of their kinks: each
    row is below its kink (its loss's slope there, low), above it (high) or on it (z =
    Loss.kink(y)); each step solves for the optimum with the rows on their kinks held
    there (a linear system, the multipliers of those rows its last unknowns) and goes
    toward it until a row reaches its kink (then held there too); at that optimum, a
    row whose multiplier is outside its subdifferential [low, high] leaves its kink to
    the side it pulls toward. It starts with the rows whose `smoothed_derivative` is
    strictly within it (on the last width's band) held. None if it has not ended within
    2 (m + p) steps (degenerate data: the multipliers of rows dependent on one another
    are not unique, and least squares' may leave the subdifferential at the optimum)."""
    # a row repeated is one row of their weights: one multiplier, not two that the
    # solves could share out any way (repeated rows on a kink cycled)
    rows, first, index = np.unique(np.column_stack([A, y]), axis=0, return_index=True,
                                   return_inverse=True)
    A, y, w = rows[:, :-1], rows[:, -1], np.bincount(index.ravel(), weights=w)
    low, high = np.broadcast_arrays(*loss.kink_subgradients(y), y)[:2]
    kink, p = loss.kink(y), A.shape[1]
    band = smoothed_derivative[first]
    # -1 below, 1 above, 0 held on the kink
    side = np.where((low < band) & (band < high), 0.0, np.sign(A @ theta - kink))
    for _ in range(2 * (len(A) + p)):
        on = np.flatnonzero(side == 0)
        slope = np.where(side < 0, low, high) * (side != 0)
        linear = others + (w * slope) @ A
        system = np.block([[np.diag(penalty), A[on].T],
                           [A[on], np.zeros((len(on), len(on)))]])
        solution = np.linalg.lstsq(system, np.append(-linear, kink[on]), rcond=None)[0]
        if not len(on) and abs(linear[-1]) > DUAL_SLACK * w.sum():
            # no row on a kink: the objective is linear in the intercept, down one way
            step, longest = np.zeros(p), np.inf
            step[-1] = -np.sign(linear[-1])
        else:
            step, longest = solution[:p] - theta, 1.0
        gap, rate = A @ theta - kink, A @ step
        with np.errstate(divide="ignore", invalid="ignore"):  # rows heading for their kink
            reach = np.where(side * rate < 0, np.maximum(-gap / rate, 0.0), np.inf)
        first = int(np.argmin(reach)) if len(reach) else 0
        if len(reach) and reach[first] < longest:  # a row reaches its kink: held there
            theta = theta + reach[first] * step
            side[first] = 0
            continue
        if not np.isfinite(longest):
            return None  # unbounded: no row ahead (the rows read are all on one side)
        theta = solution[:p]
        mu = solution[p:] / w[on]
        excess = np.maximum(mu - high[on], low[on] - mu)
        if not len(on) or excess.max() <= DUAL_SLACK:
            return theta
        leaving = int(np.argmax(excess))
        side[on[leaving]] = 1.0 if mu[leaving] > high[on[leaving]] else -1.0
    return None


def equilibration(A):
    """M (p, p) such that A M = [(x - mean) / spread, 1] for the rows A = [x, 1]: solving in
    A M's columns gives the same vertex (A x = y is A M (M^-1 x) = y), with the data's
    conditioning rather than its units' (a column of years, or of amounts near 1e9,
    would make A itself look singular)."""
    X = A[:, :-1]
    mean, spread = X.mean(axis=0), X.std(axis=0)
    spread[spread == 0] = 1.0
    M = np.eye(len(A))
    M[:-1, :-1] = np.diag(1.0 / spread)
    M[-1, :-1] = -mean / spread
    return M


def others_gradient(engine, problem, coef, intercept, output, rounding):
    """The mean gradient of `output`'s loss in its (coef, intercept) (p,) at the model,
    without the vertex's rows: one pass of the loss smoothed over a band of `rounding`,
    the rounding of those rows' residuals of 0, so that they add nothing to it."""
    narrow = replace(problem, loss=problem.loss.smoothed(rounding))
    _, grad_w, grad_b = engine.loss_and_grad(narrow, coef, intercept)
    return np.append(grad_w[output], grad_b[output])
