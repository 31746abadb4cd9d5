"""Small modules and short functions: what a reader can hold in mind at once.

Sizes count lines of code: docstrings, comments and blank lines aside (the public
modules carry the API reference in their docstrings). A module stays under 400
lines of code, a function under 50; a declarative table (the command line's
argument parser) is allowed its length.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lomond"
MODULE_LIMIT = 400
FUNCTION_LIMIT = 50
#: Functions that are declarative tables, allowed their length.
TABLES = {("cli/main.py", "build_parser")}

MODULES = sorted(PACKAGE.rglob("*.py"))


def docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    lines.update(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
    return lines


def code_lines(source: str) -> set[int]:
    """The numbers of the lines that hold code (not docstrings, comments or blanks)."""
    skip = docstring_lines(ast.parse(source))
    ignored = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT}
    ignored |= {tokenize.DEDENT, tokenize.ENDMARKER}
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in ignored:
            lines.update(n for n in range(token.start[0], token.end[0] + 1) if n not in skip)
    return lines


def name(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


@pytest.mark.parametrize("path", MODULES, ids=name)
def test_modules_are_small(path: Path) -> None:
    count = len(code_lines(path.read_text(encoding="utf-8")))
    assert count <= MODULE_LIMIT, f"lomond/{name(path)} has {count} lines of code"


@pytest.mark.parametrize("path", MODULES, ids=name)
def test_functions_are_short(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    lines = code_lines(source)
    long = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            count = len(lines.intersection(span))
            if count > FUNCTION_LIMIT and (name(path), node.name) not in TABLES:
                long.append(f"{node.name} ({count} lines of code)")
    assert not long, f"lomond/{name(path)}: {', '.join(long)}"


def test_the_count_leaves_out_docstrings_and_comments() -> None:
    source = 'def f():\n    """Doc.\n\n    More."""\n    # a comment\n\n    return 1\n'
    assert code_lines(source) == {1, 7}
