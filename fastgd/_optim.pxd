# Optimizer update rules in C, as in torch.optim, on the parameter vector theta = (w, b): the
# intercept b = theta[n_weights] is a parameter like the weights (it is only exempt from
# AdamW's decoupled weight decay). Each rule here is one entry of the registry in
# fastgd/optimizers.py (its `code` is the OptimKind below), which holds the same rule in
# NumPy, its hyperparameters and defaults, and the names of its state vectors.
#
# g is the gradient, lr the learning rate of this step. The optimizer's state is its named
# vectors (zero at start) in the order of the registry's `slots`, `stride` doubles apart from
# `state`: s(0) = state, s(1) = state + stride. beta1_t and beta2_t are beta1^t and beta2^t
# at the 1-based step number t, for Adam's bias corrections. The epoch loop keeps them as
# running products from pow at the epoch's start (two pow calls per batch were measurable):
# equal to pow up to rounding, about 1e-16 relative per step.

from libc.math cimport sqrt

cdef enum OptimKind:      # the `code` of each fastgd.optimizers class
    SGD = 0
    MOMENTUM = 1
    NESTEROV = 2
    ADAGRAD = 3
    RMSPROP = 4
    ADAM = 5
    ADAMW = 6
    SPARSE_ADAM = 7

cdef enum:
    OPTIM_SLOTS = 2       # state vectors an optimizer keeps at most (the kernels' buffers)

ctypedef struct OptimConfig:
    OptimKind kind
    double momentum       # momentum, nesterov
    double beta1, beta2   # adam, adamw
    double rho            # rmsprop's decay (torch's alpha)
    double eps            # adagrad, rmsprop, adam, adamw (the estimators' epsilon)
    double weight_decay   # adamw (decoupled)


cdef inline OptimConfig config_of(object optimizer) except *:
    """The kernels' view of a fastgd.optimizers.Optimizer (hyperparameters it does not have
    are 0)."""
    cdef OptimConfig c
    hyper = optimizer.hyper
    c.kind = <OptimKind><int>optimizer.code
    c.momentum = hyper.get("momentum", 0.0)
    c.beta1 = hyper.get("beta1", 0.0)
    c.beta2 = hyper.get("beta2", 0.0)
    c.rho = hyper.get("rho", 0.0)
    c.eps = hyper.get("epsilon", 0.0)
    c.weight_decay = hyper.get("weight_decay", 0.0)
    return c


cdef inline void optim_step(const OptimConfig* c, double* theta, const double* g,
                            double* state, Py_ssize_t stride, Py_ssize_t n_params,
                            Py_ssize_t n_weights, double beta1_t, double beta2_t,
                            double lr) noexcept nogil:
    # Hyperparameters are read into locals: through the pointer, every store to theta or the
    # state could alias them, which forces reloads and keeps the loops from vectorizing.
    cdef Py_ssize_t k
    cdef double mu = c.momentum, rho = c.rho, eps = c.eps, b1 = c.beta1, b2 = c.beta2
    cdef double step_size, inv_bc2_sqrt
    cdef double* s0 = state
    cdef double* s1 = state + stride
    if c.kind == SGD:                  # theta -= lr g
        for k in range(n_params):
            theta[k] -= lr * g[k]
    elif c.kind == MOMENTUM:           # buf = mu buf + g;  theta -= lr buf
        for k in range(n_params):
            s0[k] = mu * s0[k] + g[k]
            theta[k] -= lr * s0[k]
    elif c.kind == NESTEROV:           # buf = mu buf + g;  theta -= lr (g + mu buf)
        for k in range(n_params):
            s0[k] = mu * s0[k] + g[k]
            theta[k] -= lr * (g[k] + mu * s0[k])
    elif c.kind == ADAGRAD:            # sum += g^2;  theta -= lr g / (sqrt(sum) + eps)
        for k in range(n_params):
            s0[k] += g[k] * g[k]
            theta[k] -= lr * g[k] / (sqrt(s0[k]) + eps)
    elif c.kind == RMSPROP:            # sq = rho sq + (1 - rho) g^2;  theta -= lr g / (sqrt(sq) + eps)
        for k in range(n_params):
            s0[k] = rho * s0[k] + (1.0 - rho) * g[k] * g[k]
            theta[k] -= lr * g[k] / (sqrt(s0[k]) + eps)
    elif c.kind == ADAM or c.kind == ADAMW:  # s0 = m (exp_avg), s1 = v (exp_avg_sq)
        if c.kind == ADAMW:            # decoupled decay first: w *= 1 - lr wd (not b)
            step_size = 1.0 - lr * c.weight_decay
            for k in range(n_weights):
                theta[k] *= step_size
        # m = b1 m + (1 - b1) g  (as torch: m += (1 - b1)(g - m));  v = b2 v + (1 - b2) g^2;
        # theta -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)   (torch's order,
        # with the division by sqrt(1 - b2^t) as a multiplication: per step, not per entry)
        step_size = lr / (1.0 - beta1_t)
        inv_bc2_sqrt = 1.0 / sqrt(1.0 - beta2_t)
        for k in range(n_params):
            s0[k] += (1.0 - b1) * (g[k] - s0[k])
            s1[k] = b2 * s1[k] + (1.0 - b2) * g[k] * g[k]
            theta[k] -= step_size * s0[k] / (sqrt(s1[k]) * inv_bc2_sqrt + eps)
    elif c.kind == SPARSE_ADAM:        # Adam where g != 0, in torch SparseAdam's order:
        # m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2);
        # theta -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)
        step_size = lr * sqrt(1.0 - beta2_t) / (1.0 - beta1_t)
        for k in range(n_params):
            if g[k] != 0.0:
                s0[k] += (g[k] - s0[k]) * (1.0 - b1)
                s1[k] += (g[k] * g[k] - s1[k]) * (1.0 - b2)
                theta[k] -= step_size * (s0[k] / (sqrt(s1[k]) + eps))


