#!/usr/bin/env bash
# make_captures.sh - build the tcplife benchmark captures.
#
# Usage: sudo benchmarks/make_captures.sh [OUTDIR]        (default OUTDIR: /var/tmp/tcplife-bench)
#
# Writes OUTDIR/short.pcap, OUTDIR/keepalive.pcap and OUTDIR/short3.pcap: classic pcap,
# Ethernet link type (Linux loopback), snaplen 256, HTTP traffic between wrk and nginx
# inside a private network namespace.  Nothing is started outside that namespace; the
# system nginx service is never enabled or started.  Everything this script starts is
# stopped and the namespace deleted on exit.
#
# Environment knobs (all optional):
#   SHORT_PACKETS=3000000      target packet count of short.pcap
#   KEEPALIVE_PACKETS=3300000  target packet count of keepalive.pcap
#   SHORT_DURATION=N           wrk run time in seconds for short.pcap (skips the calibration)
#   KEEPALIVE_DURATION=N       the same for keepalive.pcap
#   CALIBRATE_SECONDS=3        length of the probe run used to pick the durations
#   NS=tcplbench               network namespace name
set -euo pipefail

OUT=${1:-/var/tmp/tcplife-bench}
NS=${NS:-tcplbench}
SHORT_PACKETS=${SHORT_PACKETS:-3000000}
KEEPALIVE_PACKETS=${KEEPALIVE_PACKETS:-3300000}
CALIBRATE_SECONDS=${CALIBRATE_SECONDS:-3}
PORT=8080
SNAPLEN=256
BUFFER_KIB=262144   # tcpdump -B: 256 MiB kernel ring, so nothing is dropped

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'make_captures: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (needs ip netns, tcpdump, apt-get)"

