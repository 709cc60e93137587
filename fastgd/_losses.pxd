# Per-row losses in C: each loss's value, its derivative and its second derivative in the
# prediction z, as tiny inline nogil functions, so the hot loop never calls into Python.
# Each loss here is one entry of the registry in fastgd/losses.py, which holds everything
# else about it (its NumPy formulas, target domain, best constant, link) and whose `code`
# is the LossKind below. Adding a loss: docs/architecture.md.

from cython cimport floating
from libc.math cimport NAN, exp, fabs, log, log1p, pow

cdef enum LossKind:      # the `code` of each fastgd.losses class
    SQUARED = 0
    HUBER = 1
    LOG = 2
    MULTINOMIAL = 3
    POISSON = 4
    GAMMA = 5
    TWEEDIE = 6
    QUANTILE = 7
    HINGE = 8
    SQUARED_HINGE = 9
    MODIFIED_HUBER = 10

ctypedef struct Loss:
    LossKind kind
    double param      # the loss's parameter (fastgd.losses: Loss.param): Huber's delta,
                      # Tweedie's power, the quantile
    double smoothing  # a non-smooth loss's smoothing width (Loss.smoothing; 0: none)
    Py_ssize_t k      # predictions per row (outputs, or classes for the multinomial loss)
    Py_ssize_t ky     # targets per row: k, or 1 (the class index) for the multinomial loss


cdef inline Loss loss_of(object loss, Py_ssize_t k) except *:
    """The kernels' view of a fastgd.losses.Loss for a model of k outputs."""
    cdef Loss spec
    spec.kind = <LossKind><int>loss.code
    spec.param = loss.param
    spec.smoothing = loss.smoothing
    spec.k = k
    spec.ky = loss.targets_per_row(k)
    if k < loss.min_outputs:  # (one output has loops for elementwise losses only)
        raise ValueError(f"the {loss.name} loss needs {loss.min_outputs} outputs or more, "
                         f"got {k}")
    # Only the multinomial's code reads one class index a row; any other reads k targets
    # (what the buffers and the class-index check are sized by must agree with the code).
    if bool(loss.class_indices) != (spec.kind == MULTINOMIAL) or spec.ky != (
            1 if spec.kind == MULTINOMIAL else k):
        raise ValueError(f"the {loss.name} loss's targets per row disagree with its kernel "
                         f"code {loss.code}")
    return spec


# squared error (torch's MSELoss): (z - y)^2, d/dz = 2 (z - y), d2/dz2 = 2
cdef inline double squared_loss(double z, double y) noexcept nogil:
    return (z - y) * (z - y)

cdef inline double squared_dloss(double z, double y) noexcept nogil:
    return 2.0 * (z - y)

cdef inline double squared_d2loss(double z, double y) noexcept nogil:
    return 2.0


# Huber (torch's HuberLoss): r = z - y; r^2 / 2 where |r| <= delta, else
# delta (|r| - delta / 2); d/dz = r clipped to [-delta, delta]; d2/dz2 = [|r| <= delta]
cdef inline double huber_loss(double z, double y, double delta) noexcept nogil:
    cdef double r = fabs(z - y)
    return 0.5 * r * r if r <= delta else delta * (r - 0.5 * delta)

cdef inline double huber_dloss(double z, double y, double delta) noexcept nogil:
    cdef double r = z - y
    return delta if r > delta else (-delta if r < -delta else r)

cdef inline double huber_d2loss(double z, double y, double delta) noexcept nogil:
    return 1.0 if fabs(z - y) <= delta else 0.0


# log loss of a logit z against a target y in [0, 1] (torch's BCEWithLogitsLoss):
# log(1 + e^z) - y z, written max(z, 0) - y z + log1p(e^-|z|) so that no exp overflows;
# d/dz = sigmoid(z) - y, from the same exp of a non-positive number (one exp a row, not two);
# d2/dz2 = sigmoid(z) (1 - sigmoid(z)) = e^-|z| / (1 + e^-|z|)^2
cdef inline double log_loss(double z, double y, double* dz) noexcept nogil:
    cdef double e = exp(-fabs(z))
    dz[0] = (1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)) - y
    return (z if z > 0.0 else 0.0) - y * z + log1p(e)

