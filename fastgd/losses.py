"""The losses: one object each, the one place that says what a loss is.

A loss is a per-row function l(z, y) of a linear model's k raw outputs z = x W^T + b (one per
target, or per class of a softmax) against the row's targets y. Each loss is a subclass of
`Loss`, registered in `LOSSES` by name, whose class attributes and methods say everything the
rest of fastgd asks of it:

- `name`; `code`, its LossKind in fastgd/_losses.pxd, where its C formulas (value, first and
  second derivative in z) live; `params`, its parameters and their defaults (Huber's
  `delta`); `summary`, one line for the documentation;
- `value_and_gradient` and `hessian`, the same formulas in NumPy (fastgd.reference runs them),
  and `hessian_blocks`, each row's whole Hessian in z (the Newton solver's); `quadratic`,
  whether the loss is a quadratic in z (one Newton step is then exact); `shift_invariant`,
  whether it is the same when every output moves alike (the softmax: its intercepts are
  defined up to a common shift, and Newton keeps their sum where it was);
- `check_targets`, the targets it accepts; `targets_per_row` and `min_outputs`, its shapes;
- `target_sums`, `best_constant` and `constant_loss`: the best prediction that ignores X,
  the scale of `tol`, and where a fit starts if `starts_at_constant`;
- `curvature`: a bound on its second derivative relative to the squared loss's 2 (the
  automatic step size), or None where there is none;
- `inverse_link` (and `log_proba`, `proba` for the classification losses that have
  `probabilities`): from raw outputs to predictions;
- for a loss with a kink (`Kinked`: the pinball and hinge losses), `smoothed` forms,
  `kink` and `kink_subgradients`, what Newton's continuation and its last steps ask
  (fastgd/solvers/smoothing.py).

An instance is a loss with its parameters (``get("huber", delta=0.5)``); the engines, the
kernels (`code`, `param`), the estimators, the command line and the documentation all ask
it. A loss is never negative (as scikit-learn's half deviances): tol and the divergence
check compare losses by ratio. Adding a loss means a class here and its formulas in
fastgd/_losses.pxd (docs/architecture.md walks one through).
"""

from __future__ import annotations

import copy
import statistics
from typing import ClassVar

import numpy as np

from fastgd._design import assemble
from fastgd._validation import check_choice, check_number

ROWS_PER_BLOCK = 1 << 15  # of Y per NumPy block when summing over rows (bounded temporaries)


