"""The README's promises: its commands and Python cells run as printed and print what it shows;
it stays short; its links lead somewhere; its anomaly table is the contract's.

Convention: in the README's ```console blocks, a line starting with ``$ tcplife `` is a
command; the lines after it, up to the next ``$ `` line or the end of the block, are what it
prints on a terminal 100 columns wide. A line ``...`` in the output stands for lines left out.
An HTML comment ``<!-- readme-test: skip REASON -->`` on the line just before a block skips
the commands of that block (for features not on main yet); remove it when they are.
``<!-- readme-test: columns N -->`` there says the block shows a terminal N columns wide
instead (the text around it should say so).

The commands run in-process (click's CliRunner) from the repository root with ``COLUMNS=100``
(or the block's N).
The README shows what a terminal shows, where the default format is ``table``; the runner's
output is not a terminal, so ``--format table`` is added to commands that name no format.

``python3 tests/test_readme.py`` prints each command and what it prints today, to paste into
the README after a change of output.

The ```python blocks run in order in one namespace, from the repository root, as notebook
cells: where a plain ``` block follows one, it shows what the cell prints, or the repr of its
last expression.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_LINES = 400
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*(.*?)\s*-->")
COLUMNS = re.compile(r"<!--\s*readme-test:\s*columns\s+(\d+)\s*-->")
WIDTH = 100  # the terminal's width where a block does not say
FENCE = re.compile(r"^```(\w*)\s*$")
LINK = re.compile(r"\]\(([^)\s]+)\)")


@dataclass
class Command:
    line: int  # 1-based line of the README the command is on
    text: str  # the command as printed, without "$ "
    expected: list[str]  # the output shown under it, right-stripped
    skip: str | None  # why it is skipped, or None
    columns: int = WIDTH  # the width of the terminal the output was printed on


def code_blocks(lines: list[str]) -> list[tuple[int, int, str]]:
    """The fenced blocks of ``lines``: (index of the opening fence, index of the closing
    fence or the end, the language after the opening fence)."""
    blocks = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not FENCE.match(lines[end]):
            end += 1
        blocks.append((i, end, fence.group(1)))
        i = end + 1
    return blocks


def readme_commands(text: str) -> list[Command]:
    """The ``$ tcplife`` commands of the console blocks of ``text``, with their output."""
    lines = text.splitlines()
    commands: list[Command] = []
    for i, end, lang in code_blocks(lines):
        if lang != "console":
            continue
        before = lines[i - 1] if i else ""
        skip = SKIP.search(before)
        width = COLUMNS.search(before)
        current: Command | None = None
        for n in range(i + 1, end):
            line = lines[n]
            if line.startswith("$ "):
                current = None
                if line.startswith("$ tcplife "):
                    current = Command(n + 1, line[2:], [],
                                      (skip.group(1) or "marked skip") if skip else None,
                                      int(width.group(1)) if width else WIDTH)
                    commands.append(current)
            elif current is not None:
                current.expected.append(line.rstrip())
    return commands


def run(command: str, columns: int = WIDTH) -> tuple[int, str, BaseException | None]:
    """Run one README command in-process from the repository root, as a terminal
    ``columns`` wide would."""
    from tcplife.cli.main import main

    args = shlex.split(command)
    assert args[0] == "tcplife", command
    args = args[1:]
    if not any(a in ("--format", "-o", "--output") or a.startswith(("--format=", "-o"))
               for a in args) and args[0] not in ("ladder", "export", "live"):
        args += ["--format", "table"]
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        result = runner.invoke(main, args, env={"COLUMNS": str(columns), "NO_COLOR": "1"},
                               catch_exceptions=True)
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.output, exc


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` is ``expected``, where a ``...`` line stands for any lines."""
    chunks: list[list[str]] = [[]]
    for line in expected:
        if line.strip() == "...":
            chunks.append([])
        else:
            chunks[-1].append(line)
    if len(chunks) == 1:
        return actual == expected
    first, *middle, last = chunks
    if actual[:len(first)] != first:
        return False
    if last and actual[len(actual) - len(last):] != last:
        return False
    pos, stop = len(first), len(actual) - len(last)
    for chunk in middle:
        if not chunk:
            continue
        for start in range(pos, stop - len(chunk) + 1):
            if actual[start:start + len(chunk)] == chunk:
                pos = start + len(chunk)
                break
        else:
            return False
    return pos <= stop


def python_examples(text: str) -> list[tuple[int, str, list[str] | None]]:
    """The ```python blocks of ``text`` in order: (line of the block, its code, the lines of
    the plain ``` block right after it, or None where none follows)."""
    lines = text.splitlines()
    found = code_blocks(lines)
    blocks: list[tuple[int, str, list[str] | None]] = []
    for k, (i, end, lang) in enumerate(found):
        if lang != "python":
            continue
        shown = None
        if k + 1 < len(found) and found[k + 1][0] == end + 1 and found[k + 1][2] == "":
            _, out_end, _ = found[k + 1]
            shown = [line.rstrip() for line in lines[end + 2:out_end]]
        blocks.append((i + 1, "\n".join(lines[i + 1:end]), shown))
    return blocks


