"""One source of truth: the compiled engine's tables are generated from the Python core's
(`tcplife.native.cgen` writes engine/tables.h, committed), and the engine built from them
holds, in memory, exactly the core's tables."""

from __future__ import annotations

import copy

from tcplife.native import cgen

from needs import missing


def test_the_committed_header_is_what_the_core_makes() -> None:
    assert cgen.HEADER.read_text() == cgen.render(), \
        "engine/tables.h is stale: run python -m tcplife.native.cgen"
    assert cgen.main(["--check"]) == 0


def test_a_changed_table_changes_the_header_and_its_digest(tmp_path) -> None:
    tables = cgen.engine_tables()
    changed = copy.deepcopy(tables)
    move = [list(row) for row in changed["move"]]
    move[0][0] = -1  # UNKNOWN + send SYN stays
    changed["move"] = tuple(tuple(row) for row in move)
    assert cgen.fingerprint(changed) != cgen.fingerprint(tables)
    assert cgen.render(changed) != cgen.render(tables)
    stale = tmp_path / "tables.h"
    stale.write_text(cgen.render(changed))
    assert cgen.main(["--check", "--output", str(stale)]) == 1


def test_the_tables_say_what_the_core_says() -> None:
    from tcplife.core.machine import TABLE, Ev, Stay
    from tcplife.core.states import Odd, State

    t = cgen.engine_tables()
    states, events = list(State), list(Ev)
    for (state, ev), cell in TABLE.items():
        i, j = states.index(state), events.index(ev)
        if isinstance(cell, Stay):
            assert t["move"][i][j] == -1
            assert t["note"][i][j] == (-1 if cell.note is None
                                       else list(Odd).index(cell.note))
        else:
            assert t["move"][i][j] == states.index(cell)
    assert t["names"]["STATE"] == tuple(s.value for s in State)


def test_the_built_engine_holds_the_core_tables() -> None:
    try:
        from tcplife import _engine
    except ImportError:
        missing("the compiled engine (tcplife._engine: a C compiler at install)")
    assert _engine.tables() == cgen.engine_tables()
    assert cgen.fingerprint() == _engine.TABLES_SHA256
