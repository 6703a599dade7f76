"""The installed artifact: where it comes from, what it exports, how errors are shaped."""

import re
import sys
from pathlib import Path

import pytest

import latchkey
from conftest import REPO

# Every `latchkey_core::Error::name()`; the Rust side derives the classes from the same names.
CORE_ERROR_NAMES = [
    "DecodeError", "BufferTooSmall", "MessageTooLarge", "KeyNotFound", "WrongKeyType", "InvalidPublicKey",
    "InvalidSignature", "InvalidHistory", "HistoryMismatch", "InvalidAttestation", "Expired", "UntrustedPeer",
    "DecryptFailed", "Replay", "StaleMessage", "TooFarAhead", "NonceExhausted", "InvalidState", "VaultError",
    "CryptoError",
]  # fmt: skip


def test_the_suite_runs_against_the_installed_wheel_not_the_source_tree() -> None:
    package_dir = Path(latchkey.__file__).parent
    assert Path(sys.prefix) in package_dir.parents, package_dir
    assert package_dir != REPO / "bindings" / "python" / "python" / "latchkey"
    extension = Path(latchkey._latchkey.__file__)
    assert extension.name.endswith(".abi3.so"), extension.name


def test_wheel_ships_type_information() -> None:
    package_dir = Path(latchkey.__file__).parent
    assert (package_dir / "py.typed").is_file()
    stubs = (package_dir / "_latchkey.pyi").read_text()
    for name in latchkey.__all__:
        if name != "__version__" and not name.isupper():
            assert re.search(rf"^(class|def) {name}\b", stubs, re.M), f"{name} missing from the stubs"


def test_every_exported_name_resolves() -> None:
    for name in latchkey.__all__:
        assert getattr(latchkey, name) is not None


def test_version_is_the_workspace_version() -> None:
    cargo = (REPO / "Cargo.toml").read_text()
    match = re.search(r'^\[workspace\.package\][^\[]*?^version = "([^"]+)"', cargo, re.M | re.S)
    assert match is not None
    assert latchkey.__version__ == match.group(1)


@pytest.mark.parametrize("name", CORE_ERROR_NAMES)
def test_one_exception_class_per_core_error(name: str) -> None:
    cls = getattr(latchkey, name)
    assert issubclass(cls, latchkey.LatchkeyError)
    assert not issubclass(cls, RuntimeError)
    assert cls.__module__ == "latchkey" and cls.__name__ == name
    assert name in latchkey.__all__


def test_latchkey_error_is_a_plain_exception() -> None:
    assert issubclass(latchkey.LatchkeyError, Exception)
    assert not issubclass(latchkey.LatchkeyError, RuntimeError)


def test_frame_constants() -> None:
    assert latchkey.FRAME_OVERHEAD == 8 + 16  # explicit nonce + AEAD tag
    assert latchkey.MAX_PLAINTEXT_LEN == 65535 - 16


def test_cipher_suites() -> None:
    chacha, aes = latchkey.CipherSuite.CHACHA_POLY, latchkey.CipherSuite.AES_GCM
    assert chacha != aes and chacha == latchkey.CipherSuite.CHACHA_POLY
    assert len({chacha, aes, latchkey.CipherSuite.CHACHA_POLY}) == 2
    assert chacha.protocol_name == "Noise_XX_25519_ChaChaPoly_SHA256"
    assert aes.protocol_name == "Noise_XX_25519_AESGCM_SHA256"
    assert repr(aes) == "CipherSuite.AES_GCM"


def test_signing_algorithms() -> None:
    assert latchkey.SigningAlgorithm.ED25519 != latchkey.SigningAlgorithm.ECDSA_P256
    assert repr(latchkey.SigningAlgorithm.ED25519) == "SigningAlgorithm.ED25519"
