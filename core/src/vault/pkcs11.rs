//! [`Pkcs11Vault`]: identity signing keys and Noise static keys inside a PKCS#11 token (an HSM, a smart card,
//! a YubiHSM, SoftHSM2 in tests). Keys are generated in the token as `CKA_SENSITIVE` and not
//! `CKA_EXTRACTABLE`; the host sees only public keys, signatures and DH outputs. A key is named by its
//! `CKA_ID` (`KeyId` = `pkcs11:` + hex id), the token by its label; the store keeps these references only.
//!
//! Algorithms: Ed25519 (`CKM_EDDSA`) where the token has it, else ECDSA P-256 (`CKM_ECDSA` over a SHA-256
//! digest computed on the host; the signature is normalised to low-s). The X25519 static key lives in the
//! token when the token can derive with one: a `CKK_EC_MONTGOMERY` key (real HSMs), or SoftHSM2's route, an
//! Edwards-type key made with the X25519 curve OID that `CKM_ECDH1_DERIVE` accepts. A token with neither
//! answers [`Pkcs11Vault::has_x25519`] false, and the caller keeps the static key in software, attested by the
//! hardware identity key with a short expiry.
//!
//! Sessions are pooled (a `Session` is `Send`, not `Sync`: one thread uses it at a time) and re-opened, with a
//! fresh login, after an error that invalidates them (device removed, session closed, not logged in).

use super::{KeyId, PublicKey, SecureChannelVault, Signature, SigningAlgorithm, SigningVault};
use crate::crypto::Secret32;
use crate::error::{Error, Result};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::sync::{Arc, Mutex, OnceLock};
use std::vec::Vec;
use std::{format, vec};
use zeroize::Zeroizing;

/// The environment variable a PIN is read from unless the configuration names a file or a callback.
pub const PIN_ENV: &str = "LATCHKEY_PKCS11_PIN";

/// DER of the curve OIDs, as `CKA_EC_PARAMS`.
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const OID_X25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6e];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A callback that supplies the PIN (e.g. asks the user). Called at open and whenever the vault must log in
/// again; the PIN is not kept in between.
pub type PinCallback = Arc<dyn Fn() -> Result<Zeroizing<String>> + Send + Sync>;

/// Where the user PIN comes from: never a command-line argument.
#[derive(Clone)]
pub enum PinSource {
    /// An environment variable (default [`PIN_ENV`]).
    Env(String),
    /// The first line of a file (which should be readable by this user only).
    File(PathBuf),
    /// A callback.
    Callback(PinCallback),
}

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinSource::Env(name) => write!(f, "Env({name})"),
            PinSource::File(path) => write!(f, "File({})", path.display()),
            PinSource::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

impl PinSource {
    fn read(&self, token: &str) -> Result<Zeroizing<String>> {
        match self {
            PinSource::Env(name) => std::env::var(name).map(Zeroizing::new).map_err(|_| {
                Error::PinLocked(format!(
                    "no PIN for token {token:?}: set the environment variable {name} or give pin-file=PATH \
                     in the vault spec"
                ))
            }),
            PinSource::File(path) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    Error::PinLocked(format!(
                        "cannot read the PIN file {} for token {token:?}: {e}",
                        path.display()
                    ))
                })?);
                Ok(Zeroizing::new(
                    text.lines().next().unwrap_or("").trim_end().to_string(),
                ))
            }
            PinSource::Callback(callback) => callback(),
        }
    }
}

/// Where a [`Pkcs11Vault`] finds its token. Parsed from a vault spec `module=PATH,token=LABEL[,pin-file=PATH]`
/// (the part after `pkcs11:`); the spec never carries a PIN.
#[derive(Clone, Debug)]
pub struct Pkcs11Config {
    pub module: PathBuf,
    pub token: String,
    pub pin: PinSource,
}

impl Pkcs11Config {
    pub fn new(module: impl Into<PathBuf>, token: impl Into<String>, pin: PinSource) -> Self {
        Pkcs11Config {
            module: module.into(),
            token: token.into(),
            pin,
        }
    }

