#!/usr/bin/env bash
# Cross-process test of the C relay device (examples/c/relay_device.c: the sans-IO device API, latchkey_device_*,
# over its own POSIX TCP socket) behind a `latchkey relay run` process, reached by name by a phone in another
# process (the `latchkey` CLI), over real TCP on loopback:
#   1. The device does not start without a trust decision for the phones and for the relay (usage error, 2).
#   2. A device that trusts someone else as the relay never registers: its relay channel fails as not trusted.
#   3. The device registers under a name; the phone (a stored identity the device trusts) reaches it by name
#      through the relay, end to end (offering AES-256-GCM and ChaCha20-Poly1305 in turn), and gets the device's replies; the device saw the phone's authenticated
#      identifier with each message.
#   4. A phone the device does not trust, a phone that expects another device, a name nobody registered and a
#      second device taking the registered name are refused; none of them got a reply.
#   5. The relay is killed (SIGKILL) and started again on the same port with the same identity, twice: each
#      time the device reconnects on its own, its old relay channel is reset by the new relay (stateless
#      reset), it re-handshakes and registers again, and the phone reaches it by name again. Over the whole
#      run the device received every message the trusted phone sent exactly once, and nothing else.
#   6. SIGTERM stops the device cleanly (every handle freed: exit 0, STOPPED).
# usage: relay_device_cross_process.sh <latchkey CLI binary> <relay_device binary> [wrapper for the C side, e.g. valgrind ...]
set -euo pipefail

CLI=$1
DEVICE=$2
shift 2
WRAP=("$@")
STRANGER=lkabababababababababababababababababababababababababababababababab
# Generous: under valgrind the device is many times slower.
TIMEOUT=60

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
    echo "relay_device_cross_process: FAIL: $*" >&2
    for file in "$WORK"/*.out "$WORK"/*.err; do
        [ -f "$file" ] || continue
        echo "--- $(basename "$file")" >&2
        tail -n 40 "$file" >&2
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

count_lines() { # file, prefix (0 while the file does not exist yet)
    local n
    n=$(grep -c "^$2" "$1" 2>/dev/null) || true
    echo "${n:-0}"
}

# The value of a string field in the first JSON line of a file (the CLI's --json output).
json_field() { # file, field
    sed -n "s/.*\"$2\":\"\\([^\"]*\\)\".*/\\1/p" "$1" | head -n 1
}

