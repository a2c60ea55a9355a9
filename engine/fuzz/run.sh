#!/bin/sh
# Fuzz the compiled reader's loops (engine/read_walk.c, engine/decode.c) with libFuzzer
# under AddressSanitizer and UndefinedBehaviorSanitizer (Debian: apt-get install clang).
#   engine/fuzz/run.sh [seconds]      (default 60; work files in ${TMPDIR:-/tmp})
# Seeds: the sample captures' bodies in each mode. A crash leaves crash-* in the work
# directory; rerun one with: $WORK/fuzz_read $WORK/crash-...
set -eu
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${1:-60}
WORK=${TMPDIR:-/tmp}/tcplife-fuzz-read
mkdir -p "$WORK/corpus"
clang -g -O1 -std=c99 -Wall -Wextra -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all engine/fuzz/fuzz_read.c engine/read_walk.c engine/decode.c \
    -o "$WORK/fuzz_read"
python3 - "$WORK/corpus" <<'PY'
import pathlib, struct, sys
out = pathlib.Path(sys.argv[1])
links = [1, 113, 276, 0, 108, 12, 14, 101, 228, 229, 147, -1]  # as fuzz_read.c's
for i, path in enumerate(sorted(pathlib.Path("sample_pcaps").glob("*.pcap*"))[:60]):
    data = path.read_bytes()[:30000]
    if data[:4] == b"\x0a\x0d\x0d\x0a":  # from the first packet block, one interface
        at = 0
        while at + 8 <= len(data) and struct.unpack_from("<I", data, at)[0] != 6:
            at += struct.unpack_from("<I", data, at + 4)[0] or len(data)
        linktype = struct.unpack_from("<H", data, data.find(b"\x01\0\0\0") + 8)[0]
        link = 0x80 | (links.index(linktype) if linktype in links else 10)  # interface 0: microseconds
        (out / f"ng{i}").write_bytes(bytes([4, 1, link]) + data[at:])
    else:
        endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        linktype = struct.unpack_from(endian + "I", data, 20)[0]
        mode = (endian == ">") | (data[:4] in (b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1")) << 1
        (out / f"pcap{i}").write_bytes(bytes([mode, 0x80, (links.index(linktype) if linktype in links else 10)]) + data[24:])
PY
"$WORK/fuzz_read" -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$WORK/" "$WORK/corpus"
