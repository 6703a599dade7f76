#!/usr/bin/env python3
"""Turns tests/vectors/{identity,handshake}.json into a line format a small C program reads without a JSON
parser: one record per line, space-separated tokens, "-" for an empty hex string. The expected bytes stay
exactly those of the committed JSON; this only changes their framing.

usage: vectors_to_lines.py identity.json handshake.json > vectors.txt
"""
import json
import sys


def hex_token(value):
    bytes.fromhex(value)  # refuse anything that is not hex now rather than in C
    return value if value else "-"


def side_line(role, side):
    return " ".join(
        [
            "side",
            role,
            hex_token(side["signing_seed"]),
            hex_token(side["static_secret"]),
            hex_token(side["ephemeral_secret"]),
            str(int(side["created_at"])),
            str(int(side["key_validity_secs"])),
            str(int(side["attestation_validity_secs"])),
            side["identifier"],
        ]
    )


def identity_lines(vector):
    yield "identity " + vector["name"]
    yield "secrets %s %s" % (hex_token(vector["signing_seed"]), hex_token(vector["static_secret"]))
    yield "times %d %d %d" % (
        vector["created_at"],
        vector["key_validity_secs"],
        vector["attestation_validity_secs"],
    )
    yield "identifier " + vector["identifier"]
    yield "history " + hex_token(vector["history"])
    for rotation in vector["rotations"]:
        yield "rotation %s %d %s" % (
            hex_token(rotation["signing_seed"]),
            rotation["at"],
            hex_token(rotation["history"]),
        )
    yield "end"


def handshake_lines(vector):
    yield "handshake " + vector["name"]
    yield "suite %s %d" % (vector["suite"], vector["now"])
    yield side_line("initiator", vector["initiator"])
    yield side_line("responder", vector["responder"])
    for message in vector["messages"]:
        yield "message " + hex_token(message)
    yield "hash " + hex_token(vector["handshake_hash"])
    for entry in vector["transport"]:
        yield "transport %s %d %s %s" % (
            entry["from"],
            entry["nonce"],
            hex_token(entry["plaintext"]),
            hex_token(entry["frame"]),
        )
    yield "end"


def main(identity_path, handshake_path):
    with open(identity_path) as f:
        identities = json.load(f)["vectors"]
    with open(handshake_path) as f:
        handshakes = json.load(f)["vectors"]
    if not identities or not handshakes:
        sys.exit("vectors_to_lines: no vectors found")
    for vector in identities:
        for line in identity_lines(vector):
            print(line)
    for vector in handshakes:
        for line in handshake_lines(vector):
            print(line)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