class Loss:
    """A per-row loss of k raw outputs z against a row's targets; see the module docstring.

    Z is (n, k) raw outputs, Y (n, targets_per_row(k)) targets, both float64.
    """

    name: ClassVar[str]
    code: ClassVar[int]                      # LossKind in fastgd/_losses.pxd
    params: ClassVar[dict[str, float]] = {}  # parameter name: default
    params_doc: ClassVar[dict[str, str]] = {}  # parameter name: what it is, for docstrings
    zero_allowed: ClassVar[tuple] = ()       # the parameters that may be 0 (else > 0)
    summary: ClassVar[str]
    task: ClassVar[str]                      # "regression" or "classification"
    curvature: ClassVar[float | None]        # sup l'' / 2 (the squared loss's is 2)
    quadratic: ClassVar[bool] = False        # a quadratic in z: its Newton step is exact
    shift_invariant: ClassVar[bool] = False  # the same loss when every output moves alike
    min_outputs: ClassVar[int] = 1
    class_indices: ClassVar[bool] = False    # targets: one class index a row, k >= 2 logits
    multiclass: ClassVar[str | None] = None  # classification: the loss of > 2 classes
    # inverse_link by name, for a graph that predicts without fastgd (fastgd/onnx.py):
    # "identity", "exp", "logistic" (the softmax of (0, z)) or "softmax"
    link: ClassVar[str] = "identity"
    # a classification loss's class probabilities (log_proba, proba); the margin losses
    # but modified Huber have none
    probabilities: ClassVar[bool] = False
    # score: D^2, the share of the deviance the model explains (scikit-learn's GLMs' score),
    # rather than R^2
    deviance_score: ClassVar[bool] = False
    # a fit starts at the best constant (coefficients 0, the intercept best_constant), not
    # at 0: where a raw output of 0 says nothing of the targets' scale (the log link's
    # e^0 = 1, be the targets counts near 1e-3 or costs near 1e9)
    starts_at_constant: ClassVar[bool] = False
    # differentiable in z everywhere; a loss with a kink (the pinball loss) is not, and the
    # Newton solver fits it through `smoothed` losses (fastgd/solvers/smoothing.py)
    smooth: ClassVar[bool] = True
    smoothing: float = 0.0  # a smoothed instance's width (the kernels' Loss.smoothing)
    # a loss linear on both sides of its kink whose unpenalized optimum is a vertex of a
    # linear program (the pinball loss's: quantile regression): the smoothing's crossover
    linear_program: ClassVar[bool] = False

    def __init__(self, **params):
        unknown = set(params) - set(self.params)
        if unknown:
            raise TypeError(f"the {self.name} loss takes no parameter {sorted(unknown)[0]!r}")
        for key, default in self.params.items():
            setattr(self, key, float(check_number(key, params.get(key, default),
                                                  allow_zero=key in self.zero_allowed)))

    @property
    def param(self) -> float:
        """The parameter the kernels read (fastgd/_losses.pxd: Loss.param); 0 if none. The
        kernels take one: a loss of two parameters adds a field to the C struct."""
        return float(getattr(self, next(iter(self.params)))) if self.params else 0.0

    def __eq__(self, other):
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self):
        return hash((self.name, *vars(self).values()))

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({args})"

    def smoothed(self, width: float) -> Loss:
        """This loss with its kink smoothed over a band of `width` (a non-smooth loss's;
        width 0: the loss itself), a loss at most a small multiple of width below it."""
        raise TypeError(f"the {self.name} loss is smooth: it has no smoothed form")

    def with_offset(self, Y, sample_weight, offset) -> tuple:
        """(Y', weights') of the problem whose loss at z is this problem's at z + offset,
        row by row (Y (n, k), weights or None, offset (n, k)), without a pass over X: for a
        loss of the residual y - z (the identity link), Y - offset; the log-link losses
        rescale instead (LogLink). A ValueError for a loss that has no such form."""
        if self.link != "identity":
            raise ValueError(f"offset is for the regression losses; the {self.name} loss "
                             f"takes none")
        return Y - offset, sample_weight

    def targets_per_row(self, k: int) -> int:
        return 1 if self.class_indices else k

    # The formulas, in NumPy: fastgd.reference's, the definition of correct.

    def value_and_gradient(self, Z, Y):
        """(each row's loss (n,), its derivative in Z (n, k))."""
        raise NotImplementedError

    def row_values(self, Z, Y):
        """Each row's loss (n,) alone: value_and_gradient's first part, with the same bits."""
        return self.value_and_gradient(Z, Y)[0]

    def hessian(self, Z, Y):
        """The second derivative in each z (n, k): the diagonal of each row's Hessian."""
        raise NotImplementedError

    def hessian_pairs(self, k: int) -> list:
        """The pairs of outputs a <= b where a row's Hessian in z (k, k) may not be zero, in
        the order of hessian_blocks (and of the compiled Hessian pass). By default the
        diagonal: the outputs are independent."""
        return [(a, a) for a in range(k)]

    def hessian_blocks(self, Z, Y) -> list:
        """Each row's Hessian in z, as [(a, b, h_ab (n,))] for the hessian_pairs."""
        H = self.hessian(Z, Y)
        return [(a, a, H[:, a]) for a in range(H.shape[1])]

    def check_targets(self, Y, k: int) -> None:
        """A ValueError naming y if Y (n, targets_per_row(k)) is outside the loss's domain."""

    def inverse_link(self, Z):
        """Predictions (n, k) from raw outputs."""
        return Z

    def proba(self, Z):
        """A classification loss's class probabilities (n, classes) from raw outputs."""
        return np.exp(self.log_proba(Z))

    # The best constant prediction, which ignores X: the scale of tol.

    def target_sums(self, Y, sample_weight, k: int):
        """(the weight of the rows, what best_constant needs of Y): sums that add over
        shards of the rows. By default the weighted sum of each target."""
        return weight_of(Y, sample_weight), weighted_row_sum(Y, sample_weight, lambda b: b)

    def best_constant(self, total, sums):
        """The best constant raw output (k,) from target_sums. By default the weighted mean
        target (exact for the squared loss; Huber's is then close to its best)."""
        with np.errstate(all="ignore"):
            return sums / total

    def constant_loss(self, total, sums, loss_sum_at) -> float:
        """The mean loss of the best constant prediction; loss_sum_at(z) is the weighted sum
        over rows of the loss at the constant z."""
        return float(loss_sum_at(self.best_constant(total, sums)) / total)

    def best_constant_and_loss(self, total, sums, k: int, loss_sum_at) -> tuple:
        """(best_constant as k raw outputs, constant_loss): what the engines report."""
        z = np.broadcast_to(self.best_constant(total, sums), (k,)).astype(np.float64)
        return z, self.constant_loss(total, sums, loss_sum_at)


