"""The examples in the docstrings run and print what they say."""

import doctest

import pytest

import fastgd
import fastgd.estimators
import fastgd.reference


@pytest.mark.parametrize("module", [fastgd, fastgd.estimators, fastgd.reference])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
