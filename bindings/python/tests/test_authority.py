"""Trust operations from Python (docs/RUNTIME.md, "Authority, enrollment and enforcement"): an authority made
from Python and served over TCP by a `latchkey authority serve` process (and one served from Python), Python
devices enrolling with one-time tokens (directly and through a relay mailbox while the authority is down),
credentials shown and verified, policies, revocation, and the car-for-a-day delegation with an injected
clock."""

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import latchkey
from conftest import cli_binary, read_line

DAY = 86_400


class CliProcess:
    """`latchkey --json --home HOME ARGS...` announcing itself with a JSON ready line."""

    def __init__(self, home: Path, *args: str) -> None:
        argv = [str(cli_binary()), "--json", "--home", str(home), *args]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = read_line(self.process)
        try:
            self.ready: Dict[str, Any] = json.loads(line)
        except ValueError:
            self.stop()
            assert self.process.stderr is not None
            raise AssertionError(f"{args} did not start: {line!r} {self.process.stderr.read()}")
        assert self.ready["event"] == "ready", self.ready
        self.address: str = self.ready["tcp"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def processes() -> Iterator[List[CliProcess]]:
    started: List[CliProcess] = []
    yield started
    for p in started:
        p.stop()


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def test_a_python_device_enrolls_once_with_a_token_at_a_cli_authority(home: Path, processes: List[CliProcess]) -> None:
    authority = latchkey.Authority.open("auth", home=home, create=True)
    assert authority.identifier.startswith("lk")
    token = authority.create_token({"role": "meter", "site": "north"}, ttl_secs=600, uses=1)
    assert token.startswith("lkt") and len(token) <= 3 + 2 * 96
    # The same store, served by another process.
    server = CliProcess(home, "authority", "serve", "auth", "--listen", "127.0.0.1:0")
    processes.append(server)
    store = latchkey.IdentityStore(home)
    meter = store.create("meter")
    store.create("intruder")

    credential = run(latchkey.enroll("meter", server.address, token, home=home))
    assert isinstance(credential, bytes)
    assert latchkey.stored_credential("meter", home=home) == credential
    info = latchkey.credential_info(credential)
    assert (info.subject, info.issuer) == (meter.identifier, authority.identifier)
    assert info.attributes == {"role": "meter", "site": "north"}
    assert info.size == len(credential)
    assert info.not_before < info.not_after

    # Verified as a node would: for its subject only, inside its window, from this authority only.
    meter_history = store.load("meter").export_history()
    assert latchkey.verify_credential(credential, authority.export_history(), meter_history) == info.attributes
    with pytest.raises(latchkey.SubjectMismatch):
        latchkey.verify_credential(credential, authority.export_history(), store.load("intruder").export_history())
    with pytest.raises(latchkey.Expired):
        latchkey.verify_credential(credential, authority.export_history(), meter_history, now=info.not_after)
    stranger = latchkey.Authority.open("stranger", home=home, create=True)
    with pytest.raises(latchkey.UntrustedIssuer):
        latchkey.verify_credential(credential, stranger.export_history(), meter_history)
    tampered = bytearray(credential)
    tampered[-1] ^= 1
    with pytest.raises(latchkey.InvalidCredential):
        latchkey.verify_credential(bytes(tampered), authority.export_history(), meter_history)

    # The single-use token is spent: a second device is refused and does not become a member.
    with pytest.raises(latchkey.EnrollmentRefused):
        run(latchkey.enroll("intruder", server.address, token, home=home))
    with pytest.raises(latchkey.UnknownIdentity):
        latchkey.stored_credential("intruder", home=home)
    members = authority.members()
    assert [m.identifier for m in members] == [meter.identifier]
    assert members[0].attributes == {"role": "meter", "site": "north"}
    assert members[0].credential_id == info.id

    # A token that is not this authority's is refused before anything is sent; a malformed one is a ValueError.
    with pytest.raises(latchkey.UntrustedPeer):
        run(latchkey.enroll("intruder", server.address, stranger.create_token(), home=home))
    with pytest.raises(latchkey.InvalidArgument):
        run(latchkey.enroll("intruder", server.address, "lkt00", home=home))

    assert authority.revoke_credential(info.id) == 1
    assert authority.revoke_identifier(meter.identifier) == 2
    assert authority.members() == [] or all(m.identifier != meter.identifier for m in authority.members())
    authority.integrity_check()


def test_an_authority_served_from_python_refuses_an_expired_token(home: Path) -> None:
    authority = latchkey.Authority.open("py-auth", home=home, create=True, credential_validity_secs=3600)
    store = latchkey.IdentityStore(home)
    store.create("early")
    store.create("late")

    async def scenario() -> None:
        address = await authority.serve("127.0.0.1:0")
        fresh = authority.create_token({"role": "sensor"}, ttl_secs=600)
        short = authority.create_token({"role": "sensor"}, ttl_secs=1)
        credential = await latchkey.enroll("early", address, fresh, home=home)
        info = latchkey.credential_info(credential)
        assert info.not_after - info.not_before == 3600
        await asyncio.sleep(2.2)  # the short token's expiry passes (the authority reads the clock)
        with pytest.raises(latchkey.EnrollmentRefused):
            await latchkey.enroll("late", address, short, home=home)

    run(scenario())
    assert [m.identifier for m in authority.members()] == [store.show("early").identifier]
    with pytest.raises(latchkey.InvalidArgument):
        authority.create_token({"role": "x"}, uses=0)
    with pytest.raises(latchkey.UnknownIdentity):
        latchkey.Authority.open("nobody", home=home)


def test_enrollment_through_a_relay_mailbox_while_the_authority_is_down(home: Path, processes: List[CliProcess]) -> None:
    relay = CliProcess(home, "relay", "run", "--tcp", "127.0.0.1:0", "--trust-any", "--mailbox", str(home / "mail.sqlite3"))
    processes.append(relay)
    authority = latchkey.Authority.open("auth", home=home, create=True)
    token = authority.create_token({"role": "meter"})
    # The authority comes up once (opens its mailbox at the relay, publishes its bundle), then goes down.
    first = CliProcess(home, "authority", "serve", "auth", "--listen", "127.0.0.1:0", "--relay", relay.address)
    processes.append(first)
    time.sleep(1.0)
    first.stop()
    store = latchkey.IdentityStore(home)
    meter = store.create("meter")

    async def scenario() -> bytes:
        enrolling = asyncio.ensure_future(latchkey.enroll_via_relay("meter", relay.address, token, home=home, wait_secs=90))
        await asyncio.sleep(1.5)
        assert not enrolling.done(), "enrolled while the authority was down"
        assert authority.members() == []
        # The authority returns: it collects the deposited request and answers through the relay.
        processes.append(
            CliProcess(home, "authority", "serve", "auth", "--listen", "127.0.0.1:0", "--relay", relay.address)
        )
        credential: bytes = await enrolling
        return credential

    credential = run(scenario())
    info = latchkey.credential_info(credential)
    assert (info.subject, info.attributes) == (meter.identifier, {"role": "meter"})
    assert [m.identifier for m in authority.members()] == [meter.identifier]
    # The token was single-use: a second device through the same mailbox is refused.
    store.create("second")
    with pytest.raises(latchkey.EnrollmentRefused):
        run(latchkey.enroll_via_relay("second", relay.address, token, home=home, wait_secs=60))


def test_policies_parse_check_and_point_at_the_error(home: Path) -> None:
    policy = 'subject.role = "engineer" and resource.name in ["telemetry"] and action.name = "read"'
    latchkey.parse_policy(policy)
    latchkey.check_policy(
        policy, subject={"role": "engineer"}, resource={"name": "telemetry"}, action={"name": "read"}
    )
    with pytest.raises(latchkey.PolicyDenied):
        latchkey.check_policy(policy, subject={"role": "engineer"}, resource={"name": "door"}, action={"name": "read"})
    with pytest.raises(latchkey.PolicyDenied):
        latchkey.check_policy(policy)  # no attributes at all: a missing attribute compares false
    with pytest.raises(latchkey.PolicySyntax) as bad:
        latchkey.parse_policy('subject.role = "engineer" and\n  resource.name ~ "x"')
    message = str(bad.value)
    assert "line 2, column 17" in message, message
    assert "^" in message
    with pytest.raises(latchkey.PolicySyntax):
        latchkey.check_policy("subject.role =", subject={"role": "x"})

    authority = latchkey.Authority.open("auth", home=home, create=True)
    authority.set_policy("telemetry", policy)
    assert authority.policy("telemetry") == policy
    with pytest.raises(latchkey.PolicySyntax):
        authority.set_policy("broken", "(subject.role = 1")
    with pytest.raises(latchkey.InvalidArgument):
        authority.policy("broken")


def test_the_friend_opens_the_car_on_day_one_only_and_cannot_widen_the_grant(home: Path) -> None:
    store = latchkey.IdentityStore(home)
    for name in ("owner", "friend", "valet"):
        store.create(name)
    owner, friend, valet = (store.load(n) for n in ("owner", "friend", "valet"))
    day1 = (int(time.time()) // DAY + 1) * DAY  # tomorrow, 00:00 UTC: the injected clock
    end_of_day1 = day1 + DAY

    chain = latchkey.delegate_issue(
        "owner", friend.export_history(), ["car"], ["open", "drive"], end_of_day1, home=home
    )
    assert len(chain) <= 350
    # Day 1: the friend opens the car. Day 2: refused.
    latchkey.delegate_verify(chain, owner.export_history(), friend.identifier, "car", "open", now=day1 + 3600)
    latchkey.delegate_verify(chain, owner.export_history(), friend.identifier, "car", "open", now=end_of_day1 - 1)
    with pytest.raises(latchkey.LatchkeyError) as day2:
        latchkey.delegate_verify(chain, owner.export_history(), friend.identifier, "car", "open", now=end_of_day1 + 3600)
    assert isinstance(day2.value, (latchkey.Expired, latchkey.PolicyDenied)), day2.value
    # Not what was granted, not the presenter, not from this owner.
    with pytest.raises(latchkey.PolicyDenied):
        latchkey.delegate_verify(chain, owner.export_history(), friend.identifier, "house", "open", now=day1)
    with pytest.raises(latchkey.PolicyDenied):
        latchkey.delegate_verify(chain, owner.export_history(), friend.identifier, "car", "sell", now=day1)
    with pytest.raises(latchkey.LatchkeyError):
        latchkey.delegate_verify(chain, owner.export_history(), valet.identifier, "car", "open", now=day1)
    with pytest.raises(latchkey.LatchkeyError):
        latchkey.delegate_verify(chain, friend.export_history(), friend.identifier, "car", "open", now=day1)

    # The friend hands the valet less: only "open", only until noon. The valet may open, not drive.
    noon = day1 + DAY // 2
    valet_chain = latchkey.delegate_attenuate(
        "friend", chain, valet.export_history(), ["car"], ["open"], noon, home=home
    )
    latchkey.delegate_verify(valet_chain, owner.export_history(), valet.identifier, "car", "open", now=day1 + 60)
    with pytest.raises(latchkey.PolicyDenied):
        latchkey.delegate_verify(valet_chain, owner.export_history(), valet.identifier, "car", "drive", now=day1 + 60)
    with pytest.raises(latchkey.LatchkeyError):
        latchkey.delegate_verify(valet_chain, owner.export_history(), valet.identifier, "car", "open", now=noon + 1)

    # Widening any caveat is refused: another action, another resource, a later end.
    for resources, actions, not_after in (
        (["car"], ["open", "sell"], noon),
        (["car", "house"], ["open"], noon),
        (["car"], ["open"], end_of_day1 + DAY),
    ):
        with pytest.raises(latchkey.CaveatWidened):
            latchkey.delegate_attenuate("friend", chain, valet.export_history(), resources, actions, not_after, home=home)
    # Only the chain's last delegate can extend it.
    with pytest.raises(latchkey.LatchkeyError):
        latchkey.delegate_attenuate("valet", chain, valet.export_history(), ["car"], ["open"], noon, home=home)

    # A forged link: any flipped byte of the chain is refused.
    for at in (len(valet_chain) // 3, len(valet_chain) - 5):
        forged = bytearray(valet_chain)
        forged[at] ^= 0x40
        with pytest.raises(latchkey.LatchkeyError):
            latchkey.delegate_verify(bytes(forged), owner.export_history(), valet.identifier, "car", "open", now=day1 + 60)