class Elementwise(Loss):
    """A loss that is the sum over the row's k outputs of one loss per output."""

    def value(self, z, y):
        raise NotImplementedError

    def derivative(self, z, y):
        raise NotImplementedError

    def second_derivative(self, z, y):
        raise NotImplementedError

    def value_and_gradient(self, Z, Y):
        return self.row_values(Z, Y), self.derivative(Z, Y)

    def row_values(self, Z, Y):
        return self.value(Z, Y).sum(axis=1)

    def hessian(self, Z, Y):
        return np.broadcast_to(self.second_derivative(Z, Y), np.shape(Z)).astype(np.float64)


class Squared(Elementwise):
    name, code, task, curvature = "squared", 0, "regression", 1.0
    quadratic = True
    summary = "(z - y)^2, the mean squared error (torch's MSELoss): l' = 2 (z - y), l'' = 2."

    def value(self, z, y):
        return (z - y) ** 2

    def derivative(self, z, y):
        return 2.0 * (z - y)

    def second_derivative(self, z, y):
        return np.full(np.broadcast(z, y).shape, 2.0)

    def from_moments(self, moments, theta, std, k: int) -> tuple:
        """(mean loss, gradient (p,), Hessian (p, p)) at trained parameters theta (as
        Engine.hessian lays them out), from the moments of [X, Y] alone (fastgd/_moments.py)
        rather than a pass: with u the features in trained units, e_a = E[z_a - y_a] and
        the (co)variances Cov, the mean loss is the sum over outputs of
        Var(z_a - y_a) + e_a^2 = w_a^T Cov(u) w_a - 2 w_a^T Cov(u, y_a) + Var(y_a) + e_a^2
        (no cancellation of offsets), and the Hessian 2 E[a a^T], a = (u, 1). Values too
        large for float64 give inf or NaN, which the solver reports."""
        d = moments.n_features
        W, b = theta[:k * d].reshape(k, d), theta[k * d:]
        with np.errstate(over="ignore", invalid="ignore"):
            C = moments.covariance()
            inverse = 1.0 / std.divisor if std else np.ones(d)
            shift = moments.mean[:d] - std.mean if std else moments.mean[:d]
            mean_u = shift * inverse                      # E[u] (0 when standardized)
            cov_u = C[:d, :d] * inverse[:, None] * inverse
            cov_uy = C[:d, d:] * inverse[:, None]         # (d, k)
            e = W @ mean_u + b - moments.mean[d:]
            cov_w = W @ cov_u                             # (k, d)
            loss = float(np.einsum("ad,ad->", cov_w, W) - 2 * np.einsum("da,ad->", cov_uy, W)
                         + np.trace(C[d:, d:]) + e @ e)
            grad_W = 2 * (cov_w - cov_uy.T) + 2 * e[:, None] * mean_u
            gram = np.empty((d + 1, d + 1))
            gram[:d, :d] = cov_u + np.outer(mean_u, mean_u)
            gram[:d, d] = gram[d, :d] = mean_u
            gram[d, d] = 1.0
            return (loss, np.append(grad_W.ravel(), 2 * e),
                    assemble({(a, a): 2 * gram for a in range(k)}, k, d, 1.0))

    def constant_from_moments(self, moments) -> float:
        """The best constant's mean loss (each target's mean): the targets' variances."""
        d = moments.n_features
        return float(np.trace(moments.comoment[d:, d:]) / moments.weight)


class Huber(Elementwise):
    name, code, task, curvature = "huber", 1, "regression", 0.5
    params = {"delta": 1.0}
    params_doc = {"delta": "For loss=\"huber\": the threshold between its quadratic and "
                           "linear parts, in the units of y (scikit-learn's SGDRegressor "
                           "calls it epsilon; here ``epsilon`` is the optimizers' constant, "
                           "as in torch)."}
    summary = ("with r = z - y, r^2 / 2 where |r| <= delta, else delta (|r| - delta / 2) "
               "(torch's HuberLoss): l' = r clipped to [-delta, delta], l'' = [|r| <= delta].")

    def value(self, z, y):
        r = np.abs(z - y)
        return np.where(r <= self.delta, 0.5 * r * r, self.delta * (r - 0.5 * self.delta))

    def derivative(self, z, y):
        return np.clip(z - y, -self.delta, self.delta)

    def second_derivative(self, z, y):
        return (np.abs(z - y) <= self.delta).astype(np.float64)


