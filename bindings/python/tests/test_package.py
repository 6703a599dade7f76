"""The installed artifact: where it comes from, what it exports, how errors are shaped."""

import ast
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import latchkey
from conftest import REPO

# Computed when the package is imported (type checkers read the names from the stub instead).
EXPORTED: List[str] = getattr(latchkey, "__all__")

# The one error table, as the compiled module expands it (facade/src/error.rs is its only source).
ERROR_TABLE = latchkey._error_table()
ERROR_NAMES = [name for name, _, _ in ERROR_TABLE]
# The built-in exceptions some classes also derive from (documented in latchkey/__init__.py and the README).
PYTHON_BASES = {
    "Timeout": TimeoutError,
    "TransportError": OSError,
    "BadAddress": OSError,
    "AddressInUse": OSError,
    "ChannelClosed": ConnectionError,
    "DeliveryFailed": ConnectionError,
    "InvalidArgument": ValueError,
    "InvalidUtf8": ValueError,
}


def stub_error_classes(stub_text: str) -> Dict[str, Tuple[List[str], str]]:
    """Every class in a stub that derives from LatchkeyError: name -> (base names, docstring)."""
    classes = {}
    for node in ast.parse(stub_text).body:
        if isinstance(node, ast.ClassDef):
            bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
            if "LatchkeyError" in bases:
                classes[node.name] = (bases, ast.get_docstring(node, clean=False) or "")
    return classes


def installed_stubs() -> str:
    return (Path(latchkey.__file__).parent / "_latchkey.pyi").read_text()


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
    for name in EXPORTED:
        if name != "__version__" and not name.isupper():
            assert re.search(rf"^(class|def) {name}\b", stubs, re.M), f"{name} missing from the stubs"


def test_every_exported_name_resolves() -> None:
    for name in EXPORTED:
        assert getattr(latchkey, name) is not None


def test_version_is_the_workspace_version() -> None:
    cargo = (REPO / "Cargo.toml").read_text()
    match = re.search(r'^\[workspace\.package\][^\[]*?^version = "([^"]+)"', cargo, re.M | re.S)
    assert match is not None
    assert latchkey.__version__ == match.group(1)


def test_the_error_table_is_whole() -> None:
    names = [name for name, _, _ in ERROR_TABLE]
    codes = [code for _, code, _ in ERROR_TABLE]
    assert len(set(names)) == len(names) and len(set(codes)) == len(codes)
    assert {"DecodeError", "UntrustedPeer", "Timeout", "ChannelClosed", "InvalidArgument"} <= set(names)
    assert all(code > 0 for code in codes) and all(description for _, _, description in ERROR_TABLE)


@pytest.mark.parametrize("name,code,description", ERROR_TABLE)
def test_one_exception_class_per_error_table_entry(name: str, code: int, description: str) -> None:
    cls = getattr(latchkey, name)
    assert isinstance(cls, type) and issubclass(cls, latchkey.LatchkeyError)
    assert not issubclass(cls, RuntimeError)
    assert cls.__module__ == "latchkey" and cls.__name__ == name and cls.__qualname__ == name
    assert cls.__doc__ == description
    assert cls.__bases__ == (latchkey.LatchkeyError,) + ((PYTHON_BASES[name],) if name in PYTHON_BASES else ())
    assert name in EXPORTED
    error = cls("what happened")
    assert str(error) == "what happened" and isinstance(error, Exception)


def test_the_stubs_list_exactly_the_error_table() -> None:
    """The shipped stubs name one class per table entry, in table order, with its bases and description."""
    stubbed = stub_error_classes(installed_stubs())
    assert list(stubbed) == ERROR_NAMES, "the stubs disagree with latchkey._error_table()"
    for name, _, description in ERROR_TABLE:
        bases, doc = stubbed[name]
        assert bases == [b.__name__ for b in getattr(latchkey, name).__bases__], name
        assert doc == description, name


def test_the_stub_check_catches_a_renamed_error() -> None:
    """The check above fails when a name changes in one place only."""
    renamed = installed_stubs().replace("class Timeout(", "class TimedOut(")
    assert list(stub_error_classes(renamed)) != ERROR_NAMES
    dropped = re.sub(r"^class Refused\(.*?\n\n", "", installed_stubs(), flags=re.M | re.S)
    assert "Refused" not in stub_error_classes(dropped)


def test_no_exception_class_outside_the_table() -> None:
    exported = {
        name
        for name in EXPORTED
        if isinstance(getattr(latchkey, name), type) and issubclass(getattr(latchkey, name), BaseException)
    }
    assert exported == set(ERROR_NAMES) | {"LatchkeyError"}


def test_latchkey_errors_map_to_their_classes() -> None:
    vault = latchkey.Vault()
    with pytest.raises(latchkey.DecodeError):
        latchkey.history_identifier(b"not a history")
    with pytest.raises(latchkey.Insecure):
        latchkey.SecureChannel.initiator(latchkey.Identity.create(vault))
    with pytest.raises(latchkey.InvalidArgument):
        latchkey.Identity.from_secrets(vault, b"short", b"short")


def test_the_wheel_is_manylinux2014() -> None:
    """The installed wheel is the one users get: tagged for glibc 2.17 (manylinux2014), abi3."""
    dist_info = [p for p in Path(latchkey.__file__).parent.parent.glob("latchkey-*.dist-info")]
    assert len(dist_info) == 1, dist_info
    tags = [line.split(":", 1)[1].strip() for line in (dist_info[0] / "WHEEL").read_text().splitlines()
            if line.startswith("Tag:")]  # fmt: skip
    assert any(re.fullmatch(r"cp39-abi3-manylinux(2014|_2_17)_\w+", tag) for tag in tags), tags


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
