"""Property tests: random loss-free conversations through the tracker.

Whatever the script, each side's transitions chain (from_state is the previous to_state),
duplicated segments change nothing, and once both FINs are sent and acknowledged the
side that closed first ends in TIME_WAIT and the other in CLOSED (or both in TIME_WAIT
when the FINs crossed, which a loss-free in-order script cannot produce).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from builder import ACK, FIN, Conv, run

ACTIONS = st.lists(st.sampled_from(["c_data", "s_data", "c_ack", "s_ack", "c_fin", "s_fin"]),
                   max_size=12)


def _script(actions: list[str]) -> tuple[Conv, list[str]]:
    cv = Conv()
    cv.handshake()
    fins: list[str] = []
    last_acked = False
    for action in actions:
        who, what = action.split("_")
        if who in fins and what in ("data", "fin"):
            continue  # nothing can be sent after one's own FIN
        if len(fins) == 2 and who == fins[1] and last_acked:
            continue  # the second closer got its final ACK: it is gone
        if len(fins) == 2 and who == fins[0]:
            last_acked = True
        send = cv.c if who == "c" else cv.s
        if what == "data":
            send(0, 10)
        elif what == "ack":
            send(ACK)
        else:
            send(FIN)
            fins.append(who)
    for who in ("c", "s"):  # acknowledge everything at the end
        if len(fins) == 2 and (who == fins[1] or last_acked):
            continue  # the second closer is in LAST_ACK, or already gone
        (cv.c if who == "c" else cv.s)(ACK)
    return cv, fins


@settings(max_examples=150, deadline=None)
@given(ACTIONS)
def test_chains_duplicates_and_final_states(actions: list[str]) -> None:
    cv, fins = _script(actions)
    r = run(cv.segments)
    for side in ("client", "server"):
        t = r.transitions[r.transitions.side == side]
        froms, tos = list(t.from_state.astype(str)), list(t.to_state.astype(str))
        assert froms[1:] == tos[:-1]
    doubled = [seg for seg in cv.segments for _ in (0, 1)]
    r2 = run(doubled)
    cols = ["side", "from_state", "to_state", "event"]
    assert r.transitions[cols].reset_index(drop=True).equals(
        r2.transitions[cols].reset_index(drop=True))
    at_end = r.at(cv.now() + 1)  # before any timeout: TIME_WAIT, FIN_WAIT_2 last 60 s
    final = {"c": at_end.get((0, "client"), "CLOSED"), "s": at_end.get((0, "server"), "CLOSED")}
    if len(fins) == 2:
        assert final[fins[0]] == "TIME_WAIT" and final[fins[1]] == "CLOSED"
    elif len(fins) == 1:
        closer, other = fins[0], "s" if fins[0] == "c" else "c"
        assert final[closer] == "FIN_WAIT_2" and final[other] == "CLOSE_WAIT"
    else:
        assert final == {"c": "ESTABLISHED", "s": "ESTABLISHED"}
    assert r.oddities.empty or set(r.oddities.name) <= {"retracted", "half_close"}
