#!/usr/bin/env bash
# Runs the firmware ELF under QEMU (Cortex-M4, mps2-an386, semihosting) with a timeout, then prints the budget:
# flash from arm-none-eabi-size, peak RAM as the firmware measured it, each beside its goal.
# Fails if the firmware reports a failure, does not finish, or is over either goal.
# Usage: check.sh ELF [TIMEOUT_SECS]
set -euo pipefail

elf=$1
timeout_secs=${2:-120}
flash_goal=$((128 * 1024))
ram_goal=$((32 * 1024))
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "==> qemu-system-arm -machine mps2-an386 -cpu cortex-m4: $elf"
status=0
timeout "$timeout_secs" qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
  -semihosting-config enable=on,target=native -kernel "$elf" | tee "$log" || status=$?
if [ "$status" -eq 124 ]; then
  echo "firmware did not finish within ${timeout_secs}s" >&2
  exit 1
elif [ "$status" -ne 0 ]; then
  echo "firmware exited with status $status (a vector did not match, or it panicked)" >&2
  exit 1
fi

# Flash: what is stored in flash (vector table, code, read-only data, initial values of .data).
read -r flash text rodata < <(arm-none-eabi-size -A "$elf" | awk '
  $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" || $1 == ".data" { flash += $2 }
  $1 == ".text" { text = $2 } $1 == ".rodata" { rodata = $2 }
  END { print flash, text, rodata }')
ram=$(sed -n 's/^budget: peak RAM \([0-9]*\) B.*/\1/p' "$log")
stack=$(sed -n 's/^budget: stack high-water \([0-9]*\) B.*/\1/p' "$log")
heap=$(sed -n 's/^budget: heap peak [0-9]* B live, \([0-9]*\) B of arena.*/\1/p' "$log")
vectors=$(sed -n 's/^test vectors embedded: \([0-9]*\) B.*/\1/p' "$log")
[ -n "$ram" ] || { echo "the firmware printed no RAM budget" >&2; exit 1; }

verdict() { if [ "$1" -le "$2" ]; then echo "within"; else echo "OVER by $(($1 - $2)) B"; fi; }
echo
echo "budget (a device that does a handshake and transport; Cortex-M4, RustCrypto provider, release build):"
arm-none-eabi-size "$elf"
printf '  flash     %7d B  (%d KiB; .text %d + .rodata %d incl. %s B of test vectors)  goal <= %d B: %s\n' \
  "$flash" $(((flash + 1023) / 1024)) "$text" "$rodata" "${vectors:-?}" "$flash_goal" "$(verdict "$flash" "$flash_goal")"
echo "  (size's bss includes the heap arena reserved for this test, $((128 * 1024)) B; the figure below is what the run touched)"
printf '  peak RAM  %7d B  (%d KiB; stack high-water %d + heap arena touched %d + statics)  goal <= %d B: %s\n' \
  "$ram" $(((ram + 1023) / 1024)) "$stack" "$heap" "$ram_goal" "$(verdict "$ram" "$ram_goal")"
[ "$flash" -le "$flash_goal" ] && [ "$ram" -le "$ram_goal" ]
