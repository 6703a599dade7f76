"""Per-call cost of SecureChannel.encrypt / decrypt from Python versus the same facade calls in Rust.

A benchmark, not a test: it prints figures and asserts nothing about speed.

    make bench-python
    # or: python bench/bench_channel.py [--rust target/release/examples/bench_channel]

The Rust figures come from `cargo run --release -p latchkey-python --example bench_channel`, which runs the
same loops (N encryptions whose frames are dropped, then N fresh frames decrypted in order; best of 7 rounds, since on a shared
machine the slower rounds measure the neighbours). The Rust binary runs before and after the Python loops and
the better of its two figures is kept, so both sides had the same chances of a quiet moment.
"""

import argparse
import hashlib
import subprocess
import threading
import time
from typing import Dict, List, Tuple

import latchkey

ROUNDS = 7
SIZES = [64, 16 * 1024]
SUITES = {"chachapoly": latchkey.CipherSuite.CHACHA_POLY, "aesgcm": latchkey.CipherSuite.AES_GCM}

Key = Tuple[str, str, int]


def open_pair(suite: latchkey.CipherSuite) -> Tuple[latchkey.SecureChannel, latchkey.SecureChannel]:
    vault = latchkey.Vault()
    a, b = latchkey.Identity.create(vault), latchkey.Identity.create(vault)
    sender = latchkey.SecureChannel.initiator(a, suite=suite, trusted=[b.identifier])
    receiver = latchkey.SecureChannel.responder(b, suite=suite, trusted=[a.identifier])
    m2 = receiver.handshake_step(sender.handshake_step(None))
    receiver.handshake_step(sender.handshake_step(m2))
    return sender, receiver


def calls_for(size: int) -> int:
    return 20_000 if size <= 1024 else 2_000


def measure_python() -> Dict[Key, float]:
    results: Dict[Key, float] = {}
    for name, suite in SUITES.items():
        for size in SIZES:
            sender, receiver = open_pair(suite)
            plaintext = b"\x5a" * size
            calls = calls_for(size)
            encrypt: List[float] = []
            decrypt: List[float] = []
            for _ in range(ROUNDS):
                encrypt_once = sender.encrypt
                start = time.perf_counter_ns()
                for _ in range(calls):
                    encrypt_once(plaintext)
                encrypt.append((time.perf_counter_ns() - start) / calls)
                frames = [sender.encrypt(plaintext) for _ in range(calls)]
                start = time.perf_counter_ns()
                decrypt_once = receiver.decrypt
                for frame in frames:
                    decrypt_once(frame)
                decrypt.append((time.perf_counter_ns() - start) / calls)
            results[(name, "encrypt", size)] = min(encrypt)
            results[(name, "decrypt", size)] = min(decrypt)
    return results


def threaded_throughput(threads: int, size: int = 16 * 1024, calls: int = 3_000) -> float:
    """MB/s of 16 KiB encryptions with `threads` Python threads, one channel each: above 1x only if the GIL
    is released during the crypto."""
    pairs = [open_pair(latchkey.CipherSuite.CHACHA_POLY) for _ in range(threads)]
    plaintext = b"\x5a" * size

    def work(channel: latchkey.SecureChannel) -> None:
        for _ in range(calls):
            channel.encrypt(plaintext)

    workers = [threading.Thread(target=work, args=(sender,)) for sender, _ in pairs]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return threads * calls * size / (time.perf_counter() - start) / 1e6


def hashlib_throughput(threads: int, size: int = 16 * 1024, calls: int = 3_000) -> float:
    """The same measurement with hashlib.sha256, which is known to release the GIL: the control that tells
    whether the machine had a free core for the second thread."""
    data = b"\x5a" * size

    def work() -> None:
        for _ in range(calls):
            hashlib.sha256(data).digest()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return threads * calls * size / (time.perf_counter() - start) / 1e6


def measure_rust(binary: str) -> Dict[Key, float]:
    output = subprocess.run([binary], check=True, capture_output=True, text=True).stdout
    results: Dict[Key, float] = {}
    for line in output.splitlines():
        suite, op, size, nanos = line.split()
        results[(suite, op, int(size))] = float(nanos)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="encrypt/decrypt per-call cost, Python vs Rust")
    parser.add_argument("--rust", help="path of the bench_channel example binary (omit for Python only)")
    args = parser.parse_args()
    before = measure_rust(args.rust) if args.rust else {}
    python = measure_python()
    after = measure_rust(args.rust) if args.rust else {}
    rust = {key: min(before[key], after[key]) for key in before}
    print(f"latchkey {latchkey.__version__}: nanoseconds per call (best of {ROUNDS} rounds)")
    print(f"{'suite':<11}{'op':<9}{'size':>7}{'python':>10}{'rust':>10}{'overhead':>10}")
    for key in sorted(python):
        suite, op, size = key
        line = f"{suite:<11}{op:<9}{size:>7}{python[key]:>10.0f}"
        if key in rust:
            line += f"{rust[key]:>10.0f}{python[key] - rust[key]:>+10.0f}"
        print(line)
    one, two = threaded_throughput(1), threaded_throughput(2)
    print(f"16 KiB ChaChaPoly encrypt, 1 thread: {one:.0f} MB/s; 2 threads: {two:.0f} MB/s ({two / one:.2f}x)")
    one, two = hashlib_throughput(1), hashlib_throughput(2)
    print(f"control, 16 KiB sha256:    1 thread: {one:.0f} MB/s; 2 threads: {two:.0f} MB/s ({two / one:.2f}x)")


if __name__ == "__main__":
    main()
