"""Third-party captures (../shared/corpus/pcaps, origins and licences in its SOURCES.md):
every file reads without exception and agrees with tshark, frame by frame.

Expected values were produced with tshark 4.x (`-Y tcp`, raw sequence numbers, checksum
validation on) and are stored here so the test runs without tshark:

* COUNTS: (frames, TCP segments, bad TCP checksums). The segment count is
  ``tshark -r FILE -Y tcp -T fields -e frame.number | wc -l`` and the bad-checksum count is
  ``-o tcp.check_checksum:TRUE -Y "tcp.checksum.status == 0"``. tcplife and tshark agree on
  every file. They would differ where tshark decodes TCP inside a tunnel (IP-in-IP, GRE,
  VXLAN) or quoted in an ICMP error: those are not segments of a connection the capture
  point saw, and tcplife counts them as non-TCP. No corpus file contains such frames
  (checked with ``-Y "(icmp || icmpv6 || gre || ip.proto == 4 || ip.proto == 41) && tcp"``);
  tests/test_capture_decode.py covers the case. Frames that differ in total from segments
  are ARP, DNS, NBNS and ICMP (nmap-vsn, wikipedia, timeout-with-pings, ...).
* DIGESTS: a hash of one row per TCP frame with the fields tshark shows (frame number,
  epoch time in ns, addresses, ports, raw seq/ack, flags, tcp.len, window, window-scale
  shift on SYNs). Regenerate with ``PYTHONPATH=. python tests/test_capture_corpus.py`` (needs
  tshark);
  `test_fields_match_live_tshark` shows the first differing rows when tshark is present.

Worth knowing about specific files: zeek__tcp__reassembly.pcap has 5 frames shorter on
the wire than their IPv4 total length (1492 of 1500 bytes): tshark and tcplife both clamp
tcp.len to 1440 and both call their checksums bad (`short_frames` == 5).
zeek__tcp__truncated-header.pcap (snaplen 68), zeek__tcp__timestamp.pcap (96) and
zeek__tcp__retransmit-fast009.pcap (54) are snap-length cut: payload lengths come from the
IP header (`truncated` > 0), as tshark's tcp.len does.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tcplife.capture import ReadStats, read_segments
from tcplife.core.segment import SYN, Segment

from needs import needs

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pcaps"
FILES = sorted(CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else []
needs_corpus = needs(corpus=True)
TSHARK = shutil.which("tshark")

#: file -> (frames, TCP segments == tshark -Y tcp, bad checksums == tshark's)
COUNTS: dict[str, tuple[int, int, int]] = {
    "sanders__activeosfingerprinting.pcapng": (48, 40, 0),
    "sanders__nowebaccess2.pcapng": (8, 6, 3),
    "sanders__nowebaccess3.pcapng": (5, 3, 0),
    "sanders__sessionhijacking.pcapng": (134, 133, 52),
    "sanders__synscan.pcapng": (2011, 2011, 0),
    "sanders__tcp_dupack.pcapng": (9, 9, 0),
    "sanders__tcp_handshake.pcapng": (3, 3, 0),
    "sanders__tcp_refuseconnection.pcapng": (2, 2, 0),
    "sanders__tcp_retransmissions.pcapng": (6, 6, 0),
    "sanders__tcp_teardown.pcapng": (4, 4, 0),
    "sanders__tcp_zerowindowdead.pcapng": (8, 8, 0),
    "sanders__tcp_zerowindowrecovery.pcapng": (7, 7, 0),
    "sv__bug-2491-02__simple_http_download.onesided.nosyn.pcap": (11, 11, 0),
    "sv__bug-2646-01.pcap": (29, 29, 1),
    "sv__bug-4702-01.pcap": (6, 6, 0),
    "sv__bug-6244__tcp-rst-with-data.pcap": (8, 8, 0),
    "sv__bug-6733-syn-packet-flow-output.pcap": (1, 1, 0),
    "sv__bug-814.pcap": (7, 7, 0),
    "sv__stream-async-6063-srv-01__http-request-header-async-srv.pcap": (5, 5, 0),
    "sv__tcp-5379.pcap": (1, 1, 1),
    "sv__tcp-fastopen-10-syn-data-ignore.pcap": (52, 52, 0),
    "sv__tcp-fastopen-11__tlpw-tcp-tfo-data-on-syn-nack.pcap": (29, 29, 0),
    "sv__tcp-rst-unacked-stream-01-raw.pcap": (8, 8, 0),
    "sv__tcp-rst-unacked-stream-03-gap.pcap": (7, 7, 0),
    "sv__tcp-split-handshake-01-4whs.pcap": (7, 7, 0),
    "sv__tcp-split-handshake-02-5whs.pcap": (8, 8, 0),
    "sv__tcp-stream-after-swap__http-start-from-response.pcap": (8, 8, 4),
    "tcpdump__accecn_handshake.pcap": (6, 6, 3),
    "tcpdump__mptcp-fclose.pcap": (11, 9, 0),
    "tcpdump__mptcp-tcprst.pcap": (2, 2, 0),
    "tcpdump__print-flags.pcap": (10, 10, 2),
    "tcpdump__resp_1_benchmark.pcap": (150, 150, 150),
    "tcpdump__tcp-handshake-nano.pcap": (3, 3, 0),
    "tcpdump__tcp_eight_lowest_weight_flags_set.pcap": (1, 1, 0),
    "tcpdump__tcp_rst_data.pcap": (1, 1, 0),
    "tcpdump__tcp_rst_diag_payload.pcap": (1, 1, 1),
    "tcpdump__tfo-5c1fa7f9ae91.pcap": (14, 14, 0),
    "zeek__ftp__ipv4.pcap": (95, 95, 0),
    "zeek__ftp__ipv6.pcap": (136, 136, 0),
    "zeek__http__get-without-fins.pcap": (11, 11, 0),
    "zeek__http__get.pcap": (14, 14, 0),
    "zeek__http__get_nosyn.pcap": (11, 11, 0),
    "zeek__http__zeek-image-post-1080-8000-x.pcap": (19, 19, 0),
    "zeek__irc-dcc-send.pcapng": (1184, 1184, 0),
    "zeek__nmap-vsn.pcap": (547, 32, 0),
    "zeek__smtp-one-side-only.pcap": (19, 19, 19),
    "zeek__ssh__ssh.client-side-half-duplex.pcap": (838, 838, 0),
    "zeek__ssh__ssh.pcap": (1797, 1795, 0),
    "zeek__ssh__ssh.server-side-half-duplex.pcap": (832, 832, 0),
    "zeek__tcp-http-with-padding.pcap": (25, 25, 11),
    "zeek__tcp__ctu-64702-888.pcap": (16, 16, 0),
    "zeek__tcp__fin_retransmission.pcap": (5, 5, 0),
    "zeek__tcp__handshake-reorder.pcap": (14, 14, 0),
    "zeek__tcp__http-on-irc-port-missing-syn.pcapng": (13, 13, 0),
    "zeek__tcp__miss_end_data.pcap": (9, 9, 0),
    "zeek__tcp__missing-syn.pcap": (21, 21, 0),
    "zeek__tcp__no-handshake.pcap": (1, 1, 0),
    "zeek__tcp__one-sided-2745.pcap": (6, 6, 0),
    "zeek__tcp__option-27.pcap": (1, 1, 0),
    "zeek__tcp__option-sack.pcap": (4, 4, 0),
    "zeek__tcp__options.pcap": (4, 4, 0),
    "zeek__tcp__payload-syn.pcap": (6, 6, 0),
    "zeek__tcp__payload-synack.pcap": (6, 6, 0),
    "zeek__tcp__qi_internet_SYNACK_curl_jsonip.pcap": (14, 14, 0),
    "zeek__tcp__reassembly.pcap": (117, 117, 15),
    "zeek__tcp__retransmit-fast009.pcap": (39, 39, 18),
    "zeek__tcp__retransmit-timeout.pcapng": (3, 3, 0),
    "zeek__tcp__rst-inject-rae.pcap": (9, 9, 0),
    "zeek__tcp__single-rst.pcap": (1, 1, 0),
    "zeek__tcp__ssh-dups.pcap": (377, 377, 152),
    "zeek__tcp__syn-bad.pcap": (1, 1, 1),
    "zeek__tcp__syn-synack.pcap": (2, 2, 0),
    "zeek__tcp__syn-then-ack-then-rst.pcap": (3, 3, 0),
    "zeek__tcp__syn-then-rst.pcap": (2, 2, 0),
    "zeek__tcp__syn-then-stuff-then-rst.pcap": (4, 4, 0),
    "zeek__tcp__syn.pcap": (1, 1, 0),
    "zeek__tcp__tcp-fast-open.pcap": (16, 16, 0),
    "zeek__tcp__timeout-with-pings.pcap": (15, 3, 0),
    "zeek__tcp__timestamp.pcap": (878, 878, 0),
    "zeek__tcp__truncated-header.pcap": (24, 24, 0),
    "zeek__tcp__window-scale-range.pcap": (5, 5, 0),
    "zeek__websocket__wstunnel-ssh.pcap": (258, 258, 0),
    "zeek__wikipedia.pcap": (136, 78, 0),
}

#: file -> digest of the tshark field rows (see module docstring)
DIGESTS: dict[str, str] = {
    "sanders__activeosfingerprinting.pcapng": "fce7272cb5be12c7",
    "sanders__nowebaccess2.pcapng": "b4d74a1cef284ad9",
    "sanders__nowebaccess3.pcapng": "0f5254b6604d237b",
    "sanders__sessionhijacking.pcapng": "c94497e1ee41a936",
    "sanders__synscan.pcapng": "6f67c610e7809089",
    "sanders__tcp_dupack.pcapng": "9aa3f5196b1cfb00",
    "sanders__tcp_handshake.pcapng": "9d4b0ee0d5a75407",
    "sanders__tcp_refuseconnection.pcapng": "1885c0d5e5cc73ad",
    "sanders__tcp_retransmissions.pcapng": "0a1ab5d8461db4c4",
    "sanders__tcp_teardown.pcapng": "18f3250dafdbfc5c",
    "sanders__tcp_zerowindowdead.pcapng": "4369144ba10ba790",
    "sanders__tcp_zerowindowrecovery.pcapng": "80b6d3c53177b349",
    "sv__bug-2491-02__simple_http_download.onesided.nosyn.pcap": "22f294164731a057",
    "sv__bug-2646-01.pcap": "ff768b14ee3316a3",
    "sv__bug-4702-01.pcap": "26c75d15bb7b6a34",
    "sv__bug-6244__tcp-rst-with-data.pcap": "45aa2ee1019abd6e",
    "sv__bug-6733-syn-packet-flow-output.pcap": "0464d37eff205e1b",
    "sv__bug-814.pcap": "416ed763a13e36b8",
    "sv__stream-async-6063-srv-01__http-request-header-async-srv.pcap": "4076396a4efe397b",
    "sv__tcp-5379.pcap": "3b4e812e3d54b0a8",
    "sv__tcp-fastopen-10-syn-data-ignore.pcap": "297fc56d718fca0b",
    "sv__tcp-fastopen-11__tlpw-tcp-tfo-data-on-syn-nack.pcap": "06d6277179325f9e",
    "sv__tcp-rst-unacked-stream-01-raw.pcap": "b8ad26e8a0453a9a",
    "sv__tcp-rst-unacked-stream-03-gap.pcap": "a90c15172753c507",
    "sv__tcp-split-handshake-01-4whs.pcap": "2fc39ba6c19731e0",
    "sv__tcp-split-handshake-02-5whs.pcap": "80acece4c9baec02",
    "sv__tcp-stream-after-swap__http-start-from-response.pcap": "7a14ed5678abeed3",
    "tcpdump__accecn_handshake.pcap": "29d6dd76821374b2",
    "tcpdump__mptcp-fclose.pcap": "665bcc5616eaf149",
    "tcpdump__mptcp-tcprst.pcap": "5c3e838194dfafe6",
    "tcpdump__print-flags.pcap": "82185d5090d22757",
    "tcpdump__resp_1_benchmark.pcap": "ea1e49fd09fb37ba",
    "tcpdump__tcp-handshake-nano.pcap": "5960acf4f5853192",
    "tcpdump__tcp_eight_lowest_weight_flags_set.pcap": "715368b8bd063d0e",
    "tcpdump__tcp_rst_data.pcap": "00348388de83dd87",
    "tcpdump__tcp_rst_diag_payload.pcap": "f5237972dedaea51",
    "tcpdump__tfo-5c1fa7f9ae91.pcap": "b42c164a20efa751",
    "zeek__ftp__ipv4.pcap": "ec1d287f19781ef1",
    "zeek__ftp__ipv6.pcap": "1a6dee2de3d6ce0a",
    "zeek__http__get-without-fins.pcap": "c527925e3eac2512",
    "zeek__http__get.pcap": "a71de6d57d363de1",
    "zeek__http__get_nosyn.pcap": "e7302b31882bfb6f",
    "zeek__http__zeek-image-post-1080-8000-x.pcap": "ec55adb31cacfd51",
    "zeek__irc-dcc-send.pcapng": "3ed2428b5a510aa0",
    "zeek__nmap-vsn.pcap": "6aeebd26801cc53b",
    "zeek__smtp-one-side-only.pcap": "590b88e1dab79270",
    "zeek__ssh__ssh.client-side-half-duplex.pcap": "d551cf0fb005976c",
    "zeek__ssh__ssh.pcap": "67ba91ef5ddc701e",
    "zeek__ssh__ssh.server-side-half-duplex.pcap": "e7cd617d7ee36035",
    "zeek__tcp-http-with-padding.pcap": "69783deccb87a856",
    "zeek__tcp__ctu-64702-888.pcap": "607cc3d74ec8340f",
    "zeek__tcp__fin_retransmission.pcap": "f310c101d4ad0163",
    "zeek__tcp__handshake-reorder.pcap": "8ec3d87dbba8a4fd",
    "zeek__tcp__http-on-irc-port-missing-syn.pcapng": "afaa90ad9a61c179",
    "zeek__tcp__miss_end_data.pcap": "af3fb104b39d3bad",
    "zeek__tcp__missing-syn.pcap": "005dba6c9836cc0d",
    "zeek__tcp__no-handshake.pcap": "716a2e173415acfd",
    "zeek__tcp__one-sided-2745.pcap": "4811920967a19869",
    "zeek__tcp__option-27.pcap": "af82ba8c14b26b39",
    "zeek__tcp__option-sack.pcap": "7701d760908ff48e",
    "zeek__tcp__options.pcap": "a4d79b9ec5b51593",
    "zeek__tcp__payload-syn.pcap": "9911b6be5bb30fac",
    "zeek__tcp__payload-synack.pcap": "cc7b2d17832b629e",
    "zeek__tcp__qi_internet_SYNACK_curl_jsonip.pcap": "900d4361f5ed772e",
    "zeek__tcp__reassembly.pcap": "5582cf4beeb1c242",
    "zeek__tcp__retransmit-fast009.pcap": "74a598caf949c39b",
    "zeek__tcp__retransmit-timeout.pcapng": "1a8163a41594fbfb",
    "zeek__tcp__rst-inject-rae.pcap": "bd26cd0c10547e10",
    "zeek__tcp__single-rst.pcap": "aad53e826f4f192f",
    "zeek__tcp__ssh-dups.pcap": "e60ba1ead07906a0",
    "zeek__tcp__syn-bad.pcap": "c4c2d6e949ab6786",
    "zeek__tcp__syn-synack.pcap": "16e5211575d80e67",
    "zeek__tcp__syn-then-ack-then-rst.pcap": "1371fc386b845864",
    "zeek__tcp__syn-then-rst.pcap": "3701a703edc3160a",
    "zeek__tcp__syn-then-stuff-then-rst.pcap": "5524624e05794040",
    "zeek__tcp__syn.pcap": "c4c2d6e949ab6786",
    "zeek__tcp__tcp-fast-open.pcap": "ec617a7200e231ef",
    "zeek__tcp__timeout-with-pings.pcap": "5d095283d78d9d2a",
    "zeek__tcp__timestamp.pcap": "42c1225ac1fa5b51",
    "zeek__tcp__truncated-header.pcap": "ef2f69a388dd4150",
    "zeek__tcp__window-scale-range.pcap": "97481a9c1649562a",
    "zeek__websocket__wstunnel-ssh.pcap": "cc2b3dc503e72e2f",
    "zeek__wikipedia.pcap": "bae994ee5dc66f76",
}

#: tshark fields, in the order of `_row`
_FIELDS = ["frame.number", "frame.time_epoch", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst",
           "ipv6.dst", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.len",
           "tcp.window_size_value", "tcp.options.wscale.shift"]
#: a small, varied subset compared live when tshark is installed (all of them take ~15 s)
_LIVE = ["sanders__activeosfingerprinting.pcapng", "sv__bug-814.pcap",
         "sv__tcp-fastopen-10-syn-data-ignore.pcap", "tcpdump__tcp-handshake-nano.pcap",
         "tcpdump__tcp_rst_diag_payload.pcap", "zeek__ftp__ipv6.pcap",
         "zeek__tcp__reassembly.pcap", "zeek__tcp__timeout-with-pings.pcap",
         "zeek__tcp__truncated-header.pcap", "zeek__tcp__window-scale-range.pcap"]


def _row(s: Segment) -> str:
    return "|".join(map(str, (s.frame, s.ts_ns, s.src, s.sport, s.dst, s.dport, s.seq, s.ack,
                              s.flags, s.payload_len, s.window, s.wscale)))


def _digest(rows: list[str]) -> str:
    return hashlib.sha1("".join(r + "\n" for r in rows).encode()).hexdigest()[:16]


def tshark_rows(path: Path | str) -> list[str]:
    """The same rows as `_row`, from tshark's dissection."""
    command = [TSHARK or "tshark", "-n", "-o", "tcp.relative_sequence_numbers:FALSE",
               "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "separator=|",
               "-E", "occurrence=f"]
    for name in _FIELDS:
        command += ["-e", name]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        (frame, epoch, src4, src6, sport, dst4, dst6, dport, seq, ack, flags, length, window,
         shift) = line.split("|")
        sec, _, frac = epoch.partition(".")
        ts_ns = int(sec) * 10**9 + int(frac.ljust(9, "0")[:9])
        flag_bits = int(flags, 16) & 0xFF
        wscale = int(shift) if shift and flag_bits & SYN else -1
        rows.append("|".join(map(str, (frame, ts_ns, src4 or src6, sport, dst4 or dst6, dport,
                                       seq, ack, flag_bits, length, window, wscale))))
    return rows


