"""A Latchkey service: accepts secure channels on TCP and answers each message with "echo: " + message.

    python examples/python/service.py [--host 127.0.0.1] [--port 0] (--trust lk...)... | --trust-any

Prints ``LISTENING <host>:<port> <identifier>`` once it accepts connections (the same line and wire format
as the Rust ``direct_peer`` example), then serves until interrupted.

Trust is explicit: only the identifiers given with ``--trust`` get a channel, or every authenticated identity
with ``--trust-any``; with neither, it exits with a usage error (status 2).
"""

import argparse
import asyncio
import sys
from typing import List, Optional

import latchkey
from latchkey import direct_tcp

DESCRIPTION = "Latchkey echo service over direct TCP"


class EchoService:
    def __init__(self, identity: latchkey.Identity, trusted: Optional[List[str]], trust_any: bool) -> None:
        self.identity = identity
        self.trusted = trusted
        self.trust_any = trust_any

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with latchkey.SecureChannel.responder(
                self.identity, trusted=self.trusted, trust_any=self.trust_any
            ) as channel:
                await direct_tcp.handshake(channel, reader, writer)
                print(f"channel with {channel.peer_identifier}", file=sys.stderr, flush=True)
                while (message := await direct_tcp.receive(channel, reader)) is not None:
                    await direct_tcp.send(channel, writer, b"echo: " + message)
        except (latchkey.LatchkeyError, ConnectionError, asyncio.TimeoutError) as e:
            # One bad peer must not take the service down: report it and drop that connection only.
            print(f"connection refused: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        finally:
            writer.close()


async def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    trust = parser.add_mutually_exclusive_group(required=True)
    trust.add_argument("--trust", action="append", help="accept only this peer identifier (repeatable)")
    trust.add_argument("--trust-any", action="store_true", help="accept any authenticated identity")
    args = parser.parse_intermixed_args(argv)

    identity = latchkey.Identity.create(latchkey.Vault())
    service = EchoService(identity, args.trust, args.trust_any)
    server = await asyncio.start_server(service.serve, args.host, args.port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"LISTENING {host}:{port} {identity.identifier}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
