# Per-row losses: the value and its derivative with respect to the prediction z,
# as tiny inline nogil functions, so the hot loop never calls into Python.
# Keep each formula next to its name, and in step with fastgd/reference.py (LOSSES).

from libc.math cimport exp, fabs, log1p

cdef enum LossKind:
    SQUARED = 0
    HUBER = 1
    LOG = 2

ctypedef struct Loss:
    LossKind kind
    double delta      # huber: where the loss turns from quadratic to linear


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
# d/dz = sigmoid(z) - y, with the exp of a non-positive number either way
cdef inline double log_loss(double z, double y) noexcept nogil:
    return (z if z > 0.0 else 0.0) - y * z + log1p(exp(-fabs(z)))

cdef inline double log_dloss(double z, double y) noexcept nogil:
    cdef double e
    if z >= 0.0:
        return 1.0 / (1.0 + exp(-z)) - y
    e = exp(z)
    return e / (1.0 + e) - y


cdef inline double loss_value(const Loss* loss, double z, double y) noexcept nogil:
    if loss.kind == SQUARED:
        return squared_loss(z, y)
    if loss.kind == HUBER:
        return huber_loss(z, y, loss.delta)
    return log_loss(z, y)

cdef inline double loss_derivative(const Loss* loss, double z, double y) noexcept nogil:
    if loss.kind == SQUARED:
        return squared_dloss(z, y)
    if loss.kind == HUBER:
        return huber_dloss(z, y, loss.delta)
    return log_dloss(z, y)
