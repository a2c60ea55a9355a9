"""Terminal tables that fit any width: every column shown, no value cut.

Owns: `Column`, `FittedTable` (the tables of the terminal views), `LabelledLines` (the
``analyze`` summary: a label and a value per line), the fixed table of state
abbreviations (`STATE_ABBREVIATIONS`) and word wrapping of `Text`. Knows nothing of
DataFrames, of captures or of what the columns mean: headers and cells in, lines out.

The policy, at the width a table is rendered at (the terminal's, ``COLUMNS``, or 120
into a pipe), trying each step only when the one before does not fit:

1. the table as it is: full headers, the free-text column (``wrap``: ``detail``,
   ``event``, ``flags``) wrapped at spaces, never narrower than its longest word;
2. short headers where a column has one (``conn`` -> ``id``, ``+seconds`` -> ``+s``, ...),
   one space between columns instead of two;
3. state names abbreviated as ``ss`` prints them (`STATE_ABBREVIATIONS`: ESTABLISHED ->
   ESTAB, SYN_RECEIVED -> SYN-RECV, the other underscores -> hyphens), ``~`` kept;
4. each row on two or three lines (bands of consecutive columns, the later bands
   indented by two spaces, under a header laid out the same way);
5. stacked: one block per row, one ``header  value`` line per column (full headers and
   state names again), blocks separated by a blank line, like ``psql \\x``.

No column is ever dropped and no value is cut to ``…``: addresses, times, states and
frame numbers stay whole on one line. Only two things are ever broken inside a word: a
free-text word wider than the whole width, and (stacked) a value wider than the whole
width, which continues on the next line. The title and caption wrap at spaces.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, JustifyMethod, RenderableType, RenderResult
from rich.text import Text

from tcplife.output.safety import terminal_text

#: How a narrow table writes states: the names ``ss -tan`` prints (iproute2 6.1).
#: LISTEN, CLOSING, CLOSED and UNKNOWN are written as they are.
STATE_ABBREVIATIONS: dict[str, str] = {
    "ESTABLISHED": "ESTAB", "SYN_SENT": "SYN-SENT", "SYN_RECEIVED": "SYN-RECV",
    "FIN_WAIT_1": "FIN-WAIT-1", "FIN_WAIT_2": "FIN-WAIT-2", "CLOSE_WAIT": "CLOSE-WAIT",
    "LAST_ACK": "LAST-ACK", "TIME_WAIT": "TIME-WAIT",
}
#: Continuation bands of a row, and stacked values put under their label, are indented so.
INDENT = 2
#: More bands than this per row and the table is stacked instead.
MAX_BANDS = 3


def abbreviate_state(text: str) -> str:
    """``ESTABLISHED`` -> ``ESTAB``, ``~SYN_RECEIVED`` -> ``~SYN-RECV``; any other text
    unchanged."""
    mark = "~" if text.startswith("~") else ""
    name = text[len(mark):]
    return mark + STATE_ABBREVIATIONS.get(name, name)


def wrap_text(text: Text, width: int) -> list[Text]:
    """``text`` in lines of at most ``width`` cells, broken at spaces (styles kept); a word
    wider than ``width`` is broken into pieces of ``width``."""
    width = max(width, 1)
    plain = text.plain
    if cell_len(plain) <= width and "\n" not in plain:
        return [text]
    lines: list[Text] = []
    for part_start, part in _paragraphs(plain):
        start = end = None
        for match in re.finditer(r"\S+", part):
            w_start, w_end = part_start + match.start(), part_start + match.end()
            if start is not None and cell_len(plain[start:w_end]) <= width:
                end = w_end
                continue
            if start is not None:
                lines.append(text[start:end])
            start, end = w_start, w_end
            while cell_len(plain[start:end]) > width:  # a word wider than the line: fold
                cut = start + _fit_chars(plain[start:end], width)
                lines.append(text[start:cut])
                start = cut
        if start is not None:
            lines.append(text[start:end])
        elif not lines or part == "":
            lines.append(Text(""))
    return lines or [Text("")]


def _paragraphs(plain: str) -> Iterator[tuple[int, str]]:
    offset = 0
    for part in plain.split("\n"):
        yield offset, part
        offset += len(part) + 1


def _fit_chars(word: str, width: int) -> int:
    """How many leading characters of ``word`` fit in ``width`` cells (at least one)."""
    n = 0
    while n < len(word) and cell_len(word[:n + 1]) <= width:
        n += 1
    return max(n, 1)


def _words(text: str) -> int:
    return max((cell_len(w) for w in text.split()), default=0)


@dataclass(frozen=True)
class Column:
    """A column of a terminal view. ``wrap``: free text, broken at spaces when narrow;
    ``short``: the header when the table is narrowed; ``state``: its cells are state
    names (``~`` prefix allowed), written as ``ss`` writes them when narrowed."""

    header: str
    justify: JustifyMethod = "left"
    wrap: bool = False
    short: str | None = None
    state: bool = False

    def title(self, short: bool) -> str:
        return self.short if short and self.short is not None else self.header


@dataclass(frozen=True)
class Layout:
    """How a table is narrowed (steps 1-3 of the module's policy)."""

    short: bool = False
    abbreviate: bool = False
    gap: int = 2


@dataclass(frozen=True)
class Plan:
    """A layout and its bands (lists of column indices, in order); no bands: stacked."""

    layout: Layout
    bands: tuple[tuple[int, ...], ...]

    @property
    def stacked(self) -> bool:
        return not self.bands


def _safe_cell(cell: RenderableType) -> Text:
    """A table cell as Text (a str would be parsed as rich markup: ``[fd00::1]:80`` is a
    tag to rich), with control characters escaped."""
    if isinstance(cell, str):
        return Text(terminal_text(cell))
    if isinstance(cell, Text):
        if not cell.plain.isprintable():
            return Text(terminal_text(cell.plain), style=cell.style)
        return cell
    return Text(terminal_text(str(cell)))


class FittedTable:
    """A table laid out at the width it is rendered at by the module's policy: narrowed,
    banded or stacked, never a column dropped or a value cut. Printed as aligned lines
    (fast at any number of rows: no rich `Table` layout)."""

    def __init__(self, title: str, columns: Sequence[Column],
                 rows: Sequence[Sequence[RenderableType]], caption: str | None = None,
                 gap: int = 2) -> None:
        # text from captures and file names: no markup, no control characters
        self.title = Text(terminal_text(title), style="bold")
        self.columns = list(columns)
        self.rows = [[_safe_cell(cell) for cell in row] for row in rows]
        self.caption, self.gap = caption, gap
        self._short_rows: list[list[Text]] | None = None

    # --- measuring ----------------------------------------------------------------------

    def cells(self, abbreviate: bool) -> list[list[Text]]:
        """The rows, with state names abbreviated if asked."""
        if not abbreviate or not any(c.state for c in self.columns):
            return self.rows
        if self._short_rows is None:
            states = [i for i, c in enumerate(self.columns) if c.state]
            short = []
            for row in self.rows:
                copy = list(row)
                for i in states:
                    cell = row[i]
                    name = abbreviate_state(cell.plain)
                    if name != cell.plain:
                        copy[i] = Text(name, style=cell.style)
                short.append(copy)
            self._short_rows = short
        return self._short_rows

    def widths(self, layout: Layout) -> list[tuple[int, int]]:
        """Per column (narrowest, widest) in cells: a wrapping column may go down to its
        longest word (or header); any other column is as wide as its widest cell."""
        out = []
        rows = self.cells(layout.abbreviate)
        for i, column in enumerate(self.columns):
            header = max(cell_len(line) for line in column.title(layout.short).split("\n"))
            widest = max([header] + [row[i].cell_len for row in rows])
            if column.wrap:
                out.append((max([header] + [_words(row[i].plain) for row in rows]), widest))
            else:
                out.append((widest, widest))
        return out

    def plan(self, width: int) -> Plan:
        """The first step of the policy that fits ``width``."""
        layouts = [Layout(False, False, self.gap), Layout(True, False, 1),
                   Layout(True, True, 1)]
        everything = tuple(range(len(self.columns)))
        for layout in layouts:
            lows = [low for low, _ in self.widths(layout)]
            if sum(lows) + layout.gap * (len(lows) - 1) <= width:
                return Plan(layout, (everything,))
        layout = layouts[-1]
        # glued: a column without a header (the arrow) stays with its neighbours
        glued = {i for i, c in enumerate(self.columns) if not c.header.strip()}
        limits = self.widths(layout)
        for count in range(2, MAX_BANDS + 1):
            for choice in (1, 0):  # the free text as wide as it wants, else narrowed
                bands = _bands([w[choice] for w in limits], width, layout.gap, glued, count)
                if bands is not None:
                    return Plan(layout, bands)
        return Plan(Layout(), ())

    # --- rendering ----------------------------------------------------------------------

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.render(options.max_width)

    def render(self, width: int) -> Iterator[Text]:
        """The table as lines of at most ``width`` cells, each marked ``no_wrap``."""
        plan = self.plan(width)
        lines = self._stacked(width) if plan.stacked else self._grid(plan, width)
        for line in lines:
            line.no_wrap, line.overflow = True, "ignore"
            yield line

    def _titled(self, table_width: int, width: int) -> Iterator[Text]:
        if self.title.cell_len <= table_width:
            margin = " " * ((table_width - self.title.cell_len) // 2)
            yield Text.assemble(margin, self.title)
        else:
            yield from wrap_text(self.title, width)

    def _captioned(self, width: int) -> Iterator[Text]:
        if self.caption:
            yield from wrap_text(Text(terminal_text(self.caption)), width)

    def _grid(self, plan: Plan, width: int) -> Iterator[Text]:
        layout, gap = plan.layout, " " * plan.layout.gap
        limits = self.widths(layout)
        rows = self.cells(layout.abbreviate)
        widths: dict[int, int] = {}
        for n, band in enumerate(plan.bands):
            room = width - (INDENT if n else 0)
            fixed = sum(limits[i][0] for i in band) + layout.gap * (len(band) - 1)
            for i in band:  # a wrapping column takes what is left, up to its widest cell
                low, high = limits[i]
                widths[i] = min(high, low + room - fixed) if self.columns[i].wrap else low
        band_widths = [(INDENT if n else 0) + sum(widths[i] for i in band)
                       + layout.gap * (len(band) - 1) for n, band in enumerate(plan.bands)]
        total = max(band_widths)
        yield from self._titled(total, width)
        for n, band in enumerate(plan.bands):
            headers = [self.columns[i].title(layout.short).split("\n") for i in band]
            height = max(len(h) for h in headers)
            for k in range(height):
                cells = []
                for h in headers:
                    padded = [""] * (height - len(h)) + h  # bottom-aligned
                    cells.append([Text(padded[k], style="bold")])
                yield self._line(band, cells, widths, gap, n)[0]
        yield Text("─" * total)
        for row in rows:
            for n, band in enumerate(plan.bands):
                cells = [wrap_text(row[i], widths[i]) if self.columns[i].wrap else [row[i]]
                         for i in band]
                yield from self._line(band, cells, widths, gap, n)
        yield from self._captioned(width)

    def _line(self, band: tuple[int, ...], cells: list[list[Text]], widths: dict[int, int],
              gap: str, n: int) -> list[Text]:
        """One band of one row: as many lines as its tallest (wrapped) cell."""
        out = []
        for k in range(max(len(c) for c in cells)):
            text = Text(" " * (INDENT if n else 0))
            for m, (i, pieces) in enumerate(zip(band, cells, strict=True)):
                piece = pieces[k] if k < len(pieces) else Text("")
                pad = " " * max(widths[i] - piece.cell_len, 0)
                if self.columns[i].justify == "right":
                    text.append(pad)
                    text.append_text(piece)
                else:
                    text.append_text(piece)
                    text.append(pad)
                if m < len(band) - 1:
                    text.append(gap)
            text.rstrip()
            out.append(text)
        return out

    def _stacked(self, width: int) -> Iterator[Text]:
        yield from wrap_text(self.title, width)
        # the arrow columns (no header) are decoration: a block names from and to
        shown = [i for i, c in enumerate(self.columns) if c.header.strip()]
        labels = [Text(self.columns[i].header.replace("\n", " "), style="bold")
                  for i in shown]
        for row in self.rows:
            yield Text("")
            pairs = [(label, row[i], self.columns[i].wrap)
                     for label, i in zip(labels, shown, strict=True)]
            yield from labelled_lines(pairs, width)
        if self.rows and self.caption:
            yield Text("")
        yield from self._captioned(width)


def _bands(widths: list[int], width: int, gap: int, glued: set[int], count: int
           ) -> tuple[tuple[int, ...], ...] | None:
    """Consecutive columns of ``widths`` cells in ``count`` bands of at most ``width``
    cells (the later ones indented), the widest band as narrow as can be, never a break
    next to a ``glued`` column; None if there is no such split."""
    n = len(widths)
    cuts = [k for k in range(1, n) if k not in glued and k - 1 not in glued]
    best: tuple[int, tuple[int, ...]] | None = None
    for chosen in itertools.combinations(cuts, count - 1):
        edges = (0, *chosen, n)
        widest = max(sum(widths[lo:hi]) + gap * (hi - lo - 1) + (INDENT if k else 0)
                     for k, (lo, hi) in enumerate(itertools.pairwise(edges)))
        if widest <= width and (best is None or widest < best[0]):
            best = (widest, edges)
    if best is None:
        return None
    return tuple(tuple(range(lo, hi)) for lo, hi in itertools.pairwise(best[1]))


def labelled_lines(pairs: Sequence[tuple[Text, Text, bool]], width: int) -> Iterator[Text]:
    """``label  value`` lines with the values aligned, for (label, value, wraps) triples:
    a wrapping value is broken at spaces; a value too wide beside its label goes on the
    next lines, indented, and one wider than ``width`` there continues on the next line."""
    label_w = max((label.cell_len for label, _, _ in pairs), default=0)
    room = width - label_w - 2
    for label, value, wraps in pairs:
        lead = Text.assemble(label, " " * (label_w - label.cell_len + 2))
        fits = value.cell_len <= room if not wraps else _words(value.plain) <= room
        if room >= 8 and fits:
            pieces = wrap_text(value, room)
            for k, piece in enumerate(pieces):
                line = Text.assemble(lead if k == 0 else " " * (label_w + 2), piece)
                line.rstrip()
                yield line
            continue
        if label.plain:
            yield Text.assemble(label)
        for piece in wrap_text(value, width - INDENT):
            yield Text.assemble(" " * INDENT, piece)


class LabelledLines:
    """Rows of a label and a value (the ``analyze`` summary), laid out at the width they
    are rendered at by `labelled_lines`; every value may wrap at spaces."""

    def __init__(self, label_style: str = "bold") -> None:
        self.rows: list[tuple[Text, Text]] = []
        self.label_style = label_style

    def add_row(self, label: str, value: str | Text) -> None:
        text = value if isinstance(value, Text) else Text(terminal_text(value))
        self.rows.append((Text(terminal_text(label), style=self.label_style), text))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in labelled_lines([(label, value, True) for label, value in self.rows],
                                   options.max_width):
            line.no_wrap, line.overflow = True, "ignore"
            yield line