    /// Parses `module=PATH,token=LABEL[,pin-file=PATH]`. A `pin=` key is refused: a PIN on a command line
    /// is visible to every user of the machine.
    pub fn from_spec(spec: &str) -> Result<Self> {
        let (mut module, mut token, mut pin) = (None, None, PinSource::Env(PIN_ENV.to_string()));
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                Error::Vault(format!(
                    "bad PKCS#11 vault spec item {part:?}: expected key=value"
                ))
            })?;
            match key {
                "module" => module = Some(PathBuf::from(value)),
                "token" => token = Some(value.to_string()),
                "pin-file" => pin = PinSource::File(PathBuf::from(value)),
                "pin-env" => pin = PinSource::Env(value.to_string()),
                "pin" => {
                    return Err(Error::Vault(format!(
                        "a PIN is never accepted in a vault spec (it would show in the process list): set \
                         {PIN_ENV} or use pin-file=PATH"
                    )))
                }
                other => {
                    return Err(Error::Vault(format!(
                        "unknown PKCS#11 vault spec key {other:?} (use module=, token=, pin-file=)"
                    )))
                }
            }
        }
        match (module, token) {
            (Some(module), Some(token)) => Ok(Pkcs11Config { module, token, pin }),
            _ => Err(Error::Vault(
                "a PKCS#11 vault spec needs module=PATH and token=LABEL".into(),
            )),
        }
    }

    /// The spec string (without any PIN), as a store records it.
    pub fn spec(&self) -> String {
        let mut s = format!("module={},token={}", self.module.display(), self.token);
        match &self.pin {
            PinSource::File(path) => s.push_str(&format!(",pin-file={}", path.display())),
            PinSource::Env(name) if name != PIN_ENV => s.push_str(&format!(",pin-env={name}")),
            _ => {}
        }
        s
    }
}

/// How a token can hold a Noise static key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X25519Support {
    /// `CKK_EC_MONTGOMERY` keys (`CKM_EC_MONTGOMERY_KEY_PAIR_GEN`) and `CKM_ECDH1_DERIVE`.
    Montgomery,
    /// SoftHSM2: an Edwards-type key with the X25519 OID derives with `CKM_ECDH1_DERIVE`.
    EdwardsOid,
    /// Neither: keep the static key in software.
    None,
}

/// The protection attributes of a private key, as the token reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyProtection {
    pub sensitive: bool,
    pub extractable: bool,
    pub always_sensitive: bool,
    pub never_extractable: bool,
}

/// What the vault caches about a key: only public facts.
#[derive(Clone)]
struct PublicInfo {
    point: Vec<u8>,
    x25519: bool,
}

/// One process-wide context per module: `C_Initialize` may run once per module and process, and every vault
/// on the same module shares it.
fn module_context(path: &Path) -> Result<Pkcs11> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let modules = MODULES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut modules = modules.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(path).map_err(|e| {
        Error::ModuleNotFound(format!(
            "cannot load the PKCS#11 module {}: {e} (install it, or correct module= in the vault spec)",
            path.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Error::ModuleNotFound(format!(
                "the PKCS#11 module {} failed to initialise: {e}",
                path.display()
            )))
        }
    }
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// An identity and secure-channel vault in a PKCS#11 token. Thread-safe; cheap to share in an `Arc`.
pub struct Pkcs11Vault {
    ctx: Pkcs11,
    config: Pkcs11Config,
    slot: Mutex<Slot>,
    pool: Mutex<Vec<Session>>,
    eddsa: bool,
    x25519: X25519Support,
    publics: Mutex<HashMap<KeyId, PublicInfo>>,
}

impl fmt::Debug for Pkcs11Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Vault")
            .field("module", &self.config.module)
            .field("token", &self.config.token)
            .field("eddsa", &self.eddsa)
            .field("x25519", &self.x25519)
            .finish_non_exhaustive()
    }
}

/// Whether an error means the session (or the login) is gone and a fresh one may succeed.
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

