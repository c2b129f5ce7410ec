"""The explanatory prose of the generated Markdown: one template file per section (and per variant
of a passage) in bench/templates/, filled by `fill` with `string.Template` `$name` placeholders.

A template is written wrapped, like any Markdown source; `fill` joins the lines of each paragraph
(the lines between blank lines) into one line, as the generated block of BENCHMARKS.md has them,
then substitutes. Tables, commands and other multi-line values go in as values (a table as a
paragraph of its own: one `$table` line). Every placeholder of a template must be given a value
and every value given must have a placeholder (BenchError otherwise, naming the template); `$$` is
a literal dollar sign. The templates live beside this module in the checkout, like the rest of
bench/ (not shipped in the wheel).
"""

from __future__ import annotations

import functools
import re
import string
from pathlib import Path

from bench.common import BenchError

TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.cache
def load(name: str) -> tuple[string.Template, frozenset[str]]:
    """bench/templates/NAME.md with each paragraph joined into one line, and its placeholders."""
    path = TEMPLATES / f"{name}.md"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BenchError(f"{path}: cannot read the template ({e.strerror})") from None
    blocks = re.split(r"\n[ \t]*\n", text.strip())
    paragraphs = [" ".join(line.strip() for line in block.splitlines()) for block in blocks]
    template = string.Template("\n\n".join(paragraphs))
    return template, frozenset(placeholders(template, path))


def placeholders(template: string.Template, where: object = "template") -> set[str]:
    """The `$name` and `${name}` placeholders of `template`; a `$` that starts neither (nor
    `$$`) raises BenchError naming `where`."""
    names = set()
    for match in template.pattern.finditer(template.template):
        if match.group("invalid") is not None:
            paragraph = template.template[: match.start()].count("\n\n") + 1
            raise BenchError(f"{where}: paragraph {paragraph}: a '$' without a name (write $$)")
        name = match.group("named") or match.group("braced")
        if name:
            names.add(name)
    return names


def fill(name: str, **values: object) -> str:
    """Template NAME filled with `values` (str() of each), each paragraph on one line."""
    template, expected = load(name)
    missing, unused = sorted(expected - values.keys()), sorted(values.keys() - expected)
    if missing or unused:
        raise BenchError(
            f"{TEMPLATES / name}.md: no value for {', '.join(missing) or '-'}; "
            f"no placeholder for {', '.join(unused) or '-'}"
        )
    return template.substitute({key: str(value) for key, value in values.items()})
