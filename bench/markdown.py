"""The generated block of BENCHMARKS.md (between the markers, section by section), Markdown tables,
number formats, and paths and command lines as the block shows them (no paths of this machine)."""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

from bench.common import REPO, BenchError
from nmt import fileio

BEGIN = "<!-- benchmark.py:begin -->"
END = "<!-- benchmark.py:end -->"
SECTION_MARK = "<!-- benchmark.py:section {} -->"
_SECTION_RE = re.compile(r"^<!-- benchmark\.py:section (\d+) -->$", re.MULTILINE)
_PYTHON_RE = re.compile(r"^python[\d.]*$")


def replace_between_markers(text: str, block: str) -> str:
    """`text` with everything between BEGIN and END replaced by `block`.

    Without the markers, they are appended (with `block`) at the end. The markers must each
    occur at most once, BEGIN before END; anything else raises BenchError.
    """
    block = block if block.endswith("\n") or not block else block + "\n"
    begins, ends = text.count(BEGIN), text.count(END)
    if begins == 0 and ends == 0:
        prefix = text if not text or text.endswith("\n") else text + "\n"
        if prefix:
            prefix += "\n"
        return f"{prefix}{BEGIN}\n{block}{END}\n"
    if begins != 1 or ends != 1:
        raise BenchError(
            f"expected one {BEGIN} and one {END}, found {begins} and {ends}; fix the file by hand"
        )
    start, stop = text.index(BEGIN), text.index(END)
    if stop < start:
        raise BenchError(f"{END} comes before {BEGIN}; fix the file by hand")
    return text[: start + len(BEGIN)] + "\n" + block + text[stop:]


def extract_block(text: str) -> str:
    """What lies between the markers ('' when they are absent)."""
    if BEGIN not in text or END not in text:
        return ""
    start = text.index(BEGIN) + len(BEGIN)
    stop = text.index(END)
    return text[start:stop].strip("\n") + "\n" if stop > start else ""


def split_sections(block: str) -> tuple[str, dict[int, str]]:
    """(text before the first section marker, {section number: its text incl. the marker})."""
    matches = list(_SECTION_RE.finditer(block))
    if not matches:
        return block, {}
    head = block[: matches[0].start()]
    sections = {}
    for i, m in enumerate(matches):
        stop = matches[i + 1].start() if i + 1 < len(matches) else len(block)
        sections[int(m.group(1))] = block[m.start() : stop].rstrip("\n") + "\n"
    return head, sections


def merge_block(old_block: str, head: str, new_sections: dict[int, str]) -> str:
    """A block with `head`, the old block's sections, and `new_sections` replacing theirs.

    Each new section's text must start with its SECTION_MARK line (added when missing).
    Sections are ordered by number.
    """
    _, sections = split_sections(old_block)
    for number, text in new_sections.items():
        mark = SECTION_MARK.format(number)
        if not text.startswith(mark):
            text = f"{mark}\n{text}"
        sections[number] = text.rstrip("\n") + "\n"
    parts = [head.rstrip("\n") + "\n"] if head.strip() else []
    parts += [sections[n] for n in sorted(sections)]
    return "\n".join(parts)


def write_atomic(path: Path, data: str | bytes) -> Path:
    """`nmt.fileio.write_atomic` (a temporary file beside `path`, fsynced, renamed over it)
    after creating `path`'s directory; a failure raises nmt's DataError naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return fileio.write_atomic(path, data, fsync=True)


def update_markdown(path: Path, head: str, sections: dict[int, str]) -> None:
    """Replace `sections` (and the head) inside the markers of `path`, atomically."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = merge_block(extract_block(text), head, sections)
    write_atomic(path, replace_between_markers(text, block))


def format_table(columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table. `columns`: (header, "l" or "r"); a cell of None is left empty.

    Cells are str() of the value with `|` escaped; floats should be formatted by the caller.
    """
    header = "| " + " | ".join(name for name, _ in columns) + " |"
    rule = "|" + "|".join("---:" if align == "r" else "---" for _, align in columns) + "|"
    out = [header, rule]
    for row in rows:
        row = list(row)
        if len(row) != len(columns):
            raise ValueError(f"row has {len(row)} cells, the table {len(columns)} columns: {row}")
        cells = ["" if cell is None else str(cell).replace("|", "\\|") for cell in row]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def fmt(value: Optional[float], digits: int = 0, *, missing: str = "") -> str:
    """A number with thousands separators and `digits` decimals; `missing` for None/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return f"{value:,.{digits}f}"


def mib(nbytes: Optional[int]) -> Optional[float]:
    return None if nbytes is None else nbytes / 2**20


def shown_path(path: str | os.PathLike, repo: Path = REPO, home: Optional[Path] = None) -> str:
    """`path` as BENCHMARKS.md shows it: relative to the repository root `repo` when it lies
    inside it or beside it (the shared data directory: `../shared/...`), `~/...` under the home
    directory, otherwise unchanged. A relative path (the benchmark runs in the repository root)
    and an empty one are kept as they are."""
    text = os.fspath(path)
    if not os.path.isabs(text):
        return text
    home = Path.home() if home is None else home
    candidates = dict.fromkeys([Path(os.path.normpath(text)), Path(text).resolve()])
    for base in (repo, repo.parent):
        if base == Path(base.anchor):  # not relative to the filesystem root
            continue
        for candidate in candidates:
            if candidate.is_relative_to(base):
                return os.path.relpath(candidate, repo)
    if home != Path(home.anchor):  # a home of "/" would take in every path
        for candidate in candidates:
            if candidate.is_relative_to(home) and candidate != home:
                return str(Path("~") / candidate.relative_to(home))
    return text


def _shown_argument(arg: str, **where) -> str:
    """An argument with its absolute path shown by `shown_path`, also after `--opt=`/`key=`."""
    if os.path.isabs(arg):
        return shown_path(arg, **where)
    key, equals, value = arg.partition("=")
    if equals and os.path.isabs(value):
        return f"{key}={shown_path(value, **where)}"
    return arg


def shown_command(command: str | Sequence[str | os.PathLike], **where) -> str:
    """A command line as BENCHMARKS.md shows it: a program given by its absolute path by its
    name (an interpreter as `python`; the venvs' `nmt`, `onmt-main`), every absolute path
    among the arguments through `shown_path` (`where`: its `repo` and `home`). A string is
    split with shlex and comes back unchanged when nothing in it changes."""
    parts = shlex.split(command) if isinstance(command, str) else [os.fspath(c) for c in command]
    if not parts:
        return command if isinstance(command, str) else ""
    program = parts[0]
    if os.path.isabs(program):
        name = os.path.basename(program)
        program = "python" if _PYTHON_RE.match(name) else name
    shown = [program, *(_shown_argument(arg, **where) for arg in parts[1:])]
    if isinstance(command, str) and shown == parts:
        return command
    return shlex.join(shown)


def command_block(commands: Iterable[str | Sequence[str]]) -> str:
    """The commands closing a section, one per line, indented as a Markdown code block:
    each through `shown_command`, repeated ones once."""
    return "\n".join(f"    {c}" for c in dict.fromkeys(shown_command(c) for c in commands))