impl Pkcs11Vault {
    /// Loads the module, finds the token by label, logs in with the PIN and checks its mechanisms.
    pub fn open(config: Pkcs11Config) -> Result<Self> {
        let ctx = module_context(&config.module)?;
        let slot = find_slot(&ctx, &config)?;
        // One query per mechanism we use (the whole list would include vendor types cryptoki logs as
        // errors); a mechanism the token lacks answers CKR_MECHANISM_INVALID.
        let has = |m: MechanismType| ctx.get_mechanism_info(slot, m).is_ok();
        let eddsa = has(MechanismType::EDDSA) && has(MechanismType::ECC_EDWARDS_KEY_PAIR_GEN);
        let derive = has(MechanismType::ECDH1_DERIVE);
        let x25519 = if derive && has(MechanismType::ECC_MONTGOMERY_KEY_PAIR_GEN) {
            X25519Support::Montgomery
        } else if derive && has(MechanismType::ECC_EDWARDS_KEY_PAIR_GEN) {
            X25519Support::EdwardsOid
        } else {
            X25519Support::None
        };
        let ecdsa = has(MechanismType::ECDSA) && has(MechanismType::ECC_KEY_PAIR_GEN);
        if !eddsa && !ecdsa {
            return Err(Error::HardwareUnsupported(format!(
                "token {:?} can make neither Ed25519 (CKM_EDDSA) nor ECDSA P-256 (CKM_ECDSA) keys",
                config.token
            )));
        }
        let vault = Pkcs11Vault {
            ctx,
            config,
            slot: Mutex::new(slot),
            pool: Mutex::new(Vec::new()),
            eddsa,
            x25519,
            publics: Mutex::new(HashMap::new()),
        };
        // Log in now, so a wrong or missing PIN is reported at open, not at the first handshake.
        let session = vault.new_session()?;
        vault.give_back(session);
        Ok(vault)
    }

    /// Opens from a spec `module=PATH,token=LABEL[,pin-file=PATH]`.
    pub fn open_spec(spec: &str) -> Result<Self> {
        Self::open(Pkcs11Config::from_spec(spec)?)
    }

    pub fn config(&self) -> &Pkcs11Config {
        &self.config
    }

    /// The identity-key algorithm this token supports best: Ed25519 where it has `CKM_EDDSA`, else P-256.
    pub fn preferred_algorithm(&self) -> SigningAlgorithm {
        if self.eddsa {
            SigningAlgorithm::Ed25519
        } else {
            SigningAlgorithm::EcdsaP256
        }
    }

    /// How (whether) this token can hold the Noise static key.
    pub fn x25519_support(&self) -> X25519Support {
        self.x25519
    }

    /// Whether the Noise static key can live in this token.
    pub fn has_x25519(&self) -> bool {
        self.x25519 != X25519Support::None
    }

    fn new_session(&self) -> Result<Session> {
        let label = &self.config.token;
        let slot = *self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let session = match self.ctx.open_rw_session(slot) {
            Ok(s) => s,
            Err(e)
                if session_lost(&e) || matches!(e, CkError::Pkcs11(RvError::SlotIdInvalid, _)) =>
            {
                // The token may have moved to another slot (unplugged and plugged back in).
                let slot = find_slot(&self.ctx, &self.config)?;
                *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = slot;
                self.ctx
                    .open_rw_session(slot)
                    .map_err(|e| map_err(e, label, "opening a session"))?
            }
            Err(e) => return Err(map_err(e, label, "opening a session")),
        };
        let pin = self.config.pin.read(label)?;
        let auth = AuthPin::from(pin.as_str());
        match session.login(UserType::User, Some(&auth)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(map_err(e, label, "logging in")),
        }
    }

