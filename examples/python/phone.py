"""A Latchkey phone: reaches a node directly or by name through a relay, over a secure channel, and sends each
message to one of its services; optionally opens a portal to the node's outlet.

    python examples/python/phone.py (--to HOST:PORT | --relay HOST:PORT --name NAME)
        (--trust lk...)... | --trust-any [--service echo] [--udp] [--timeout SECONDS]
        [--identity NAME [--home DIR]] [--portal HOST:PORT] [message...]

Prints ``PEER <identifier>`` once the channel is open and ``REPLY <text>`` per message. With ``--portal``, it
then listens on that TCP address (port 0: any), prints ``PORTAL <host>:<port>`` and carries every connection
to it through the channel to the node's portal outlet (``outlet``) until interrupted. Exits 1 on any error.

Works against ``node_echo.py`` (``--relay`` registers it at a relay), ``latchkey node run`` (with
``--relay``/``--relay-name`` and ``--outlet``), and the C doorbell ``examples/c/relay_doorbell``; the relay is a
``latchkey relay run`` or a Python ``Node(relay=True)``. The relay forwards the channel but cannot read it.

Trust is explicit: the node must be one of the identifiers given with ``--trust``, or any authenticated
identity with ``--trust-any``; with neither, it exits with a usage error (status 2). ``--identity`` uses a
stored identity (the CLI's store), so the node can trust this phone by its identifier across runs.
"""

import argparse
import asyncio
import sys
from typing import List, Optional

import latchkey


async def run(args: argparse.Namespace) -> None:
    identity = latchkey.IdentityStore(args.home).load(args.identity) if args.identity else None
    async with latchkey.Node("phone", identity=identity) as phone:
        channel = await phone.connect(
            args.relay or args.to,
            relay_name=args.name,
            service=args.listener,
            udp=args.udp,
            timeout=args.timeout,
            trusted=args.trust,
            trust_any=args.trust_any,
        )
        print(f"PEER {channel.peer_identifier}", flush=True)
        for message in args.messages:
            reply = await channel.request(args.service, message.encode(), timeout=args.timeout)
            print(f"REPLY {reply.decode(errors='replace')}", flush=True)
        if args.portal:
            inlet = await phone.create_inlet(channel, listen=args.portal)
            print(f"PORTAL {inlet}", flush=True)
            await asyncio.Event().wait()  # until interrupted


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Latchkey phone: a secure channel to a node, maybe via a relay")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", metavar="HOST:PORT", help="the node's address")
    where.add_argument("--relay", metavar="HOST:PORT", help="the relay's address (with --name)")
    parser.add_argument("--name", help="the name the node registered at the relay")
    trust = parser.add_mutually_exclusive_group(required=True)
    trust.add_argument("--trust", action="append", metavar="ID", help="the node's identifier (repeatable)")
    trust.add_argument("--trust-any", action="store_true", help="accept any authenticated identity")
    parser.add_argument("--service", default="echo", help="the service each message goes to (default echo)")
    parser.add_argument("--listener", default="api", help="the node's channel listener (default api)")
    parser.add_argument("--udp", action="store_true", help="datagrams instead of TCP")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds for connecting and each reply")
    parser.add_argument("--identity", metavar="NAME", help="a stored identity (default: a new one)")
    parser.add_argument("--home", help="the identity store's directory (default $LATCHKEY_HOME or ~/.latchkey)")
    parser.add_argument("--portal", metavar="HOST:PORT", help="listen here and carry connections to the outlet")
    parser.add_argument("messages", nargs="*")
    args = parser.parse_args(argv)
    if args.relay and not args.name:
        parser.error("--relay needs --name (the name the node registered there)")
    if args.name and not args.relay:
        parser.error("--name needs --relay")
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass
    except (latchkey.LatchkeyError, OSError) as e:
        print(f"phone: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