class LogLink(Elementwise):
    """A loss of z, the log of a mean mu = e^z, against y: scikit-learn's half deviances of
    the log-link generalized linear models (sklearn/_loss/loss.py), each 0 at mu = y. Their
    curvature grows with e^z: no bound (learning_rate="auto" needs one for SGD)."""

    task, curvature, link, deviance_score = "regression", None, "exp", True
    starts_at_constant = True
    # the targets it takes: (lowest, whether the lowest itself is allowed)
    domain: ClassVar[tuple] = (0.0, True)

    def inverse_link(self, Z):
        return np.exp(Z)

    def best_constant(self, total, sums):  # the log of the mean target (the MLE's mu)
        with np.errstate(all="ignore"):
            return np.log(np.maximum(sums / total, np.finfo(np.float64).tiny))

    def check_targets(self, Y, k):
        low, inclusive = self.domain
        lowest = float(Y.min()) if len(Y) else np.inf
        if lowest < low or (lowest == low and not inclusive):
            raise ValueError(f"y must hold values {'>=' if inclusive else '>'} {low:g} for "
                             f"loss='{self.name}'{self._power_words()}, got {lowest:g}")

    def _power_words(self) -> str:
        return ""

    def with_offset(self, Y, sample_weight, offset):
        """A Tweedie deviance of power p scales: l(z + o, y) = e^((2-p) o) l(z, y e^-o)
        (the unit deviance is homogeneous of degree 2 - p), so the fit with an offset
        (log exposure) is the fit of y e^-o with weights w e^((2-p) o): Poisson counts per
        unit of exposure, weighted by the exposure, as glum and scikit-learn's user guide
        fit them. Its mean loss is then per unit of that weight."""
        if offset.shape[1] != 1:
            raise ValueError(f"offset for the {self.name} loss is one column (n,), the "
                             f"outputs' weights being shared")
        growth = np.exp((2.0 - self.power) * offset[:, 0])
        return Y * np.exp(-offset), growth if sample_weight is None else sample_weight * growth

    def terms(self, z, y):
        """(value, derivative, second derivative) in z, elementwise."""
        raise NotImplementedError

    def value(self, z, y):
        return self.terms(z, y)[0]

    def derivative(self, z, y):
        return self.terms(z, y)[1]

    def second_derivative(self, z, y):
        return self.terms(z, y)[2]


