#!/usr/bin/env bash
# The doorbell firmware joins the network (issue 15, part B), with real processes:
#   phone (latchkey message send) --TCP--> relay (latchkey relay run) --TCP--> gateway --UART socket--> device (QEMU)
# The device opens a secure channel to the relay through the gateway and registers its name through it; the
# phone reaches it by that name and exchanges messages end to end. The gateway flips one bit in a frame to the
# device. Checks: the phone got every reply from the device; the device refused the tampered frame and the
# exchange still completed; the gateway's and the relay's logs hold none of the plaintexts (as text or hex);
# the device finished cleanly. Prints the network firmware's flash and RAM beside the Part A goals, and fails
# if its peak RAM is over the RAM goal (32 KiB). Its flash is over the flash goal (128 KiB) and only printed
# (docs/FIRMWARE.md says what it would take).
#
# Usage: network-test.sh LATCHKEY_CLI GATEWAY DOORBELL_ELF [TIMEOUT_SECS]
# FW_UART=tcp puts the UART on a TCP socket on 127.0.0.1 instead of a Unix socket (the default: no port to
# pick, so nothing to race for on a busy machine).
# Every step has its own timeout; all processes it starts are stopped on exit, by their process ids.
set -euo pipefail

cli=$1
gateway=$2
elf=$3
budget_secs=${4:-240}
flash_goal=$((128 * 1024))
ram_goal=$((32 * 1024))

