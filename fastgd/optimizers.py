"""The first-order optimizers: one object each, the one place that says what an optimizer is.

Each optimizer is a subclass of `Optimizer`, registered in `OPTIMIZERS` by name, with
torch.optim's update rule and defaults. Its class says:

- `name`; `code`, its OptimKind in fastgd/_optim.pxd, where its update rule runs in the
  kernels;
- `hyperparameters`: the estimators' names of its settings and their defaults (torch's);
- `slots`: the named state it keeps (torch's names: ``momentum_buffer``, ``exp_avg``, ...),
  each a vector like the parameters, zero at the start; saved and checkpointed by name;
- `step`: the same update rule in NumPy (fastgd.reference runs it);
- `l1_scale`: the step it makes per unit of a settled gradient, which scales the proximal
  step of an L1 penalty so that every optimizer settles at the same penalized optimum;
- `auto_learning_rate`: what ``learning_rate="auto"`` means for it;
- `torch_equivalent`: its namesake in torch.optim with the same settings (the tests
  compare trajectories with it).

An instance is an optimizer with its settings (``get("adam", beta1=0.8)``). Adding one means a
class here and its rule in fastgd/_optim.pxd (docs/architecture.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from fastgd._validation import check_choice, check_number


class Optimizer:
    """A first-order update rule on theta = (w, b) with its settings; see the module docstring.

    The rules act in place on theta, given the gradient g, the state (a dict of the `slots`),
    the 1-based step number t, the learning rate lr and n_weights, the number of weights
    (theta[n_weights:] are the intercepts: exempt from AdamW's decoupled weight decay).
    """

    name: ClassVar[str]
    code: ClassVar[int]                               # OptimKind in fastgd/_optim.pxd
    hyperparameters: ClassVar[dict[str, float]] = {}  # setting: default
    slots: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str]
    on_support: ClassVar[bool] = False  # steps only the weights whose data gradient is not
                                        # zero: their penalty too (SparseAdam)

    def __init__(self, **hyper):
        unknown = set(hyper) - set(self.hyperparameters)
        if unknown:
            raise TypeError(f"the {self.name} optimizer takes no setting {sorted(unknown)[0]!r}")
        self.hyper = {key: float(hyper[key] if hyper.get(key) is not None else default)
                      for key, default in self.hyperparameters.items()}

    def __eq__(self, other):
        return type(other) is type(self) and other.hyper == self.hyper

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.hyper.items())})"

    def new_state(self, n_params: int) -> dict:
        return {name: np.zeros(n_params) for name in self.slots}

    def step(self, theta, g, state, t, lr, n_weights) -> None:
        raise NotImplementedError

    def l1_scale(self, state, t, n_weights):
        """The step per unit of a settled gradient, per weight or for all: the proximal
        step's threshold is l1 lr times it (fastgd/_optim.pxd: prox_l1)."""
        return 1.0

    def auto_learning_rate(self, curvature: Callable[[], float], batch_fraction: float,
                           first_step: Callable[[], np.ndarray]) -> float:
        """learning_rate="auto": 1 / L, L = curvature() the (expected, for a mini-batch)
        largest curvature of the objective, the classic safe step of gradient descent.
        batch_fraction: a batch's share of the rows (1: full batch); first_step(): the
        full-batch gradient-descent step g / L at the starting parameters (a pass and the
        full-batch curvature), for the optimizers whose steps do not scale with g."""
        return 1.0 / max(curvature(), 1e-300)

    def torch_equivalent(self) -> tuple[str, dict]:
        """(the torch.optim class, its keyword arguments but lr) of the same rule."""
        return "SGD", {}

    # Lazy updates (mini-batches over sparse X, fastgd/_sparse_epoch.pxi): a weight whose
    # column a batch does not touch has a data gradient of zero, so its step is the penalty's
    # alone. Where m such steps have a closed form, the weight waits until a batch touches it
    # (or the epoch ends) and takes them at once: the same values as m eager steps, up to
    # rounding, for O(stored entries of the batch) a step instead of O(d).

    def catches_up(self, lr: float, l1: float, l2: float) -> bool:
        """Whether m steps of a weight with no data gradient have a closed form under these
        settings (catch_up)."""
        return False

    def catch_up_table(self, lr: float, l1: float, l2: float, steps: int) -> np.ndarray:
        """(steps + 1, 4): row m, what catch_up needs for m steps at once (the compiled
        engine reads the same table: fastgd/_optim.pxd, optim_catch_up)."""
        raise NotImplementedError

    def catch_up(self, theta, state, idle, table) -> None:
        """Take idle[i] steps of weight i with no data gradient at once, in place: theta
        and state's vectors are the waiting weights'."""
        raise NotImplementedError


class SGD(Optimizer):
    name, code = "sgd", 0
    summary = "theta -= lr g (full-batch gradient descent when batch_size=None)"

    def step(self, theta, g, state, t, lr, n_weights):
        theta -= lr * g

    def catches_up(self, lr, l1, l2):
        """A step is w = S(c w) with c = 1 - lr l2 and S the soft threshold at lr l1: while
        c > 0 it never flips w's sign, so m steps are S at tau (1 + c + ... + c^(m-1)) of
        c^m w (zero stays zero)."""
        return lr * l2 < 1.0

    def catch_up_table(self, lr, l1, l2, steps):
        a = lr * l2  # c^m and its geometric sum, without the cancellation of 1 - c
        log_c = np.log1p(-a) * np.arange(steps + 1)
        table = np.zeros((steps + 1, 4))
        table[:, 0] = np.exp(log_c)
        table[:, 1] = lr * l1 * (-np.expm1(log_c) / a if a > 0 else np.arange(steps + 1))
        return table

    def catch_up(self, theta, state, idle, table):
        theta[:] = soft_threshold(theta * table[idle, 0], table[idle, 1])


def soft_threshold(x, t):
    """The proximal step of t |x|: sign(x) max(|x| - t, 0) (fastgd/_optim.pxd's)."""
    return np.sign(x) * np.maximum(np.abs(x) - t, 0.0)


class Momentum(Optimizer):
    name, code = "momentum", 1
    hyperparameters = {"momentum": 0.9}
    slots = ("momentum_buffer",)
    summary = "m = momentum m + g; theta -= lr m  (torch SGD with momentum)"

    def step(self, theta, g, state, t, lr, n_weights):
        buffer = state["momentum_buffer"]
        buffer *= self.hyper["momentum"]
        buffer += g
        theta -= lr * self.direction(g, buffer)

    def direction(self, g, buffer):
        return buffer

    def l1_scale(self, state, t, n_weights):  # m grows to g / (1 - momentum)
        return 1.0 / (1.0 - self.hyper["momentum"])

    def auto_learning_rate(self, curvature, batch_fraction, first_step):
        """With mini-batches, (1 - momentum) / L: momentum sums the steps of a gradient that
        keeps its direction, noise included, into 1 / (1 - momentum) of them (with 1 / L,
        batch 32 diverged)."""
        damping = 1.0 if batch_fraction >= 1 else 1.0 - self.hyper["momentum"]
        return damping / max(curvature(), 1e-300)

    def torch_equivalent(self):
        return "SGD", {"momentum": self.hyper["momentum"], "nesterov": self.name == "nesterov"}

    def catches_up(self, lr, l1, l2):
        """Without L1, a step of (w, m) with g = l2 w is linear: m steps are a 2 x 2
        matrix's m-th power (transition). The L1 threshold after each makes it not."""
        return l1 == 0

    def transition(self, lr, l2):
        """(w, m) -> (w, m) of a step whose gradient is l2 w: m' = mu m + l2 w, then
        w' = w - lr m'."""
        mu = self.hyper["momentum"]
        return np.array([[1 - lr * l2, -lr * mu], [l2, mu]])

    def catch_up_table(self, lr, l1, l2, steps):
        powers = np.eye(2)[None]  # M^0 .. M^(2^j - 1), doubled until there are enough
        while len(powers) <= steps:
            powers = np.concatenate([powers, powers @ (powers[-1] @ self.transition(lr, l2))])
        return powers[:steps + 1].reshape(-1, 4)

    def catch_up(self, theta, state, idle, table):
        buffer, power = state["momentum_buffer"], table[idle]
        theta[:], buffer[:] = (power[:, 0] * theta + power[:, 1] * buffer,
                               power[:, 2] * theta + power[:, 3] * buffer)


class Nesterov(Momentum):
    name, code = "nesterov", 2
    summary = "m = momentum m + g; theta -= lr (g + momentum m)"

    def direction(self, g, buffer):
        return g + self.hyper["momentum"] * buffer

    def transition(self, lr, l2):
        """m' = mu m + l2 w, then w' = w - lr (l2 w + mu m')."""
        mu = self.hyper["momentum"]
        return np.array([[1 - lr * l2 * (1 + mu), -lr * mu * mu], [l2, mu]])


class Adaptive(Optimizer):
    """Optimizers that scale each coordinate by its gradients' size (each step moves every
    coordinate by about the learning rate, whatever the gradient's scale): the L1 step is
    scaled per weight, and learning_rate="auto" is the data's (auto_learning_rate), not
    torch's fixed default (default_learning_rate), which is in no unit of the problem."""

    default_learning_rate: ClassVar[float]

    def second_moment(self, state):
        raise NotImplementedError

    def unbias(self, t) -> float:
        return 1.0

    def l1_scale(self, state, t, n_weights):
        return 1.0 / (np.sqrt(self.second_moment(state)[:n_weights]) * self.unbias(t)
                      + self.hyper["epsilon"])

    def auto_learning_rate(self, curvature, batch_fraction, first_step):
        """|g / L| / sqrt(p) sqrt(batch_fraction): gradient descent's first step g / L, the
        distance to the optimum at the least, spread over the p coordinates (each step
        moves each by about the rate), and smaller by the square root of a mini-batch's
        share of the rows (its noise). Measured on diabetes, its offset by 1e4 and on
        20,000 x 50 with y x 1000 (benchmarks/README.md): full-batch Adam within 2e-5 to
        5e-5 of the optimum's R^2 (torch's 0.001: 0.7 to 1.7e4 short), batch 64 within
        3e-3 to 0.2."""
        step = first_step()
        rate = float(np.sqrt(step @ step / len(step)) * np.sqrt(min(batch_fraction, 1.0)))
        # at the optimum already (no step to size): torch's default, for the epochs after
        return rate if 0.0 < rate < math.inf else self.default_learning_rate


class Adagrad(Adaptive):
    name, code = "adagrad", 3
    hyperparameters = {"epsilon": 1e-10}
    slots = ("sum",)
    default_learning_rate = 0.01
    summary = "v += g²; theta -= lr g / (sqrt(v) + epsilon)"

    def step(self, theta, g, state, t, lr, n_weights):
        state["sum"] += g * g
        theta -= lr * g / (np.sqrt(state["sum"]) + self.hyper["epsilon"])

    def second_moment(self, state):
        return state["sum"]

    def catches_up(self, lr, l1, l2):
        """Without L2 a weight with no data gradient keeps its sum; its L1 threshold,
        lr l1 / (sqrt(sum) + epsilon), is the same each step: m steps are one of m times it."""
        return l2 == 0

    def catch_up_table(self, lr, l1, l2, steps):
        table = np.zeros((steps + 1, 4))
        table[:, 0] = lr * l1 * np.arange(steps + 1)
        return table

    def catch_up(self, theta, state, idle, table):
        theta[:] = soft_threshold(theta, table[idle, 0] / (np.sqrt(state["sum"])
                                                          + self.hyper["epsilon"]))

    def torch_equivalent(self):
        return "Adagrad", {"eps": self.hyper["epsilon"]}


class RMSprop(Adaptive):
    name, code = "rmsprop", 4
    hyperparameters = {"rho": 0.99, "epsilon": 1e-8}
    slots = ("square_avg",)
    default_learning_rate = 0.01
    summary = "v = rho v + (1 - rho) g²; theta -= lr g / (sqrt(v) + epsilon)"

    def step(self, theta, g, state, t, lr, n_weights):
        square_avg, rho = state["square_avg"], self.hyper["rho"]
        square_avg *= rho
        square_avg += (1 - rho) * g * g
        theta -= lr * g / (np.sqrt(square_avg) + self.hyper["epsilon"])

    def second_moment(self, state):
        return state["square_avg"]

    def catches_up(self, lr, l1, l2):
        """Without a penalty, a weight with no data gradient stays; its average decays by
        rho a step. (Its L1 threshold changes with the average every step.)"""
        return l1 == 0 and l2 == 0

    def catch_up_table(self, lr, l1, l2, steps):
        table = np.zeros((steps + 1, 4))
        table[:, 0] = self.hyper["rho"] ** np.arange(steps + 1)
        return table

    def catch_up(self, theta, state, idle, table):
        state["square_avg"] *= table[idle, 0]

    def torch_equivalent(self):
        return "RMSprop", {"alpha": self.hyper["rho"], "eps": self.hyper["epsilon"]}


class Adam(Adaptive):
    name, code = "adam", 5
    hyperparameters = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
    slots = ("exp_avg", "exp_avg_sq")
    default_learning_rate = 0.001
    summary = ("m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g²; "
               "theta -= lr / (1 - beta1^t) · m / (sqrt(v) / sqrt(1 - beta2^t) + epsilon)")

    def step(self, theta, g, state, t, lr, n_weights):
        m, v, h = state["exp_avg"], state["exp_avg_sq"], self.hyper
        m += (1 - h["beta1"]) * (g - m)
        v *= h["beta2"]
        v += (1 - h["beta2"]) * g * g
        bias1, bias2 = 1 - h["beta1"] ** t, 1 - h["beta2"] ** t
        theta -= (lr / bias1) * m / (np.sqrt(v) * (1 / np.sqrt(bias2)) + h["epsilon"])

    def second_moment(self, state):
        return state["exp_avg_sq"]

    def unbias(self, t):
        return 1.0 / np.sqrt(1 - self.hyper["beta2"] ** t)

    def torch_equivalent(self):
        h = self.hyper
        return "Adam", {"betas": (h["beta1"], h["beta2"]), "eps": h["epsilon"]}


class AdamW(Adam):
    name, code = "adamw", 6
    hyperparameters = {**Adam.hyperparameters, "weight_decay": 0.01}
    summary = "coef *= 1 - lr weight_decay (decoupled; not the intercept), then Adam"

    # The decay a step takes off the weights at most under learning_rate="auto": Adam's
    # rate is the data's (1e2 and more for targets of 1e4), and lr weight_decay >= 2 would
    # multiply the weights by 1 - lr weight_decay <= -1 a step, a divergence (found by
    # `make fuzz`). The weights' balance against the decay, |coef| ~ 1 / weight_decay, does
    # not depend on lr.
    max_auto_decay = 0.1

    def step(self, theta, g, state, t, lr, n_weights):
        theta[:n_weights] *= 1 - lr * self.hyper["weight_decay"]
        super().step(theta, g, state, t, lr, n_weights)

    def auto_learning_rate(self, curvature, batch_fraction, first_step):
        rate = super().auto_learning_rate(curvature, batch_fraction, first_step)
        decay = self.hyper["weight_decay"]
        return min(rate, self.max_auto_decay / decay) if decay > 0 else rate

    def torch_equivalent(self):
        name, arguments = super().torch_equivalent()
        return "AdamW", {**arguments, "weight_decay": self.hyper["weight_decay"]}


class SparseAdam(Adam):
    """torch.optim.SparseAdam: Adam on the weights a batch's data reach, the others left
    as they are (their moments do not decay), so that a batch over sparse X costs its
    stored entries. Reached: a data gradient that is not zero (a column the batch stores
    entries in, for sparse X); the penalty (L2 and L1) is applied to those only, as it
    is paid when a weight is seen. Its bias corrections are of the step count, as torch's."""

    name, code = "sparse_adam", 7
    on_support = True
    summary = ("Adam where the gradient is not zero, the other weights as they are: "
               "theta -= lr sqrt(1 - beta2^t) / (1 - beta1^t) · m / (sqrt(v) + epsilon) "
               "(torch SparseAdam)")

    def step(self, theta, g, state, t, lr, n_weights):
        m, v, h = state["exp_avg"], state["exp_avg_sq"], self.hyper
        seen = g != 0
        g = g[seen]
        m[seen] += (g - m[seen]) * (1 - h["beta1"])
        v[seen] += (g * g - v[seen]) * (1 - h["beta2"])
        step_size = lr * math.sqrt(1 - h["beta2"] ** t) / (1 - h["beta1"] ** t)
        theta[seen] -= step_size * (m[seen] / (np.sqrt(v[seen]) + h["epsilon"]))

    def l1_scale(self, state, t, n_weights):
        return 1.0 / ((np.sqrt(self.second_moment(state)[:n_weights]) + self.hyper["epsilon"])
                      * self.unbias(t))

    def catches_up(self, lr, l1, l2):
        """A weight no batch reaches takes no step: nothing to catch up."""
        return True

    def catch_up_table(self, lr, l1, l2, steps):
        return np.zeros((steps + 1, 4))

    def catch_up(self, theta, state, idle, table):
        pass

    def torch_equivalent(self):
        h = self.hyper
        return "SparseAdam", {"betas": (h["beta1"], h["beta2"]), "eps": h["epsilon"]}


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, Momentum, Nesterov, Adagrad, RMSprop, Adam, AdamW,
                              SparseAdam)}


def get(name, **settings) -> Optimizer:
    """The optimizer `name` with the settings it has among `settings` (the others, and
    None, leave its defaults); a ValueError naming a bad name or setting."""
    cls = OPTIMIZERS[check_choice("optimizer", name, tuple(OPTIMIZERS))]
    own = {key: settings.get(key) for key in cls.hyperparameters}
    for key, value in own.items():
        if value is not None:
            check_setting(key, value)
    return cls(**own)


DECAYS = ("momentum", "beta1", "beta2", "rho")  # settings in [0, 1)


def check_setting(name: str, value):
    """A setting of some optimizer: a decay in [0, 1), epsilon > 0, weight_decay >= 0."""
    if check_number(name, value, allow_zero=name != "epsilon") >= 1 and name in DECAYS:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value
