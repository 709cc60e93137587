"""Fitted models as ONNX graphs, for ONNX Runtime and the stacks built on it.

``model.to_onnx()`` (a GDRegressor, GDClassifier or fastgd.LinearModel) gives an
``onnx.ModelProto`` of standard operators only, with skl2onnx's names and shapes:

- input ``X``: (N, n_features), float32 (the default) or float64 (``dtype=np.float64``);
  a model fitted on a table names its columns in the metadata ``feature_names`` (JSON);
- a regressor: ``variable`` (N, n_outputs), one column for one target;
- a classifier: ``label`` (N,), the classes themselves (numbers or strings), and
  ``probabilities`` (N, n_classes), columns in the order of ``classes_``; for a loss
  without probabilities (hinge, squared_hinge) ``scores`` instead, the decision values
  (for two classes (-z, z), as skl2onnx's LinearSVC).

The graph is the model's arithmetic: Z = X W + b (MatMul, Add) and the loss's inverse link
(``Loss.link``): nothing for least squares and Huber; Exp for the log-link losses
(Poisson, Gamma, Tweedie); for the log loss the softmax of
(0, z), which keeps a small probability's relative precision where 1 - sigmoid(z) would
lose it; the softmax for several classes; modified Huber's clipped and normalized
probabilities (Clip, ReduceSum, Where, Div); the label is the class of the largest output
(ArgMax, Gather), which picks as ``predict`` does. In float64 its outputs equal fastgd's to
rounding (the sums run in another order); in float32 both compute in float32.

``fastgd.register_skl2onnx()`` (fastgd/_skl2onnx.py) teaches skl2onnx the two estimators
with these nodes, so that
``skl2onnx.to_onnx(pipeline, X[:1])`` converts a Pipeline that ends with one (a
classifier's probabilities then go through skl2onnx's ZipMap unless
``options={"zipmap": False}``). Needs the extra ``fastgd[onnx]`` (onnx; skl2onnx for the
pipelines). ``fastgd export MODEL -o model.onnx`` writes a model file's graph.
"""

from __future__ import annotations

import json

import numpy as np

from fastgd._files import atomic_write
from fastgd._version import __version__

OPSET = 17  # ONNX Runtime 1.13 (2022) and newer run it
DTYPES = (np.float32, np.float64)
REGRESSION_LINKS = {"identity": "Identity", "exp": "Exp"}  # Loss.link: its operator


def convert(model, dtype=np.float32, *, name: str = "fastgd"):
    """The ONNX graph (an onnx.ModelProto) of a fitted model: see the module docstring."""
    onnx = _onnx()
    from onnx import TensorProto, helper

    dtype = checked_dtype(dtype)
    element = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    outputs = _outputs(model)
    graph = _Graph()
    emit(model, dtype, graph, "X", [output for output, _, _ in outputs])
    X = helper.make_tensor_value_info("X", element, ["N", model.n_features_in_])
    typed = [helper.make_tensor_value_info(output, kind or element, shape)
             for output, kind, shape in outputs]
    proto = helper.make_model(
        helper.make_graph(graph.nodes, name, [X], typed),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fastgd",
        producer_version=__version__)
    names = model.feature_names_in_
    if names is not None:  # what each column of X is, for whoever loads the graph
        helper.set_model_props(proto, {"feature_names": json.dumps([str(n) for n in names])})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, path, dtype=np.float32) -> None:
    """Write the ONNX graph of a model (an estimator or a LinearModel) to `path`,
    atomically (as model files are)."""
    proto = model.to_onnx(dtype)
    with atomic_write(path, "wb") as f:
        f.write(proto.SerializeToString())


