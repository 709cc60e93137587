"""The log-link losses (poisson, gamma, tweedie): their definitions against scikit-learn's
half deviances (sklearn._loss) and torch's PoissonNLLLoss, the optimum against
PoissonRegressor, GammaRegressor and TweedieRegressor on every solver, D^2 as their score,
the domain of y, and a fit whose first steps would overflow e^z."""

import json
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastgd
from fastgd import losses, reference

sk_loss = pytest.importorskip("sklearn._loss.loss")
linear_model = pytest.importorskip("sklearn.linear_model")

CASES = [("poisson", {}, sk_loss.HalfPoissonLoss()),
         ("gamma", {}, sk_loss.HalfGammaLoss()),
         *[("tweedie", {"power": p}, sk_loss.HalfTweedieLoss(power=p))
           for p in (0.0, 1.0, 1.3, 1.5, 2.0, 3.0)]]


def targets(name, power, n, rng):
    """Targets in the loss's domain: zeros included where it takes them."""
    y = rng.gamma(2.0, 1.5, n)
    if name == "poisson" or (name == "tweedie" and 1 <= power < 2):
        y[::5] = 0.0
    return y


@pytest.mark.parametrize("name, params, peer", CASES, ids=lambda c: str(c))
def test_value_gradient_and_hessian_are_scikit_learns_half_deviances(name, params, peer):
    rng = np.random.default_rng(0)
    loss = losses.get(name, **params)
    z = rng.uniform(-3, 3, 500)
    y = targets(name, params.get("power", 0), 500, rng)
    expected = peer.loss(y, z) + peer.constant_to_optimal_zero(y)
    gradient, hessian = peer.gradient_hessian(y, z)
    Z, Y = z[:, None], y[:, None]
    value, derivative = loss.value_and_gradient(Z, Y)
    assert_allclose(value, expected, rtol=1e-12, atol=1e-12)
    assert_allclose(derivative[:, 0], gradient, rtol=1e-12, atol=1e-12)
    assert_allclose(loss.hessian(Z, Y)[:, 0], hessian, rtol=1e-12, atol=1e-12)
    assert value.min() >= -1e-12  # a deviance: 0 at mu = y, never below
    # the compiled pass: the mean loss and the gradient of z = X w + b at X = I
    X = np.eye(500)
    for loss_and_grad in (fastgd.loss_and_grad, reference.loss_and_grad):
        mean, grad_coef, grad_intercept = loss_and_grad(X, y, z, 0.0, loss=name, **params)
        assert_allclose(mean, expected.mean(), rtol=1e-10)
        assert_allclose(grad_coef, gradient / 500, rtol=1e-10, atol=1e-15)


def test_poisson_is_torchs_poisson_nll_loss_but_for_its_constant():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    z, y = rng.uniform(-3, 3, 300), rng.poisson(3.0, 300).astype(float)
    zt = torch.tensor(z, requires_grad=True)
    nll = torch.nn.PoissonNLLLoss(log_input=True, full=False, reduction="sum")(
        zt, torch.tensor(y))
    nll.backward()
    loss = losses.get("poisson")
    value, derivative = loss.value_and_gradient(z[:, None], y[:, None])
    constant = np.where(y > 0, y * np.log(np.where(y > 0, y, 1)) - y, 0).sum()
    assert_allclose(value.sum(), nll.item() + constant, rtol=1e-12)
    assert_allclose(derivative[:, 0], zt.grad.numpy(), rtol=1e-12, atol=1e-14)


def glm_problem(name, power, n=4000, d=6, seed=0, weights=True):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 2, d)
    mu = np.exp(X @ rng.uniform(-0.3, 0.3, d) + 0.4)
    if name == "poisson":
        y = rng.poisson(mu).astype(float)
    elif name == "gamma" or power >= 2:
        y = rng.gamma(2.0, mu / 2.0)
    else:
        y = rng.poisson(mu) * rng.gamma(2.0, 0.5, n)  # compound Poisson-Gamma: zeros
    return X, y, rng.uniform(0, 2, n) if weights else None


PEERS = {"poisson": lambda p: linear_model.PoissonRegressor(alpha=0, tol=1e-12, max_iter=10_000),
         "gamma": lambda p: linear_model.GammaRegressor(alpha=0, tol=1e-12, max_iter=10_000),
         "tweedie": lambda p: linear_model.TweedieRegressor(power=p, link="log", alpha=0,
                                                            tol=1e-12, max_iter=10_000)}


@pytest.mark.parametrize("name, power", [("poisson", 1.0), ("gamma", 2.0), ("tweedie", 1.5),
                                         ("tweedie", 3.0)])