def _poisson(z, y):  # (value, derivative, second derivative)
    mu = np.exp(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        constant = np.where(y > 0, y * np.log(y) - y, 0.0)
    return mu - y * z + constant, mu - y, mu


def _gamma(z, y):
    ratio = y * np.exp(-z)
    with np.errstate(divide="ignore", invalid="ignore"):
        return z + ratio - np.log(y) - 1.0, 1.0 - ratio, ratio


class Poisson(LogLink):
    name, code, power = "poisson", 4, 1.0  # power: the Tweedie power it is
    summary = ("e^z - y z + y log y - y, the half Poisson deviance of counts y >= 0 with "
               "mu = e^z (scikit-learn's HalfPoissonLoss, torch's PoissonNLLLoss"
               "(log_input=True) but for its constant): l' = e^z - y, l'' = e^z.")

    def terms(self, z, y):
        return _poisson(z, y)


class Gamma(LogLink):
    name, code, power = "gamma", 5, 2.0
    domain = (0.0, False)
    summary = ("z + y e^-z - log y - 1, the half Gamma deviance of values y > 0 with "
               "mu = e^z (scikit-learn's HalfGammaLoss): l' = 1 - y e^-z, l'' = y e^-z.")

    def terms(self, z, y):
        return _gamma(z, y)


class Tweedie(LogLink):
    name, code = "tweedie", 6
    params, zero_allowed = {"power": 1.5}, ("power",)
    params_doc = {"power": "For loss=\"tweedie\": the power p of the Tweedie distribution "
                           "(its variance is mu^p): 0 (normal, with the log link), 1 "
                           "(Poisson), in (1, 2) (compound Poisson-Gamma: costs with "
                           "zeros), 2 (Gamma), 3 (inverse Gaussian); 0 or >= 1."}
    summary = ("e^((2-p) z) / (2-p) - y e^((1-p) z) / (1-p) + y^(2-p) / ((1-p)(2-p)), the "
               "half Tweedie deviance of power p with mu = e^z (scikit-learn's "
               "HalfTweedieLoss; p = 1 and 2 are the Poisson and Gamma losses), for y >= 0 "
               "(p < 2) or y > 0 (p >= 2): l' = e^((2-p) z) - y e^((1-p) z).")

    def __init__(self, **params):
        super().__init__(**params)
        if not (self.power == 0.0 or self.power >= 1.0):
            raise ValueError(f"power must be 0 or >= 1 (no Tweedie distribution has a power "
                             f"in (0, 1)), got {self.power:g}")

    @property
    def domain(self):
        return ((-np.inf, True) if self.power == 0 else
                (0.0, True) if self.power < 2 else (0.0, False))

    def _power_words(self) -> str:
        return f" with power={self.power:g}"

    def terms(self, z, y):
        p = self.power
        if p == 1.0:
            return _poisson(z, y)
        if p == 2.0:
            return _gamma(z, y)
        a, b = np.exp((2.0 - p) * z), y * np.exp((1.0 - p) * z)
        with np.errstate(divide="ignore", invalid="ignore"):
            constant = (0.5 * y * y if p == 0 else np.where(
                y > 0, np.power(np.where(y > 0, y, 1.0), 2.0 - p) / ((1.0 - p) * (2.0 - p)),
                0.0))
        return (a / (2.0 - p) - b / (1.0 - p) + constant, a - b,
                (2.0 - p) * a - (1.0 - p) * b)


class Kinked(Elementwise):
    """A loss with a kink (Loss.smooth), linear on both sides of it: Newton fits it through
    its smoothed forms, the same loss with a `smoothing` width (its formulas read it; 0:
    the loss itself), then the optimum from the rows at the kink (solvers/smoothing.py)."""

    def kink(self, y):
        """The raw output z at which a row of targets y has its kink."""
        raise NotImplementedError

    def kink_subgradients(self, y):
        """(low, high): the subdifferential in z at the kink of rows of targets y, arrays
        or numbers that broadcast against y."""
        raise NotImplementedError

    @property
    def smooth(self):  # its smoothed forms are
        return self.smoothing > 0

    def smoothed(self, width):
        loss = copy.copy(self)
        loss.smoothing = float(width)
        return loss


class Quantile(Kinked):
    """The pinball loss of the residual r = y - z: q r above the prediction, (q - 1) r
    below, minimized by the q-quantile of y given x (scikit-learn's PinballLoss, the loss
    of QuantileRegressor). It has a kink at r = 0: no Hessian (0 a.e.) and a subgradient
    there (scikit-learn's: -q at r = 0). Its smoothed form of width h (Newton's) is
    quadratic, r^2 / (2 h), on the band -(1 - q) h <= r <= q h and the pinball loss less a
    constant outside it: continuously differentiable, at most max(q, 1 - q)^2 h / 2 below
    the pinball loss, with the same derivative outside the band."""

    name, code, task, curvature = "quantile", 7, "regression", None
    params = {"quantile": 0.5}
    params_doc = {"quantile": "For loss=\"quantile\": the quantile q in (0, 1) that the "
                              "model predicts (0.5: the median)."}
    summary = ("with r = y - z, q r where r >= 0, else (q - 1) r: the pinball loss of the "
               "q-quantile (scikit-learn's PinballLoss, QuantileRegressor's): l' = -q "
               "where r >= 0, else 1 - q; no l'' (its kink is smoothed for Newton).")

    def __init__(self, **params):
        super().__init__(**params)
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile:g}")

    linear_program = True

    def kink(self, y):  # at residual 0
        return y

    def kink_subgradients(self, y):
        return -self.quantile, 1.0 - self.quantile

    def target_sums(self, Y, sample_weight, k):  # the weighted sums of y, then of y^2
        return weight_of(Y, sample_weight), weighted_row_sum(
            Y, sample_weight, lambda b: np.hstack([b, b * b]))

    def best_constant(self, total, sums):
        """The q-quantile of a normal distribution of the targets' mean and variance: a
        quantile of y is not a sum over rows (tol's scale needs only be near the best)."""
        with np.errstate(all="ignore"):
            k = len(sums) // 2
            mean = sums[:k] / total
            spread = np.sqrt(np.maximum(sums[k:] / total - mean * mean, 0.0))
            return mean + spread * statistics.NormalDist().inv_cdf(self.quantile)

    def _band(self, z, y):
        """(r = y - z, the band's lower and upper edges in r)."""
        h = self.smoothing
        return y - z, -(1.0 - self.quantile) * h, self.quantile * h

    def value(self, z, y):
        q, h = self.quantile, self.smoothing
        r, low, high = self._band(z, y)
        pinball = np.where(r >= 0, q * r, (q - 1.0) * r)
        if h == 0:
            return pinball
        return np.where(r > high, q * r - 0.5 * q * high,
                        np.where(r < low, (q - 1.0) * r + 0.5 * (1.0 - q) * low,
                                 0.5 * r * r / h))

    def derivative(self, z, y):
        q, h = self.quantile, self.smoothing
        r, low, high = self._band(z, y)
        if h == 0:
            return np.where(r >= 0, -q, 1.0 - q)
        return np.where(r > high, -q, np.where(r < low, 1.0 - q, -r / h))

    def second_derivative(self, z, y):
        """0 for the pinball loss (its second derivative, where it has one). For a smoothed
        form, the curvature its Newton steps take: its second derivative 1 / h on the
        band; off it, where the form is linear (0), min(1 / h, 1 / (2 |r|)), the curvature
        of the quadratic that majorizes |r| / 2 at r (iteratively reweighted least
        squares', Hunter and Lange's majorize-minimize step for quantile regression). A
        Newton step on the band's rows alone would be singular wherever the band holds
        fewer rows than parameters (near the end); this curvature is positive everywhere,
        so every step descends, and exact on the band, where small widths decide."""
        return kink_curvature(*self._band(z, y), self.smoothing)


