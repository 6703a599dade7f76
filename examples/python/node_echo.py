"""A Latchkey runtime node in Python: accepts secure channels over TCP and hosts an echo service and an inbox.

    python examples/python/node_echo.py [--listen 127.0.0.1:0] [--trust lk...]...

Prints ``LISTENING <host>:<port> <identifier>``. Peers open a channel to its listener ``api`` and then talk to
``echo`` (answers with the same payload) or ``inbox`` (answers "got <n> bytes"), e.g. with
``await node.connect(address)`` and ``await channel.request("echo", b"hi")``.
"""

import argparse
import asyncio
import sys
from typing import List, Optional

import latchkey


async def serve_inbox(mailbox: latchkey.Mailbox) -> None:
    async for message in mailbox:
        print(f"inbox: {len(message.payload)} bytes from {message.peer_identifier}", file=sys.stderr, flush=True)
        await message.reply(b"got %d bytes" % len(message.payload))


async def main(listen: str, trusted: Optional[List[str]]) -> None:
    async with latchkey.Node("python-node") as node:
        address = await node.listen_tcp(listen)
        node.listen("api", trusted=trusted)
        node.start_echo("echo")
        inbox = asyncio.create_task(serve_inbox(node.mailbox("inbox")))
        print(f"LISTENING {address} {node.identifier}", flush=True)
        await inbox


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Latchkey runtime node with echo and inbox services")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--trust", action="append", help="accept channels only from this identifier")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.listen, args.trust))
    except KeyboardInterrupt:
        pass