# Around the update: the elastic-net penalty on the weights (never the intercept) and
# gradient clipping, in this order per batch:
#   g_w += l2 w;  clip g to clip_norm (global L2 norm of (g_w, g_b), torch's clip_grad_norm_);
#   optimizer step;  w = sign(w) max(|w| - t, 0)  (the proximal step of l1 |w|_1, prox_l1).

cdef inline void add_l2(const OptimConfig* c, double* g, const double* theta,
                        Py_ssize_t n_weights, double l2) noexcept nogil:
    """g += l2 w (for SparseAdam, on the weights the data reach: g != 0)."""
    cdef Py_ssize_t k
    if c.kind == SPARSE_ADAM:
        for k in range(n_weights):
            if g[k] != 0.0:
                g[k] += l2 * theta[k]
        return
    for k in range(n_weights):
        g[k] += l2 * theta[k]


cdef inline void clip_norm(double* g, Py_ssize_t n_params, double max_norm) noexcept nogil:
    """As torch.nn.utils.clip_grad_norm_: g *= max_norm / (|g| + 1e-6) when that is < 1."""
    cdef Py_ssize_t k
    cdef double total = 0.0, factor
    for k in range(n_params):
        total += g[k] * g[k]
    factor = max_norm / (sqrt(total) + 1e-6)
    if factor < 1.0:
        for k in range(n_params):
            g[k] *= factor


cdef inline void prox_l1(const OptimConfig* c, double* theta, const double* state,
                         Py_ssize_t stride, Py_ssize_t n_weights, double lr, double l1,
                         double beta2_t, const double* g) noexcept nogil:
    """The proximal step of l1 |w|_1: w = sign(w) max(|w| - t, 0), with t = l1 times the
    step the optimizer makes per unit of a gradient that has settled, so that training
    settles at the penalized optimum: lr for SGD; lr / (1 - momentum) with momentum (m
    grows to g / (1 - momentum)); per weight lr / (sqrt(v) + eps) for Adagrad and RMSProp
    (v their sum or average of g^2), lr / (sqrt(v) / sqrt(1 - beta2^t) + eps) for Adam and
    AdamW, lr / ((sqrt(v) + eps) / sqrt(1 - beta2^t)) for SparseAdam, on the weights its
    step reached (g != 0). (A threshold of lr l1 with momentum 0.9 settles where the
    penalty is ten times weaker.)"""
    cdef Py_ssize_t k
    cdef double t = lr * l1, unbias = 1.0
    cdef const double* v           # the second moment of an adaptive optimizer
    if c.kind == MOMENTUM or c.kind == NESTEROV:
        t = t / (1.0 - c.momentum)
    if c.kind == SGD or c.kind == MOMENTUM or c.kind == NESTEROV:
        for k in range(n_weights):
            theta[k] = soft_threshold(theta[k], t)
        return
    if c.kind == ADAGRAD or c.kind == RMSPROP:
        v = state                  # their only vector
    elif c.kind == ADAM or c.kind == ADAMW:
        unbias = 1.0 / sqrt(1.0 - beta2_t)
        v = state + stride         # Adam's second vector
    elif c.kind == SPARSE_ADAM:
        unbias = 1.0 / sqrt(1.0 - beta2_t)
        v = state + stride
        for k in range(n_weights):
            if g[k] != 0.0:
                theta[k] = soft_threshold(theta[k], t / ((sqrt(v[k]) + c.eps) * unbias))
        return
    else:  # every optimizer has its branch here (the tests compare its L1 runs with the
        return  # registry's l1_scale, in NumPy)
    for k in range(n_weights):
        theta[k] = soft_threshold(theta[k], t / (sqrt(v[k]) * unbias + c.eps))


cdef inline double soft_threshold(double x, double t) noexcept nogil:
    return x - t if x > t else (x + t if x < -t else 0.0)


cdef inline void optim_catch_up(const OptimConfig* c, const double* table, double* theta,
                                double* s0) noexcept nogil:
    """m steps at once of a weight whose data gradient was zero (its penalty's alone), as
    fastgd.optimizers' catch_up: table = row m of the optimizer's catch_up_table, s0 the
    weight's first state entry. For the optimizers whose catches_up holds: SGD, the soft
    threshold at tau G(m) of c^m w; momentum and Nesterov, (w, m) times the transition's
    m-th power; Adagrad, one threshold of m lr l1 / (sqrt(sum) + eps); RMSProp, the
    average times rho^m."""
    cdef double w = theta[0]
    if c.kind == SGD:
        theta[0] = soft_threshold(w * table[0], table[1])
    elif c.kind == MOMENTUM or c.kind == NESTEROV:
        theta[0] = table[0] * w + table[1] * s0[0]
        s0[0] = table[2] * w + table[3] * s0[0]
    elif c.kind == ADAGRAD:
        theta[0] = soft_threshold(w, table[0] / (sqrt(s0[0]) + c.eps))
    elif c.kind == RMSPROP:
        s0[0] = s0[0] * table[0]
