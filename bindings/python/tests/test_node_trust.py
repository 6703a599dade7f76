"""Authorities and policies on a Python node (docs/RUNTIME.md, "Authorities on a node"): a machine node that
requires credentials of an authority and guards a "telemetry" and a "control" service with attribute policies;
an engineer node enrolled with a one-time token whose credential opens telemetry and is refused control; a
node without a credential gets no channel at all; a revocation closes the engineer's live channel. Real
nodes over loopback TCP, the authority's real SQLite store, served from Python."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

import latchkey

TELEMETRY = 'subject.role = "engineer" and resource.name = "telemetry" and action.name = "send"'
CONTROL = 'subject.role = "operator"'


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 120))


async def until(condition: Any, what: str) -> None:
    """Waits (at most 60 s) for `condition()` to hold: for what another task does in the background."""
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def test_an_engineer_opens_telemetry_not_control_and_a_node_without_a_credential_gets_no_channel(
    tmp_path: Path,
) -> None:
    home = tmp_path
    authority = latchkey.Authority.open("plant", home=home, create=True)
    store = latchkey.IdentityStore(home)
    machine_id = store.create("machine").identifier
    engineer_id = store.create("engineer").identifier
    visitor_id = store.create("visitor").identifier
    history = authority.export_history()

    async def scenario() -> None:
        authority_address = await authority.serve("127.0.0.1:0")
        machine_credential = await latchkey.enroll(
            "machine", authority_address, authority.create_token({"role": "machine"}, uses=1), home=home
        )
        engineer_credential = await latchkey.enroll(
            "engineer", authority_address, authority.create_token({"role": "engineer"}, uses=1), home=home
        )
        assert latchkey.credential_info(engineer_credential).attributes == {"role": "engineer"}

        async with latchkey.Node("machine", identity="machine", home=home) as machine:
            # A policy reads credentials: none before the node knows its authorities.
            with pytest.raises(latchkey.InvalidState):
                machine.set_policy("telemetry", TELEMETRY)
            assert machine.trust_counts() == (0, 0, 0)
            reached = await machine.use_authorities(
                [history], credential=machine_credential, authority_address=authority_address, refetch_secs=300
            )
            assert reached is True
            with pytest.raises(latchkey.PolicySyntax):
                machine.set_policy("telemetry", 'subject.role = and')
            assert not machine.has_policy("telemetry")
            machine.set_policy("telemetry", TELEMETRY)
            machine.set_policy("control", CONTROL)
            assert machine.has_policy("telemetry") and machine.has_policy("control")
            assert not machine.has_policy("echo")
            address = await machine.listen_tcp()
            machine.listen("api", trust_any=True)
            machine.start_echo("telemetry", trust_any=True)
            machine.start_echo("control", trust_any=True)
            machine.start_echo("echo", trust_any=True)
            # Its policy is fixed once the service runs.
            with pytest.raises(latchkey.InvalidState):
                machine.set_policy("control", TELEMETRY)

            async with latchkey.Node("engineer", identity="engineer", home=home) as engineer:
                # Another identity's credential is not this node's to present.
                with pytest.raises(latchkey.InvalidArgument):
                    await engineer.use_authorities([history], credential=machine_credential)
                # The engineer requires the machine's credential in turn, and presents its own.
                assert await engineer.use_authorities([history], credential=engineer_credential) is False
                with pytest.raises(latchkey.InvalidState):
                    await engineer.use_authorities([history], credential=engineer_credential)
                channel = await engineer.connect(address, trusted=[machine_id], timeout=20)
                assert channel.peer_identifier == machine_id
                assert await channel.request("telemetry", b"ping", timeout=20) == b"ping"
                # A service without a policy admits any member.
                assert await channel.request("echo", b"any member", timeout=20) == b"any member"
                denied = machine.denied_count
                # Control wants an operator: refused, and the engineer is not told what the policy wants.
                with pytest.raises(latchkey.UnknownAddress, match="does not admit") as refused:
                    await channel.request("control", b"stop the line", timeout=20)
                assert "operator" not in str(refused.value)
                assert machine.denied_count > denied
                # Telemetry still works on the same channel.
                assert await channel.request("telemetry", b"again", timeout=20) == b"again"

                # A node whose identity has no credential gets no channel at all.
                async with latchkey.Node("visitor", identity="visitor", home=home) as visitor:
                    assert visitor.identifier == visitor_id
                    with pytest.raises(latchkey.Refused):
                        await visitor.connect(address, trusted=[machine_id], timeout=20)

                # The authority revokes the engineer: the machine hears it (pushed) and closes the live channel.
                assert machine.trust_counts()[0] == 0
                authority.revoke_identifier(engineer_id)
                await until(lambda: machine.trust_counts()[0] >= 1, "the machine closed the revoked channel")
                await until(lambda: channel.is_closed, "the engineer's channel closed")
                with pytest.raises(latchkey.Refused, match="Revoked"):
                    await engineer.connect(address, trusted=[machine_id], timeout=20)

    run(scenario())


def test_a_node_refuses_a_credential_of_another_authority(tmp_path: Path) -> None:
    home = tmp_path
    plant = latchkey.Authority.open("plant", home=home, create=True)
    stranger = latchkey.Authority.open("stranger", home=home, create=True)
    store = latchkey.IdentityStore(home)
    machine_id = store.create("machine").identifier
    store.create("engineer")

    async def scenario() -> None:
        stranger_address = await stranger.serve("127.0.0.1:0")
        # An engineer credential, but from an authority the machine does not accept.
        credential = await latchkey.enroll(
            "engineer", stranger_address, stranger.create_token({"role": "engineer"}), home=home
        )
        async with latchkey.Node("machine", identity="machine", home=home) as machine:
            # No authority address: the node checks credentials against the history alone.
            assert await machine.use_authorities([plant.export_history()]) is False
            machine.set_policy("telemetry", TELEMETRY)
            address = await machine.listen_tcp()
            machine.listen("api", trust_any=True)
            machine.start_echo("telemetry", trust_any=True)
            async with latchkey.Node("engineer", identity="engineer", home=home) as engineer:
                # Presenting only (no authorities of its own to require).
                assert await engineer.use_authorities([], credential=credential) is False
                with pytest.raises(latchkey.Refused):
                    await engineer.connect(address, trusted=[machine_id], timeout=20)
            assert machine.trust_counts() == (0, 0, 0)

    run(scenario())


def test_a_channel_policy_refuses_the_handshake_of_a_member_without_the_attribute(tmp_path: Path) -> None:
    home = tmp_path
    authority = latchkey.Authority.open("plant", home=home, create=True)
    store = latchkey.IdentityStore(home)
    gate_id = store.create("gate").identifier
    store.create("engineer")
    store.create("operator")

    async def scenario() -> None:
        authority_address = await authority.serve("127.0.0.1:0")
        for name in ("engineer", "operator"):
            token = authority.create_token({"role": name}, uses=1)
            await latchkey.enroll(name, authority_address, token, home=home)
        async with latchkey.Node("gate", identity="gate", home=home) as gate:
            assert await gate.use_authorities([authority.export_history()], authority_address=authority_address)
            gate.set_policy("channel", 'subject.role = "operator" and action.name = "open"')
            address = await gate.listen_tcp()
            gate.listen("api", trust_any=True)
            gate.start_echo("echo", trust_any=True)
            # The channel's policy is fixed once a listener runs.
            with pytest.raises(latchkey.InvalidState):
                gate.set_policy("channel", 'subject.role = "engineer"')
            async with latchkey.Node("operator", identity="operator", home=home) as operator:
                await operator.use_authorities([], credential=latchkey.stored_credential("operator", home=home))
                channel = await operator.connect(address, trusted=[gate_id], timeout=20)
                assert await channel.request("echo", b"open", timeout=20) == b"open"
            async with latchkey.Node("engineer", identity="engineer", home=home) as engineer:
                await engineer.use_authorities([], credential=latchkey.stored_credential("engineer", home=home))
                with pytest.raises(latchkey.Refused):
                    await engineer.connect(address, trusted=[gate_id], timeout=20)

    run(scenario())


def test_use_authorities_arguments_are_checked() -> None:
    async def scenario() -> None:
        async with latchkey.Node("n") as node:
            with pytest.raises(latchkey.InvalidArgument):
                await node.use_authorities([], save_as=None, home="/tmp")
            # Nothing to require and nothing to present.
            with pytest.raises(latchkey.InvalidArgument):
                await node.use_authorities([])
            with pytest.raises(latchkey.DecodeError):
                await node.use_authorities([b"not a history"])

    run(scenario())