def kink_curvature(r, low, high, h):
    """The Newton curvature of a loss linear on both sides of a kink at r = 0, smoothed to
    a quadratic of curvature 1 / h on the band low <= r <= high (width h; 0: none, no
    curvature): 1 / h on the band, min(1 / h, 1 / (2 |r|)) off it (Quantile's, Hinge's)."""
    if h == 0:
        return np.zeros(np.shape(r))
    with np.errstate(divide="ignore"):
        return np.where(((low <= r) & (r <= high)) | (2.0 * np.abs(r) <= h),
                        1.0 / h, 0.5 / np.abs(r))


class Log(Elementwise):
    name, code, task, curvature = "log", 2, "classification", 0.125
    multiclass, link, probabilities = "multinomial", "logistic", True
    summary = ("log(1 + e^z) - y z for a logit z and y in [0, 1] (torch's "
               "BCEWithLogitsLoss): l' = sigmoid(z) - y, l'' = sigmoid(z) (1 - sigmoid(z)); "
               "computed without overflow.")

    def value(self, z, y):
        return np.logaddexp(0.0, z) - y * z

    def derivative(self, z, y):  # sigmoid(z) - y, without overflow
        return np.exp(-np.logaddexp(0.0, -z)) - y

    def second_derivative(self, z, y):
        return np.exp(-np.logaddexp(0.0, -z) - np.logaddexp(0.0, z))

    def check_targets(self, Y, k):
        low, high = (float(Y.min()), float(Y.max())) if len(Y) else (0.0, 0.0)
        if not (0.0 <= low and high <= 1.0):
            raise ValueError(f"y must hold targets in [0, 1] for loss='log', got values from "
                             f"{low:g} to {high:g}")

    def best_constant(self, total, sums):  # the logit of each label's frequency
        with np.errstate(all="ignore"):
            p = np.clip(sums / total, 1e-300, 1 - 1e-16)
            return np.log(p) - np.log1p(-p)

    def inverse_link(self, Z):
        return np.exp(self.log_proba(Z)[:, 1:])

    def log_proba(self, Z):
        """Log-probabilities (n, 2) of the classes 0 and 1, the log-softmax of (0, z): no
        overflow at any logit."""
        return log_softmax(np.hstack([np.zeros_like(Z), Z]))


