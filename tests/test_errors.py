"""Bad input gets a ValueError/TypeError naming the argument: never a crash or a NaN model."""

import numpy as np
import pytest
from conftest import make_problem

import fastgd
from fastgd import GDRegressor, reference

X, Y, _ = make_problem(50, 3)
COEF = np.zeros(3)

FUNCTIONS = [fastgd.loss_and_grad, reference.loss_and_grad]


def with_nan(a, where):
    a = a.copy()
    a[where] = np.nan
    return a


def with_inf(a, where):
    a = a.copy()
    a[where] = np.inf
    return a


KERNEL_CASES = [
    # (args, kwargs, error, message)
    ((with_nan(X, (17, 2)), Y, COEF, 0.0), {}, ValueError, r"X contains NaN.*row 17, column 2"),
    ((with_inf(X, (0, 0)), Y, COEF, 0.0), {}, ValueError, r"X contains NaN or inf"),
    ((X, with_nan(Y, 3), COEF, 0.0), {}, ValueError, r"y contains NaN"),
    ((X, Y, with_inf(COEF, 1), 0.0), {}, ValueError, r"coef contains NaN"),
    ((X, Y, COEF, np.nan), {}, ValueError, r"intercept must be finite"),
    ((X, Y, COEF, "0"), {}, TypeError, r"intercept must be a real number"),
    ((X, Y[:-1], COEF, 0.0), {}, ValueError, r"y has 49 entries but X has 50 rows"),
    ((X, Y, np.zeros(4), 0.0), {}, ValueError, r"coef must have shape \(3,\)"),
    ((X[:0], Y[:0], COEF, 0.0), {}, ValueError, r"X has 0 rows"),
    ((X[:, :0], Y, np.zeros(0), 0.0), {}, ValueError, r"X has 0 columns"),
    ((X[0], Y, COEF, 0.0), {}, ValueError, r"X must be a 2-D array"),
    ((X.astype(object), Y, COEF, 0.0), {}, TypeError, r"X must hold real numbers"),
    ((X.astype(complex), Y, COEF, 0.0), {}, TypeError, r"X must hold real numbers"),
    ((X, Y.astype(str), COEF, 0.0), {}, TypeError, r"y must hold real numbers"),
    ((X, Y, COEF, 0.0), {"sample_weight": -np.ones(50)}, ValueError, r"sample_weight must be >= 0"),
    ((X, Y, COEF, 0.0), {"sample_weight": np.zeros(50)}, ValueError, r"must not be all zero"),
    ((X, Y, COEF, 0.0), {"sample_weight": with_nan(np.ones(50), 4)}, ValueError,
     r"sample_weight contains NaN"),
    ((X, Y, COEF, 0.0), {"sample_weight": np.ones(49)}, ValueError, r"sample_weight has 49"),
    ((X, Y, COEF, 0.0), {"sample_weight": np.full(50, 1e307)}, ValueError,
     r"sample_weight values are too large"),
    ((X, Y, COEF, 0.0), {"n_threads": "2"}, TypeError, r"n_threads must be an integer"),
    ((X, Y, COEF, 0.0), {"loss": "cauchy"}, ValueError, r"loss must be one of 'squared'"),
    ((X, Y, COEF, 0.0), {"n_threads": 0}, ValueError, r"n_threads must be a positive"),
    ((X, Y, COEF, 0.0), {"n_threads": 1.5}, TypeError, r"n_threads must be an integer"),
]


