"""GDRegressor and GDClassifier in skl2onnx: `fastgd.register_skl2onnx()` registers their
converter, which adds the nodes of fastgd/onnx.py to skl2onnx's graph of a Pipeline."""

from __future__ import annotations

import numpy as np

from fastgd.onnx import checked_dtype, emit


def register() -> None:
    """Register the two estimators' converter with skl2onnx."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes, calculate_linear_regressor_output_shapes)

    from fastgd.estimators import GDClassifier, GDRegressor

    update_registered_converter(GDRegressor, "FastgdGDRegressor",
                                calculate_linear_regressor_output_shapes, convert)
    update_registered_converter(GDClassifier, "FastgdGDClassifier",
                                calculate_linear_classifier_output_shapes, convert,
                                options={"zipmap": [True, False, "columns"],
                                         "nocl": [True, False]})


def convert(scope, operator, container) -> None:
    """skl2onnx's converter of a fastgd estimator: the nodes of fastgd.onnx.convert, with
    the labels skl2onnx declares (its shape calculator's)."""
    from skl2onnx.common.data_types import guess_numpy_type

    dtype = checked_dtype(guess_numpy_type(operator.inputs[0].type))
    model = operator.raw_operator._model()
    labels = None
    if model.classes_ is not None:
        nocl = container.get_options(operator.raw_operator, dict(nocl=False))["nocl"]
        labels = declared_labels(model.classes_, operator.outputs[0].type, nocl)
    emit(model, dtype, _Graph(scope, container), operator.inputs[0].full_name,
         [output.full_name for output in operator.outputs], labels)


def declared_labels(classes, declared, nocl: bool) -> np.ndarray:
    """The classes as the label type skl2onnx declares holds them: strings, or int64 (the
    class indices for nocl=True; booleans as 0 and 1; numbers that are whole)."""
    from skl2onnx.common.data_types import StringTensorType

    classes = np.asarray(classes)
    if isinstance(declared, StringTensorType):
        return np.array([str(c) for c in classes], dtype=object)
    if nocl or classes.dtype.kind in "OU":
        return np.arange(len(classes), dtype=np.int64)
    as_int = classes.astype(np.int64)
    if not np.array_equal(as_int, classes) or (classes.dtype.kind == "u"
                                               and classes.max() >= 2**63):
        raise ValueError(f"skl2onnx declares int64 labels, which cannot hold the classes "
                         f"{classes.tolist()[:5]}")
    return as_int


class _Graph:
    """Nodes added to a skl2onnx container, named uniquely in its scope."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container

    def node(self, op, inputs, output=None, **attributes):
        output = output or self.scope.get_unique_variable_name(op.lower())
        self.container.add_node(op, inputs, [output],
                                name=self.scope.get_unique_operator_name(op), **attributes)
        return output
