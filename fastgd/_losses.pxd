# Per-row losses: the value and its derivative with respect to the prediction z,
# as tiny inline nogil functions, so the hot loop never calls into Python.
# Keep each formula next to its name, and in step with fastgd/reference.py (LOSSES).

from cython cimport floating
from libc.math cimport exp, fabs, log, log1p

cdef enum LossKind:
    SQUARED = 0
    HUBER = 1
    LOG = 2
    MULTINOMIAL = 3

ctypedef struct Loss:
    LossKind kind
    double delta      # huber: where the loss turns from quadratic to linear
    Py_ssize_t k      # predictions per row (outputs, or classes for the multinomial loss)
    Py_ssize_t ky     # targets per row: k, or 1 (the class index) for the multinomial loss


# squared error (torch's MSELoss): (z - y)^2, d/dz = 2 (z - y)
cdef inline double squared_loss(double z, double y) noexcept nogil:
    return (z - y) * (z - y)

cdef inline double squared_dloss(double z, double y) noexcept nogil:
    return 2.0 * (z - y)


# Huber (torch's HuberLoss): r = z - y; r^2 / 2 where |r| <= delta, else
# delta (|r| - delta / 2); d/dz = r clipped to [-delta, delta]
cdef inline double huber_loss(double z, double y, double delta) noexcept nogil:
    cdef double r = fabs(z - y)
    return 0.5 * r * r if r <= delta else delta * (r - 0.5 * delta)

cdef inline double huber_dloss(double z, double y, double delta) noexcept nogil:
    cdef double r = z - y
    return delta if r > delta else (-delta if r < -delta else r)


# log loss of a logit z against a target y in [0, 1] (torch's BCEWithLogitsLoss):
# log(1 + e^z) - y z, written max(z, 0) - y z + log1p(e^-|z|) so that no exp overflows;
# d/dz = sigmoid(z) - y, from the same exp of a non-positive number (one exp a row, not two)
cdef inline double log_loss(double z, double y, double* dz) noexcept nogil:
    cdef double e = exp(-fabs(z))
    dz[0] = (1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)) - y
    return (z if z > 0.0 else 0.0) - y * z + log1p(e)


# multinomial log loss (torch's CrossEntropyLoss) of k logits z against the class c:
# log(sum_o e^z_o) - z_c, computed with the largest logit subtracted so that no exp
# overflows; d/dz_o = softmax(z)_o - [o == c]. z becomes the derivative.
cdef inline double softmax_loss(double* z, Py_ssize_t k, Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t o
    cdef double top = z[0], zc = z[c], total = 0.0
    for o in range(1, k):
        if z[o] > top:
            top = z[o]
    for o in range(k):
        z[o] = exp(z[o] - top)
        total += z[o]
    for o in range(k):
        z[o] /= total
    z[c] -= 1.0
    return log(total) - (zc - top)


cdef inline double elementwise_loss(const Loss* loss, double z, double y,
                                   double* dz) noexcept nogil:
    """The loss of one prediction z against y; its derivative in z into *dz."""
    if loss.kind == SQUARED:
        dz[0] = squared_dloss(z, y)
        return squared_loss(z, y)
    if loss.kind == HUBER:
        dz[0] = huber_dloss(z, y, loss.delta)
        return huber_loss(z, y, loss.delta)
    return log_loss(z, y, dz)


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
