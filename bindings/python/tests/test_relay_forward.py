"""A Python phone reaches a name at a guarded relay (``latchkey relay run --policy forward=…``, another process)
through a secure channel to the relay (``Node.connect(..., via_relay_channel=RELAY_ID)``), over real TCP on
loopback: a member whose credential meets the forward policy gets its end-to-end channel to the CLI gateway
node, and a portal through it to the gateway's outlet; a member without the attribute, and the same member
over bare TCP, time out. The Python nodes are opened from stored, enrolled identities and present their
stored credentials by themselves."""

import asyncio
import socket
import threading
from pathlib import Path

import pytest

import latchkey
from test_cli import CliNode


def hello_server() -> str:
    """A TCP service that says hello, then echoes; returns its address."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"hello")
                while data := conn.recv(4096):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    host, port = server.getsockname()[:2]
    return f"{host}:{port}"


def test_a_python_phone_reaches_a_guarded_relay_name_through_a_channel_to_the_relay(tmp_path: Path) -> None:
    home = tmp_path
    authority = latchkey.Authority.open("estate", home=home, create=True)
    (home / "estate.history").write_bytes(authority.export_history())
    (home / "forward.policy").write_text('subject.role = "resident"')
    store = latchkey.IdentityStore(home)
    gateway_id = store.create("gateway").identifier
    store.create("resident")
    store.create("engineer")

    async def scenario() -> None:
        authority_address = await authority.serve("127.0.0.1:0")
        for name, role in (("gateway", "gateway"), ("resident", "resident"), ("engineer", "engineer")):
            await latchkey.enroll(name, authority_address, authority.create_token({"role": role}, uses=1), home=home)
        relay = CliNode(
            home,
            "--authority", str(home / "estate.history"),
            "--policy", f"forward={home / 'forward.policy'}",
            command=("relay", "run"),
        )
        try:
            gateway = CliNode(
                home,
                "--identity", "gateway", "--trust-any",
                "--relay", relay.address, "--relay-name", "door", "--relay-trust", relay.identifier,
                "--outlet", hello_server(),
            )
            try:
                assert gateway.ready["relay"]["name"] == "door", gateway.ready
                async with latchkey.Node("resident", identity="resident", home=home) as resident:
                    with pytest.raises(latchkey.InvalidArgument):
                        await resident.connect(relay.address, via_relay_channel=relay.identifier, trusted=[gateway_id])
                    with pytest.raises(latchkey.DecodeError):
                        await resident.connect(
                            relay.address, relay_name="door", via_relay_channel="lk-nope", trusted=[gateway_id]
                        )
                    channel = await resident.connect(
                        relay.address, relay_name="door", via_relay_channel=relay.identifier,
                        trusted=[gateway_id], timeout=20,
                    )
                    assert channel.peer_identifier == gateway_id
                    assert await channel.request("echo", b"ding dong", timeout=20) == b"ding dong"
                    # A portal through the nested channel to the gateway's outlet.
                    inlet = await resident.create_inlet(channel)
                    host, port = inlet.rsplit(":", 1)
                    reader, writer = await asyncio.open_connection(host, int(port))
                    assert await asyncio.wait_for(reader.readexactly(5), 20) == b"hello"
                    writer.write(b"through the relay")
                    assert await asyncio.wait_for(reader.readexactly(17), 20) == b"through the relay"
                    writer.close()
                    await channel.close()
                    # Over bare TCP the guarded forwarder drops the handshake.
                    with pytest.raises(latchkey.Timeout):
                        await resident.connect(relay.address, relay_name="door", trusted=[gateway_id], timeout=4)
                # A member without the attribute: its channel to the relay opens, its handshake to the name
                # is dropped.
                async with latchkey.Node("engineer", identity="engineer", home=home) as engineer:
                    with pytest.raises(latchkey.Timeout):
                        await engineer.connect(
                            relay.address, relay_name="door", via_relay_channel=relay.identifier,
                            trusted=[gateway_id], timeout=4,
                        )
            finally:
                gateway.stop()
        finally:
            relay.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))