def run_python(code: str, namespace: dict) -> list[str]:
    """Run ``code`` as a notebook cell would: what it prints, or the repr of its last
    expression."""
    import ast
    import contextlib
    import io

    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(tree, "<README>", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<README>", "eval"), namespace)
            if value is not None:
                print(repr(value))
    return [line.rstrip() for line in printed.getvalue().splitlines()]


def test_readme_python_examples_print_what_they_show() -> None:
    """The README's Python cells, run in order in one namespace from the repository root,
    print (or show as their last expression) what the block after each says."""
    blocks = python_examples(README.read_text(encoding="utf-8"))
    assert sum(shown is not None for _, _, shown in blocks) >= 3
    namespace: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        for line, code, shown in blocks:
            actual = run_python(code, namespace)
            if shown is not None:
                assert actual == shown, (f"README line {line}: the cell shows something "
                                         "else now:\n" + "\n".join(actual))


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*\[\]()]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, in_code = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def test_readme_has_commands() -> None:
    assert len(COMMANDS) >= 5, "the README's console blocks should show commands"
    assert all(c.expected for c in COMMANDS), "every README command shows its output"


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"line{c.line}" for c in COMMANDS])
def test_readme_command_runs(cmd: Command) -> None:
    if cmd.skip:
        pytest.skip(f"README line {cmd.line}: {cmd.skip}")
    code, output, exc = run(cmd.text, cmd.columns)
    assert exc is None, f"README line {cmd.line}: {cmd.text}: raised {exc!r}"
    assert code == 0, f"README line {cmd.line}: {cmd.text}: exit {code}\n{output}"


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"line{c.line}" for c in COMMANDS])
def test_readme_output_is_real(cmd: Command) -> None:
    if cmd.skip:
        pytest.skip(f"README line {cmd.line}: {cmd.skip}")
    _code, output, _exc = run(cmd.text, cmd.columns)
    actual = [line.rstrip() for line in output.splitlines()]
    assert matches(cmd.expected, actual), (
        f"README line {cmd.line}: `{cmd.text}` prints something else now; "
        f"`python3 tests/test_readme.py` shows what. Today:\n" + "\n".join(actual))


def test_block_directives() -> None:
    text = "\n".join([
        "<!-- readme-test: columns 120 -->", "```console", "$ tcplife a", "x", "```",
        "<!-- readme-test: skip not yet -->", "```console", "$ tcplife b", "y", "```",
        "```console", "$ tcplife c", "z", "$ echo", "w", "```", "```python", "$ tcplife d", "```"])
    got = [(c.text, c.expected, c.skip, c.columns) for c in readme_commands(text)]
    assert got == [("tcplife a", ["x"], None, 120), ("tcplife b", ["y"], "not yet", WIDTH),
                   ("tcplife c", ["z"], None, WIDTH)]


def test_matches_ellipsis() -> None:
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "c", "...", "e"], list("abcde"))
    assert not matches(["a", "...", "x"], list("abc"))
    assert not matches(["a", "b"], ["a", "b", "c"])
    assert not matches(["b", "...", "c"], list("abc"))


def test_readme_is_short() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; at most {MAX_LINES}: move detail to docs/"


def _local_links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # not inside code blocks
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t)]


@pytest.mark.parametrize("page", [README, *sorted((ROOT / "docs").glob("*.md"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page: Path) -> None:
    """Every relative link of the README and the docs pages names a file that exists, and
    an anchor into a Markdown file names one of its headings."""
    broken = []
    for target in _local_links(page):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        missing_anchor = bool(anchor) and dest.suffix == ".md" and dest.exists() \
            and anchor not in _anchors(dest)
        if not dest.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_readme_links_every_docs_page() -> None:
    linked = {Path(t.partition("#")[0]).name for t in _local_links(README)
              if t.startswith("docs/")}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages, "docs/ has pages"
    assert pages <= linked, f"docs pages the README does not link: {sorted(pages - linked)}"


def test_readme_anomaly_table_is_the_contract() -> None:
    """One line per kind of `ANOMALY_KINDS`, each with its default severity."""
    from tcplife.core.states import ANOMALY_KINDS, DEFAULT_SEVERITY

    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| \[?`([a-z_0-9]+)`\]?(?:\([^)]*\))? \| (\w+) \|", line)
        if m:
            rows[m.group(1)] = m.group(2)
    assert list(rows) == list(ANOMALY_KINDS)
    assert rows == {k: DEFAULT_SEVERITY[k] for k in ANOMALY_KINDS}


if __name__ == "__main__":
    for cmd in COMMANDS:
        code, output, exc = run(cmd.text, cmd.columns)
        print(f"$ {cmd.text}" + (f"    [{cmd.columns} columns]" if cmd.columns != WIDTH else ""))
        print("\n".join(line.rstrip() for line in output.splitlines()))
        if code or exc:
            print(f"[README line {cmd.line}: exit {code} {exc!r}]", file=sys.stderr)
