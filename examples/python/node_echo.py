"""A Latchkey runtime node in Python: accepts secure channels over TCP and hosts an echo service and an inbox.

    python examples/python/node_echo.py [--listen 127.0.0.1:0] (--trust lk...)... | --trust-any

Prints ``LISTENING <host>:<port> <identifier>``. Peers open a channel to its listener ``api`` and then talk to
``echo`` (answers with the same payload) or ``inbox`` (answers "got <n> bytes"), e.g. with
``await node.connect(address, trusted=[identifier])`` and ``await channel.request("echo", b"hi")``.

Trust is explicit: only the identifiers given with ``--trust`` may open channels and use the services, or
every authenticated identity with ``--trust-any``. Raw TCP clients reach neither service.
"""

import argparse
import asyncio
import sys
from typing import List, Optional

import latchkey


async def serve_inbox(mailbox: latchkey.Mailbox) -> None:
    async for message in mailbox:
        print(
            f"inbox: {len(message.payload)} bytes from {message.peer_identifier} ({message.origin})",
            file=sys.stderr,
            flush=True,
        )
        await message.reply(b"got %d bytes" % len(message.payload))


async def main(listen: str, trusted: Optional[List[str]], trust_any: bool) -> None:
    async with latchkey.Node("python-node") as node:
        address = await node.listen_tcp(listen)
        node.listen("api", trusted=trusted, trust_any=trust_any)
        node.start_echo("echo", trusted=trusted, trust_any=trust_any)
        inbox = asyncio.create_task(serve_inbox(node.mailbox("inbox", trusted=trusted, trust_any=trust_any)))
        print(f"LISTENING {address} {node.identifier}", flush=True)
        await inbox


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Latchkey runtime node with echo and inbox services")
    parser.add_argument("--listen", default="127.0.0.1:0")
    trust = parser.add_mutually_exclusive_group(required=True)
    trust.add_argument("--trust", action="append", help="accept channels only from this identifier (repeatable)")
    trust.add_argument("--trust-any", action="store_true", help="accept any authenticated identity")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.listen, args.trust, args.trust_any))
    except KeyboardInterrupt:
        pass