# Waits until file $1 (written by process $2) has at least $4 lines (default 1) starting with $3.
wait_for_line() {
    local want=${4:-1}
    for _ in $(seq 1 $((TIMEOUT * 10))); do
        if [ "$(count_lines "$1" "$3")" -ge "$want" ]; then
            return 0
        fi
        kill -0 "$2" 2>/dev/null || fail "$(basename "$1"): the process exited before printing \"$3\" ($want)"
        sleep 0.1
    done
    fail "$(basename "$1"): no \"$3\" ($want) within ${TIMEOUT}s"
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

SENT=()
PHONE_RUNS=0
phone() { # phone <name> <message...>: the trusted phone, which must get every reply
    local name=$1
    shift
    # The phone offers AES-256-GCM and ChaCha20-Poly1305 in turn (explicitly, so whatever the CPU): the
    # device, which itself offers ChaChaPoly to the relay, must accept both.
    local suites=(aesgcm chachapoly)
    local suite=${suites[$((PHONE_RUNS % 2))]}
    PHONE_RUNS=$((PHONE_RUNS + 1))
    expect_status "$name" 0 "$CLI" --home "$WORK/phone-home" message send --timeout "$TIMEOUT" --identity phone \
        --suite "$suite" --to "$RELAY" --relay-name doorbell --trust "$DEVICE_ID" "$@"
    for message in "$@"; do
        expect_line "$WORK/$name.out" "reply: device: $message"
        SENT+=("$message")
    done
}

start_relay() { # start_relay <output name> <address>: retries while the port of a killed relay is not free yet
    for _ in $(seq 1 50); do
        "$CLI" --home "$WORK/relay-home" --json relay run --identity relay --tcp "$2" --trust-any \
            > "$WORK/$1.out" 2> "$WORK/$1.err" &
        RELAY_PID=$!
        PIDS+=("$RELAY_PID")
        for _ in $(seq 1 $((TIMEOUT * 10))); do
            if grep -q '^{' "$WORK/$1.out"; then
                return 0
            fi
            kill -0 "$RELAY_PID" 2>/dev/null || break
            sleep 0.1
        done
        grep -qi "in use" "$WORK/$1.err" || fail "$1: the relay did not start"
        sleep 0.2
    done
    fail "$1: the relay's port stayed in use"
}

stop() { # stop <pid> <what>: SIGTERM, expecting exit 0
    kill -TERM "$1"
    local status=0
    wait "$1" || status=$?
    check "$2 exited with $status after SIGTERM" [ "$status" -eq 0 ]
}

# 1. Trust is never implied, for the phones nor for the relay; both flags of a pair at once are refused too.
for args in "--relay-trust $STRANGER" "--relay-trust $STRANGER --trust $STRANGER --trust-any" \
    "--trust-any" "--trust-any --relay-trust-any --relay-trust $STRANGER"; do
    # shellcheck disable=SC2086 # the flags are meant to split
    expect_status usage 2 "${WRAP[@]}" "$DEVICE" --relay 127.0.0.1:9 --name doorbell $args
    check "the usage error names --trust-any and --relay-trust-any" \
        grep -q -- "--trust-any.*--relay-trust-any\|--relay-trust-any.*--trust-any" "$WORK/usage.err"
    check "a usage error printed something on stdout" [ ! -s "$WORK/usage.out" ]
done

# 2. The relay, with a stored identity (so a restart keeps it), accepting any identity; a stored phone.
"$CLI" --home "$WORK/relay-home" --json identity create relay > "$WORK/relay-identity.out" 2> "$WORK/relay-identity.err" \
    || fail "cannot create the relay's identity"
start_relay relay 127.0.0.1:0
RELAY=$(json_field "$WORK/relay.out" tcp)
RELAY_ID=$(json_field "$WORK/relay.out" identifier)
check "the relay reported its address and identifier" test -n "$RELAY" -a -n "$RELAY_ID"
"$CLI" --home "$WORK/phone-home" --json identity create phone > "$WORK/phone-identity.out" 2> "$WORK/phone-identity.err" \
    || fail "cannot create the phone's identity"
PHONE_ID=$(json_field "$WORK/phone-identity.out" identifier)
check "the phone has an identifier" [ -n "$PHONE_ID" ]

"${WRAP[@]}" "$DEVICE" --relay "$RELAY" --relay-trust "$STRANGER" --name doorbell --trust "$PHONE_ID" \
    > "$WORK/untrusted-relay.out" 2> "$WORK/untrusted-relay.err" &
UNTRUSTED_PID=$!
PIDS+=("$UNTRUSTED_PID")
wait_for_line "$WORK/untrusted-relay.out" "$UNTRUSTED_PID" "RELAY_LOST "
check "a device that trusts another relay says why its relay channel failed" \
    grep -q "^RELAY_LOST .*not trusted" "$WORK/untrusted-relay.out"
stop "$UNTRUSTED_PID" "the device with an untrusted relay"
check "no READY from a device whose relay is not trusted" bash -c "! grep -q '^READY' '$WORK/untrusted-relay.out'"
check "no relay channel for a device whose relay is not trusted" bash -c "! grep -q '^RELAY ' '$WORK/untrusted-relay.out'"
expect_line "$WORK/untrusted-relay.out" "STOPPED"

# 3. The device, for the phone only; the phone reaches it by name and gets its replies.
"${WRAP[@]}" "$DEVICE" --relay "$RELAY" --relay-trust "$RELAY_ID" --name doorbell --trust "$PHONE_ID" \
    > "$WORK/device.out" 2> "$WORK/device.err" &
DEVICE_PID=$!
PIDS+=("$DEVICE_PID")
wait_for_line "$WORK/device.out" "$DEVICE_PID" "READY "
read -r _ NAME DEVICE_ID < <(grep '^READY ' "$WORK/device.out")
check "the device registered as doorbell" [ "$NAME" = doorbell ]
check "the device printed an identifier" grep -Eq '^READY doorbell lk[0-9a-f]{64}$' "$WORK/device.out"
expect_line "$WORK/device.out" "IDENTIFIER $DEVICE_ID"
expect_line "$WORK/device.out" "RELAY $RELAY_ID"

phone phone ring "hello from the phone"
expect_line "$WORK/device.out" "MESSAGE $PHONE_ID ring"
expect_line "$WORK/device.out" "MESSAGE $PHONE_ID hello from the phone"
check "the device saw the phone's authenticated identifier" grep -q "^PHONE [0-9]* $PHONE_ID$" "$WORK/device.out"

# 4. Refusals. A phone with a fresh identity the device does not trust (exit 5: refused).
expect_status stranger-phone 5 "$CLI" --home "$WORK/phone-home" message send --timeout "$TIMEOUT" --to "$RELAY" \
    --relay-name doorbell --trust "$DEVICE_ID" ring
no_reply stranger-phone
# The phone expects another device under that name (exit 5: the device is not trusted).
expect_status wrong-device 5 "$CLI" --home "$WORK/phone-home" message send --timeout "$TIMEOUT" --identity phone \
    --to "$RELAY" --relay-name doorbell --trust "$STRANGER" ring
no_reply wrong-device
check "the phone says the device is not trusted" grep -qi "not trusted\|untrusted" "$WORK/wrong-device.err"
# Nobody registered this name (exit 4: not answering).
expect_status nobody 4 "$CLI" --home "$WORK/phone-home" message send --timeout 2 --identity phone --to "$RELAY" \
    --relay-name nobody --trust "$DEVICE_ID" ring
no_reply nobody
# Another identity cannot take the registered name: the second device exits 1 and says why.
expect_status name-taken 1 "${WRAP[@]}" "$DEVICE" --relay "$RELAY" --relay-trust "$RELAY_ID" --name doorbell \
    --trust "$PHONE_ID"
check "a second device under a taken name is refused" grep -q "^REFUSED .*belongs to another identity" \
    "$WORK/name-taken.err"
check "the refused device never said READY" bash -c "! grep -q '^READY' '$WORK/name-taken.out'"
phone phone-again again

# 5. The relay dies (SIGKILL) and comes back on the same port with the same identity, twice.
for round in 1 2; do
    registered=$(count_lines "$WORK/device.out" "REGISTERED doorbell")
    lost=$(count_lines "$WORK/device.out" "RELAY_LOST ")
    kill -KILL "$RELAY_PID"
    wait "$RELAY_PID" 2>/dev/null || true
    wait_for_line "$WORK/device.out" "$DEVICE_PID" "DISCONNECTED" "$round"
    sleep 0.3
    started=$(date +%s%N)
    start_relay "relay-$round" "$RELAY"
    check "the restarted relay kept its identifier" [ "$(json_field "$WORK/relay-$round.out" identifier)" = "$RELAY_ID" ]
    wait_for_line "$WORK/device.out" "$DEVICE_PID" "REGISTERED doorbell" $((registered + 1))
    recovered_ms=$((($(date +%s%N) - started) / 1000000))
    echo "relay_device_cross_process: restart $round: registered again ${recovered_ms} ms after the relay started"
    check "the old relay channel ended by the new relay's reset" \
        bash -c "[ \"\$(grep -c '^RELAY_LOST .*stateless reset' '$WORK/device.out')\" -ge $round ]"
    check "one relay channel lost per restart" [ "$(count_lines "$WORK/device.out" "RELAY_LOST ")" -eq $((lost + 1)) ]
    check "the device reconnected" [ "$(count_lines "$WORK/device.out" "CONNECTED")" -ge $((round + 1)) ]
    phone "phone-after-restart-$round" "after restart $round" "second after restart $round"
done

# Exactly once: every message the trusted phone sent reached the device once, and nothing else did.
grep '^MESSAGE ' "$WORK/device.out" | sort > "$WORK/received.txt"
for message in "${SENT[@]}"; do echo "MESSAGE $PHONE_ID $message"; done | sort > "$WORK/sent.txt"
check "the device received exactly the messages the phone sent, each once" diff -u "$WORK/sent.txt" "$WORK/received.txt"

# 6. SIGTERM: a clean stop (under valgrind this is where leaks would be reported).
stop "$DEVICE_PID" "the device"
expect_line "$WORK/device.out" "STOPPED"
check "the device counted three relay channels" grep -q "^STATS .* relay_channels=3 " "$WORK/device.out"
check "no frame failed authentication" grep -q "^STATS .* rejected=0 " "$WORK/device.out"

# Under a checker, every run of the C side (also those that were meant to fail) is free of memory errors.
if [ ${#WRAP[@]} -gt 0 ]; then
    check "valgrind reported a memory error or leak" bash -c "! grep -Eq -- \
        '== (Invalid|Conditional jump|Use of uninitialised|Syscall param|Mismatched free)|(definitely|indirectly) lost in' \
        '$WORK'/*.err"
fi

echo "relay_device_cross_process: all $CHECKS checks passed (C device on its own socket <-> relay (killed and restarted twice) <-> CLI phone, by name${WRAP:+, C side under ${WRAP[0]}})"