    fn give_back(&self, session: Session) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < 8 {
            pool.push(session);
        }
    }

    /// Runs `f` on a pooled session. When the session (or the login) turned out to be gone, every pooled
    /// session is dropped and `f` runs once more on a fresh, logged-in one.
    fn with_session<T>(
        &self,
        what: &str,
        f: impl Fn(&Session) -> std::result::Result<T, CkError>,
    ) -> Result<T> {
        let label = &self.config.token;
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let session = match pooled {
            Some(s) => s,
            None => self.new_session()?,
        };
        match f(&session) {
            Ok(v) => {
                self.give_back(session);
                Ok(v)
            }
            Err(e) if session_lost(&e) => {
                drop(session);
                self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
                let session = self.new_session().map_err(|open| match open {
                    // Still gone: report the device, not the login.
                    Error::Vault(_) => map_err(e, label, what),
                    other => other,
                })?;
                let result = f(&session).map_err(|e| map_err(e, label, what));
                self.give_back(session);
                result
            }
            Err(e) => {
                self.give_back(session);
                Err(map_err(e, label, what))
            }
        }
    }

    /// Logs this application out of the token (in PKCS#11 a login belongs to every session of the
    /// process) and drops the pooled sessions. The vault stays usable: the next operation opens a session
    /// and logs in again with the PIN source (asking a callback again).
    pub fn log_out(&self) -> Result<()> {
        let session = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let result = match &session {
            Some(s) => match s.logout() {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => Ok(()),
                Err(e) => Err(map_err(e, &self.config.token, "logging out")),
            },
            None => Ok(()),
        };
        drop(session);
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
        result
    }

    fn new_id(&self) -> Result<Vec<u8>> {
        let mut id = vec![0u8; 16];
        getrandom::getrandom(&mut id).map_err(|_| Error::Crypto("system randomness failed"))?;
        Ok(id)
    }

    fn parse_key_id(key: &KeyId) -> Result<Vec<u8>> {
        key.as_str()
            .strip_prefix("pkcs11:")
            .and_then(|h| hex::decode(h).ok())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::KeyNotFound(format!("{key} is not a PKCS#11 key reference")))
    }

    fn find(
        session: &Session,
        id: &[u8],
        class: ObjectClass,
    ) -> std::result::Result<Option<ObjectHandle>, CkError> {
        Ok(session
            .find_objects(&[Attribute::Class(class), Attribute::Id(id.to_vec())])?
            .into_iter()
            .next())
    }

    fn missing(&self, key: &KeyId) -> Error {
        Error::KeyNotFound(format!(
            "{key} is no longer in token {:?} (deleted, or the token was re-initialised): an identity whose \
             key is gone cannot sign; restore the token from its backup or create a new identity",
            self.config.token
        ))
    }

    /// Generates a key pair in the token: private half sensitive and never extractable.
    fn generate(
        &self,
        mechanism: Mechanism<'static>,
        oid: &[u8],
        kind: &str,
        usage: &[Attribute],
        public_usage: &[Attribute],
    ) -> Result<KeyId> {
        let id = self.new_id()?;
        let label = format!("latchkey-{kind}-{}", hex::encode(&id[..4]));
        let mut public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::EcParams(oid.to_vec()),
            Attribute::Id(id.clone()),
            Attribute::Label(label.clone().into_bytes()),
        ];
        public.extend_from_slice(public_usage);
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label.into_bytes()),
        ];
        private.extend_from_slice(usage);
        self.with_session("generating a key", |s| {
            s.generate_key_pair(&mechanism, &public, &private)
                .map(|_| ())
        })?;
        Ok(KeyId::new(format!("pkcs11:{}", hex::encode(id))))
    }

    /// The public key's point bytes (`CKA_EC_POINT`, unwrapped from its DER OCTET STRING) and whether it is
    /// an X25519 key (Montgomery type, or SoftHSM2's Edwards type with the X25519 OID), cached.
    fn public_info(&self, key: &KeyId) -> Result<PublicInfo> {
        if let Some(p) = self
            .publics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return Ok(p.clone());
        }
        let id = Self::parse_key_id(key)?;
        let attrs = self.with_session("reading a public key", |s| {
            let Some(handle) = Self::find(s, &id, ObjectClass::PUBLIC_KEY)? else {
                return Ok(None);
            };
            s.get_attributes(
                handle,
                &[
                    AttributeType::EcPoint,
                    AttributeType::EcParams,
                    AttributeType::KeyType,
                ],
            )
            .map(Some)
        })?;
        let (mut point, mut x25519) = (None, false);
        for a in attrs.ok_or_else(|| self.missing(key))? {
            match a {
                Attribute::EcPoint(p) => point = Some(unwrap_octet_string(p)),
                Attribute::EcParams(p) => x25519 |= p == OID_X25519,
                Attribute::KeyType(t) => x25519 |= t == KeyType::EC_MONTGOMERY,
                _ => {}
            }
        }
        let info = PublicInfo {
            point: point.ok_or_else(|| self.missing(key))?,
            x25519,
        };
        self.publics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), info.clone());
        Ok(info)
    }

    fn private_op<T>(
        &self,
        key: &KeyId,
        what: &str,
        op: impl Fn(&Session, ObjectHandle) -> std::result::Result<T, CkError>,
    ) -> Result<T> {
        let id = Self::parse_key_id(key)?;
        let out = self.with_session(what, |s| {
            match Self::find(s, &id, ObjectClass::PRIVATE_KEY)? {
                Some(handle) => op(s, handle).map(Some),
                None => Ok(None),
            }
        })?;
        out.ok_or_else(|| self.missing(key))
    }

    /// The protection attributes of a private key, as the token reports them.
    pub fn key_protection(&self, key: &KeyId) -> Result<KeyProtection> {
        self.private_op(key, "reading a key's attributes", |s, h| {
            let attrs = s.get_attributes(
                h,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                ],
            )?;
            let mut p = KeyProtection {
                sensitive: false,
                extractable: true,
                always_sensitive: false,
                never_extractable: false,
            };
            for a in attrs {
                match a {
                    Attribute::Sensitive(v) => p.sensitive = v,
                    Attribute::Extractable(v) => p.extractable = v,
                    Attribute::AlwaysSensitive(v) => p.always_sensitive = v,
                    Attribute::NeverExtractable(v) => p.never_extractable = v,
                    _ => {}
                }
            }
            Ok(p)
        })
    }

    /// Asks the token for a private key's value. Hardware keys never leave their vault: this always fails
    /// with `KeyNotExtractable` (the token itself refuses a sensitive key; a value a token would hand out is
    /// discarded, never returned).
    pub fn export_secret(&self, key: &KeyId) -> Result<Zeroizing<Vec<u8>>> {
        let info = self.private_op(key, "reading a key's value", |s, h| {
            let info = s.get_attribute_info(h, &[AttributeType::Value])?;
            Ok(info.into_iter().next())
        })?;
        let reason = match info {
            Some(AttributeInfo::Sensitive) => "the token refuses: the key is sensitive",
            _ => "hardware keys are never exported",
        };
        Err(Error::KeyNotExtractable(format!(
            "{key} in token {:?}: {reason}; it can only be used inside the token",
            self.config.token
        )))
    }

    fn delete(&self, key: &KeyId) -> Result<()> {
        let id = Self::parse_key_id(key)?;
        let found = self.with_session("deleting a key", |s| {
            let handles = s.find_objects(&[Attribute::Id(id.clone())])?;
            let found = !handles.is_empty();
            for h in handles {
                s.destroy_object(h)?;
            }
            Ok(found)
        })?;
        self.publics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if found {
            Ok(())
        } else {
            Err(self.missing(key))
        }
    }
}

