use super::{Identifier, CHANGE_DOMAIN};
use crate::crypto::sig;
use crate::error::{Error, Result};
use crate::prelude::*;
use crate::time::Timestamp;
use crate::vault::{verify_signature, PublicKey, Signature};
use crate::wire::{Decode, Encode, Reader, Writer};

/// Most changes a history may hold; keeps a history well inside one handshake message.
pub const MAX_CHANGES: usize = 64;
const CHANGE_VERSION: u8 = 1;
/// Longest a primary key may be valid (`expires_at - created_at`) in a change a pinning peer accepts: five
/// years, the default key validity (PROTOCOL.md 3.8).
pub const MAX_KEY_LIFETIME_SECS: u64 = 5 * 365 * 86_400;

/// What a pinning check decided about a presented history (see [`ChangeHistory::check_pinned`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    /// Nothing was pinned: the presented history is pinned as it is.
    FirstContact,
    /// The presented history equals the pinned one.
    Unchanged,
    /// The presented history extends the pinned one by this many rotations; the pin moves to it.
    Extended(usize),
}

/// The signed content of one change: which key is primary from now on, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeData {
    /// Hash of the previous change; all zeros for the first change.
    pub previous: [u8; 32],
    pub public_key: PublicKey,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Encode for ChangeData {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(CHANGE_VERSION);
        out.extend_from_slice(&self.previous);
        self.public_key.encode_into(out);
        out.put_u64(self.created_at.0);
        out.put_u64(self.expires_at.0);
    }
}

impl Decode for ChangeData {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        if reader.u8()? != CHANGE_VERSION {
            return Err(Error::Decode("unsupported change version"));
        }
        Ok(ChangeData {
            previous: reader.array()?,
            public_key: PublicKey::decode_from(reader)?,
            created_at: Timestamp(reader.u64()?),
            expires_at: Timestamp(reader.u64()?),
        })
    }
}

impl ChangeData {
    /// The hash that names this change, and the message both of its signatures sign.
    pub fn hash(&self) -> [u8; 32] {
        sig::sha256(&[CHANGE_DOMAIN, &self.to_bytes()])
    }
}

/// One change with its signatures: by the new key, and (for every change but the first) by the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub data: ChangeData,
    pub self_signature: Signature,
    pub previous_signature: Option<Signature>,
}

impl Encode for Change {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_var_bytes(&self.data.to_bytes());
        self.self_signature.encode_into(out);
        match &self.previous_signature {
            None => out.put_u8(0),
            Some(sig) => {
                out.put_u8(1);
                sig.encode_into(out);
            }
        }
    }
}

impl Decode for Change {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let data = ChangeData::from_bytes(reader.var_bytes()?)?;
        let self_signature = Signature::decode_from(reader)?;
        let previous_signature = match reader.u8()? {
            0 => None,
            1 => Some(Signature::decode_from(reader)?),
            _ => return Err(Error::Decode("bad option tag")),
        };
        Ok(Change {
            data,
            self_signature,
            previous_signature,
        })
    }
}

/// An identity's chain of changes, oldest first. Holding one says nothing until [`ChangeHistory::verify`]
/// (done by every decode through [`ChangeHistory::import`]) has passed — or, for a peer's history in a
/// handshake (`PeerIdentity::history`) and the pins made from it,
/// [`ChangeHistory::verify_presented_signatures`] together with the peer's attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeHistory {
    changes: Vec<Change>,
}

impl ChangeHistory {
    /// Wraps changes after checking that they form a valid chain.
    pub fn new(changes: Vec<Change>) -> Result<Self> {
        let history = ChangeHistory { changes };
        history.verify()?;
        Ok(history)
    }

    /// Decodes and verifies exported bytes.
    pub fn import(bytes: &[u8]) -> Result<Self> {
        let changes = Self::decode_unverified(bytes)?;
        Self::new(changes)
    }

    /// Decodes without verifying (for tests and tools that inspect broken histories).
    pub fn decode_unverified(bytes: &[u8]) -> Result<Vec<Change>> {
        let mut reader = Reader::new(bytes);
        let count = reader.u8()? as usize;
        let mut changes = Vec::with_capacity(count.min(MAX_CHANGES));
        for _ in 0..count {
            changes.push(Change::decode_from(&mut reader)?);
        }
        reader.finish()?;
        Ok(changes)
    }

    /// The export bytes of a list of changes, without checking them: the twin of
    /// [`ChangeHistory::decode_unverified`], for tests and tools that build broken histories.
    pub fn encode_unverified(changes: &[Change]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_changes(changes, &mut out);
        out
    }

    /// Canonical bytes, as [`ChangeHistory::import`] reads them.
    pub fn export(&self) -> Vec<u8> {
        self.to_bytes()
    }

    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The permanent identifier: the hash of the first change.
    pub fn identifier(&self) -> Identifier {
        Identifier::from_bytes(self.changes[0].data.hash())
    }