# --------------------------------------------------------------------------- packages
need_pkgs=()
command -v nginx >/dev/null || need_pkgs+=(nginx-light)
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v tcpdump >/dev/null || need_pkgs+=(tcpdump)
command -v ethtool >/dev/null || need_pkgs+=(ethtool)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v capinfos >/dev/null || need_pkgs+=(wireshark-common)   # capinfos editcap mergecap
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    # Keep the package's maintainer scripts from starting the system nginx service.
    made_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y --no-install-recommends "${need_pkgs[@]}"; } \
        || { [[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
    [[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d
    if [[ " ${need_pkgs[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null \
            && [[ -d /run/systemd/system ]]; then
        systemctl disable --now nginx.service >/dev/null 2>&1 || true
    fi
fi

# --------------------------------------------------------------------------- cleanup
WORK=$(mktemp -d /tmp/tcplife-bench.XXXXXX)
NGINX_PID=
TCPDUMP_PID=
WRK_PID=

stop_pid() {  # stop_pid PID: SIGTERM/SIGINT was already sent or not; make sure it is gone
    local pid=$1
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    set +e
    stop_pid "$WRK_PID"
    stop_pid "$TCPDUMP_PID"
    stop_pid "$NGINX_PID"
    wait 2>/dev/null
    if ip netns list | grep -qw "^$NS"; then
        ip netns del "$NS"
    fi
    rm -rf "$WORK"
    rm -f "${PART1:-}" "${PART2:-}" "$OUT"/*.pcap.tmp
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------------------- namespace
if ip netns list | grep -qw "^$NS"; then
    die "network namespace $NS already exists (another run? delete it with: ip netns del $NS)"
fi
log "namespace $NS: lo mtu 1500, no TSO/GSO/GRO"
ip netns add "$NS"
ip -n "$NS" link set lo mtu 1500 up
ip netns exec "$NS" ethtool -K lo tso off gso off gro off
# A wide ephemeral range keeps 4-tuple reuse within short.pcap rare (per-namespace sysctl).
ip netns exec "$NS" sysctl -q -w net.ipv4.ip_local_port_range="1024 65535"

# --------------------------------------------------------------------------- nginx
mkdir -p "$WORK/www" "$WORK/logs"
printf 'hello, world\n' >"$WORK/www/small"                         # 13 bytes
head -c 20480 /dev/zero | tr '\0' 'x' >"$WORK/www/big"             # 20 KiB
chmod 755 "$WORK" "$WORK/www"
chmod 644 "$WORK/www/small" "$WORK/www/big"

write_nginx_conf() {  # write_nginx_conf KEEPALIVE_REQUESTS
    cat >"$WORK/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests $1;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    client_body_temp_path $WORK/client_body;
    proxy_temp_path $WORK/proxy;
    fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi;
    scgi_temp_path $WORK/scgi;
    server {
        listen 127.0.0.1:$PORT;
        root $WORK/www;
        location = /small { }
        location = /big { }
    }
}
EOF
}

start_nginx() {  # start_nginx KEEPALIVE_REQUESTS
    write_nginx_conf "$1"
    ip netns exec "$NS" nginx -p "$WORK" -e "$WORK/logs/error.log" -c "$WORK/nginx.conf" &
    NGINX_PID=$!
    for _ in $(seq 50); do
        if ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    cat "$WORK/logs/error.log" >&2 || true
    die "nginx did not come up"
}

stop_nginx() {
    stop_pid "$NGINX_PID"
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
}

# --------------------------------------------------------------------------- wrk script
cat >"$WORK/alternate.lua" <<'EOF'
-- Alternate requests between /small and /big (per wrk thread).
local paths = { "/small", "/big" }
local n = 0
request = function()
    n = n + 1
    return wrk.format(nil, paths[(n % 2) + 1])
end
EOF

wrk_args() {  # wrk_args MODE DURATION -> the wrk command line
    local mode=$1 dur=$2
    local args=(wrk -t2 -c32 -d"${dur}s" --timeout 10s -s "$WORK/alternate.lua")
    [[ $mode == short ]] && args+=(-H 'Connection: close')
    args+=("http://127.0.0.1:$PORT/")
    printf '%s\n' "${args[@]}"
}

# capture MODE DURATION FILE -> runs tcpdump around one wrk run; prints packets and drops
capture() {
    local mode=$1 dur=$2 file=$3
    local -a cmd
    mapfile -t cmd < <(wrk_args "$mode" "$dur")
    ip netns exec "$NS" tcpdump -i lo -n -s "$SNAPLEN" -B "$BUFFER_KIB" -Z root -w "$file" \
        "tcp port $PORT" 2>"$WORK/tcpdump.err" &
    TCPDUMP_PID=$!
    for _ in $(seq 100); do
        grep -q 'listening on' "$WORK/tcpdump.err" 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.5
    ip netns exec "$NS" "${cmd[@]}" >"$WORK/wrk.out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || { cat "$WORK/wrk.out" >&2; die "wrk failed"; }
    WRK_PID=
    sleep 1   # let the last FINs and ACKs through
    kill -INT "$TCPDUMP_PID"
    wait "$TCPDUMP_PID" || true
    TCPDUMP_PID=
    CAP_PACKETS=$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$WORK/tcpdump.err")
    CAP_DROPS=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$WORK/tcpdump.err")
    CAP_WRK=$(grep -E 'Requests/sec|requests in' "$WORK/wrk.out" | tr -s ' ' | paste -sd';')
}

# pick_duration MODE TARGET_PACKETS -> sets DURATION (seconds) from a short probe run
pick_duration() {
    local mode=$1 target=$2
    capture "$mode" "$CALIBRATE_SECONDS" "$WORK/probe.pcap"
    rm -f "$WORK/probe.pcap"
    DURATION=$(awk -v p="$CAP_PACKETS" -v t="$CALIBRATE_SECONDS" -v want="$target" \
        'BEGIN { d = int(want * t / p + 0.5); if (d < 1) d = 1; print d }')
    log "probe $mode: $CAP_PACKETS packets in ${CALIBRATE_SECONDS}s -> ${DURATION}s for $target"
}

summary() {  # summary FILE
    local f=$1 syns
    capinfos -c -u -s -t -E -l "$f"
    syns=$(tcpdump -r "$f" -n 'tcp[13] == 2' 2>/dev/null | wc -l)
    printf 'SYNs (connections):  %s\n\n' "$syns"
}

mkdir -p "$OUT"
declare -A DROPS

make_one() {  # make_one MODE KEEPALIVE_REQUESTS TARGET DURATION_OVERRIDE FILE
    local mode=$1 kreq=$2 target=$3 dur=$4 file=$5
    start_nginx "$kreq"
    if [[ -z $dur ]]; then
        pick_duration "$mode" "$target"
        dur=$DURATION
    fi
    log "capturing $file: wrk $mode for ${dur}s"
    capture "$mode" "$dur" "$file.tmp"
    mv "$file.tmp" "$file"
    stop_nginx
    DROPS[$file]=${CAP_DROPS:-?}
    log "$file: $CAP_PACKETS packets captured, ${CAP_DROPS:-?} dropped by kernel; wrk: $CAP_WRK"
}

make_one short 100000 "$SHORT_PACKETS" "${SHORT_DURATION:-}" "$OUT/short.pcap"
make_one keepalive 1000 "$KEEPALIVE_PACKETS" "${KEEPALIVE_DURATION:-}" "$OUT/keepalive.pcap"

# --------------------------------------------------------------------------- short3
# Each copy starts 200 s after the previous one ends. The copies are the same packets, so
# the same 4-tuples with the same initial sequence numbers: within TIME_WAIT (60 s) a SYN
# with the old ISN is an old duplicate to the kernel (tcp_timewait_state_process), not a
# new connection, and tcplife keeps a closed connection 120 s (closed_linger) to place
# late packets. 200 s apart, every copy's connections are new ones, as in a long capture.
log "building short3.pcap (short.pcap three times, each copy 200 s after the previous)"
dur=$(capinfos -u -M -T -r "$OUT/short.pcap" | awk -F'\t' '{ print $2 }')
step=$(awk -v d="$dur" 'BEGIN { printf "%.6f", d + 200 }')
# The shifted copies go next to the output (not to /tmp, which may be a small tmpfs).
PART1="$OUT/.short3.part1.pcap"
PART2="$OUT/.short3.part2.pcap"
editcap -F pcap -t "$step" "$OUT/short.pcap" "$PART1"
editcap -F pcap -t "$(awk -v s="$step" 'BEGIN { printf "%.6f", 2 * s }')" \
    "$OUT/short.pcap" "$PART2"
mergecap -F pcap -s "$SNAPLEN" -a -w "$OUT/short3.pcap.tmp" "$OUT/short.pcap" "$PART1" "$PART2"
mv "$OUT/short3.pcap.tmp" "$OUT/short3.pcap"
rm -f "$PART1" "$PART2"

# --------------------------------------------------------------------------- report
printf '\n'
for f in "$OUT/short.pcap" "$OUT/keepalive.pcap" "$OUT/short3.pcap"; do
    summary "$f"
done
for f in "$OUT/short.pcap" "$OUT/keepalive.pcap"; do
    printf 'tcpdump kernel drops for %s: %s\n' "$f" "${DROPS[$f]}"
done
printf 'link type: %s\n' "$(tcpdump -r "$OUT/short.pcap" -c1 -e 2>&1 | head -1)"
