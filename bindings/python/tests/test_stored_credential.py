"""A Python ``Node`` opened from a stored, enrolled identity presents the credential ``enroll`` stored for it,
without ``use_authorities``: a ``latchkey node run`` process (another process, real TCP on loopback) that
requires the authority's credentials and guards its ``telemetry`` echo with an attribute policy admits it; a
member without the attribute gets a channel but not the service; an identity that never enrolled gets no
channel; a damaged stored credential is a typed error."""

import asyncio
from pathlib import Path

import pytest

import latchkey
from test_cli import CliNode

TELEMETRY = 'subject.role = "engineer" and resource.name = "telemetry"'


def test_a_stored_enrolled_identity_is_admitted_by_a_cli_node_without_passing_its_credential(
    tmp_path: Path,
) -> None:
    home = tmp_path
    authority = latchkey.Authority.open("plant", home=home, create=True)
    (home / "plant.history").write_bytes(authority.export_history())
    (home / "telemetry.policy").write_text(TELEMETRY)
    store = latchkey.IdentityStore(home)
    store.create("machine")
    for name in ("engineer", "guest", "stranger"):
        store.create(name)

    async def scenario() -> None:
        authority_address = await authority.serve("127.0.0.1:0")
        engineer_credential = await latchkey.enroll(
            "engineer", authority_address, authority.create_token({"role": "engineer"}, uses=1), home=home
        )
        await latchkey.enroll("guest", authority_address, authority.create_token({"role": "guest"}, uses=1), home=home)
        cli = CliNode(
            home,
            "--identity", "machine",
            "--authority", str(home / "plant.history"),
            "--echo", "telemetry",
            "--policy", f"telemetry={home / 'telemetry.policy'}",
        )
        try:
            assert cli.ready["trust"]["authorities"] == 1, cli.ready
            # The engineer: a stored identity, nothing passed, and its stored credential opens telemetry.
            async with latchkey.Node("engineer", identity="engineer", home=home) as engineer:
                channel = await engineer.connect(cli.address, trusted=[cli.identifier], timeout=20)
                assert await channel.request("telemetry", b"reading", timeout=20) == b"reading"
                await channel.close()
            # A member without the attribute: a channel (it presents a valid credential), not the service.
            async with latchkey.Node("guest", identity="guest", home=home) as guest:
                channel = await guest.connect(cli.address, trusted=[cli.identifier], timeout=20)
                with pytest.raises(latchkey.UnknownAddress, match="does not admit"):
                    await channel.request("telemetry", b"reading", timeout=20)
                await channel.close()
            # Never enrolled: nothing stored, nothing presented, no channel.
            async with latchkey.Node("stranger", identity="stranger", home=home) as stranger:
                with pytest.raises(latchkey.Refused):
                    await stranger.connect(cli.address, trusted=[cli.identifier], timeout=20)
            # use_authorities still takes an explicit credential after the stored one was presented (it
            # replaces it): another identity's is refused by the node itself, its own works as before.
            async with latchkey.Node("guest", identity="guest", home=home) as guest:
                with pytest.raises(latchkey.InvalidArgument):
                    await guest.use_authorities([], credential=engineer_credential)
                own = latchkey.stored_credential("guest", home=home)
                assert await guest.use_authorities([], credential=own) is False
                channel = await guest.connect(cli.address, trusted=[cli.identifier], timeout=20)
                with pytest.raises(latchkey.UnknownAddress):
                    await channel.request("telemetry", b"reading", timeout=20)
        finally:
            cli.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_a_damaged_stored_credential_is_a_typed_error(tmp_path: Path) -> None:
    latchkey.IdentityStore(tmp_path).create("engineer")
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "engineer.cred").write_bytes(b"not a credential")
    with pytest.raises(latchkey.InvalidCredential):
        latchkey.Node("engineer", identity="engineer", home=tmp_path)
    # Loading the identity from the store applies the same check.
    with pytest.raises(latchkey.InvalidCredential):
        latchkey.IdentityStore(tmp_path).load("engineer")