work=$(mktemp -d /tmp/lk-fwnet.XXXXXX)
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    echo "--- device (semihosting) ---"; cat "$work/device.log" 2>/dev/null || true
    echo "--- gateway (last 40 lines) ---"; tail -n 40 "$work/gateway.log" 2>/dev/null || true
    echo "--- relay ---"; cat "$work/relay.out" "$work/relay.err" 2>/dev/null | cut -c1-300 || true
    echo "--- phone ---"; cat "$work/phone.out" "$work/phone.err" 2>/dev/null || true
  fi
  if [ -n "${FW_KEEP:-}" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
start=$SECONDS
left() { echo $((budget_secs - (SECONDS - start))); }

# wait_for FILE PATTERN SECS WHAT: until FILE has a line matching PATTERN.
wait_for() {
  local deadline=$((SECONDS + $3))
  until grep -q -- "$2" "$1" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$4 (waited $3 s)"
    [ "$(left)" -gt 0 ] || fail "the test's budget of ${budget_secs}s is spent"
    sleep 0.2
  done
}

home=$work/home
id_of() { "$cli" --home "$home" --json identity show "$1" | sed -n 's/.*"identifier":"\([^"]*\)".*/\1/p'; }
"$cli" --home "$home" identity create relay >/dev/null
"$cli" --home "$home" identity create phone >/dev/null
relay_id=$(id_of relay)
phone_id=$(id_of phone)
[ -n "$relay_id" ] && [ -n "$phone_id" ] || fail "no identifiers from the CLI"

# Known plaintexts, unique to this run.
tag=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
messages=("ring-$tag-one" "ring-$tag-two" "ring-$tag-three")

# 1. The device. TEST ONLY: the emulator has no TRNG, so the host hands it a seed (see src/rng.rs).
seed=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
if [ "${FW_UART:-unix}" = tcp ]; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  chardev="socket,id=uart,host=127.0.0.1,port=$port,server=on,wait=off"
  uart="tcp:127.0.0.1:$port"
else
  chardev="socket,id=uart,path=$work/uart.sock,server=on,wait=off"
  uart="unix:$work/uart.sock"
fi
echo "==> device: qemu-system-arm -machine mps2-an386, UART0 on $uart"
qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic -monitor none \
  -semihosting-config "enable=on,target=native,arg=doorbell,arg=relay=$relay_id,arg=phone=$phone_id,arg=name=doorbell,arg=seed=$seed,arg=serve=${#messages[@]},arg=deadline=$budget_secs" \
  -chardev "$chardev" -serial chardev:uart \
  -kernel "$elf" >"$work/device.log" 2>&1 &
qemu=$!
pids+=("$qemu")
wait_for "$work/device.log" '^device identifier ' 60 "the device did not print its identifier"
device_id=$(sed -n 's/^device identifier //p' "$work/device.log")
echo "    device $device_id"

# 2. The relay: only the device may open a channel to it (and so register).
echo "==> relay: latchkey relay run --trust DEVICE"
"$cli" --home "$home" --json -vv relay run --identity relay --tcp 127.0.0.1:0 --trust "$device_id" \
  >"$work/relay.out" 2>"$work/relay.err" &
pids+=("$!")
wait_for "$work/relay.out" '"event":"ready"' 60 "the relay did not start"
relay_addr=$(sed -n 's/.*"tcp":"\([^"]*\)".*/\1/p' "$work/relay.out" | head -n 1)
echo "    relay $relay_id on $relay_addr"

# 3. The gateway, flipping one bit in a frame to the device.
echo "==> gateway: uart socket <-> relay, flipping one bit towards the device"
"$gateway" --uart "$uart" --relay "$relay_addr" --flip 1 --dump "$work/gateway.dump" \
  >"$work/gateway.log" 2>&1 &
gw=$!
pids+=("$gw")
wait_for "$work/device.log" '^relay: registered as "doorbell"' 90 "the device did not register at the relay"
echo "    $(grep '^relay: registered' "$work/device.log")"

# 4. The phone, in its own process: reaches the device by its relay name.
echo "==> phone: latchkey message send --to RELAY --relay-name doorbell --service echo --trust DEVICE"
status=0
timeout 120 "$cli" --home "$home" --json message send --identity phone --to "$relay_addr" \
  --relay-name doorbell --service echo --trust "$device_id" --timeout 40 "${messages[@]}" \
  >"$work/phone.out" 2>"$work/phone.err" || status=$?
cat "$work/phone.out"
[ "$status" -eq 0 ] || fail "the phone exited with status $status"
for m in "${messages[@]}"; do
  grep -qF "\"reply\":\"doorbell: $m\"" "$work/phone.out" || fail "no reply from the device to $m"
done
echo "ok   the phone got the device's ${#messages[@]} replies, end to end through the gateway and the relay"

# 5. The device exits by itself once every reply is acknowledged.
deadline=$((SECONDS + 90))
while kill -0 "$qemu" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the device did not finish"
  sleep 0.2
done
device_status=0
wait "$qemu" || device_status=$?
[ "$device_status" -eq 0 ] || fail "the device exited with status $device_status"
grep -q '^result: done' "$work/device.log" || fail "the device did not report success"
# The gateway exits when the UART link closes: then its log and dump are complete.
deadline=$((SECONDS + 20))
while kill -0 "$gw" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the gateway did not exit after the device"
  sleep 0.2
done
echo "--- device (semihosting) ---"
cat "$work/device.log"
echo "---"

# 6. The flipped bit was refused by the device, and the exchange still completed (checked above).
grep -q '^gateway: FLIPPED' "$work/gateway.log" || fail "the gateway flipped no bit"
refused=$(sed -n 's/^refused frames: \([0-9]*\).*/\1/p' "$work/device.log")
[ "${refused:-0}" -ge 1 ] || fail "the device refused no frame"
echo "ok   $(grep '^gateway: FLIPPED' "$work/gateway.log" | head -n 1)"
echo "ok   the device refused $refused frame(s): $(grep -m1 '^refused: ' "$work/device.log")"

# 7. Only ciphertext on the gateway and the relay: no plaintext, as text or as hex, in the gateway's log, in
#    its dump of every byte it forwarded, or in the relay's output.
frames=$(grep -c ' -> ' "$work/gateway.log" || true)
[ "$frames" -gt 0 ] || fail "the gateway logged no frames"
[ "$(wc -l <"$work/gateway.dump")" -eq "$frames" ] || fail "the gateway's dump does not hold every frame"
for m in "${messages[@]}" "doorbell: ${messages[0]}"; do
  hex=$(printf '%s' "$m" | od -An -tx1 | tr -d ' \n')
  for f in gateway.log gateway.dump relay.out relay.err; do
    if grep -qiF -e "$m" -e "$hex" "$work/$f"; then fail "plaintext \"$m\" in the $f"; fi
  done
done
echo "ok   the gateway forwarded $frames frames ($(awk '{n += length($5) / 2} END {print n}' "$work/gateway.dump") B, all in its dump) and logged only ciphertext; so did the relay"
echo "     e.g. $(grep -m1 'relay -> device.*channel frame' "$work/gateway.log" | cut -c1-200)"

# 8. What the network firmware costs: held to the RAM goal; flash reported (over the goal, see the header).
read -r flash text rodata < <(arm-none-eabi-size -A "$elf" | awk '
  $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" || $1 == ".data" { flash += $2 }
  $1 == ".text" { text = $2 } $1 == ".rodata" { rodata = $2 }
  END { print flash, text, rodata }')
ram=$(sed -n 's/^budget: peak RAM \([0-9]*\) B.*/\1/p' "$work/device.log")
[ -n "$ram" ] || fail "the device printed no RAM budget"
stack=$(sed -n 's/^budget: stack high-water \([0-9]*\) B.*/\1/p' "$work/device.log")
heap=$(sed -n 's/^budget: heap peak [0-9]* B live, \([0-9]*\) B of arena.*/\1/p' "$work/device.log")
verdict() { if [ "$1" -le "$2" ]; then echo "within"; else echo "over by $(($1 - $2)) B"; fi; }
echo
echo "network firmware (routed sessions, relay registration, phone channels, UART driver; release build):"
printf '  flash     %7d B  (%d KiB; .text %d + .rodata %d)  Part A goal <= %d B: %s\n' \
  "$flash" $(((flash + 1023) / 1024)) "$text" "$rodata" "$flash_goal" "$(verdict "$flash" "$flash_goal")"
printf '  peak RAM  %7d B  (%d KiB; stack high-water %d + heap arena touched %d + statics)  goal <= %d B: %s\n' \
  "$ram" $(((ram + 1023) / 1024)) "$stack" "$heap" "$ram_goal" "$(verdict "$ram" "$ram_goal")"
[ "$ram" -le "$ram_goal" ] || fail "the network firmware's peak RAM ($ram B) is over the goal of $ram_goal B"
echo "==> network test passed in $((SECONDS - start)) s"