cdef inline double log_d2loss(double z, double y) noexcept nogil:
    cdef double e = exp(-fabs(z))
    return e / ((1.0 + e) * (1.0 + e))


# The log-link losses, scikit-learn's half deviances (sklearn/_loss/loss.py): z is the log
# of the mean mu = e^z; each is 0 at mu = y, so that it is never negative.

# half Poisson deviance (HalfPoissonLoss): e^z - y z + y log y - y (y >= 0);
# d/dz = e^z - y; d2/dz2 = e^z
cdef inline double poisson_loss(double z, double y, double* dz) noexcept nogil:
    cdef double mu = exp(z)
    dz[0] = mu - y
    return mu - y * z + (y * log(y) - y if y > 0.0 else 0.0)

cdef inline double poisson_d2loss(double z, double y) noexcept nogil:
    return exp(z)


# half Gamma deviance (HalfGammaLoss): z + y e^-z - log y - 1 (y > 0);
# d/dz = 1 - y e^-z; d2/dz2 = y e^-z
cdef inline double gamma_loss(double z, double y, double* dz) noexcept nogil:
    cdef double ratio = y * exp(-z)
    dz[0] = 1.0 - ratio
    return z + ratio - log(y) - 1.0

cdef inline double gamma_d2loss(double z, double y) noexcept nogil:
    return y * exp(-z)


# half Tweedie deviance of power p (HalfTweedieLoss; p = 1 and 2 are Poisson and Gamma):
# e^((2-p) z) / (2-p) - y e^((1-p) z) / (1-p) + y^(2-p) / ((1-p)(2-p));
# d/dz = e^((2-p) z) - y e^((1-p) z); d2/dz2 = (2-p) e^((2-p) z) - (1-p) y e^((1-p) z)
cdef inline double tweedie_loss(double z, double y, double p, double* dz) noexcept nogil:
    if p == 1.0:
        return poisson_loss(z, y, dz)
    if p == 2.0:
        return gamma_loss(z, y, dz)
    cdef double a = exp((2.0 - p) * z), b = y * exp((1.0 - p) * z)
    dz[0] = a - b
    return a / (2.0 - p) - b / (1.0 - p) + tweedie_constant(y, p)

cdef inline double tweedie_constant(double y, double p) noexcept nogil:
    """y^(2-p) / ((1-p)(2-p)), which makes the loss 0 at mu = y (0 at y = 0, p in (1, 2))."""
    if p == 0.0:
        return 0.5 * y * y
    return pow(y, 2.0 - p) / ((1.0 - p) * (2.0 - p)) if y > 0.0 else 0.0

cdef inline double tweedie_d2loss(double z, double y, double p) noexcept nogil:
    if p == 1.0:
        return poisson_d2loss(z, y)
    if p == 2.0:
        return gamma_d2loss(z, y)
    return (2.0 - p) * exp((2.0 - p) * z) - (1.0 - p) * y * exp((1.0 - p) * z)


