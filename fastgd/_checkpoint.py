"""Training checkpoints: the whole state of a fit, written every k epochs, to resume from.

A checkpoint file is a model file (fastgd/_persist.py): the model as it stood at the end of
an epoch, which ``fastgd.load`` reads. Beside it the file holds the state of the epoch loop
(fastgd._training.LoopState: parameters, the solver's named state, step and epoch counts,
history, early stopping's bookkeeping), the random state the fit drew its row orders and
validation rows from, and a fingerprint of the data. ``fit(X, y, resume=PATH)`` goes on
from there and ends with the very bits of a fit that never stopped; it refuses a checkpoint
written for other data or other settings. Files are written atomically, like every model file, so a
crash (even SIGKILL) leaves the previous checkpoint or the new one, never a broken one.
"""

from __future__ import annotations

import hashlib
import math
import numbers

import numpy as np

from fastgd import _persist
from fastgd._state import Standardization, TrainState
from fastgd._training import LoopState

# Settings that do not change the arithmetic, so they may differ when resuming (max_epochs:
# to train longer; n_threads: the bits are the same for any thread count).
FREE = ("max_epochs", "n_threads", "verbose", "callbacks", "checkpoint", "checkpoint_every",
        "warm_start")
# Format version 1 kept two state vectors for every optimizer: where each named slot was.
V1_SLOTS = {"momentum_buffer": "m", "sum": "v", "square_avg": "v", "exp_avg": "m",
            "exp_avg_sq": "v"}


def fingerprint(engine, problem) -> dict:
    """What tells one data set from another, cheaply: the shape, the bits of every column's
    weighted mean and variance (one fused pass over X) and of the best constant loss (over
    y), and what the engine adds (in memory a hash of 64 whole rows of X, y and the
    weights; on a cluster the row blocks, as mini-batch epochs run block by block)."""
    mean, var = engine.column_stats(problem)
    digest = hashlib.sha256(np.concatenate([mean, var, [engine.best_constant(problem)[1]]])
                            .tobytes())
    own = engine.fingerprint(problem, digest)
    return {"rows": int(engine.n_rows(problem)), "features": int(problem.n_features),
            "dtype": own["dtype"], "blocks": own["blocks"], "hash": digest.hexdigest()}


def write(path, snapshot, loop: LoopState, random_state: tuple, data: dict) -> None:
    """Save `snapshot` (the estimator fitted as of `loop`) with the loop's state."""
    state = loop.state
    kind, keys, position, has_gauss, gaussian = random_state
    values = {"epochs": state.epochs, "steps": state.steps, "optimizer": state.optimizer,
              "learning_rate": state.learning_rate, "standardized": state.std is not None,
              "slots": list(state.slots), "best_loss": _finite_or_none(loop.best_loss),
              "best_val": _finite_or_none(loop.best_val), "stale": loop.stale,
              "random_state": [kind, position, has_gauss, gaussian], "data": data}
    arrays = {"theta": state.theta, "last_good": loop.last_good, "best": loop.best,
              "random_keys": np.asarray(keys, dtype=np.uint32),
              **{f"state.{name}": value for name, value in state.slots.items()}}
    if state.std is not None:  # its mean and scale are the model's mean_ and scale_
        arrays["divisor"] = state.std.divisor
    if loop.best_val_params is not None:
        arrays["best_val_params"] = loop.best_val_params
    snapshot._save(path, {"values": values, "arrays": arrays})


def read(path, estimator, data: dict):
    """(the loop's LoopState, the random state) from the checkpoint at `path`, after
    checking it was written by a fit of this estimator's kind and settings on this data."""
    loaded, saved = _persist.read(path, type(estimator)._from_saved)
    values, arrays = saved.training_values, saved.training_arrays
    name = f"resume={str(path)!r}"
    if values is None:
        raise ValueError(f"{name} is a model file without training state (a checkpoint is "
                         f"written by fit with checkpoint=PATH)")
    if type(loaded) is not type(estimator):
        raise ValueError(f"{name} was written by a {type(loaded).__name__} fit, not a "
                         f"{type(estimator).__name__} one")
    ours = estimator.get_params(deep=False)
    for key, value in loaded.get_params(deep=False).items():
        free = key in FREE and not (key == "max_epochs" and ours["schedule"] == "cosine")
        if not free and not _same(value, ours[key]):
            raise ValueError(f"{name} was written by a fit with {key}={value!r}; this "
                             f"estimator has {key}={ours[key]!r} (only {', '.join(FREE)} "
                             f"may change, and max_epochs not with the cosine schedule, "
                             f"whose length it is)")
    if loaded.n_iter_ > ours["max_epochs"]:
        raise ValueError(f"{name} is at epoch {loaded.n_iter_}, past this estimator's "
                         f"max_epochs={ours['max_epochs']}")
    if values.get("data") != data:
        raise ValueError(f"{name} was written for other data ({_data(values.get('data'))}); "
                         f"this fit has {_data(data)}")
    if hasattr(estimator, "classes_") and not np.array_equal(loaded.classes_,
                                                             estimator.classes_):
        raise ValueError(f"{name} was written for the classes {loaded.classes_.tolist()}; "
                         f"y has {estimator.classes_.tolist()}")
    try:
        return _loop(loaded, values, arrays, saved.version), _random_state(values, arrays)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{name} has a malformed training state: {error!r}") from None


