# Optimizer update rules, as in torch.optim, on the parameter vector theta = (w, b): the
# intercept b = theta[n_weights] is a parameter like the weights (it is only exempt from
# AdamW's decoupled weight decay). g is the gradient, t the 1-based step number, lr the
# learning rate of this step; m and v are the optimizer's state vectors (zero at start).
# Keep each rule in step with fastgd/reference.py (OPTIMIZERS) and the estimator docs.

from libc.math cimport sqrt

cdef enum OptimKind:
    SGD = 0
    MOMENTUM = 1
    NESTEROV = 2
    ADAGRAD = 3
    RMSPROP = 4
    ADAM = 5
    ADAMW = 6

ctypedef struct OptimConfig:
    OptimKind kind
    double momentum       # momentum, nesterov
    double beta1, beta2   # adam, adamw
    double rho            # rmsprop's decay (torch's alpha)
    double eps            # adagrad, rmsprop, adam, adamw
    double weight_decay   # adamw (decoupled)


cdef inline void optim_step(const OptimConfig* c, double* theta, const double* g, double* m,
                            double* v, Py_ssize_t n_params, Py_ssize_t n_weights, long t,
                            double lr) noexcept nogil:
    cdef Py_ssize_t k
    cdef double bc1, bc2, step_size
    if c.kind == SGD:                  # theta -= lr g
        for k in range(n_params):
            theta[k] -= lr * g[k]
    elif c.kind == MOMENTUM:           # m = mu m + g;  theta -= lr m
        for k in range(n_params):
            m[k] = c.momentum * m[k] + g[k]
            theta[k] -= lr * m[k]
    elif c.kind == NESTEROV:           # m = mu m + g;  theta -= lr (g + mu m)
        for k in range(n_params):
            m[k] = c.momentum * m[k] + g[k]
            theta[k] -= lr * (g[k] + c.momentum * m[k])
    elif c.kind == ADAGRAD:            # v += g^2;  theta -= lr g / (sqrt(v) + eps)
        for k in range(n_params):
            v[k] += g[k] * g[k]
            theta[k] -= lr * g[k] / (sqrt(v[k]) + c.eps)
    elif c.kind == RMSPROP:            # v = rho v + (1 - rho) g^2;  theta -= lr g / (sqrt(v) + eps)
        for k in range(n_params):
            v[k] = c.rho * v[k] + (1.0 - c.rho) * g[k] * g[k]
            theta[k] -= lr * g[k] / (sqrt(v[k]) + c.eps)
    else:                              # ADAM, ADAMW
        if c.kind == ADAMW:            # decoupled decay first: w *= 1 - lr wd (not b)
            for k in range(n_weights):
                theta[k] *= 1.0 - lr * c.weight_decay
        # m = b1 m + (1 - b1) g  (as torch: m += (1 - b1)(g - m));  v = b2 v + (1 - b2) g^2;
        # theta -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)   (torch's order)
        bc1 = 1.0 - c.beta1 ** t
        bc2 = 1.0 - c.beta2 ** t
        step_size = lr / bc1
        for k in range(n_params):
            m[k] += (1.0 - c.beta1) * (g[k] - m[k])
            v[k] = c.beta2 * v[k] + (1.0 - c.beta2) * g[k] * g[k]
            theta[k] -= step_size * m[k] / (sqrt(v[k]) / sqrt(bc2) + c.eps)