@pytest.mark.parametrize("optimizer", ["newton", "lbfgs", "auto"])
def test_the_optimum_is_scikit_learns(name, power, optimizer):
    X, y, w = glm_problem(name, power)
    peer = PEERS[name](power).fit(X, y, sample_weight=w)
    settings = {"power": power} if name == "tweedie" else {}
    model = fastgd.GDRegressor(loss=name, optimizer=optimizer, tol=1e-10, max_epochs=500,
                               tolerance_grad=1e-12, tolerance_change=1e-14,  # L-BFGS's
                               **settings).fit(X, y, sample_weight=w)
    scale = np.abs(peer.coef_).max()
    assert_allclose(model.coef_, peer.coef_, rtol=1e-6, atol=1e-6 * scale)
    assert_allclose(model.intercept_, peer.intercept_, rtol=1e-6, atol=1e-6)
    assert_allclose(model.score(X, y, w), peer.score(X, y, w), rtol=1e-9)  # D^2 both
    assert_allclose(model.predict(X), peer.predict(X), rtol=1e-5)


def test_first_order_epochs_reach_the_optimum_too():
    X, y, _ = glm_problem("poisson", 1.0, weights=False)
    peer = PEERS["poisson"](1.0).fit(X, y)
    model = fastgd.GDRegressor(loss="poisson", optimizer="adam", learning_rate=0.05,
                               batch_size=256, max_epochs=60, tol=None, random_state=0,
                               schedule="cosine").fit(X, y)
    assert_allclose(model.coef_, peer.coef_, atol=2e-3)
    with pytest.raises(ValueError, match="no bounded curvature: give a numeric learning_rate"):
        fastgd.GDRegressor(loss="poisson", optimizer="sgd").fit(X, y)


@pytest.mark.parametrize("name, params, bad", [
    ("poisson", {}, -1.0), ("gamma", {}, 0.0), ("tweedie", {"power": 1.5}, -0.5),
    ("tweedie", {"power": 2.5}, 0.0)])
def test_targets_outside_the_domain_are_refused_by_fit_and_partial_fit(name, params, bad):
    X, y, _ = glm_problem("gamma", 2.0, n=50, weights=False)
    y[7] = bad
    for fit in ("fit", "partial_fit"):
        model = fastgd.GDRegressor(loss=name, learning_rate=0.01, **params)
        with pytest.raises(ValueError, match=f"y must hold values >? ?=? ?0 for loss='{name}'"):
            getattr(model, fit)(X, y)


