#!/usr/bin/env bash
# Cross-process test of the C doorbell device against the Rust peer, over real TCP on loopback:
#   1. Rust listens, C connects (both suites): handshake, identities checked, messages echoed.
#   2. C connects trusting someone else: refused with UntrustedPeer, nothing exchanged.
#   3. C listens, Rust connects (both suites): the same, the other way round.
#   4. C listens trusting someone else: the Rust client gets no channel.
#   5. Neither side starts without a trust decision (--trust ID... or an explicit --trust-any): usage error, 2.
# usage: cross_process.sh <direct_peer binary> <doorbell binary> [wrapper command for the C side, e.g. valgrind ...]
set -euo pipefail

PEER=$1
DOORBELL=$2
shift 2
WRAP=("$@")
STRANGER=lkabababababababababababababababababababababababababababababababab

WORK=$(mktemp -d)
PIDS=()
CHECKS=0
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "cross_process: FAIL: $*" >&2
    for file in "$WORK"/*; do
        echo "--- $(basename "$file")" >&2
        cat "$file" >&2
    done
    exit 1
}

expect_line() { # file, exact line
    CHECKS=$((CHECKS + 1))
    grep -qxF -- "$2" "$1" || fail "expected line \"$2\" in $(basename "$1")"
}

# Waits for "LISTENING <addr> <identifier>" in $1 (written by process $2); sets ADDR and ID.
wait_listening() {
    for _ in $(seq 1 600); do
        if grep -q '^LISTENING ' "$1"; then
            read -r _ ADDR ID < <(grep '^LISTENING ' "$1")
            return 0
        fi
        kill -0 "$2" 2>/dev/null || fail "listener $(basename "$1") exited before listening"
        sleep 0.1
    done
    fail "listener $(basename "$1") did not start"
}

# Runs "$@" expecting a usage error about trust: exit status 2, "--trust-any" named on stderr, nothing on stdout.
expect_no_trust_refused() {
    local name=$1
    shift
    local status=0
    "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" || status=$?
    CHECKS=$((CHECKS + 1))
    [ "$status" -eq 2 ] || fail "$name: expected exit status 2 (usage error), got $status"
    CHECKS=$((CHECKS + 1))
    grep -q -- "--trust-any" "$WORK/$name.err" || fail "$name: the usage error does not name --trust-any"
    CHECKS=$((CHECKS + 1))
    [ ! -s "$WORK/$name.out" ] || fail "$name: printed something on stdout"
}

# 5. Trust is never implied by an omitted flag, on either side, and both flags at once are refused too.
expect_no_trust_refused c-listen-no-trust "${WRAP[@]}" "$DOORBELL" listen 127.0.0.1:0 --once
expect_no_trust_refused c-connect-no-trust "${WRAP[@]}" "$DOORBELL" connect 127.0.0.1:9 ring
expect_no_trust_refused c-connect-both "${WRAP[@]}" "$DOORBELL" connect 127.0.0.1:9 --trust-any --trust "$STRANGER"
expect_no_trust_refused rust-listen-no-trust "$PEER" listen 127.0.0.1:0
expect_no_trust_refused rust-connect-no-trust "$PEER" connect 127.0.0.1:9 ring

for suite in chachapoly aesgcm; do
    # 1. Rust listens (accepting any identity: the C side's identity is new each run), C connects.
    "$PEER" listen 127.0.0.1:0 --suite "$suite" --trust-any > "$WORK/rust-listener-$suite.out" 2> "$WORK/rust-listener-$suite.err" &
    PIDS+=($!)
    wait_listening "$WORK/rust-listener-$suite.out" "$!"
    RUST_ID=$ID
    "${WRAP[@]}" "$DOORBELL" connect "$ADDR" --suite "$suite" --trust "$RUST_ID" ring "hello from C" \
        > "$WORK/c-connect-$suite.out" 2> "$WORK/c-connect-$suite.err" || fail "doorbell connect ($suite) failed"
    expect_line "$WORK/c-connect-$suite.out" "PEER $RUST_ID"
    expect_line "$WORK/c-connect-$suite.out" "REPLY echo: ring"
    expect_line "$WORK/c-connect-$suite.out" "REPLY echo: hello from C"

    # 2. C refuses a Rust peer it does not trust.
    CHECKS=$((CHECKS + 1))
    if "${WRAP[@]}" "$DOORBELL" connect "$ADDR" --suite "$suite" --trust "$STRANGER" ring \
        > "$WORK/c-refuse-$suite.out" 2> "$WORK/c-refuse-$suite.err"; then
        fail "doorbell accepted an untrusted peer ($suite)"
    fi
    grep -q "UntrustedPeer" "$WORK/c-refuse-$suite.err" || fail "no UntrustedPeer error ($suite)"
    CHECKS=$((CHECKS + 1))
    if grep -q '^REPLY' "$WORK/c-refuse-$suite.out"; then fail "messages exchanged with an untrusted peer"; fi

    # 3. C listens (accepting any identity), Rust connects.
    "${WRAP[@]}" "$DOORBELL" listen 127.0.0.1:0 --suite "$suite" --trust-any --once \
        > "$WORK/c-listener-$suite.out" 2> "$WORK/c-listener-$suite.err" &
    C_PID=$!
    PIDS+=($C_PID)
    wait_listening "$WORK/c-listener-$suite.out" "$C_PID"
    C_ID=$ID
    "$PEER" connect "$ADDR" --suite "$suite" --trust "$C_ID" ping "hello from Rust" \
        > "$WORK/rust-connect-$suite.out" 2> "$WORK/rust-connect-$suite.err" || fail "direct_peer connect ($suite) failed"
    expect_line "$WORK/rust-connect-$suite.out" "PEER $C_ID"
    expect_line "$WORK/rust-connect-$suite.out" "REPLY echo: ping"
    expect_line "$WORK/rust-connect-$suite.out" "REPLY echo: hello from Rust"
    CHECKS=$((CHECKS + 1))
    wait "$C_PID" || fail "doorbell listener ($suite) exited with an error"
    CHECKS=$((CHECKS + 1))
    grep -Eq '^CONNECTED lk[0-9a-f]{64}$' "$WORK/c-listener-$suite.out" || fail "doorbell did not report its peer"

    # 4. A C listener that trusts someone else gives the Rust client no channel.
    "${WRAP[@]}" "$DOORBELL" listen 127.0.0.1:0 --suite "$suite" --trust "$STRANGER" --once \
        > "$WORK/c-strict-$suite.out" 2> "$WORK/c-strict-$suite.err" &
    C_PID=$!
    PIDS+=($C_PID)
    wait_listening "$WORK/c-strict-$suite.out" "$C_PID"
    CHECKS=$((CHECKS + 1))
    if "$PEER" connect "$ADDR" --suite "$suite" --trust "$ID" ping > "$WORK/rust-refused-$suite.out" 2> "$WORK/rust-refused-$suite.err"; then
        fail "an untrusting doorbell gave the Rust client a channel ($suite)"
    fi
    CHECKS=$((CHECKS + 1))
    if wait "$C_PID"; then fail "doorbell listener reported success with an untrusted client ($suite)"; fi
    grep -q "UntrustedPeer" "$WORK/c-strict-$suite.err" || fail "doorbell listener did not refuse with UntrustedPeer"
done

echo "cross_process: all $CHECKS checks passed (C device <-> Rust peer, both directions, both suites${WRAP:+, C side under ${WRAP[0]}})"
