#!/usr/bin/env python3
"""Turns the parts of tests/vectors/routed.json that the C device API reproduces into a line format
tests/c/test_route.c reads without a JSON parser: one record per line, space-separated tokens, "-" for an empty
hex string. The bytes stay exactly those of the committed JSON; this only changes their framing.

  reset_secret <static secret hex>                  the identity whose reset key stateless_reset derives
  reset_answer <arrived hex> <reset hex>            a frame for an unknown decryptor and the reset it gets
  reset_token <decryptor> <token hex>               the token of a decryptor address
  not_answered <arrived hex> <name...>              frames that get no reset
  routed_valid <encoded hex> <name...>              routed messages that decode
  routed_invalid <encoded hex> <name...>            routed messages that do not

usage: routed_to_lines.py routed.json > routed.txt
"""
import json
import sys


def hex_token(value):
    bytes.fromhex(value)  # refuse anything that is not hex now rather than in C
    return value if value else "-"


def main(path):
    with open(path) as f:
        vectors = json.load(f)
    reset = vectors["stateless_reset"]
    print("reset_secret " + hex_token(reset["key_derivation"]["static_secret"]))
    print("reset_answer %s %s" % (hex_token(reset["answer"]["arrived"]), hex_token(reset["answer"]["reset"])))
    for token in reset["tokens"]:
        print("reset_token %s %s" % (token["decryptor"], hex_token(token["token"])))
    for entry in reset["not_answered"]:
        print("not_answered %s %s" % (hex_token(entry["arrived"]), entry["name"]))
    for entry in vectors["routed_messages"]:
        print("routed_valid %s %s" % (hex_token(entry["encoded"]), entry["name"]))
    for entry in vectors["invalid_routed_messages"]:
        print("routed_invalid %s %s" % (hex_token(entry["encoded"]), entry["name"]))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