def test_large_counts_and_unscaled_features_do_not_overflow():
    """Newton's and L-BFGS's first steps from zero would put e^z far beyond float64 on
    these rows: the line search backs off, and the fit ends at the optimum, finite."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3000, 4)) * [1, 30, 300, 3000]
    y = rng.poisson(np.exp(X @ [0.5, 0.02, 0.002, 0.0002] + 6)).astype(float)  # ~400-10^5
    peer = PEERS["poisson"](1.0).fit(X / X.std(axis=0), y)
    for optimizer in ("newton", "lbfgs"):
        model = fastgd.GDRegressor(loss="poisson", optimizer=optimizer, standardize=False,
                                   tol=1e-10, max_epochs=1000).fit(X, y)
        assert np.isfinite(model.coef_).all()
        assert_allclose(model.coef_ * X.std(axis=0), peer.coef_, rtol=1e-5, atol=1e-7)


def test_saved_and_loaded_and_on_the_command_line(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y, _ = glm_problem("tweedie", 1.5, weights=False)
    model = fastgd.GDRegressor(loss="tweedie", power=1.5).fit(X, y)
    model.save(tmp_path / "m.fastgd")
    loaded = fastgd.load(tmp_path / "m.fastgd")
    assert loaded.power == 1.5 and (loaded.predict(X) == model.predict(X)).all()
    assert (fastgd.LinearModel.load(tmp_path / "m.fastgd").predict(X) == model.predict(X)).all()
    table = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(cost=y)
    table.to_csv(tmp_path / "costs.csv", index=False)
    done = subprocess.run([sys.executable, "-m", "fastgd", "train", "costs.csv", "--target",
                           "cost", "--loss", "tweedie", "--power", "1.5", "-q", "-o",
                           "c.fastgd", "--json", "scores.json"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "deviance" in done.stdout and "D²" in done.stdout
    scores = json.loads((tmp_path / "scores.json").read_text())
    trained = fastgd.load(tmp_path / "c.fastgd")
    assert trained.loss == "tweedie" and trained.power == 1.5
    assert 0 < scores["metrics"]["d2"] < 1 and scores["metrics"]["deviance"] > 0


def exposure_problem(n=4000, seed=7):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    exposure = rng.uniform(0.05, 3.0, n)
    mu = exposure * np.exp(X @ [0.3, -0.2, 0.1, 0.0] - 1.0)
    return X, exposure, {"poisson": rng.poisson(mu).astype(float),
                         "gamma": rng.gamma(2.0, mu / 2.0),
                         "tweedie": rng.poisson(mu) * rng.gamma(2.0, 0.5, n)}


@pytest.mark.parametrize("name", ["poisson", "gamma", "tweedie"])
def test_an_offset_is_glums_and_the_exposure_weighted_rate_fit(name):
    """offset = log(exposure) gives glum's model with the same offset, and (the identity
    the implementation rests on) scikit-learn's fit of y / exposure weighted by
    exposure^(2 - power); predict and score take the offset too."""
    X, exposure, targets = exposure_problem()
    y, offset, power = targets[name], np.log(exposure), {"poisson": 1, "gamma": 2,
                                                        "tweedie": 1.5}[name]
    model = fastgd.GDRegressor(loss=name, power=1.5, tol=1e-12).fit(X, y, offset=offset)
    peer = PEERS[name](power).fit(X, y / exposure, sample_weight=exposure ** (2 - power))
    assert_allclose(model.coef_, peer.coef_, rtol=1e-7, atol=1e-9)
    assert_allclose(model.intercept_, peer.intercept_, rtol=1e-7, atol=1e-9)
    glum = pytest.importorskip("glum")
    family = {"poisson": "poisson", "gamma": "gamma"}.get(name) or glum.TweedieDistribution(1.5)
    other = glum.GeneralizedLinearRegressor(family=family, alpha=0, gradient_tol=1e-12).fit(
        X, y, offset=offset)
    assert_allclose(model.coef_, other.coef_, rtol=1e-7, atol=1e-9)
    assert_allclose(model.predict(X, offset=offset), other.predict(X, offset=offset),
                    rtol=1e-8)
    assert_allclose(model.predict(X, offset=offset), exposure * model.predict(X), rtol=1e-12)
    # D^2 against the best model of exposure alone, mu = c exposure
    from sklearn.metrics import mean_tweedie_deviance

    null = exposure * np.exp(np.log(peer.predict(np.zeros((1, 4)))) - peer.intercept_ +
                             fastgd.GDRegressor(loss=name, power=1.5, tol=1e-12).fit(
                                 np.zeros((len(y), 1)), y, offset=offset).intercept_)
    expected = 1 - (mean_tweedie_deviance(y, model.predict(X, offset=offset), power=power)
                    / mean_tweedie_deviance(y, null, power=power))
    assert_allclose(model.score(X, y, offset=offset), expected, rtol=1e-9)


def test_an_offset_on_an_identity_link_shifts_y_and_is_checked():
    X, exposure, targets = exposure_problem()
    y = targets["gamma"]
    offset = np.column_stack([X[:, 0], -X[:, 1]])
    Y = np.column_stack([y, 2 * y])
    model = fastgd.GDRegressor(tol=1e-12).fit(X, Y, offset=offset)
    peer = linear_model.LinearRegression().fit(X, Y - offset)
    assert_allclose(model.coef_, peer.coef_, rtol=1e-8, atol=1e-10)
    assert_allclose(model.predict(X, offset=offset), peer.predict(X) + offset, rtol=1e-8)
    from sklearn.metrics import r2_score

    assert_allclose(model.score(X, Y, offset=offset), r2_score(Y, peer.predict(X) + offset),
                    rtol=1e-10)
    with pytest.raises(ValueError, match="offset has 10 entries but X has 4000 rows"):
        fastgd.GDRegressor().fit(X, y, offset=np.zeros(10))
    with pytest.raises(ValueError, match="offset"):
        fastgd.GDRegressor().fit(X, y, offset=np.full(len(y), np.nan))
    with pytest.raises(ValueError, match="offset for the poisson loss is one column"):
        fastgd.GDRegressor(loss="poisson").fit(X, Y, offset=offset)
    with pytest.raises(TypeError, match="offset"):
        fastgd.GDClassifier().fit(X, y > 1, offset=X[:, 0])
    for bad in (np.full(len(y), -800.0), np.r_[np.zeros(len(y) - 1), 800.0]):
        with pytest.raises(ValueError, match="offset is too large for float64 arithmetic "
                                             "with the poisson loss"):
            fastgd.GDRegressor(loss="poisson").fit(X, y, offset=bad)


def test_an_offset_on_dask_arrays_and_in_partial_fit(client):
    da = pytest.importorskip("dask.array")
    X, exposure, targets = exposure_problem(n=3000)
    y, offset = targets["poisson"], np.log(exposure)
    local = fastgd.GDRegressor(loss="poisson", tol=1e-12).fit(X, y, offset=offset)
    spread = fastgd.GDRegressor(loss="poisson", tol=1e-12).fit(
        da.from_array(X, chunks=(1000, -1)), da.from_array(y, chunks=1000),
        offset=da.from_array(offset, chunks=1000), client=client)
    assert_allclose(spread.coef_, local.coef_, rtol=1e-9, atol=1e-12)
    chunked = da.from_array(y, chunks=1000)
    for bad, words in ((da.zeros(50, chunks=50), "offset has shape \\(50, 1\\)"),
                       (da.from_array(np.r_[offset[:-1], np.nan], chunks=1000),
                        "offset contains NaN")):
        with pytest.raises(ValueError, match=words):
            fastgd.GDRegressor(loss="poisson").fit(da.from_array(X, chunks=(1000, -1)),
                                                   chunked, offset=bad, client=client)
    online = fastgd.GDRegressor(loss="poisson", learning_rate=0.02, batch_size=100)
    for _ in range(30):
        online.partial_fit(X, y, offset=offset)
    assert_allclose(online.coef_, local.coef_, atol=0.05)
    assert abs(online.intercept_ - local.intercept_) < 0.05
    without = fastgd.GDRegressor(loss="poisson", tol=1e-12).fit(X, y)  # the offset counts
    assert abs(without.intercept_ - local.intercept_) > 0.2