fn find_slot(ctx: &Pkcs11, config: &Pkcs11Config) -> Result<Slot> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| map_err(e, &config.token, "listing slots"))?;
    let mut labels = Vec::new();
    for slot in slots {
        if let Ok(info) = ctx.get_token_info(slot) {
            let label = info.label().trim_end().to_string();
            if label == config.token {
                return Ok(slot);
            }
            labels.push(label);
        }
    }
    Err(Error::TokenNotFound(format!(
        "no token labelled {:?} in {} (tokens present: {}); check token= in the vault spec, or initialise \
         the token",
        config.token,
        config.module.display(),
        if labels.is_empty() {
            "none".to_string()
        } else {
            labels.join(", ")
        }
    )))
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point; some tokens return the bare point.
fn unwrap_octet_string(point: Vec<u8>) -> Vec<u8> {
    match point.as_slice() {
        [0x04, len, rest @ ..] if *len as usize == rest.len() && *len < 0x80 => rest.to_vec(),
        [0x04, 0x81, len, rest @ ..] if *len as usize == rest.len() => rest.to_vec(),
        _ => point,
    }
}

/// A PKCS#11 error as a typed core error a user can act on.
pub(crate) fn map_err(e: CkError, token: &str, what: &str) -> Error {
    match &e {
        CkError::LibraryLoading(_) => Error::ModuleNotFound(format!("{what}: {e}")),
        CkError::Pkcs11(rv, _) => match rv {
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange => Error::PinIncorrect(format!(
                "token {token:?} refused the PIN while {what}; check {PIN_ENV} or the PIN file (the token may \
                 lock the PIN after more failures)"
            )),
            RvError::PinLocked | RvError::PinExpired => Error::PinLocked(format!(
                "the user PIN of token {token:?} is locked or expired; unlock or reset it with the security \
                 officer PIN (e.g. softhsm2-util / pkcs11-tool --init-pin)"
            )),
            RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::DeviceMemory
            | RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::CryptokiNotInitialized
            | RvError::UserNotLoggedIn => Error::DeviceUnavailable(format!(
                "token {token:?} is not answering while {what} ({rv}); check that it is plugged in and \
                 reachable, then retry"
            )),
            RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid => {
                Error::KeyNotFound(format!("a key in token {token:?} vanished while {what}"))
            }
            RvError::MechanismInvalid
            | RvError::MechanismParamInvalid
            | RvError::KeyTypeInconsistent
            | RvError::KeyFunctionNotPermitted
            | RvError::CurveNotSupported
            | RvError::FunctionNotSupported
            | RvError::DomainParamsInvalid => Error::HardwareUnsupported(format!(
                "token {token:?} cannot do this while {what} ({rv})"
            )),
            RvError::AttributeSensitive | RvError::KeyUnextractable => {
                Error::KeyNotExtractable(format!("token {token:?} keeps the key inside ({rv})"))
            }
            _ => Error::Vault(format!("token {token:?} failed while {what}: {e}")),
        },
        _ => Error::Vault(format!("token {token:?} failed while {what}: {e}")),
    }
}

