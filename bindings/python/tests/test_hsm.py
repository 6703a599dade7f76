"""Identities whose keys live in a PKCS#11 token (SoftHSM2), from Python: the published wheel has the `pkcs11`
vault (it loads the module at run time, so it needs nothing at build time). Channels in both roles with a
software identity over loopback TCP, typed errors, and the private keys stay inside the token.

Each scenario runs in a child interpreter: SoftHSM2 reads its configuration and lists its tokens when the module
is first initialised in a process, so the token must exist (and SOFTHSM2_CONF be set) before that."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
PIN = "4321"
SO_PIN = "12345678"

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import latchkey

    home, spec = sys.argv[1], sys.argv[2]
    store = latchkey.IdentityStore(home)
    store.create("door", vault=spec)
    assert store.vault_of("door").startswith("pkcs11:"), store.vault_of("door")
    door_identity = store.load("door")

    async def main() -> None:
        async with latchkey.Node("door", identity=door_identity) as door, latchkey.Node("phone") as phone:
            # The hardware identity answers (responder) ...
            door.start_echo("echo", trusted=[phone.identifier])
            door_address = await door.listen_tcp()
            door.listen("api", trusted=[phone.identifier])
            to_door = await phone.connect(door_address, trusted=[door.identifier])
            assert to_door.peer_identifier == door_identity.identifier
            assert await to_door.request("echo", b"ring") == b"ring"
            # ... and calls (initiator).
            phone.start_echo("echo", trusted=[door.identifier])
            phone_address = await phone.listen_tcp()
            phone.listen("api", trusted=[door.identifier])
            to_phone = await door.connect(phone_address, trusted=[phone.identifier])
            assert await to_phone.request("echo", b"dong") == b"dong"
        print("OK", door_identity.identifier, flush=True)

    asyncio.run(main())
    """
)

WRONG = textwrap.dedent(
    """
    import sys
    import latchkey

    store = latchkey.IdentityStore(sys.argv[1])
    for spec, error in [(sys.argv[2], latchkey.PinIncorrect), (sys.argv[3], latchkey.TokenNotFound)]:
        try:
            store.create("bad", vault=spec)
        except error as e:
            print("REFUSED", type(e).__name__, flush=True)
        else:
            raise SystemExit(f"{spec}: no {error.__name__}")
    assert [s.name for s in store.list()] == [], "nothing stored after a refusal"
    """
)


def softhsm(tmp_path: Path, label: str) -> Dict[str, str]:
    """A throwaway SoftHSM2 token directory with one token; the environment that points the module at it."""
    assert MODULE.is_file(), f"{MODULE} missing: make test-python installs softhsm2"
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    init = ["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", PIN]
    subprocess.run(init, env=env, check=True, capture_output=True, timeout=60)
    return env


def child(script: str, args: List[str], env: Dict[str, str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_a_token_identity_completes_channels_in_both_roles_and_its_keys_stay_in_the_token(tmp_path: Path) -> None:
    env = softhsm(tmp_path, "py")
    spec = f"pkcs11:module={MODULE},token=py"
    # The PIN comes from the environment, never from the spec (a `pin=` in it is refused).
    done = child(CHILD, [str(tmp_path / "home"), spec], dict(env, LATCHKEY_PKCS11_PIN=PIN))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK lk"), done.stdout
    listing = subprocess.run(
        ["pkcs11-tool", "--module", str(MODULE), "--token-label", "py", "--login", "--pin", PIN,
         "--list-objects", "--type", "privkey"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    access = [line for line in listing.stdout.splitlines() if line.strip().startswith("Access:")]
    assert len(access) == 2, listing.stdout  # the identity key and the Noise static key
    assert all("sensitive" in line and "never extractable" in line for line in access), access


def test_a_wrong_pin_or_a_missing_token_is_a_typed_error_and_stores_nothing(tmp_path: Path) -> None:
    env = softhsm(tmp_path, "py")
    good = f"pkcs11:module={MODULE},token=py"
    missing = f"pkcs11:module={MODULE},token=nosuch"
    done = child(WRONG, [str(tmp_path / "home"), good, missing], dict(env, LATCHKEY_PKCS11_PIN="0000"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["REFUSED PinIncorrect", "REFUSED TokenNotFound"], done.stdout
