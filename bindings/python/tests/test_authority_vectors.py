"""tests/vectors/authority.json reproduced from Python: the authority's and the relay mailbox's messages
(docs/RUNTIME.md, "Authority, enrollment and enforcement", "Relay mailboxes") encoded from their fields and
decoded back by a Python codec written from the document, and the malformed messages refused. The structures
inside (histories, credentials) are checked with the installed wheel's own decoders."""

import json
import struct
from typing import Any, Dict, List, Tuple

import pytest

import latchkey
from conftest import VECTORS

MAX_REASON = 200
MAX_BODY = 60_000
MAX_PUBLISHED = 32 * 1024
STATUS_WORDS = ["ok", "no-mailbox", "full", "too-large", "rate", "bad", "denied", "error"]

Fields = Dict[str, Any]


def vectors() -> Dict[str, Any]:
    data: Dict[str, Any] = json.loads((VECTORS / "authority.json").read_text())
    return data


def cases(section: str) -> List[Dict[str, Any]]:
    found: List[Dict[str, Any]] = vectors()[section]
    assert found
    return found


def h(field: str) -> bytes:
    return bytes.fromhex(field)


def encode(message: str, f: Fields) -> bytes:
    """The bytes of a message from its fields, as docs/RUNTIME.md writes them."""
    if message == "EnrollmentEnvelope":
        return h(f["device"]) + h(f["body"])
    if message == "MailboxReply" and "status" in f:
        word: str = f["status"]
        return word.encode("ascii")
    tag: int = f["tag"]
    head = bytes([tag])
    if message == "AuthorityRequest":
        if tag == 1:
            return head + h(f["token_id"]) + h(f["token_secret"]) + h(f["history"])
        if tag == 2:
            return head + h(f["history"])
        return head
    if message.startswith("AuthorityAnswer"):
        if tag == 0xFF:
            reason: str = f["reason"]
            return head + bytes([f["code"]]) + reason.encode("utf-8")
        return head + h(f["body"])
    if message == "EnrollServiceRequest":
        return head + (h(f["body"]) if tag == 2 else b"")
    if message == "MailboxRequest":
        if tag == 1:
            return head + h(f["recipient"]) + h(f["body"])
        if tag == 3:
            return head + struct.pack(">H", f["max"])
        if tag == 4:
            return head + struct.pack(">Q", f["last"])
        if tag == 7:
            return head + h(f["body"])
        if tag == 8:
            return head + h(f["recipient"])
        return head
    if message == "MailboxReply":
        if tag == 6:
            out = head
            for mail in f["mail"]:
                body = h(mail["body"])
                out += struct.pack(">QI", mail["id"], len(body)) + body
            return out
        return head + h(f["body"])
    raise AssertionError(message)


def history(b: bytes) -> str:
    """A change history (verified by the wheel: trailing bytes and truncation are refused)."""
    if not b:
        raise ValueError("truncated")
    try:
        return latchkey.history_identifier(b)
    except latchkey.DecodeError as e:
        raise ValueError(str(e)) from e


