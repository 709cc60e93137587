"""L-BFGS: torch.optim.LBFGS's algorithm, one of its iterations a step.

Each evaluation of the objective (mean loss + l2 |w|^2 / 2) and its gradient is one fused
pass over the data (solvers.loss_and_gradient). The iterations, the two-loop recursion, the
first step length min(1, 1 / |g|_1) lr, the strong-Wolfe line search (with the evaluations
left in the budget as its limit) and the stopping tests are torch's (torch/optim/lbfgs.py,
ported from minFunc), so with the same settings and start fastgd's iterates follow torch's
on the same objective. What torch keeps in its state dict lives in named slots of the
TrainState, so a checkpoint resumes an L-BFGS fit bit for bit.

Where torch's line search would compute with a non-finite objective (a trial step into
overflow), the trial counts as too long (an infinite objective) and the interpolation falls
back to bisection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from fastgd._state import TrainState
from fastgd.solvers import Step, smooth_objective
from fastgd.solvers.smoothing import check_smooth

LINE_SEARCHES = ("strong_wolfe", None)
MAX_LS = 25  # evaluations of one line search at most (torch's _strong_wolfe's max_ls): with
             # tolerance_change=0 nothing else ends a zoom that makes no progress


@dataclass
class LBFGS:
    """torch.optim.LBFGS(lr=learning_rate, max_iter=the steps, max_eval, tolerance_grad,
    tolerance_change, history_size, line_search_fn) on the objective mean loss +
    l2 |w|^2 / 2. learning_rate "auto" is torch's lr, 1. L1 has no gradient: l1 must be 0."""

    learning_rate: float | str = "auto"
    history_size: int = 10
    line_search_fn: str | None = "strong_wolfe"
    tolerance_grad: float = 1e-7
    tolerance_change: float = 1e-9
    max_eval: int = 1250  # evaluations in all (torch: max_iter * 5 // 4)
    l1: float = 0.0
    l2: float = 0.0
    name: str = field(default="lbfgs", init=False)

    def new_state(self, theta, std) -> TrainState:
        """torch's state: the last direction d and step length t, the history of steps s
        (old_stps) and gradient changes y (old_dirs) with ro = 1 / (y . s), oldest first
        (`pairs` of them), the initial inverse Hessian's scale H_diag, the objective and
        gradient at theta (objective NaN: not evaluated yet) and at the previous iterate,
        the iterations and evaluations made."""
        p, m = len(theta), self.history_size
        scalars = {"t": 0.0, "pairs": 0.0, "H_diag": 1.0, "loss": math.nan,
                   "objective": math.nan, "prev_objective": math.nan, "n_iter": 0.0,
                   "func_evals": 0.0}
        slots = {"d": np.zeros(p), "flat_grad": np.zeros(p), "prev_flat_grad": np.zeros(p),
                 "old_dirs": np.zeros((m, p)), "old_stps": np.zeros((m, p)), "ro": np.zeros(m),
                 **{name: np.array(value) for name, value in scalars.items()}}
        return TrainState(theta, slots, std=std, learning_rate=self.learning_rate,
                          optimizer=self.name)

    def go_on_from(self, state: TrainState) -> TrainState:
        if state.optimizer != self.name or state.slots["old_dirs"].shape[0] != self.history_size:
            return replace(self.new_state(state.theta, state.std), epochs=state.epochs)
        return state

    def reads_moments(self, problem) -> bool:
        return False

    def centers(self, problem) -> bool:
        return True

    def start(self, engine, problem, state, n_rows, threshold=None, moments=None):
        check_smooth(self.name, problem.loss)
        if state.learning_rate == "auto":
            state = replace(state, learning_rate=1.0)
        return state

    def evaluate(self, engine, problem, theta, std) -> tuple:
        """(mean loss, objective, gradient of the objective) at theta: one pass."""
        return smooth_objective(engine, problem, theta, std, self.l2)

    def step(self, engine, problem, state, epoch):
        """One iteration of torch's loop (its body from "compute gradient descent
        direction" to "check conditions")."""
        slots, theta, lr = state.slots, state.theta, state.learning_rate
        if math.isnan(slots["objective"]):  # the start: torch's first closure()
            self.keep(slots, *self.evaluate(engine, problem, theta, state.std))
            slots["func_evals"][()] += 1
        loss = float(slots["loss"])
        g = slots["flat_grad"].copy()
        if not math.isfinite(slots["objective"]) or np.abs(g).max() <= self.tolerance_grad:
            return Step(loss, 1.0, 0, 0.0, converged=math.isfinite(slots["objective"]))
        slots["n_iter"][()] += 1
        d = self.direction(slots, g)
        slots["prev_flat_grad"][:] = g
        slots["prev_objective"][()] = slots["objective"]
        t = min(1.0, 1.0 / np.abs(g).sum()) * lr if slots["n_iter"] == 1 else lr
        gtd = float(g @ d)
        if gtd > -self.tolerance_change:  # not a descent direction any more
            slots["d"][:], slots["t"][()] = d, t
            return Step(loss, 1.0, 0, 0.0, converged=True)
        if self.line_search_fn is None:  # a fixed step, evaluated where it lands
            theta += t * d
            self.keep(slots, *self.evaluate(engine, problem, theta, state.std))
            evaluations = 1
        else:
            evaluations, t = self.line_search(engine, problem, state, d, t, gtd)
            theta += t * d
        slots["d"][:], slots["t"][()] = d, t
        slots["func_evals"][()] += evaluations
        converged = (np.abs(slots["flat_grad"]).max() <= self.tolerance_grad
                     or np.abs(d * t).max() <= self.tolerance_change
                     or abs(slots["objective"] - slots["prev_objective"])
                     < self.tolerance_change)
        exhausted = slots["func_evals"] >= self.max_eval
        return Step(loss, 1.0, 1, t, converged=bool(converged), exhausted=bool(exhausted))

    @staticmethod
    def keep(slots, loss, objective, gradient) -> None:
        """The mean loss, objective and gradient at the current iterate, into its slots (in
        place: the slots are arrays, 0-d for the scalars, that a checkpoint saves)."""
        slots["loss"][()], slots["objective"][()] = loss, objective
        slots["flat_grad"][:] = gradient

    def direction(self, slots, g):
        """-H g, H the L-BFGS inverse Hessian after adding the last step to the history."""
        if slots["n_iter"] == 1:
            slots["pairs"][()], slots["H_diag"][()] = 0, 1.0
            return -g
        old_dirs, old_stps, ro = slots["old_dirs"], slots["old_stps"], slots["ro"]
        y = g - slots["prev_flat_grad"]
        s = slots["d"] * slots["t"]
        ys = float(y @ s)
        pairs = int(slots["pairs"])
        if ys > 1e-10:
            if pairs == self.history_size:  # shift the history by one (limited memory)
                for array in (old_dirs, old_stps, ro):
                    array[:-1] = array[1:].copy()
                pairs -= 1
            old_dirs[pairs], old_stps[pairs], ro[pairs] = y, s, 1.0 / ys
            pairs += 1
            slots["pairs"][()], slots["H_diag"][()] = pairs, ys / float(y @ y)
        al = np.empty(pairs)
        q = -g
        for i in range(pairs - 1, -1, -1):
            al[i] = float(old_stps[i] @ q) * ro[i]
            q -= al[i] * old_dirs[i]
        r = q * float(slots["H_diag"])
        for i in range(pairs):
            be_i = float(old_dirs[i] @ r) * ro[i]
            r += (al[i] - be_i) * old_stps[i]
        return r

    def line_search(self, engine, problem, state, d, t, gtd) -> tuple:
        """torch's _strong_wolfe from theta along d, starting at step length t: (the
        evaluations made, the step length found); the slots get its objective and
        gradient."""
        slots, theta = state.slots, state.theta
        losses = {0.0: float(slots["loss"])}  # the mean loss at each step length tried

        def objective_at(step):
            loss, objective, gradient = self.evaluate(engine, problem, theta + step * d,
                                                      state.std)
            losses[step] = loss
            return (objective if math.isfinite(objective) else math.inf), gradient

        f, g = float(slots["objective"]), slots["flat_grad"].copy()
        f_new, g_new, t, evaluations = strong_wolfe(
            objective_at, t, d, f, g, gtd, tolerance_change=self.tolerance_change,
            max_ls=max(1, min(MAX_LS, self.max_eval - int(slots["func_evals"]))))
        self.keep(slots, losses[t], f_new, g_new)
        return evaluations, t


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimizer of the cubic through (x1, f1, g1) and (x2, f2, g2) within the bounds
    (torch's _cubic_interpolate; the bounds' midpoint where it is not finite)."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    with np.errstate(all="ignore"):
        d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
        d2_square = d1 ** 2 - g1 * g2
        if d2_square >= 0:
            d2 = math.sqrt(d2_square)
            if x1 <= x2:
                min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
            else:
                min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
            if math.isfinite(min_pos):
                return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def strong_wolfe(obj_func, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9,
                 max_ls=25):
    """torch's _strong_wolfe (from minFunc's lswolfe): a step length t along d meeting the
    strong Wolfe conditions, from objective f, gradient g and slope gtd at t = 0;
    obj_func(t) gives the objective and gradient at t. Returns (f, g, t, evaluations)."""
    d_norm = np.abs(d).max()
    f_new, g_new = obj_func(t)
    ls_func_evals = 1
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:  # bracket an interval holding a point that meets the conditions
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                              bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new, gtd_new
        f_new, g_new = obj_func(t)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:  # zoom in on the bracket
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                              bracket[1], bracket_f[1], bracket_gtd[1])
        # Too close to an end of the bracket twice running, or outside it: 0.1 of the
        # bracket's length in from the nearer end.
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(t)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # Armijo condition not met, or not lower than the lowest point: the new high
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new, gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:  # the Wolfe conditions are met
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # the old high becomes the new low
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new, gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals
