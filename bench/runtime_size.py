"""The runtime's size outside the emulator, split into code, docstring, comment and blank lines.

Issue 20 bounds the runtime in physical lines; STYLE.md asks docstrings to carry the why. One split,
read the same way at every revision, shows which of the two a change moved. A line is a docstring
line when it belongs to a string statement that opens a module, class or function body, or documents
an attribute (see :func:`documents_attribute`); a comment line holds only a comment; code is every other
non-blank line. Run from the repository::

    .venv/bin/python bench/runtime_size.py [REVISION ...]     # default: the working tree
"""

from __future__ import annotations

import argparse
import ast
import io
import subprocess
import tokenize
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "mns_consumer"
EXCLUDED = f"{PACKAGE}/emulator/"


@dataclass
class Split:
    """Physical lines by kind."""

    code: int = 0
    docstring: int = 0
    comment: int = 0
    blank: int = 0

    @property
    def total(self) -> int:
        return self.code + self.docstring + self.comment + self.blank

    def add(self, other: Split) -> None:
        self.code += other.code
        self.docstring += other.docstring
        self.comment += other.comment
        self.blank += other.blank


def docstring_lines(tree: ast.AST) -> set[int]:
    """Line numbers of the docstrings in ``tree``: body-opening strings and attribute docstrings."""
    found: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for index, statement in enumerate(body):
            is_string = (
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            )
            opens_body = index == 0
            if is_string and (opens_body or documents_attribute(node, body[index - 1])) and statement.end_lineno:
                found.update(range(statement.lineno, statement.end_lineno + 1))
    return found


def documents_attribute(scope: ast.AST, previous: ast.stmt) -> bool:
    """Whether a string after ``previous`` is an attribute docstring, as Sphinx reads them: after an
    assignment in a module or class body, or after one to ``self.name`` (in ``__init__``, say)."""
    if isinstance(previous, ast.Assign):
        targets = previous.targets
    elif isinstance(previous, ast.AnnAssign):
        targets = [previous.target]
    else:
        return False
    return isinstance(scope, ast.Module | ast.ClassDef) or all(isinstance(t, ast.Attribute) for t in targets)


def split(source: str) -> Split:
    """Count one module's lines by kind."""
    docstrings = docstring_lines(ast.parse(source))
    comments: set[int] = set()
    code: set[int] = set()
    layout = {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments.add(token.start[0])
        elif token.type not in layout:
            code.update(range(token.start[0], token.end[0] + 1))
    result = Split()
    for number, line in enumerate(source.splitlines(), 1):
        if not line.strip():
            result.blank += 1
        elif number in docstrings:
            result.docstring += 1
        elif number in comments and number not in code:
            result.comment += 1
        else:
            result.code += 1
    return result


def sources(revision: str | None) -> list[str]:
    """The runtime modules' texts, at ``revision`` or in the working tree."""
    if revision is None:
        paths = sorted(str(path) for path in Path(PACKAGE).rglob("*.py"))
        return [Path(path).read_text() for path in paths if not path.startswith(EXCLUDED)]
    listing = git("ls-tree", "-r", "--name-only", revision, "--", PACKAGE).split()
    paths = [path for path in listing if path.endswith(".py") and not path.startswith(EXCLUDED)]
    return [git("show", f"{revision}:{path}") for path in paths]


def git(*args: str) -> str:
    """A git command's output (run in the repository)."""
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout  # noqa: S603, S607


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revisions", nargs="*", help="git revisions (default: the working tree)")
    args = parser.parse_args()
    print("| tree | lines | code | docstrings | comments | blank |")
    print("|---|---|---|---|---|---|")
    for revision in args.revisions or [None]:
        total = Split()
        for text in sources(revision):
            total.add(split(text))
        name = revision or "working tree"
        counts = (total.total, total.code, total.docstring, total.comment, total.blank)
        print(f"| {name} | " + " | ".join(f"{count:,}" for count in counts) + " |")


if __name__ == "__main__":
    main()