impl SigningVault for Pkcs11Vault {
    fn generate_signing_key(&self, algorithm: SigningAlgorithm) -> Result<KeyId> {
        let usage = [Attribute::Sign(true)];
        let public_usage = [Attribute::Verify(true)];
        match algorithm {
            SigningAlgorithm::Ed25519 if self.eddsa => self.generate(
                Mechanism::EccEdwardsKeyPairGen,
                OID_ED25519,
                "ed25519",
                &usage,
                &public_usage,
            ),
            SigningAlgorithm::Ed25519 => Err(Error::HardwareUnsupported(format!(
                "token {:?} has no Ed25519 (CKM_EDDSA); use ECDSA P-256",
                self.config.token
            ))),
            SigningAlgorithm::EcdsaP256 => self.generate(
                Mechanism::EccKeyPairGen,
                OID_P256,
                "p256",
                &usage,
                &public_usage,
            ),
        }
    }

    fn signing_public_key(&self, key: &KeyId) -> Result<PublicKey> {
        let info = self.public_info(key)?;
        match (info.x25519, info.point.len()) {
            (false, 32) => PublicKey::from_raw(SigningAlgorithm::Ed25519, &info.point),
            (false, 65) => PublicKey::from_raw(SigningAlgorithm::EcdsaP256, &info.point),
            _ => Err(Error::WrongKeyType),
        }
    }

    fn sign(&self, key: &KeyId, message: &[u8]) -> Result<Signature> {
        let algorithm = self.signing_public_key(key)?.algorithm();
        match algorithm {
            SigningAlgorithm::Ed25519 => {
                let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                let sig = self.private_op(key, "signing", |s, h| s.sign(&mechanism, h, message))?;
                let bytes: [u8; 64] = sig.as_slice().try_into().map_err(|_| {
                    Error::Vault("token returned a malformed Ed25519 signature".into())
                })?;
                Ok(Signature::new(SigningAlgorithm::Ed25519, bytes))
            }
            SigningAlgorithm::EcdsaP256 => {
                let digest = crate::crypto::sig::sha256(&[message]);
                let sig =
                    self.private_op(key, "signing", |s, h| s.sign(&Mechanism::Ecdsa, h, &digest))?;
                let mut bytes: [u8; 64] = sig.as_slice().try_into().map_err(|_| {
                    Error::Vault("token returned a malformed ECDSA signature".into())
                })?;
                super::keys::p256_low_s(&mut bytes);
                Ok(Signature::new(SigningAlgorithm::EcdsaP256, bytes))
            }
        }
    }