def _slots(values, arrays, version: int, template: dict, later: tuple = ()) -> dict:
    """The solver's named state, each of its template's shape and dtype (any names, any
    shapes): by name since version 2; in version 1 every optimizer kept two vectors, m and
    v, and its slots were among them (V1_SLOTS). `later`: the solver's slots added since
    its checkpoints were first written (Newton's continuation), fresh from the template
    where a checkpoint lacks them."""
    if version == 1:
        slots = {name: arrays[V1_SLOTS[name]] for name in template}
    else:
        names = values["slots"]
        if not isinstance(names, list) or not (
                set(template) - set(later) <= set(names) <= set(template)):
            raise ValueError(f"its state {names!r} is not the solver's {sorted(template)}")
        slots = {name: arrays[f"state.{name}"] for name in names}
        slots.update({name: template[name] for name in set(template) - set(names)})
    for name, value in slots.items():
        if value.shape != template[name].shape or value.dtype != template[name].dtype:
            raise ValueError(f"its state {name!r} is not {template[name].shape} "
                             f"{template[name].dtype} numbers")
    return slots


def _loop(loaded, values, arrays, version: int) -> LoopState:
    size = np.size(loaded.coef_) + np.size(loaded.intercept_)  # k (d + 1) parameters
    vectors = {key: arrays[key] for key in ("theta", "last_good", "best")}
    solver = loaded._solver(name=values["optimizer"])
    slots = _slots(values, arrays, version, solver.new_state(np.zeros(size), None).slots,
                   getattr(solver, "later_slots", ()))
    history = loaded.history_
    if loaded.early_stopping:  # the validation bookkeeping is there, or the file is broken
        if "val_loss" not in history:
            raise ValueError("its history has no validation losses")
        vectors["best_val_params"] = arrays["best_val_params"]
    for key, vector in vectors.items():
        if vector.shape != (size,) or vector.dtype != np.float64:
            raise ValueError(f"{key} is not {size} float64 numbers")
    epochs, steps = values["epochs"], values["steps"]
    if not (_count(epochs) and _count(steps) and epochs == len(history["loss"])
            and _count(values["stale"])):
        raise ValueError("its epoch, step or stale counts are wrong")
    rate = values["learning_rate"]
    if not (isinstance(rate, numbers.Real) and math.isfinite(rate) and rate > 0):
        raise ValueError(f"its learning rate {rate!r} is not a number > 0")
    std = None
    if values["standardized"]:
        divisor = arrays["divisor"]
        if (loaded.mean_ is None or loaded.scale_ is None
                or divisor.shape != loaded.scale_.shape or not (divisor > 0).all()):
            raise ValueError("its standardization is malformed")
        std = Standardization(loaded.mean_, loaded.scale_, divisor)
    state = TrainState(theta=vectors["theta"], slots=slots, steps=steps, epochs=epochs,
                       std=std, learning_rate=float(rate), optimizer=values["optimizer"])
    return LoopState(state=state, history=history, last_good=vectors["last_good"],
                     best=vectors["best"], best_loss=_inf_if_none(values["best_loss"]),
                     best_val=_inf_if_none(values["best_val"]),
                     best_val_params=vectors.get("best_val_params"), stale=values["stale"])


def _random_state(values, arrays) -> tuple:
    kind, position, has_gauss, gaussian = values["random_state"]
    keys = arrays["random_keys"]
    if kind != "MT19937" or keys.shape != (624,) or keys.dtype != np.uint32:
        raise ValueError("its random state is not NumPy's MT19937")
    return kind, keys, int(position), int(has_gauss), float(gaussian)


def _same(a, b) -> bool:
    try:
        return bool(a == b) or (a != a and b != b)  # NaN settings are equal too
    except (TypeError, ValueError):
        return False


def _data(data) -> str:
    if not isinstance(data, dict):
        return "unknown data"
    return f"{data.get('rows')} rows x {data.get('features')} features" + (
        f", fingerprint {str(data['hash'])[:12]}" if data.get("hash") else "")


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite_or_none(value: float):
    return float(value) if math.isfinite(value) else None


def _inf_if_none(value) -> float:
    return math.inf if value is None else float(value)
