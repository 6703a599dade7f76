#!/usr/bin/env bash
# Cross-process test of the C relay doorbell (examples/c/relay_doorbell.c, the node API) behind a relay, reached
# by name by a phone in another process (the `latchkey` CLI), over real TCP on loopback:
#   1. The doorbell does not start without a trust decision for the phones and for the relay (usage error, 2).
#   2. A relay (`latchkey relay run`) starts; a doorbell that trusts someone else as the relay is refused.
#   3. The doorbell registers under a name; the phone (a stored identity the doorbell trusts) reaches it by that
#      name through the relay, end to end, and gets the doorbell's replies; the doorbell saw the phone's
#      authenticated identifier with each message.
#   4. A phone the doorbell does not trust, a phone that expects another doorbell, a name nobody registered and
#      a second doorbell taking the registered name are refused; none of them got a reply.
#   5. SIGTERM stops the doorbell cleanly (shutdown, every handle freed: exit 0); the name no longer answers.
# usage: relay_cross_process.sh <latchkey CLI binary> <relay_doorbell binary> [wrapper for the C side, e.g. valgrind ...]
set -euo pipefail

CLI=$1
DOORBELL=$2
shift 2
WRAP=("$@")
STRANGER=lkabababababababababababababababababababababababababababababababab
# Generous: under valgrind the doorbell is many times slower.
TIMEOUT=30

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
    echo "relay_cross_process: FAIL: $*" >&2
    for file in "$WORK"/*.out "$WORK"/*.err; do
        [ -f "$file" ] || continue
        echo "--- $(basename "$file")" >&2
        cat "$file" >&2
    done
    exit 1
}

check() { # description, command...
    local what=$1
    shift
    CHECKS=$((CHECKS + 1))
    "$@" || fail "$what"
}

expect_line() { # file, exact line
    check "expected line \"$2\" in $(basename "$1")" grep -qxF -- "$2" "$1"
}

# The value of a string field in the first JSON line of a file (the CLI's --json output).
json_field() { # file, field
    sed -n "s/.*\"$2\":\"\\([^\"]*\\)\".*/\\1/p" "$1" | head -n 1
}

# Waits until file $1 (written by process $2) has a line starting with $3.
wait_for_line() {
    for _ in $(seq 1 $((TIMEOUT * 10))); do
        if grep -q "^$3" "$1"; then
            return 0
        fi
        kill -0 "$2" 2>/dev/null || fail "$(basename "$1"): the process exited before printing \"$3\""
        sleep 0.1
    done
    fail "$(basename "$1"): no \"$3\" within ${TIMEOUT}s"
}

# Runs "$@" expecting exit status $2; output in $WORK/$1.{out,err}.
expect_status() {
    local name=$1 expected=$2
    shift 2
    local status=0
    "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" || status=$?
    check "$name: expected exit status $expected, got $status" [ "$status" -eq "$expected" ]
}

no_reply() { # name of an expect_status run
    check "$1: got a reply" bash -c "! grep -q '^reply' '$WORK/$1.out'"
}

phone() { # phone <name> <expected status> <message send arguments...>
    local name=$1 expected=$2
    shift 2
    expect_status "$name" "$expected" "$CLI" --home "$WORK/phone-home" message send --timeout "$TIMEOUT" "$@"
}

# 1. Trust is never implied, for the phones nor for the relay; both flags of a pair at once are refused too.
for args in "--relay-trust $STRANGER" "--relay-trust $STRANGER --trust $STRANGER --trust-any" \
    "--trust-any" "--trust-any --relay-trust-any --relay-trust $STRANGER"; do
    # shellcheck disable=SC2086 # the flags are meant to split
    expect_status usage 2 "${WRAP[@]}" "$DOORBELL" --relay 127.0.0.1:9 --name doorbell $args
    check "the usage error names --trust-any and --relay-trust-any" \
        grep -q -- "--trust-any.*--relay-trust-any\|--relay-trust-any.*--trust-any" "$WORK/usage.err"
    check "a usage error printed something on stdout" [ ! -s "$WORK/usage.out" ]
done

# 2. The relay, accepting any identity (names belong to whoever registered them first), and a stored phone.
"$CLI" --json relay run --tcp 127.0.0.1:0 --trust-any > "$WORK/relay.out" 2> "$WORK/relay.err" &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
wait_for_line "$WORK/relay.out" "$RELAY_PID" '{'
RELAY=$(json_field "$WORK/relay.out" tcp)
RELAY_ID=$(json_field "$WORK/relay.out" identifier)
check "the relay reported its address and identifier" test -n "$RELAY" -a -n "$RELAY_ID"
"$CLI" --home "$WORK/phone-home" --json identity create phone > "$WORK/phone-identity.out" 2> "$WORK/phone-identity.err" \
    || fail "cannot create the phone's identity"