def decode(message: str, b: bytes) -> Fields:
    """Fields of a message; ValueError for anything the document refuses."""
    if not b:
        raise ValueError("truncated")
    tag, rest = b[0], b[1:]
    if message == "AuthorityRequest":
        if tag == 1:
            if len(rest) < 48:
                raise ValueError("truncated")
            history(rest[48:])
            return {"tag": 1, "token_id": rest[:16].hex(), "token_secret": rest[16:48].hex(), "history": rest[48:].hex()}
        if tag == 2:
            history(rest)
            return {"tag": 2, "history": rest.hex()}
        if tag == 3:
            if rest:
                raise ValueError("trailing bytes")
            return {"tag": 3}
        raise ValueError("unknown authority request")
    if message.startswith("AuthorityAnswer"):
        if tag == 0xFF:
            if not rest:
                raise ValueError("truncated")
            code, reason = rest[0], rest[1:]
            if not 1 <= code <= 9:
                raise ValueError("unknown refusal code")
            if len(reason) > MAX_REASON:
                raise ValueError("refusal reason too long")
            try:
                text = reason.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError("reason is not UTF-8") from e
            return {"tag": 0xFF, "code": code, "reason": text}
        if tag not in (0x00, 0x10):
            raise ValueError("unknown authority answer")
        if tag == 0 and message == "AuthorityAnswer<Credential>":
            latchkey.credential_info(rest)  # the wheel decodes the credential (DecodeError otherwise)
        return {"tag": tag, "body": rest.hex()}
    if message == "EnrollServiceRequest":
        if tag == 1:
            if rest:
                raise ValueError("trailing bytes")
            return {"tag": 1}
        if tag == 2:
            return {"tag": 2, "body": rest.hex()}
        raise ValueError("unknown enrollment service request")
    if message == "EnrollmentEnvelope":
        if len(b) <= 32:
            raise ValueError("truncated")
        return {"device": b[:32].hex(), "body": b[32:].hex()}
    if message == "MailboxRequest":
        if tag == 1:
            if len(rest) < 32:
                raise ValueError("truncated")
            if len(rest) - 32 > MAX_BODY:
                raise ValueError("mailbox body too large")
            return {"tag": 1, "recipient": rest[:32].hex(), "body": rest[32:].hex()}
        if tag in (2, 5):
            if rest:
                raise ValueError("trailing bytes")
            return {"tag": tag}
        if tag == 3:
            if len(rest) < 2:
                raise ValueError("truncated")
            if len(rest) > 2:
                raise ValueError("trailing bytes")
            (most,) = struct.unpack(">H", rest)
            if most == 0:
                raise ValueError("a collect asks for at least one message")
            return {"tag": 3, "max": most}
        if tag == 4:
            if len(rest) < 8:
                raise ValueError("truncated")
            if len(rest) > 8:
                raise ValueError("trailing bytes")
            return {"tag": 4, "last": struct.unpack(">Q", rest)[0]}
        if tag == 7:
            if len(rest) > MAX_PUBLISHED:
                raise ValueError("published blob too large")
            return {"tag": 7, "body": rest.hex()}
        if tag == 8:
            if len(rest) < 32:
                raise ValueError("truncated")
            if len(rest) > 32:
                raise ValueError("trailing bytes")
            return {"tag": 8, "recipient": rest.hex()}
        raise ValueError("unknown mailbox request")
    if message == "MailboxReply":
        if tag == 6:
            mail: List[Fields] = []
            last = -1
            while rest:
                if len(rest) < 8:
                    raise ValueError("truncated")
                (ident,) = struct.unpack(">Q", rest[:8])
                if ident <= last:
                    raise ValueError("mailbox batch ids not ascending")
                if len(rest) < 12:
                    raise ValueError("truncated")
                (length,) = struct.unpack(">I", rest[8:12])
                if length > MAX_BODY:
                    raise ValueError("mailbox body too large")
                if len(rest) < 12 + length:
                    raise ValueError("truncated")
                mail.append({"id": ident, "body": rest[12 : 12 + length].hex()})
                rest, last = rest[12 + length :], ident
            return {"tag": 6, "mail": mail}
        if tag == 9:
            if len(rest) > MAX_PUBLISHED:
                raise ValueError("published blob too large")
            return {"tag": 9, "body": rest.hex()}
        word = b.decode("ascii", errors="replace")
        if word not in STATUS_WORDS:
            raise ValueError("unknown mailbox reply")
        return {"status": word}
    raise AssertionError(message)


def all_valid() -> List[Tuple[str, Dict[str, Any]]]:
    return [(c["name"], c) for section in ("authority", "mailbox") for c in cases(section)]


@pytest.mark.parametrize("name,case", all_valid(), ids=[n for n, _ in all_valid()])
def test_each_message_is_reproduced_from_its_fields_and_decodes_back(name: str, case: Dict[str, Any]) -> None:
    expected = h(case["bytes"])
    assert encode(case["message"], case["fields"]) == expected, name
    assert decode(case["message"], expected) == case["fields"], name


@pytest.mark.parametrize("case", cases("invalid"), ids=[c["name"] for c in cases("invalid")])
def test_each_malformed_message_is_refused_for_the_documented_reason(case: Dict[str, Any]) -> None:
    data = h(case["bytes"]) + bytes(case.get("zeros", 0))
    with pytest.raises(ValueError) as refused:
        decode(case["message"], data)
    # The envelope-level reasons are the Rust decoder's own words; a broken inner structure is refused by the
    # wheel's decoder in its words.
    if case["name"] not in ("enroll with a truncated history", "enroll with trailing bytes"):
        assert str(refused.value) == case["error"]


def test_the_vectors_are_built_on_the_trust_vectors_and_cover_every_status_word() -> None:
    trust = json.loads((VECTORS / "trust.json").read_text())
    by_name = {c["name"]: c for section in ("authority", "mailbox") for c in cases(section)}
    assert by_name["credential answer"]["fields"]["body"] == trust["credential"]["bytes"]
    assert by_name["revocation list answer"]["fields"]["body"] == trust["revocation_list"]
    assert by_name["x3dh request"]["fields"]["body"] == trust["enrollment"]["request"]
    assert by_name["refresh"]["fields"]["history"] == trust["identities"]["device"]["history"]
    token = h(trust["enrollment"]["token"])
    assert by_name["enroll"]["fields"]["token_id"] == token[1:17].hex()
    assert by_name["enroll"]["fields"]["token_secret"] == token[17:49].hex()
    device = latchkey.history_identifier(h(trust["identities"]["device"]["history"]))
    assert "lk" + by_name["mailbox envelope"]["fields"]["device"] == device
    assert sorted(c["fields"]["status"] for c in cases("mailbox") if "status" in c["fields"]) == sorted(STATUS_WORDS)
    info = latchkey.credential_info(h(by_name["credential answer"]["bytes"])[1:])
    assert info.subject == device
