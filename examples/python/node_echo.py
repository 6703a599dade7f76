"""A Latchkey runtime node in Python: accepts secure channels and hosts an echo service, an inbox and (with
``--outlet``) a portal outlet; with ``--relay`` it also registers at a relay, so phones reach it by name.

    python examples/python/node_echo.py [--listen 127.0.0.1:0] (--trust lk...)... | --trust-any
        [--relay HOST:PORT --relay-name NAME (--relay-trust lk... | --relay-trust-any)] [--outlet HOST:PORT]

Prints ``LISTENING <host>:<port> <identifier>`` once it is ready (registered, if ``--relay``). Peers open a
channel to its listener ``api`` and then talk to ``echo`` (answers with the same payload) or ``inbox``
(answers "got <n> bytes"), e.g. with ``await node.connect(address, trusted=[identifier])`` and
``await channel.request("echo", b"hi")``, or through the relay with
``await node.connect(relay, relay_name=NAME, trusted=[identifier])`` (see ``phone.py``). With ``--outlet``, a
peer's portal inlet (``await node.create_inlet(channel)``) reaches that TCP address through the channel.

Trust is explicit: only the identifiers given with ``--trust`` may open channels and use the services, or
every authenticated identity with ``--trust-any``; the relay likewise with ``--relay-trust`` or
``--relay-trust-any``. Raw TCP clients reach neither service.
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


async def main(args: argparse.Namespace) -> None:
    trusted: Optional[List[str]] = args.trust
    trust_any: bool = args.trust_any
    async with latchkey.Node("python-node") as node:
        address = await node.listen_tcp(args.listen)
        node.listen("api", trusted=trusted, trust_any=trust_any)
        node.start_echo("echo", trusted=trusted, trust_any=trust_any)
        if args.outlet:
            node.create_outlet(args.outlet, trusted=trusted, trust_any=trust_any)
        inbox = asyncio.create_task(serve_inbox(node.mailbox("inbox", trusted=trusted, trust_any=trust_any)))
        if args.relay:
            relay_id = await node.register_at_relay(
                args.relay, args.relay_name, relay_trusted=args.relay_trust, relay_trust_any=args.relay_trust_any
            )
            print(f"registered as {args.relay_name!r} at {args.relay} ({relay_id})", file=sys.stderr, flush=True)
        print(f"LISTENING {address} {node.identifier}", flush=True)
        await inbox


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Latchkey runtime node with echo and inbox services")
    parser.add_argument("--listen", default="127.0.0.1:0")
    trust = parser.add_mutually_exclusive_group(required=True)
    trust.add_argument("--trust", action="append", help="accept channels only from this identifier (repeatable)")
    trust.add_argument("--trust-any", action="store_true", help="accept any authenticated identity")
    parser.add_argument("--relay", metavar="HOST:PORT", help="register at this relay")
    parser.add_argument("--relay-name", metavar="NAME", help="the name to register at the relay")
    relay_trust = parser.add_mutually_exclusive_group()
    relay_trust.add_argument("--relay-trust", action="append", metavar="ID", help="the relay's identifier")
    relay_trust.add_argument("--relay-trust-any", action="store_true", help="accept any identity as the relay")
    parser.add_argument("--outlet", metavar="HOST:PORT", help="serve a portal outlet to this TCP address")
    args = parser.parse_args()
    if args.relay and not (args.relay_name and (args.relay_trust or args.relay_trust_any)):
        parser.error("--relay needs --relay-name and --relay-trust ID (or, explicitly, --relay-trust-any)")
    try:
        asyncio.run(main(args))
    except KeyboardInterrupt:
        pass
    except (latchkey.LatchkeyError, OSError) as e:
        print(f"node_echo: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