class Multinomial(Loss):
    name, code, task, curvature = "multinomial", 3, "classification", 0.25
    min_outputs, class_indices, shift_invariant, link = 2, True, True, "softmax"
    probabilities = True
    summary = ("log(sum_o e^z_o) - z_y for k >= 2 logits and y the class index 0..k-1 "
               "(torch's CrossEntropyLoss): l' = softmax(z) - onehot(y), Hessian "
               "diag(p) - p p^T; computed with the largest logit subtracted.")

    def value_and_gradient(self, Z, Y):
        rows, c = np.arange(len(Z)), Y[:, 0].astype(np.intp)
        shifted = Z - Z.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1)
        derivative = exp / total[:, None]
        derivative[rows, c] -= 1.0
        return np.log(total) - shifted[rows, c], derivative

    def hessian(self, Z, Y):  # the diagonal p (1 - p); the whole is diag(p) - p p^T
        p = self.probabilities(Z)
        return p * (1.0 - p)

    def hessian_pairs(self, k):  # the softmax couples its outputs: every pair
        return [(a, b) for a in range(k) for b in range(a, k)]

    def hessian_blocks(self, Z, Y):  # diag(p) - p p^T: p_a (1 - p_a), and -p_a p_b off it
        p = self.probabilities(Z)
        return [(a, b, p[:, a] * ((a == b) - p[:, b]))
                for a, b in self.hessian_pairs(p.shape[1])]

    @staticmethod
    def probabilities(Z):
        exp = np.exp(Z - Z.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def check_targets(self, Y, k):
        if not (np.all(Y >= 0) and np.all(Y < k) and np.array_equal(Y, np.floor(Y))):
            raise ValueError(f"y must hold class indices 0 to {k - 1} for loss='multinomial'")

    def target_sums(self, Y, sample_weight, k):  # the weight of each class
        return weight_of(Y, sample_weight), sum(
            np.bincount(Y[rows, 0].astype(np.intp), weights=w, minlength=k)
            for rows, w in row_blocks(Y, sample_weight))

    def best_constant(self, total, sums):  # the log of each class's frequency
        with np.errstate(divide="ignore"):
            return np.log(sums / total)

    def constant_loss(self, total, sums, loss_sum_at):
        """The entropy of the class frequencies (no pass over Y)."""
        with np.errstate(all="ignore"):
            p = sums / total
            p = p[p > 0]
            return float(-(p * np.log(p)).sum())

    def inverse_link(self, Z):
        return np.exp(self.log_proba(Z))

    def log_proba(self, Z):
        return log_softmax(Z)


class Margin(Elementwise):
    """A loss of the margin m = t z of a label y in {0, 1} taken as t = 2 y - 1 (the -1 and
    +1 of scikit-learn's SGDClassifier, whose losses these are: sklearn/linear_model/
    _sgd_fast.pyx): one output for two classes, and for more one output a class against
    the rest (one-hot targets: the outputs are independent problems, as SGDClassifier's
    one-vs-rest fits). No probabilities, but for modified Huber's."""

    task, link = "classification", "margin"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.multiclass = cls.name  # one-vs-rest: the same loss on each class's output

    @staticmethod
    def sign(y):
        return 2.0 * y - 1.0

    def check_targets(self, Y, k):
        if not np.all((Y == 0) | (Y == 1)):
            raise ValueError(f"y must hold labels 0 or 1 for loss='{self.name}' (one "
                             f"column a class, 1 for the row's class)")

    def best_constant(self, total, sums):  # 2 p - 1, p each class's frequency
        with np.errstate(all="ignore"):
            return 2.0 * sums / total - 1.0


class Hinge(Kinked, Margin):
    """The hinge loss, max(0, 1 - m): a kink at the margin m = 1, smoothed for Newton as
    the pinball loss (Quantile) of q = 1 is: its smoothed form of width h is quadratic,
    r^2 / (2 h), on the band 0 <= r <= h of r = 1 - m, r - h / 2 above it and 0 below
    (continuously differentiable, at most h / 2 below the hinge)."""

    name, code, curvature = "hinge", 8, None
    summary = ("max(0, 1 - m) of the margin m = t z, t = 2 y - 1 (SGDClassifier's and "
               "LinearSVC's hinge; torch's MultiMarginLoss of the logits (0, z), times 2): "
               "l' = -t where m <= 1, else 0; no l'' (its kink is smoothed for Newton).")

    def best_constant(self, total, sums):
        """+1 or -1, the sign of the more frequent label (the hinge is linear between)."""
        return np.sign(super().best_constant(total, sums))

    def kink(self, y):  # at the margin m = t z = 1
        return self.sign(y)

    def kink_subgradients(self, y):  # -t times [0, 1]
        t = self.sign(y)
        return np.minimum(-t, 0.0), np.maximum(-t, 0.0)

    def value(self, z, y):
        r, h = 1.0 - self.sign(y) * z, self.smoothing
        if h == 0:
            return np.maximum(r, 0.0)
        return np.where(r > h, r - 0.5 * h, np.where(r < 0, 0.0, 0.5 * r * r / h))

    def derivative(self, z, y):
        t = self.sign(y)
        r, h = 1.0 - t * z, self.smoothing
        if h == 0:
            return np.where(r >= 0, -t, 0.0)
        return -t * np.clip(r / h, 0.0, 1.0)

    def second_derivative(self, z, y):
        """The Newton curvature of its smoothed form (Quantile.second_derivative's)."""
        r = 1.0 - self.sign(y) * z
        return kink_curvature(r, 0.0, self.smoothing, self.smoothing)


class SquaredHinge(Margin):
    name, code, curvature = "squared_hinge", 9, 1.0
    summary = ("max(0, 1 - m)^2 of the margin m = t z, t = 2 y - 1 (SGDClassifier's and "
               "LinearSVC's squared hinge; torch's MultiMarginLoss(p=2) of the logits "
               "(0, z), times 2): l' = -2 t max(0, 1 - m), l'' = 2 where m < 1.")

    def value(self, z, y):
        return np.maximum(1.0 - self.sign(y) * z, 0.0) ** 2

    def derivative(self, z, y):
        t = self.sign(y)
        return -2.0 * t * np.maximum(1.0 - t * z, 0.0)

    def second_derivative(self, z, y):
        return np.where(self.sign(y) * z < 1.0, 2.0, 0.0)


class ModifiedHuber(Margin):
    name, code, curvature = "modified_huber", 10, 1.0
    link, probabilities = "modified_huber", True
    summary = ("(1 - m)^2 for the margin m = t z, t = 2 y - 1, in [-1, 1], -4 m below "
               "and 0 above (SGDClassifier's modified Huber): l' = -2 t (1 - m), -4 t and "
               "0; l'' = 2 where -1 <= m < 1. Its probabilities are (clip(z, -1, 1) + 1) "
               "/ 2, normalized over the classes for more than two (SGDClassifier's).")

    def value(self, z, y):
        m = self.sign(y) * z
        return np.where(m >= 1.0, 0.0, np.where(m >= -1.0, (1.0 - m) ** 2, -4.0 * m))

    def derivative(self, z, y):
        t = self.sign(y)
        m = t * z
        return np.where(m >= 1.0, 0.0, np.where(m >= -1.0, -2.0 * t * (1.0 - m), -4.0 * t))

    def second_derivative(self, z, y):
        m = self.sign(y) * z
        return np.where((m >= -1.0) & (m < 1.0), 2.0, 0.0)

    def proba(self, Z):
        """(n, classes): SGDClassifier.predict_proba's for modified Huber: a class's
        (clip(z, -1, 1) + 1) / 2, then for more than two classes each row normalized (and
        uniform where every class's is 0)."""
        p = (np.clip(Z, -1.0, 1.0) + 1.0) / 2.0
        if Z.shape[1] == 1:
            return np.hstack([1.0 - p, p])
        total = p.sum(axis=1, keepdims=True)
        nothing = total[:, 0] == 0
        p[nothing], total[nothing] = 1.0, Z.shape[1]
        return p / total

    def log_proba(self, Z):
        with np.errstate(divide="ignore"):
            return np.log(self.proba(Z))


LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (
    Squared, Huber, Poisson, Gamma, Tweedie, Quantile, Log, Multinomial, Hinge, SquaredHinge,
    ModifiedHuber)}