@needs_corpus
def test_corpus_is_the_expected_one() -> None:
    assert {p.name for p in FILES} == set(COUNTS) == set(DIGESTS)


@needs_corpus
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_file_matches_tshark(path: Path) -> None:
    stats = ReadStats()
    segments = list(read_segments(path, stats))
    frames, tcp_segments, bad_checksums = COUNTS[path.name]
    assert (stats.frames, len(segments), stats.bad_checksums) == (
        frames, tcp_segments, bad_checksums)
    assert stats.tcp_segments == len(segments)
    assert (stats.tcp_segments + stats.non_tcp + stats.undecodable + stats.fragments
            == stats.frames)
    assert stats.warnings == []
    assert all(a.frame < b.frame for a, b in zip(segments, segments[1:], strict=False))
    assert _digest([_row(s) for s in segments]) == DIGESTS[path.name]


@needs_corpus
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("name", _LIVE)
def test_fields_match_live_tshark(name: str) -> None:
    ours = [_row(s) for s in read_segments(CORPUS / name)]
    theirs = tshark_rows(CORPUS / name)
    differing = [(a, b) for a, b in zip(ours, theirs, strict=False) if a != b]
    assert len(ours) == len(theirs) and not differing[:5]


@needs_corpus
def test_corpus_read_through_every_source_kind(tmp_path: Path) -> None:
    """The largest pcap and pcapng, read gzipped and from a file-like object."""
    import gzip
    import io

    for name in ("zeek__ssh__ssh.pcap", "zeek__irc-dcc-send.pcapng"):
        expected = [_row(s) for s in read_segments(CORPUS / name)]
        zipped = tmp_path / (name + ".gz")
        zipped.write_bytes(gzip.compress((CORPUS / name).read_bytes()))
        assert [_row(s) for s in read_segments(zipped)] == expected
        stream = io.BytesIO((CORPUS / name).read_bytes())
        assert [_row(s) for s in read_segments(stream)] == expected


if __name__ == "__main__":  # regenerate DIGESTS from tshark
    for path in sorted(CORPUS.glob("*.pcap*")):
        print(f'    "{path.name}": "{_digest(tshark_rows(path))}",', file=sys.stdout)