def emit(model, dtype, graph, X: str, outputs: list, labels=None) -> None:
    """The nodes that compute the model's `outputs` ([variable] for a regressor, [label,
    probabilities] for a classifier) from the input named X, added to `graph`: anything
    with node(op, inputs, output=None, **attributes) -> the output's name. `labels`: what
    the label output holds for each class (default: the classes)."""
    coef = np.atleast_2d(np.asarray(model.coef_, dtype=dtype))
    z = graph.node("Add", [graph.node("MatMul", [X, _constant(graph, coef.T)]),
                           _constant(graph, np.reshape(model.intercept_, -1).astype(dtype))])
    link = model.loss.link
    if model.classes_ is None:
        if link not in REGRESSION_LINKS:
            raise ValueError(f"the {model.loss.name} loss has no ONNX form here")
        graph.node(REGRESSION_LINKS[link], [z], outputs[0])
        return
    two = len(model.classes_) == 2
    if link == "logistic":  # the two classes' logits (0, z); zeros as z's, even if z is inf
        zero = graph.node("ConstantOfShape", [graph.node("Shape", [z])],
                          value=_tensor(np.zeros(1, dtype)))
        z = graph.node("Concat", [zero, z], axis=1)
    if link in ("logistic", "softmax"):
        graph.node("Softmax", [z], outputs[1], axis=1)
    elif link == "modified_huber":
        _modified_huber_proba(graph, z, dtype, len(model.classes_), outputs[1])
    if link in ("margin", "modified_huber") and two:  # argmax of (-z, z): 1 where z > 0
        z = graph.node("Concat", [graph.node("Neg", [z]), z], axis=1)
    if link == "margin":  # no probabilities: the decision values (two classes: (-z, z))
        graph.node("Identity", [z], outputs[1])
    best = graph.node("ArgMax", [z], axis=1, keepdims=0)
    labels = _classes(model.classes_) if labels is None else labels
    graph.node("Gather", [_constant(graph, labels), best], outputs[0], axis=0)


def _modified_huber_proba(graph, z, dtype, n_classes: int, output: str) -> None:
    """Loss.proba of modified Huber: p = (clip(z, -1, 1) + 1) / 2; (1 - p, p) for two
    classes, else each row over its sum (uniform where that is 0)."""
    def constant(value):
        return _constant(graph, np.asarray(value, dtype))

    clipped = graph.node("Clip", [z, constant(-1.0), constant(1.0)])
    p = graph.node("Mul", [graph.node("Add", [clipped, constant(1.0)]), constant(0.5)])
    if n_classes == 2:
        graph.node("Concat", [graph.node("Sub", [constant(1.0), p]), p], output, axis=1)
        return
    total = graph.node("ReduceSum", [p, _constant(graph, np.array([1]))], keepdims=1)
    nothing = graph.node("Equal", [total, constant(0.0)])
    graph.node("Div", [graph.node("Where", [nothing, constant(1.0), p]),
                       graph.node("Where", [nothing, constant(float(n_classes)), total])],
               output)


class _Graph:
    """Nodes of a graph of its own, named in the order they are added."""

    def __init__(self):
        self.nodes = []

    def node(self, op, inputs, output=None, **attributes):
        from onnx import helper

        output = output or f"{op.lower()}{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output


def _constant(graph, values: np.ndarray) -> str:
    return graph.node("Constant", [], value=_tensor(values))


def _tensor(values: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(values)


def _classes(classes) -> np.ndarray:
    """The class labels as an ONNX tensor holds them: numbers, booleans or strings."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "iufb":
        return classes
    if all(isinstance(label, str) for label in classes):
        return classes.astype(object)
    raise ValueError("the classes are neither numbers nor strings: ONNX cannot hold them")


def _outputs(model) -> list:
    """[(name, element type (None: the input's), shape)] of the graph's outputs."""
    if model.classes_ is None:
        return [("variable", None, ["N", np.atleast_2d(model.coef_).shape[0]])]
    from onnx import TensorProto, helper

    classes = _classes(model.classes_)
    label = (TensorProto.STRING if classes.dtype == object
             else helper.np_dtype_to_tensor_dtype(classes.dtype))
    scores = "probabilities" if model.loss.probabilities else "scores"
    return [("label", label, ["N"]), (scores, None, ["N", len(classes)])]


def checked_dtype(dtype):
    dtype = np.dtype(dtype).type
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype).name}")
    return dtype


def _onnx():
    try:
        import onnx
    except ImportError as error:
        raise ImportError("ONNX export needs onnx: pip install 'fastgd[onnx]'") from error
    return onnx
