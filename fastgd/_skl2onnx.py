"""GDRegressor and GDClassifier in skl2onnx: `fastgd.register_skl2onnx()` registers their
converter, which adds the nodes of fastgd/onnx.py to skl2onnx's graph of a Pipeline."""

from __future__ import annotations

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
    """skl2onnx's converter of a fastgd estimator: the nodes of fastgd.onnx.convert."""
    from skl2onnx.common.data_types import guess_numpy_type

    dtype = checked_dtype(guess_numpy_type(operator.inputs[0].type))
    emit(operator.raw_operator._model(), dtype, _Graph(scope, container),
         operator.inputs[0].full_name, [output.full_name for output in operator.outputs])


class _Graph:
    """Nodes added to a skl2onnx container, named uniquely in its scope."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container

    def node(self, op, inputs, output=None, **attributes):
        output = output or self.scope.get_unique_variable_name(op.lower())
        self.container.add_node(op, inputs, [output],
                                name=self.scope.get_unique_operator_name(op), **attributes)
        return output