# pinball loss of the q-quantile (scikit-learn's PinballLoss), r = y - z: q r where r >= 0,
# else (q - 1) r; d/dz = -q where r >= 0, else 1 - q; no second derivative (0). Smoothed
# with width h > 0 (fastgd.losses.Quantile.smoothed): r^2 / (2 h) on the band
# -(1 - q) h <= r <= q h, d/dz = -r / h there; outside it the pinball loss less q high / 2
# (above) or plus (1 - q) low / 2 (below), with its derivative. Its curvature for Newton:
# 1 / h on the band, min(1 / h, 1 / (2 |r|)) off it, iteratively reweighted least squares'
# weight where the loss is linear (Quantile.second_derivative).
cdef inline double quantile_loss(double z, double y, double q, double h,
                                 double* dz) noexcept nogil:
    cdef double r = y - z, low = -(1.0 - q) * h, high = q * h
    if h == 0.0:
        dz[0] = -q if r >= 0.0 else 1.0 - q
        return q * r if r >= 0.0 else (q - 1.0) * r
    if r > high:
        dz[0] = -q
        return q * r - 0.5 * q * high
    if r < low:
        dz[0] = 1.0 - q
        return (q - 1.0) * r + 0.5 * (1.0 - q) * low
    dz[0] = -r / h
    return 0.5 * r * r / h

cdef inline double quantile_d2loss(double z, double y, double q, double h) noexcept nogil:
    return kink_curvature(y - z, -(1.0 - q) * h, q * h, h)

cdef inline double kink_curvature(double r, double low, double high,
                                  double h) noexcept nogil:
    """The Newton curvature of a kink at r = 0 smoothed on the band low <= r <= high of
    width h (0: no smoothing, no curvature): fastgd.losses.kink_curvature."""
    if h == 0.0:
        return 0.0
    if low <= r <= high or 2.0 * fabs(r) <= h:
        return 1.0 / h
    return 0.5 / fabs(r)


# The margin losses (scikit-learn's SGDClassifier's, sklearn/linear_model/_sgd_fast.pyx) of
# a label y in {0, 1} as t = 2 y - 1 and the margin m = t z.

# hinge: max(0, 1 - m); d/dz = -t where m <= 1 (scikit-learn's), else 0; no second
# derivative. Smoothed with width h > 0 as the pinball loss of q = 1 in r = 1 - m:
# r^2 / (2 h) on 0 <= r <= h, r - h / 2 above, 0 below; its Newton curvature the
# quantile loss's (kink_curvature).
cdef inline double hinge_loss(double z, double y, double h, double* dz) noexcept nogil:
    cdef double t = 2.0 * y - 1.0
    cdef double r = 1.0 - t * z
    if h == 0.0:
        dz[0] = -t if r >= 0.0 else 0.0
        return r if r > 0.0 else 0.0
    if r > h:
        dz[0] = -t
        return r - 0.5 * h
    if r < 0.0:
        dz[0] = 0.0
        return 0.0
    dz[0] = -t * r / h
    return 0.5 * r * r / h

cdef inline double hinge_d2loss(double z, double y, double h) noexcept nogil:
    return kink_curvature(1.0 - (2.0 * y - 1.0) * z, 0.0, h, h)

# squared hinge: max(0, 1 - m)^2; d/dz = -2 t max(0, 1 - m); d2/dz2 = 2 where m < 1
cdef inline double squared_hinge_loss(double z, double y, double* dz) noexcept nogil:
    cdef double t = 2.0 * y - 1.0
    cdef double r = 1.0 - t * z
    if r > 0.0:
        dz[0] = -2.0 * t * r
        return r * r
    dz[0] = 0.0
    return 0.0

cdef inline double squared_hinge_d2loss(double z, double y) noexcept nogil:
    return 2.0 if (2.0 * y - 1.0) * z < 1.0 else 0.0

# modified Huber: (1 - m)^2 for -1 <= m < 1, -4 m below, 0 above; d/dz = -2 t (1 - m),
# -4 t and 0; d2/dz2 = 2 where -1 <= m < 1
cdef inline double modified_huber_loss(double z, double y, double* dz) noexcept nogil:
    cdef double t = 2.0 * y - 1.0
    cdef double m = t * z
    if m >= 1.0:
        dz[0] = 0.0
        return 0.0
    if m >= -1.0:
        dz[0] = -2.0 * t * (1.0 - m)
        return (1.0 - m) * (1.0 - m)
    dz[0] = -4.0 * t
    return -4.0 * m

