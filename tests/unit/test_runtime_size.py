"""``bench/runtime_size.py``: which lines of a module count as code, docstring, comment and blank.

Issue 20's size figures in docs/benchmarks.md come from this split, so a line counted as the wrong
kind would move a figure the team judges the refactor by.
"""

from __future__ import annotations

from textwrap import dedent

from tests.support.bench_scripts import bench_module

size = bench_module("runtime_size")

MODULE = dedent(
    '''\
    """A module docstring
    over two lines."""

    # a comment line
    LIMIT = 3
    """An attribute docstring."""


    def f(x: int) -> str:
        """A function docstring."""
        text = """not a docstring:
        an assigned string"""
        "a bare string after a statement is no docstring either"
        return text  # a trailing comment stays code
    '''
)


def test_each_kind_of_line_is_counted_once() -> None:
    counted = size.split(MODULE)
    assert (counted.code, counted.docstring, counted.comment, counted.blank) == (6, 4, 1, 3)
    assert counted.total == len(MODULE.splitlines())


def test_a_class_body_and_a_nested_function_have_docstrings_too() -> None:
    source = 'class A:\n    """Doc."""\n\n    def m(self) -> None:\n        """Doc."""\n        return None\n'
    counted = size.split(source)
    assert (counted.code, counted.docstring, counted.blank) == (3, 2, 1)