    /// The latest change's key: the one that signs attestations now.
    pub fn primary_public_key(&self) -> &PublicKey {
        &self.last().data.public_key
    }

    /// The latest change's expiry.
    pub fn primary_key_expires_at(&self) -> Timestamp {
        self.last().data.expires_at
    }

    fn last(&self) -> &Change {
        self.changes
            .last()
            .expect("a verified history is never empty")
    }

    /// Checks the chain: links, signatures by the new and previous keys, ordering of times.
    pub fn verify(&self) -> Result<()> {
        self.verify_links()?;
        self.verify_signatures()
    }

    /// Wraps changes without checking them; [`ChangeHistory::verify`] must run before the history is used.
    /// (A responder runs the cheap checks, then the signatures, on a history from the network.)
    pub(crate) fn unverified(changes: Vec<Change>) -> Self {
        ChangeHistory { changes }
    }

    /// Everything [`ChangeHistory::verify`] checks except the signatures, which cost far more: a count
    /// within bounds, each change's times, the links between changes, and which signatures are present.
    pub fn verify_links(&self) -> Result<()> {
        if self.changes.is_empty() {
            return Err(Error::InvalidHistory("empty"));
        }
        if self.changes.len() > MAX_CHANGES {
            return Err(Error::InvalidHistory("too many changes"));
        }
        let mut previous: Option<(&ChangeData, [u8; 32])> = None;
        for change in &self.changes {
            let data = &change.data;
            let hash = data.hash();
            if data.expires_at <= data.created_at {
                return Err(Error::InvalidHistory("change expires before it is created"));
            }
            match (previous, &change.previous_signature) {
                (None, None) => {
                    if data.previous != [0u8; 32] {
                        return Err(Error::InvalidHistory(
                            "first change names a previous change",
                        ));
                    }
                }
                (None, Some(_)) => {
                    return Err(Error::InvalidHistory(
                        "first change has a previous signature",
                    ))
                }
                (Some(_), None) => {
                    return Err(Error::InvalidHistory(
                        "rotation not signed by the previous key",
                    ))
                }
                (Some((prev, prev_hash)), Some(_)) => {
                    if data.previous != prev_hash {
                        return Err(Error::InvalidHistory(
                            "change does not follow the previous one",
                        ));
                    }
                    if data.created_at < prev.created_at {
                        return Err(Error::InvalidHistory(
                            "change is older than the previous one",
                        ));
                    }
                }
            }
            previous = Some((data, hash));
        }
        Ok(())
    }

    /// The signatures of a history whose links [`ChangeHistory::verify_links`] accepted: by the new key,
    /// and for every change but the first by the previous key.
    pub fn verify_signatures(&self) -> Result<()> {
        self.check_signatures(true)
    }

    /// The signatures of a history **presented in a handshake** (PROTOCOL.md 3.4, "A history as presented";
    /// `Handshake::verify_peer` is its caller), once [`ChangeHistory::verify_links`] accepted it: every
    /// signature [`ChangeHistory::verify_signatures`] checks, in the same order, except the first change's
    /// `self_signature`.
    ///
    /// The rule: that signature proves that the first key's holder agreed to the first change. The same
    /// handshake already checks another signature by the first key over a message that contains the first
    /// change's hash, which proves the same thing:
    /// - one change: the attestation, whose `subject` is the identifier (= the first change's hash) and which
    ///   is verified under the primary key (= the first change's key). **This function does not check it**:
    ///   it is sound only where the caller verifies the attestation under [`Self::primary_public_key`] with
    ///   its subject checked against [`Self::identifier`], as `Handshake::verify_peer` always does;
    /// - two or more changes: the second change's `previous_signature` (by the first key, over the second
    ///   change's hash, whose `previous` field is the first change's hash), which this function checks.
    ///
    /// A history that stands alone (`import`, `new`, enrollment, authorities, credentials, pinning exported
    /// bytes) has no such second signature and keeps the full [`ChangeHistory::verify`]. A history accepted
    /// here may therefore carry a first self-signature that was never checked (only if its owner made a bad
    /// one); [`ChangeHistory::import`] of its export then fails with "bad signature by the new key".
    pub fn verify_presented_signatures(&self) -> Result<()> {
        self.check_signatures(false)
    }

    /// Decodes a history that was already authenticated as presented — a pin that a handshake stored (the
    /// handshake ran [`ChangeHistory::verify_presented_signatures`] and the attestation), or that was pinned
    /// from exported bytes after the full [`ChangeHistory::verify`] — and checks it again under the same
    /// rule: its links and [`ChangeHistory::verify_presented_signatures`]. For a one-change history that is
    /// no signature at all, so this is only for bytes the caller stored itself after one of those checks
    /// (a pin store), never for bytes from elsewhere: those go through [`ChangeHistory::import`].
    pub fn import_presented(bytes: &[u8]) -> Result<Self> {
        let history = ChangeHistory::unverified(Self::decode_unverified(bytes)?);
        history.verify_links()?;
        history.verify_presented_signatures()?;
        Ok(history)
    }