    fn delete_signing_key(&self, key: &KeyId) -> Result<()> {
        self.delete(key)
    }
}

impl SecureChannelVault for Pkcs11Vault {
    fn generate_x25519_key(&self) -> Result<KeyId> {
        let usage = [Attribute::Derive(true)];
        match self.x25519 {
            X25519Support::Montgomery => self.generate(
                Mechanism::EccMontgomeryKeyPairGen,
                OID_X25519,
                "x25519",
                &usage,
                &[],
            ),
            X25519Support::EdwardsOid => self.generate(
                Mechanism::EccEdwardsKeyPairGen,
                OID_X25519,
                "x25519",
                &usage,
                &[],
            ),
            X25519Support::None => Err(Error::HardwareUnsupported(format!(
                "token {:?} cannot derive with X25519 keys; keep the static key in software",
                self.config.token
            ))),
        }
    }

    fn x25519_public_key(&self, key: &KeyId) -> Result<[u8; 32]> {
        let info = self.public_info(key)?;
        if !info.x25519 {
            return Err(Error::WrongKeyType);
        }
        info.point
            .as_slice()
            .try_into()
            .map_err(|_| Error::WrongKeyType)
    }

    fn x25519(&self, key: &KeyId, peer_public: &[u8; 32]) -> Result<Secret32> {
        if !self.public_info(key)?.x25519 {
            return Err(Error::WrongKeyType);
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            // The DH output must reach the host (Noise feeds it to HKDF); it is a session object destroyed
            // at once, and the static private key itself stays sensitive.
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::ValueLen(32u64.into()),
        ];
        let value = self
            .private_op(key, "deriving X25519", |s, h| {
                let mechanism =
                    Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), peer_public));
                let derived = s.derive_key(&mechanism, h, &template)?;
                let attrs = s.get_attributes(derived, &[AttributeType::Value]);
                let _ = s.destroy_object(derived);
                Ok(attrs?.into_iter().find_map(|a| match a {
                    Attribute::Value(v) => Some(Zeroizing::new(v)),
                    _ => None,
                }))
            })
            .map_err(|e| match e {
                // The token refused the derivation itself (not the session, the login or the key): the peer's
                // point is one it rejects (low order, not on the curve).
                Error::Vault(_) => Error::InvalidPublicKey,
                other => other,
            })?;
        let value = value.ok_or_else(|| Error::Vault("token returned no X25519 result".into()))?;
        let bytes: [u8; 32] = value
            .as_slice()
            .try_into()
            .map_err(|_| Error::Vault("token returned a malformed X25519 result".into()))?;
        let secret = Secret32::new(bytes);
        if secret.expose().iter().all(|b| *b == 0) {
            return Err(Error::InvalidPublicKey);
        }
        Ok(secret)
    }

    fn delete_x25519_key(&self, key: &KeyId) -> Result<()> {
        self.delete(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_never_take_a_pin() {
        let c = Pkcs11Config::from_spec("module=/m.so,token=T1,pin-file=/p").unwrap();
        assert_eq!(c.module, PathBuf::from("/m.so"));
        assert_eq!(c.token, "T1");
        assert!(matches!(c.pin, PinSource::File(_)));
        assert_eq!(c.spec(), "module=/m.so,token=T1,pin-file=/p");
        assert!(Pkcs11Config::from_spec("module=/m.so,token=T,pin=1234").is_err());
        assert!(Pkcs11Config::from_spec("module=/m.so").is_err());
        assert!(Pkcs11Config::from_spec("module=/m.so,token=T,colour=red").is_err());
    }
}
