"""The compiled engine's tables and constants, generated from the Python core's.

Owns: `engine_tables()`, the core's vocabulary, state tables and constants as plain
tuples of names and numbers (what the compiled engine must hold, in the form it exposes
them: `tcplife._engine.tables()`), and `render()`, the C header written from them
(``engine/tables.h`` in the repository, committed). One source of truth: nothing in the header is
written by hand. ``python -m tcplife.native.cgen`` rewrites it; ``--check`` says whether
it is current (tests/test_engine_tables.py runs it). At import the engine's loader
(`tcplife.native.loader`) compares the engine's tables, in memory, with
`engine_tables()` and refuses an engine that differs.

Knows nothing of the engine's code: only what the core says.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Any

from tcplife.core import evidence, machine, rules, states, timers
from tcplife.core.machine import PAIR, REUSE, TABLE, Ev, Joint, Stay
from tcplife.core.options import NS, Options
from tcplife.core.segment import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG
from tcplife.core.states import (
    AnomalyKind,
    CloseKind,
    Confidence,
    Odd,
    Severity,
    State,
)

#: where the header lives, from the package's root
HEADER = Path(__file__).resolve().parents[2] / "engine" / "tables.h"

#: the vocabularies, in their enums' order: C name prefix -> enum
VOCABULARY: dict[str, type[Enum]] = {
    "STATE": State, "EV": Ev, "ODD": Odd, "JOINT": Joint, "CLOSE": CloseKind,
    "ANOMALY": AnomalyKind, "SEVERITY": Severity, "CONFIDENCE": Confidence,
}


def _index(members: type[Enum]) -> dict[Any, int]:
    return {m: i for i, m in enumerate(members)}


def engine_tables() -> dict[str, Any]:
    """The core's tables as the engine holds them: names as tuples of str (their enums'
    order is their number), tables as tuples of small ints (-1: none)."""
    st, ev, odd, joint = _index(State), _index(Ev), _index(Odd), _index(Joint)
    move, note = [], []
    for s in State:
        move_row, note_row = [], []
        for e in Ev:
            cell = TABLE[(s, e)]
            if isinstance(cell, Stay):
                move_row.append(-1)
                note_row.append(-1 if cell.note is None else odd[cell.note])
            else:
                move_row.append(st[cell])
                note_row.append(-1)
        move.append(tuple(move_row))
        note.append(tuple(note_row))

    def mask(group: frozenset[State]) -> int:
        return sum(1 << st[s] for s in group)

    return {
        "names": {prefix: tuple(m.value for m in enum) for prefix, enum in VOCABULARY.items()},
        "move": tuple(move),
        "note": tuple(note),
        "deciding": tuple(sorted(ev[e] for e in machine.DECIDING)),
        "reuse": tuple(joint[REUSE[s]] for s in State),
        "pair": tuple(tuple(joint[PAIR[(c, s)]] for s in State) for c in State),
        "masks": {"ALIVE": mask(machine.ALIVE), "SYNCHRONIZED": mask(machine.SYNCHRONIZED),
                  "FIN_SENT": mask(machine.FIN_SENT)},
        "flags": {"FIN": FIN, "SYN": SYN, "RST": RST, "PSH": PSH, "ACK": ACK, "URG": URG,
                  "ECE": ECE, "CWR": CWR},
        "constants": {"NS": NS, "DUPLICATE_NS": rules.DUPLICATE_NS,
                      "MIN_RTO_NS": evidence.MIN_RTO_NS, "COMPACT_MIN": timers.COMPACT_MIN},
        "well_known_ports": tuple(sorted(evidence.WELL_KNOWN_SERVER_PORTS)),
        "options": tuple(f.name for f in fields(Options)),
        "sides": states.SIDES,
    }


def detect_tables() -> dict[str, Any]:
    """The anomaly detectors' constants (`tcplife.detect`), for the compiled detectors
    (engine/detect*.c): each anomaly kind's default severity (`DEFAULT_SEVERITY`, in
    `AnomalyKind` order, as `Severity` numbers) and `FOREVER`. Kept apart from
    `engine_tables()` (what every engine must hold: the loader's check); the compiled
    detectors hand theirs back (`_engine.Detectors.constants()`) for tests/test_cdetect.py."""
    from tcplife.detect.view import FOREVER

    severity = _index(Severity)
    return {"default_severity": tuple(severity[Severity(states.DEFAULT_SEVERITY[k.value])]
                                      for k in AnomalyKind),
            "FOREVER": FOREVER}


def fingerprint(tables: dict[str, Any] | None = None) -> str:
    """A digest of `engine_tables()`: the header records the one it was made from."""
    return hashlib.sha256(repr(tables or engine_tables()).encode()).hexdigest()


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _c_ident(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).upper()


def render(tables: dict[str, Any] | None = None) -> str:
    """The C header of ``tables`` (default: `engine_tables()`)."""
    t = tables or engine_tables()
    out = ["/* Generated by `python -m tcplife.native.cgen` from the Python core's tables",
           " * (tcplife/core/machine.py, states.py, ...). Do not edit: regenerate.",
           " * tests/test_engine_tables.py fails when this file is not current. */",
           "#ifndef TCPLIFE_TABLES_H", "#define TCPLIFE_TABLES_H", "",
           f"#define TL_TABLES_SHA256 {_c_string(fingerprint(t))}", ""]
    for prefix, names in t["names"].items():
        members = [f"TL_{prefix}_{_c_ident(n)} = {i}"
                   for i, n in enumerate(m.name for m in VOCABULARY[prefix])]
        out.append(f"enum tl_{prefix.lower()} {{\n    " + ",\n    ".join(members) + "\n};")
        out.append(f"#define TL_N_{prefix} {len(names)}")
        out.append(f"static const char *const TL_{prefix}_NAMES[TL_N_{prefix}] = {{\n    "
                   + ",\n    ".join(_c_string(n) for n in names) + "\n};")
        out.append("")

    def grid(name: str, rows: tuple[tuple[int, ...], ...], dims: str) -> None:
        body = ",\n    ".join("{" + ", ".join(f"{v:2d}" for v in row) + "}" for row in rows)
        out.append(f"static const signed char {name}{dims} = {{\n    {body}\n}};")

    out.append("/* (state, event) -> next state, or -1: stay */")
    grid("TL_MOVE", t["move"], "[TL_N_STATE][TL_N_EV]")
    out.append("/* (state, event) -> the oddity a staying cell notes, or -1 */")
    grid("TL_NOTE", t["note"], "[TL_N_STATE][TL_N_EV]")
    out.append("/* the receiver's state -> what a reuse SYN does to the old instance (joint) */")
    out.append("static const signed char TL_REUSE[TL_N_STATE] = {"
               + ", ".join(str(v) for v in t["reuse"]) + "};")
    out.append("/* (client state, server state) -> OVER or OPEN (joint) */")
    grid("TL_PAIR", t["pair"], "[TL_N_STATE][TL_N_STATE]")
    out.append("/* the events that decide a side's initial state (no transition) */")
    out.append(f"#define TL_N_DECIDING {len(t['deciding'])}")
    out.append("static const signed char TL_DECIDING[TL_N_DECIDING] = {"
               + ", ".join(str(v) for v in t["deciding"]) + "};")
    out.append("")
    out.append("/* sets of states, as bit masks over enum tl_state */")
    for name, value in t["masks"].items():
        out.append(f"#define TL_MASK_{name} 0x{value:x}u")
    out.append("/* TCP flags */")
    for name, value in t["flags"].items():
        out.append(f"#define TL_FLAG_{name} 0x{value:02x}u")
    out.append("/* constants of the core's rules */")
    for name, value in t["constants"].items():
        out.append(f"#define TL_{name} {value}LL")
    ports = t["well_known_ports"]
    out.append(f"#define TL_N_WELL_KNOWN_PORTS {len(ports)}")
    out.append("static const unsigned short TL_WELL_KNOWN_PORTS[TL_N_WELL_KNOWN_PORTS] = {"
               + ", ".join(str(p) for p in ports) + "};")
    opts = t["options"]
    out.append("/* the options, in the order the engine takes them (seconds, as floats) */")
    out.append("enum tl_option {\n    " + ",\n    ".join(
        f"TL_OPT_{_c_ident(n)} = {i}" for i, n in enumerate(opts)) + "\n};")
    out.append(f"#define TL_N_OPTIONS {len(opts)}")
    out.append("static const char *const TL_OPTION_NAMES[TL_N_OPTIONS] = {\n    "
               + ",\n    ".join(_c_string(n) for n in opts) + "\n};")
    out.append("static const char *const TL_SIDE_NAMES[2] = {"
               + ", ".join(_c_string(s) for s in t["sides"]) + "};")
    det = detect_tables()
    out.append("/* the anomaly detectors' constants (tcplife.detect: cgen.detect_tables) */")
    out.append(f"#define TL_DET_FOREVER {det['FOREVER']}LL")
    out.append("/* each anomaly kind's severity where its detector does not judge otherwise */")
    out.append("static const signed char TL_DEFAULT_SEVERITY[TL_N_ANOMALY] = {"
               + ", ".join(str(v) for v in det["default_severity"]) + "};")
    out += ["", "#endif /* TCPLIFE_TABLES_H */", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tcplife.native.cgen",
                                     description="Write the compiled engine's tables.h "
                                                 "from the Python core's tables.")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed header is not what the core makes")
    parser.add_argument("--output", type=Path, default=HEADER)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is not current: run python -m tcplife.native.cgen",
                  file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
