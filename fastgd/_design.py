"""The layout of the second-order passes' results (fastgd/_hessian.pxi, fastgd.reference):
the trained parameters theta (the k coefficient rows, then the k intercepts) against a row
of the design in trained units, a = ((x - mean) / divisor, 1), and the Hessian assembled
from its blocks, one (d + 1) x (d + 1) matrix per pair of outputs (Loss.hessian_pairs).
"""

from __future__ import annotations

import numpy as np


def design_parameters(theta, k: int, d: int):
    """theta as a (k, d + 1) matrix whose rows act on a row of the design."""
    return np.column_stack([theta[:k * d].reshape(k, d), theta[k * d:]])


def flatten_gradient(G):
    """A (k, d + 1) gradient of design_parameters, laid out as theta."""
    return np.append(G[:, :-1].ravel(), G[:, -1])


def assemble(blocks: dict, k: int, d: int, total: float):
    """The Hessian (p, p) in theta's layout from the blocks {(a, b): A^T diag(w h_ab) A} of
    the pairs of outputs a <= b (the others zero), divided by the total weight."""
    if k == 1:  # one block, laid out as theta already
        return blocks[0, 0] / total
    H = np.zeros((k * (d + 1), k * (d + 1)))
    for (a, b), block in blocks.items():
        ia = np.append(np.arange(a * d, (a + 1) * d), k * d + a)
        ib = np.append(np.arange(b * d, (b + 1) * d), k * d + b)
        H[np.ix_(ia, ib)] = block / total
        H[np.ix_(ib, ia)] = block.T / total
    return H
