"""The optimizers against torch.optim on the same batches: the same trajectory."""

import numpy as np
import pytest
from conftest import OPTIMIZERS, make_problem
from numpy.testing import assert_allclose

import fastgd
from fastgd import GDRegressor, optimizers

torch = pytest.importorskip("torch")


def torch_optimizer(name, params, lr):
    """The torch.optim namesake of the registry's optimizer `name`, at its defaults (the
    estimators' defaults too)."""
    cls, arguments = optimizers.get(name).torch_equivalent()
    return getattr(torch.optim, cls)(params, lr=lr, **arguments)


class SparseLinear(torch.nn.Module):
    """A linear model of sparse gradients, for torch.optim.SparseAdam: each row's
    prediction is an embedding bag of its non-zero columns weighted by their values, the
    intercept an embedding of one (what torch.optim.SparseAdam's users train)."""

    def __init__(self, d):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(d, 1, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.zeros(1, 1, dtype=torch.float64))

    def forward(self, X):
        rows, columns = np.nonzero(X)
        offsets = torch.from_numpy(np.searchsorted(rows, np.arange(len(X))))
        z = torch.nn.functional.embedding_bag(
            torch.from_numpy(columns), self.weight, offsets, mode="sum", sparse=True,
            per_sample_weights=torch.from_numpy(X[rows, columns]))
        return z + torch.nn.functional.embedding(torch.zeros(len(X), dtype=torch.long),
                                                 self.bias, sparse=True)


def torch_fit(X, y, optimizer, lr, batch_size, epochs, clip_norm=None):
    sparse = optimizers.get(optimizer).torch_equivalent()[0] == "SparseAdam"
    model = SparseLinear(X.shape[1]) if sparse else torch.nn.Linear(X.shape[1], 1,
                                                                    dtype=torch.float64)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    groups = [{"params": [model.weight]},
              {"params": [model.bias], "weight_decay": 0.0}]  # fastgd never decays b
    opt = torch_optimizer(optimizer, groups, lr)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(epochs):
        for lo in range(0, len(y), batch_size):
            opt.zero_grad()
            out = model(X[lo:lo + batch_size] if sparse else Xt[lo:lo + batch_size])[:, 0]
            torch.nn.functional.mse_loss(out, yt[lo:lo + batch_size]).backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            opt.step()
    return model.weight.detach().numpy().ravel(), float(model.bias.detach().ravel()[0])


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("batch_size", [1, 16, 200])
def test_same_trajectory_as_torch(optimizer, batch_size):
    X, y, _ = make_problem(200, 4, seed=9)
    lr = 0.002
    ours = GDRegressor(optimizer=optimizer, learning_rate=lr, batch_size=batch_size,
                       max_epochs=3, tol=None, standardize=False, shuffle=False).fit(X, y)
    coef, intercept = torch_fit(X, y, optimizer, lr, batch_size, 3)
    assert_allclose(ours.coef_, coef, rtol=1e-9, atol=1e-12)
    assert_allclose(ours.intercept_, intercept, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 8, 50])
def test_sparse_adam_on_sparse_x_as_torch(batch_size):
    """SparseAdam on sparse X: each batch steps the weights of its columns only (the
    lazy epoch, fastgd/_sparse_epoch.pxi), as torch.optim.SparseAdam on the embedding bags
    of the rows' non-zero entries."""
    import scipy.sparse as sp

    X = sp.random(150, 40, density=0.08, format="csr", random_state=2)
    X = X.multiply(np.arange(40) % 9 != 3).tocsr()  # columns no batch reaches
    y = np.asarray(X @ np.random.default_rng(0).normal(size=40)) + 0.5
    ours = GDRegressor(optimizer="sparse_adam", learning_rate=0.01, batch_size=batch_size,
                       max_epochs=3, tol=None, standardize=False, shuffle=False).fit(X, y)
    coef, intercept = torch_fit(X.toarray(), y, "sparse_adam", 0.01, batch_size, 3)
    untouched = np.asarray(X.sum(axis=0) == 0).ravel()
    assert untouched.any() and (ours.coef_[untouched] == 0).all()
    assert_allclose(ours.coef_, coef, rtol=1e-9, atol=1e-12)
    assert_allclose(ours.intercept_, intercept, rtol=1e-9, atol=1e-12)


def test_clipping_as_torch():
    X, y, _ = make_problem(120, 3, seed=1)
    ours = GDRegressor(optimizer="momentum", learning_rate=0.01, batch_size=10, max_epochs=2,
                       tol=None, standardize=False, shuffle=False, clip_norm=0.5).fit(X, y * 50)
    coef, intercept = torch_fit(X, y * 50, "momentum", 0.01, 10, 2, clip_norm=0.5)
    assert_allclose(ours.coef_, coef, rtol=1e-9)
    assert_allclose(ours.intercept_, intercept, rtol=1e-9)


@pytest.mark.parametrize("loss,delta", [("huber", 0.7), ("log", 1.0)])
def test_losses_are_torchs(loss, delta):
    X, y, _ = make_problem(500, 4)
    if loss == "log":
        y = (y > np.median(y)).astype(float)
    coef, intercept = np.random.default_rng(7).standard_normal(4), 0.3
    w = torch.tensor(coef, requires_grad=True)
    b = torch.tensor(intercept, dtype=torch.float64, requires_grad=True)
    z = torch.from_numpy(X) @ w + b
    criterion = (torch.nn.HuberLoss(delta=delta) if loss == "huber"
                 else torch.nn.BCEWithLogitsLoss())
    value = criterion(z, torch.from_numpy(y))
    value.backward()
    got = fastgd.loss_and_grad(X, y, coef, intercept, loss=loss, delta=delta)
    assert_allclose(got[0], value.item(), rtol=1e-12)
    assert_allclose(got[1], w.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert_allclose(got[2], b.grad.item(), rtol=1e-10, atol=1e-14)