@pytest.mark.parametrize("fn", FUNCTIONS, ids=["compiled", "reference"])
@pytest.mark.parametrize("args,kwargs,error,message", KERNEL_CASES)
def test_kernel_rejects(fn, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        fn(*args, **kwargs)


@pytest.mark.parametrize("param,value,error,message", [
    ("learning_rate", 0.0, ValueError, "learning_rate must be a finite number > 0"),
    ("learning_rate", -1.0, ValueError, "learning_rate must be a finite number > 0"),
    ("learning_rate", np.nan, ValueError, "learning_rate must be a finite number > 0"),
    ("learning_rate", "fast", TypeError, "learning_rate must be a number"),
    ("batch_size", 0, ValueError, "batch_size must be a finite number > 0"),
    ("batch_size", 2.5, TypeError, "batch_size must be an integer"),
    ("max_epochs", 0, ValueError, "max_epochs must be a finite number > 0"),
    ("max_epochs", True, TypeError, "max_epochs must be an integer"),
    ("tol", -1.0, ValueError, "tol must be a finite number >= 0"),
    ("tol", "small", TypeError, "tol must be a number"),
    ("optimizer", "bfgs", ValueError, "optimizer must be one of 'auto', 'sgd'"),
    ("engine", "torch", ValueError, "engine must be one of 'cython', 'numpy'"),
    ("standardize", "yes", TypeError, "standardize must be True, False or .scale."),
    pytest.param("learning_rate", 10**400, ValueError, "learning_rate must be a finite",
                 id="learning_rate-huge-int"),
    ("max_epochs", 2.0, TypeError, "max_epochs must be an integer"),
    ("batch_size", np.True_, TypeError, "batch_size must be an integer"),
    ("n_threads", 0, ValueError, "n_threads must be a positive"),
])
def test_estimator_rejects_bad_hyperparameters(param, value, error, message):
    with pytest.raises(error, match=message):
        GDRegressor(**{param: value}).fit(X, Y)


@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("batch_size", [None, 8])
def test_estimator_reports_nonfinite_x(standardize, batch_size):
    bad = with_nan(X, (45, 1))
    with pytest.raises(ValueError, match=r"X contains NaN.*row 45, column 1"):
        GDRegressor(standardize=standardize, batch_size=batch_size).fit(bad, Y)


@pytest.mark.parametrize("args,kwargs,message", [
    ((X, with_nan(Y, 0)), {}, "y contains NaN"),
    ((X, Y[:10]), {}, "inconsistent numbers of samples|y has 10 entries"),
    ((X[:0], Y[:0]), {}, "0 sample"),
    ((X, Y), {"sample_weight": -np.ones(50)}, "sample_weight must be >= 0"),
    ((X, Y), {"sample_weight": np.zeros(50)}, "must not be all zero"),
])
def test_estimator_rejects_bad_data(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        GDRegressor().fit(*args, **kwargs)


@pytest.mark.filterwarnings("error")
def test_a_huge_alpha_is_named_or_solved():
    """The automatic step of a first-order fit overflows: an error names alpha. Newton's
    step does not: the coefficients are 0 and the intercept the mean, exactly."""
    with pytest.raises(ValueError, match="alpha is too large for float64 arithmetic"):
        GDRegressor(optimizer="nesterov", alpha=1e308).fit(X, Y)
    model = GDRegressor(alpha=1e308).fit(X, Y)
    assert model.solver_ == "newton" and np.abs(model.coef_).max() < 1e-300
    assert model.intercept_ == pytest.approx(Y.mean(), rel=1e-12)


@pytest.mark.filterwarnings("error")  # and no RuntimeWarning on the way
@pytest.mark.parametrize("scale_y", [1.0, 1e160])
def test_huge_values_overflow_is_reported(scale_y):
    big = X * 1e160
    for optimizer, message in (("nesterov", "the loss's curvature .* overflows; rescale X"),
                               # least squares's objective is X's moments: X^T X overflows
                               ("newton", "loss overflows at the initial parameters: X or y "
                                          "holds values too large")):
        with pytest.raises(ValueError, match=message):
            GDRegressor(optimizer=optimizer, standardize=False).fit(big, Y * scale_y)
    first_loss = ("overflows at the initial parameters" if scale_y > 1
                  else "Training diverged at epoch 2: the training loss became non-finite")
    with pytest.raises(ValueError, match=first_loss):
        GDRegressor(optimizer="sgd", standardize=False, learning_rate=0.1).fit(big, Y * scale_y)
    with pytest.raises(ValueError, match="too large to standardize"):
        GDRegressor().fit(big, Y * scale_y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("param,value", [("tol", np.float32(1e-4)), ("tol", np.int64(0)),
                                         ("tol", 0), ("max_epochs", np.int64(3)),
                                         ("max_epochs", 10**30), ("n_threads", 2**31),
                                         ("learning_rate", np.float32(0.1))])
def test_estimator_accepts_numpy_and_extreme_numbers(param, value):
    kwargs = {"max_epochs": 3, param: value}
    model = GDRegressor(**kwargs)
    if param == "max_epochs" and value == 10**30:
        model.set_params(tol=1.0)  # stops at once: a huge budget is valid, not an error
    model.fit(X, Y)
    assert np.isfinite(model.coef_).all()


@pytest.mark.parametrize("delta", [np.nan, -1.0, "abc"])
def test_a_bad_loss_parameter_is_refused_whatever_the_loss(delta):
    """Huber's delta is checked for the squared loss too: a model with it is saved whole."""
    from fastgd import GDRegressor

    error = TypeError if isinstance(delta, str) else ValueError
    with pytest.raises(error, match="delta must be"):
        GDRegressor(loss="squared", delta=delta).fit(np.ones((5, 2)), np.arange(5.0))


@pytest.mark.parametrize("seed", [0.0, -1, 2**32, "0", True])
def test_a_bad_random_state_is_named(seed):
    """(The fuzzer drew random_state=0.0, which scikit-learn's seeding refused without
    saying which argument.)"""
    with pytest.raises(TypeError, match="random_state must be None, an int"):
        GDRegressor(random_state=seed).fit(np.ones((5, 2)), np.arange(5.0))