def get(name, **settings) -> Loss:
    """The loss `name` with the parameters it has among `settings` (the others are not its
    own: an estimator passes all of its settings); a ValueError naming what is wrong."""
    cls = LOSSES[check_choice("loss", name, tuple(LOSSES))]
    return cls(**{key: settings[key] for key in cls.params if key in settings})


def for_classes(n_classes: int, name, **settings) -> Loss:
    """A classification loss for n_classes: `name` for two, its multiclass form for more."""
    if n_classes > 2:
        name = LOSSES[check_choice("loss", name, tuple(LOSSES))].multiclass
    return get(name, **settings)


def parameter_names() -> set:
    """The parameters of all the registry's losses (an estimator offering several losses
    takes them all as its own)."""
    return {key for cls in LOSSES.values() for key in cls.params}


def check_parameter(name: str, value) -> None:
    """A TypeError or ValueError unless `value` is a valid value of the losses' parameter
    `name` (a number > 0, or >= 0 for those that may be 0)."""
    check_number(name, value, allow_zero=any(name in cls.zero_allowed
                                             for cls in LOSSES.values()))


def names(task: str) -> tuple:
    """The losses an estimator of `task` offers (not the multiclass forms it switches to)."""
    return tuple(name for name, cls in LOSSES.items()
                 if cls.task == task and not cls.class_indices)


def log_softmax(Z):
    """log(softmax(Z)) over each row, with the largest entry subtracted (scipy.special's
    formula, for the same bits)."""
    top = np.amax(Z, axis=1, keepdims=True)
    top[~np.isfinite(top)] = 0
    shifted = Z - top
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


# Sums over the rows of Y, a block of rows at a time (bounded temporaries).

def weight_of(Y, sample_weight) -> float:
    return len(Y) if sample_weight is None else float(sample_weight.sum(dtype=np.float64))


def row_blocks(Y, sample_weight):
    """(rows, their weights as float64 or None), a block of rows at a time."""
    for lo in range(0, len(Y), ROWS_PER_BLOCK):
        rows = slice(lo, lo + ROWS_PER_BLOCK)
        yield rows, None if sample_weight is None else sample_weight[rows].astype(float)


def weighted_row_sum(Y, sample_weight, values_of):
    """The weighted sum over rows of values_of(a block of Y, as float64)."""
    result = 0.0
    with np.errstate(all="ignore"):
        for rows, w in row_blocks(Y, sample_weight):
            values = values_of(Y[rows].astype(np.float64))
            result = result + (values.sum(axis=0) if w is None else w @ values)
    return result


def constant_loss_sum(loss: Loss, Y, sample_weight, z):
    """The weighted sum over the rows of Y of the loss of the constant raw output z. Rows of
    one prediction, (1, k), broadcast against Y's: an elementwise loss's transcendental
    functions of z run once, not once a row (their bits are the same either way)."""
    return weighted_row_sum(Y, sample_weight,
                            lambda block: loss.row_values(np.reshape(z, (1, -1)), block))