cdef inline double modified_huber_d2loss(double z, double y) noexcept nogil:
    cdef double m = (2.0 * y - 1.0) * z
    return 2.0 if -1.0 <= m < 1.0 else 0.0


# multinomial log loss (torch's CrossEntropyLoss) of k logits z against the class c:
# log(sum_o e^z_o) - z_c, computed with the largest logit subtracted so that no exp
# overflows; d/dz_o = softmax(z)_o - [o == c]. z becomes the derivative. Its Hessian in z is
# diag(p) - p p^T (p = softmax(z)), whose diagonal is p_o (1 - p_o).
cdef inline double softmax_loss(double* z, Py_ssize_t k, Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t o
    cdef double zc = z[c], top
    cdef double total = shifted_exp(z, k, z, &top)
    for o in range(k):
        z[o] /= total
    z[c] -= 1.0
    return log(total) - (zc - top)

cdef inline void softmax_d2loss(const double* z, Py_ssize_t k, double* h) noexcept nogil:
    """The diagonal of the multinomial loss's Hessian in z: h_o = p_o (1 - p_o)."""
    cdef Py_ssize_t o
    cdef double top
    cdef double total = shifted_exp(z, k, h, &top)
    for o in range(k):
        h[o] = h[o] / total * (1.0 - h[o] / total)

cdef inline double shifted_exp(const double* z, Py_ssize_t k, double* e,
                               double* top) noexcept nogil:
    """e_o = exp(z_o - max_o z_o) (e may be z itself), the maximum into *top; returns the
    sum of the e_o: the softmax without overflow."""
    cdef Py_ssize_t o
    cdef double largest = z[0], total = 0.0
    for o in range(1, k):
        if z[o] > largest:
            largest = z[o]
    for o in range(k):
        e[o] = exp(z[o] - largest)
        total += e[o]
    top[0] = largest
    return total


# What a pass asks of a loss: the dispatch by kind.

cdef inline double elementwise_loss(const Loss* loss, double z, double y,
                                   double* dz) noexcept nogil:
    """The loss of one prediction z against y; its derivative in z into *dz."""
    if loss.kind == SQUARED:
        dz[0] = squared_dloss(z, y)
        return squared_loss(z, y)
    if loss.kind == HUBER:
        dz[0] = huber_dloss(z, y, loss.param)
        return huber_loss(z, y, loss.param)
    if loss.kind == LOG:
        return log_loss(z, y, dz)
    if loss.kind == POISSON:
        return poisson_loss(z, y, dz)
    if loss.kind == GAMMA:
        return gamma_loss(z, y, dz)
    if loss.kind == TWEEDIE:
        return tweedie_loss(z, y, loss.param, dz)
    if loss.kind == QUANTILE:
        return quantile_loss(z, y, loss.param, loss.smoothing, dz)
    if loss.kind == HINGE:
        return hinge_loss(z, y, loss.smoothing, dz)
    if loss.kind == SQUARED_HINGE:
        return squared_hinge_loss(z, y, dz)
    if loss.kind == MODIFIED_HUBER:
        return modified_huber_loss(z, y, dz)
    dz[0] = NAN  # a kind without its case here: non-finite, which training reports
    return NAN


cdef inline double elementwise_d2loss(const Loss* loss, double z, double y) noexcept nogil:
    """The second derivative in z of the loss of one prediction z against y."""
    if loss.kind == SQUARED:
        return squared_d2loss(z, y)
    if loss.kind == HUBER:
        return huber_d2loss(z, y, loss.param)
    if loss.kind == LOG:
        return log_d2loss(z, y)
    if loss.kind == POISSON:
        return poisson_d2loss(z, y)
    if loss.kind == GAMMA:
        return gamma_d2loss(z, y)
    if loss.kind == TWEEDIE:
        return tweedie_d2loss(z, y, loss.param)
    if loss.kind == QUANTILE:
        return quantile_d2loss(z, y, loss.param, loss.smoothing)
    if loss.kind == HINGE:
        return hinge_d2loss(z, y, loss.smoothing)
    if loss.kind == SQUARED_HINGE:
        return squared_hinge_d2loss(z, y)
    if loss.kind == MODIFIED_HUBER:
        return modified_huber_d2loss(z, y)
    return NAN


cdef inline double row_loss(const Loss* loss, Py_ssize_t k, double* z,
                            const floating* y) noexcept nogil:
    """The loss of one row's predictions z[0:k] (k = loss.k) against its targets y[0:ky]
    (the sum over outputs of an elementwise loss); z becomes its derivative in z."""
    cdef Py_ssize_t o
    cdef double total = 0.0
    if loss.kind == MULTINOMIAL:
        return softmax_loss(z, k, <Py_ssize_t>y[0])
    for o in range(k):
        total += elementwise_loss(loss, z[o], y[o], &z[o])
    return total


cdef inline void elementwise_run(const Loss* loss, double* z, const floating* y,
                                 const floating* sw, Py_ssize_t m, double* losses,
                                 double* weights) noexcept nogil:
    """For a run of m rows of a one-output model (an elementwise loss): z[i] becomes the
    residual w_i dloss/dz of row i, losses[i] its weighted loss and weights[i] its weight
    (given sw; NULL: weights of 1). One copy of the loop for each loss kind and weighting,
    the kind a constant in each, so that the compiler vectorizes it (a call per row cost
    more than the pass over X at d = 10)."""
    cdef const floating* no_sw = NULL
    if sw == NULL:  # NULL a constant: the copies without weights
        run_of_kind(loss, z, y, no_sw, m, losses, weights)
    else:
        run_of_kind(loss, z, y, sw, m, losses, weights)


cdef inline void run_of_kind(const Loss* loss, double* z, const floating* y,
                             const floating* sw, Py_ssize_t m, double* losses,
                             double* weights) noexcept nogil:
    if loss.kind == SQUARED:
        residuals_of(SQUARED, 0.0, z, y, sw, m, losses, weights)
    elif loss.kind == HUBER:
        residuals_of(HUBER, loss.param, z, y, sw, m, losses, weights)
    elif loss.kind == LOG:
        residuals_of(LOG, 0.0, z, y, sw, m, losses, weights)
    elif loss.kind == POISSON:
        residuals_of(POISSON, 0.0, z, y, sw, m, losses, weights)
    elif loss.kind == GAMMA:
        residuals_of(GAMMA, 0.0, z, y, sw, m, losses, weights)
    elif loss.kind == HINGE:
        residuals_of(HINGE, 0.0, z, y, sw, m, losses, weights, loss.smoothing)
    elif loss.kind == SQUARED_HINGE:
        residuals_of(SQUARED_HINGE, 0.0, z, y, sw, m, losses, weights)
    elif loss.kind == MODIFIED_HUBER:
        residuals_of(MODIFIED_HUBER, 0.0, z, y, sw, m, losses, weights)
    else:  # correct for any elementwise kind, but a loop that branches on it each row
        residuals_of(loss.kind, loss.param, z, y, sw, m, losses, weights, loss.smoothing)


cdef inline void residuals_of(LossKind kind, double param, double* z, const floating* y,
                              const floating* sw, Py_ssize_t m, double* losses,
                              double* weights, double smoothing=0.0) noexcept nogil:
    """elementwise_run for one loss kind (a constant where it is inlined)."""
    cdef Loss spec
    cdef double wi, dz
    cdef Py_ssize_t i
    spec.kind = kind
    spec.param = param
    spec.smoothing = smoothing
    spec.k = 1
    spec.ky = 1
    for i in range(m):
        wi = 1.0 if sw == NULL else <double>sw[i]
        losses[i] = wi * elementwise_loss(&spec, z[i], <double>y[i], &dz)
        z[i] = wi * dz
        if sw != NULL:
            weights[i] = wi
