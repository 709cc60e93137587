# Per-row losses: the value and its derivative with respect to the prediction z,
# as tiny inline nogil functions, so the hot loop never calls into Python.
# Keep each formula next to its name, and in step with fastgd/reference.py.

cdef enum LossKind:
    SQUARED = 0


# squared error: (z - y)^2, d/dz = 2 (z - y)
cdef inline double squared_loss(double z, double y) noexcept nogil:
    return (z - y) * (z - y)

cdef inline double squared_dloss(double z, double y) noexcept nogil:
    return 2.0 * (z - y)


cdef inline double loss_value(LossKind kind, double z, double y) noexcept nogil:
    return squared_loss(z, y)

cdef inline double loss_derivative(LossKind kind, double z, double y) noexcept nogil:
    return squared_dloss(z, y)