PHONE_ID=$(json_field "$WORK/phone-identity.out" identifier)
check "the phone has an identifier" [ -n "$PHONE_ID" ]

expect_status untrusted-relay 1 "${WRAP[@]}" "$DOORBELL" --relay "$RELAY" --relay-trust "$STRANGER" --name doorbell \
    --trust "$PHONE_ID"
check "a doorbell that trusts another relay says UntrustedPeer" grep -q "UntrustedPeer" "$WORK/untrusted-relay.err"
check "no READY from a refused registration" bash -c "! grep -q '^READY' '$WORK/untrusted-relay.out'"

# 3. The doorbell, for the phone only; the phone reaches it by name and gets its replies.
"${WRAP[@]}" "$DOORBELL" --relay "$RELAY" --relay-trust "$RELAY_ID" --name doorbell --trust "$PHONE_ID" \
    > "$WORK/doorbell.out" 2> "$WORK/doorbell.err" &
DOORBELL_PID=$!
PIDS+=("$DOORBELL_PID")
wait_for_line "$WORK/doorbell.out" "$DOORBELL_PID" "READY "
read -r _ NAME DOORBELL_ID < <(grep '^READY ' "$WORK/doorbell.out")
check "the doorbell registered as doorbell" [ "$NAME" = doorbell ]
check "the doorbell printed an identifier" grep -Eq '^READY doorbell lk[0-9a-f]{64}$' "$WORK/doorbell.out"

phone phone 0 --identity phone --to "$RELAY" --relay-name doorbell --trust "$DOORBELL_ID" ring "hello from the phone"
expect_line "$WORK/phone.out" "reply: ding dong: ring"
expect_line "$WORK/phone.out" "reply: ding dong: hello from the phone"
expect_line "$WORK/doorbell.out" "MESSAGE $PHONE_ID ring"
expect_line "$WORK/doorbell.out" "MESSAGE $PHONE_ID hello from the phone"

# 4. Refusals. A phone with a fresh identity the doorbell does not trust (exit 5: refused).
phone stranger-phone 5 --to "$RELAY" --relay-name doorbell --trust "$DOORBELL_ID" ring
no_reply stranger-phone
# The phone expects another doorbell under that name (exit 5: the doorbell is not trusted).
phone wrong-doorbell 5 --identity phone --to "$RELAY" --relay-name doorbell --trust "$STRANGER" ring
no_reply wrong-doorbell
check "the phone says UntrustedPeer" grep -qi "not trusted\|untrusted" "$WORK/wrong-doorbell.err"
# Nobody registered this name (exit 4: not answering).
expect_status nobody 4 "$CLI" --home "$WORK/phone-home" message send --timeout 2 --identity phone --to "$RELAY" \
    --relay-name nobody --trust "$DOORBELL_ID" ring
no_reply nobody
# Another identity cannot take the registered name.
expect_status name-taken 1 "${WRAP[@]}" "$DOORBELL" --relay "$RELAY" --relay-trust "$RELAY_ID" --name doorbell \
    --trust "$PHONE_ID"
check "a second doorbell under a taken name is Refused" grep -q "Refused" "$WORK/name-taken.err"
check "the doorbell heard only the trusted phone" \
    bash -c "[ \"\$(grep -c '^MESSAGE ' '$WORK/doorbell.out')\" -eq 2 ]"

# The phone again after the refusals: the doorbell still answers.
phone phone-again 0 --identity phone --to "$RELAY" --relay-name doorbell --trust "$DOORBELL_ID" again
expect_line "$WORK/phone-again.out" "reply: ding dong: again"

# 5. SIGTERM: a clean stop (under valgrind this is where leaks would be reported).
kill -TERM "$DOORBELL_PID"
status=0
wait "$DOORBELL_PID" || status=$?
check "the doorbell exited with $status after SIGTERM" [ "$status" -eq 0 ]
expect_line "$WORK/doorbell.out" "STOPPED"
expect_status gone 4 "$CLI" --home "$WORK/phone-home" message send --timeout 2 --identity phone --to "$RELAY" \
    --relay-name doorbell --trust "$DOORBELL_ID" ring
no_reply gone

# Under a checker, every run of the C side (also those that were meant to fail) is free of memory errors.
if [ ${#WRAP[@]} -gt 0 ]; then
    check "valgrind reported a memory error or leak" bash -c "! grep -Eq -- \
        '== (Invalid|Conditional jump|Use of uninitialised|Syscall param|Mismatched free)|(definitely|indirectly) lost in' \
        '$WORK'/*.err"
fi

echo "relay_cross_process: all $CHECKS checks passed (C relay doorbell <-> relay <-> CLI phone, by name${WRAP:+, C side under ${WRAP[0]}})"
