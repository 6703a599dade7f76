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
  suite_offer <noise message 1 hex> <suite|-> <error|-> <name...>
                                                    a routed message 1's suite offer and what a responder makes
                                                    of it (chachapoly, aesgcm; UnsupportedSuite, DecodeError)
  suite_refusal <accepted> <arrived hex> <payload hex> <refusal hex> <listener>
                                                    the refusal a listener accepting only <accepted> answers
                                                    <arrived> with (its payload, the whole message)

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
    offers = vectors["suite_offers"]
    for entry in offers["offers"]:
        print("suite_offer %s %s %s %s" % (hex_token(entry["noise_message_1"]), entry["suite"] or "-",
                                           entry["error"] or "-", entry["name"]))
    refusal = offers["refusal"]
    if refusal["accepted"] != ["chachapoly"]:
        sys.exit("routed_to_lines.py: suite_offers.refusal.accepted is %r; test_route.c configures only "
                 "chachapoly" % (refusal["accepted"],))
    print("suite_refusal %s %s %s %s %s" % (refusal["accepted"][0], hex_token(refusal["arrived"]),
                                            hex_token(refusal["payload"]), hex_token(refusal["refusal"]),
                                            refusal["listener"]))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