    /// The signature checks of a linked history; `first_self_signature` says whether the first change's
    /// self-signature is among them (see [`ChangeHistory::verify_presented_signatures`] for when it is not).
    fn check_signatures(&self, first_self_signature: bool) -> Result<()> {
        let mut previous: Option<&ChangeData> = None;
        for (i, change) in self.changes.iter().enumerate() {
            let data = &change.data;
            let hash = data.hash();
            if i > 0 || first_self_signature {
                verify_signature(&data.public_key, &hash, &change.self_signature)
                    .map_err(|_| Error::InvalidHistory("bad signature by the new key"))?;
            }
            if let (Some(prev), Some(sig)) = (previous, &change.previous_signature) {
                verify_signature(&prev.public_key, &hash, sig)
                    .map_err(|_| Error::InvalidHistory("bad signature by the previous key"))?;
            }
            previous = Some(data);
        }
        Ok(())
    }

    /// Whether the primary key is valid at `now`.
    pub fn check_not_expired(&self, now: Timestamp) -> Result<()> {
        if now >= self.primary_key_expires_at() {
            return Err(Error::Expired("identity key"));
        }
        Ok(())
    }

    /// Accepts `self` as the new state of an identity whose history was known as `known`: same identity,
    /// and `known` is an exact prefix (equal, or extended by rotations). Anything else is refused.
    pub fn check_extends(&self, known: &ChangeHistory) -> Result<()> {
        if self.changes.len() < known.changes.len()
            || self.changes[..known.changes.len()] != known.changes[..]
        {
            return Err(Error::HistoryMismatch);
        }
        Ok(())
    }

    /// The key-lifetime rules (PROTOCOL.md 3.8) for the changes from index `from` on: each of them is valid
    /// for at most [`MAX_KEY_LIFETIME_SECS`], and each rotation among them was created before the key it
    /// replaces expired. `self` is a verified history, so its links and signatures are already checked.
    pub fn check_key_lifetimes(&self, from: usize) -> Result<()> {
        for (i, change) in self.changes.iter().enumerate().skip(from) {
            let data = &change.data;
            if data.expires_at.0.saturating_sub(data.created_at.0) > MAX_KEY_LIFETIME_SECS {
                return Err(Error::KeyLifetimeExceeded(
                    "key valid for longer than the maximum key lifetime",
                ));
            }
            if i > 0 && data.created_at >= self.changes[i - 1].data.expires_at {
                return Err(Error::KeyLifetimeExceeded(
                    "rotation created after the previous key expired",
                ));
            }
        }
        Ok(())
    }

    /// The pinning decision, a pure function of the pinned history (if any) and the presented one (`self`,
    /// verified). First contact: every change must keep the key-lifetime rules. Later: the presented history
    /// must be of the same identity (`HistoryMismatch`), not a strict prefix of the pinned one
    /// (`HistoryRollback`), have the pinned one as its exact prefix (`HistoryFork` otherwise), and its new
    /// changes must keep the key-lifetime rules (`KeyLifetimeExceeded`). On success the caller stores `self`
    /// as the new pin.
    pub fn check_pinned(&self, pinned: Option<&ChangeHistory>) -> Result<PinCheck> {
        let Some(pinned) = pinned else {
            self.check_key_lifetimes(0)?;
            return Ok(PinCheck::FirstContact);
        };
        if self.identifier() != pinned.identifier() {
            return Err(Error::HistoryMismatch);
        }
        let (ours, theirs) = (&self.changes, &pinned.changes);
        if ours.len() < theirs.len() {
            return Err(if theirs[..ours.len()] == ours[..] {
                Error::HistoryRollback
            } else {
                Error::HistoryFork
            });
        }
        if ours[..theirs.len()] != theirs[..] {
            return Err(Error::HistoryFork);
        }
        if ours.len() == theirs.len() {
            return Ok(PinCheck::Unchanged);
        }
        self.check_key_lifetimes(theirs.len())?;
        Ok(PinCheck::Extended(ours.len() - theirs.len()))
    }

    /// A new history with one more change appended, verified as a whole.
    pub fn with_change(&self, change: Change) -> Result<ChangeHistory> {
        let mut changes = self.changes.clone();
        changes.push(change);
        ChangeHistory::new(changes)
    }
}

impl Encode for ChangeHistory {
    fn encode_into(&self, out: &mut Vec<u8>) {
        encode_changes(&self.changes, out);
    }
}

/// `count ‖ change × count` (PROTOCOL.md 3.4).
fn encode_changes(changes: &[Change], out: &mut Vec<u8>) {
    out.put_u8(changes.len() as u8);
    for change in changes {
        change.encode_into(out);
    }
}

impl Decode for ChangeHistory {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let count = reader.u8()? as usize;
        let mut changes = Vec::with_capacity(count.min(MAX_CHANGES));
        for _ in 0..count {
            changes.push(Change::decode_from(reader)?);
        }
        ChangeHistory::new(changes)
    }
}
