"""A Latchkey client: opens a secure channel to a service over TCP and sends each message in turn.

    python examples/python/client.py <host>:<port> [--suite chachapoly|aesgcm] (--trust lk...)... | --trust-any
        <message>...

Prints ``PEER <identifier>`` after the handshake and ``REPLY <text>`` per answer; exits 1 on any error.
Works against examples/python/service.py, the Rust ``direct_peer`` example and the C device.

Trust is explicit: the service must be one of the identifiers given with ``--trust``, or any authenticated
identity with ``--trust-any``; with neither, it exits with a usage error (status 2).
"""

import argparse
import asyncio
import sys
from typing import List, Optional

import latchkey
from latchkey import direct_tcp

DESCRIPTION = "Latchkey client over direct TCP"

SUITES = {"chachapoly": latchkey.CipherSuite.CHACHA_POLY, "aesgcm": latchkey.CipherSuite.AES_GCM}


async def run(
    address: str, messages: List[str], suite: str, trusted: Optional[List[str]], trust_any: bool
) -> None:
    host, _, port = address.rpartition(":")
    identity = latchkey.Identity.create(latchkey.Vault())
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        with latchkey.SecureChannel.initiator(
            identity, suite=SUITES[suite], trusted=trusted, trust_any=trust_any
        ) as channel:
            await direct_tcp.handshake(channel, reader, writer)
            print(f"PEER {channel.peer_identifier}", flush=True)
            for message in messages:
                await direct_tcp.send(channel, writer, message.encode())
                reply = await direct_tcp.receive(channel, reader)
                if reply is None:
                    raise ConnectionError("service closed the connection")
                print(f"REPLY {reply.decode(errors='replace')}", flush=True)
    finally:
        writer.close()
        await writer.wait_closed()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("address", help="host:port of the service")
    parser.add_argument("messages", nargs="*")
    parser.add_argument("--suite", choices=sorted(SUITES), default="chachapoly")
    trust = parser.add_mutually_exclusive_group(required=True)
    trust.add_argument("--trust", action="append", help="accept only this peer identifier (repeatable)")
    trust.add_argument("--trust-any", action="store_true", help="accept any authenticated identity")
    args = parser.parse_intermixed_args(argv)
    try:
        asyncio.run(run(args.address, args.messages, args.suite, args.trust, args.trust_any))
    except (latchkey.LatchkeyError, OSError, asyncio.TimeoutError) as e:
        print(f"client: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
