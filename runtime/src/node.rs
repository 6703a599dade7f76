//! A node: the workers of one process, each at an address with a bounded mailbox. Sending a message delivers
//! it to the worker named by the first hop of its onward route. Workers are tokio tasks that own a
//! [`Mailbox`]; dropping the mailbox unregisters the address.

use crate::error::{Result, RuntimeError};
use crate::message::{Address, Message};
use latchkey_core::identity::Identifier;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;

/// Default mailbox capacity, in messages. Every queue in the runtime is bounded: a full mailbox makes
/// `send` wait (backpressure) or `try_send` fail.
pub const DEFAULT_MAILBOX: usize = 256;

/// Who may send to a worker.
#[derive(Clone, Debug, Default)]
pub enum Access {
    /// Any sender, local or remote, authenticated or not.
    #[default]
    Any,
    /// Only messages that came out of a secure channel whose peer is one of these identifiers.
    Identifiers(Arc<HashSet<Identifier>>),
}

impl Access {
    pub fn identifiers(ids: impl IntoIterator<Item = Identifier>) -> Self {
        Access::Identifiers(Arc::new(ids.into_iter().collect()))
    }

    fn check(&self, service: &Address, message: &Message) -> Result<()> {
        match self {
            Access::Any => Ok(()),
            Access::Identifiers(ids) => match message.local.peer {
                Some(peer) if ids.contains(&peer) => Ok(()),
                peer => Err(RuntimeError::AccessDenied {
                    service: service.to_string(),
                    peer: peer
                        .map_or_else(|| "an unauthenticated sender".into(), |p| p.to_string()),
                }),
            },
        }
    }
}

struct Entry {
    sender: mpsc::Sender<Message>,
    access: Access,
    /// Distinguishes a re-registration from the entry a dropped mailbox must remove.
    generation: u64,
}

struct Inner {
    name: String,
    workers: Mutex<HashMap<Address, Entry>>,
    counter: AtomicU64,
}

/// A handle to a node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Node {
    pub fn new(name: impl Into<String>) -> Self {
        Node {
            inner: Arc::new(Inner {
                name: name.into(),
                workers: Mutex::new(HashMap::new()),
                counter: AtomicU64::new(1),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A fresh address `prefix#n`, unique on this node.
    pub fn unique_address(&self, prefix: &str) -> Address {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        Address::new(format!("{prefix}#{n}")).expect("prefix is short")
    }

    /// Registers a worker open to any sender, with the default mailbox size.
    pub fn register(&self, address: Address) -> Result<Mailbox> {
        self.register_with(address, DEFAULT_MAILBOX, Access::Any)
    }

    /// Registers a worker with a mailbox of `capacity` messages and an access policy.
    pub fn register_with(
        &self,
        address: Address,
        capacity: usize,
        access: Access,
    ) -> Result<Mailbox> {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let generation = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let mut workers = self.lock();
        if workers.get(&address).is_some_and(|e| !e.sender.is_closed()) {
            return Err(RuntimeError::AddressInUse(address.to_string()));
        }
        workers.insert(
            address.clone(),
            Entry {
                sender,
                access,
                generation,
            },
        );
        Ok(Mailbox {
            address,
            receiver,
            node: Arc::downgrade(&self.inner),
            generation,
        })
    }

    /// Removes a worker's address. Its mailbox then ends (`recv` returns `None`) once drained, which is how
    /// long-lived workers such as a reconnecting `tcp-out` are told to stop.
    pub fn unregister(&self, address: &Address) -> bool {
        self.lock().remove(address).is_some()
    }

    pub fn is_registered(&self, address: &Address) -> bool {
        self.lock().contains_key(address)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Address, Entry>> {
        // A poisoned map only means a panic elsewhere while holding it; the map itself stays consistent.
        self.inner.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn target(&self, message: &Message) -> Result<(Address, mpsc::Sender<Message>)> {
        let address = message.onward.first().ok_or(RuntimeError::EmptyRoute)?;
        let workers = self.lock();
        let entry = workers
            .get(address)
            .ok_or_else(|| RuntimeError::UnknownAddress(address.to_string()))?;
        entry.access.check(address, message)?;
        Ok((address.clone(), entry.sender.clone()))
    }

    /// Delivers to the first hop of the onward route, waiting while its mailbox is full.
    pub async fn send(&self, message: Message) -> Result<()> {
        let (address, sender) = self.target(&message)?;
        sender
            .send(message)
            .await
            .map_err(|_| RuntimeError::WorkerStopped(address.to_string()))
    }

    /// Delivers without waiting; a full mailbox is `QueueFull` and the message comes back in the error path
    /// of [`Node::try_send_keep`].
    pub fn try_send(&self, message: Message) -> Result<()> {
        self.try_send_keep(message).map_err(|b| b.0)
    }

    /// Like [`Node::try_send`], but returns the message when it could not be queued so the caller can retry.
    pub fn try_send_keep(
        &self,
        message: Message,
    ) -> Result<(), Box<(RuntimeError, Option<Message>)>> {
        let (address, sender) = match self.target(&message) {
            Ok(t) => t,
            Err(e) => return Err(Box::new((e, None))),
        };
        sender.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) => {
                Box::new((RuntimeError::QueueFull(address.to_string()), Some(m)))
            }
            mpsc::error::TrySendError::Closed(_) => {
                Box::new((RuntimeError::WorkerStopped(address.to_string()), None))
            }
        })
    }
}

/// A worker's incoming queue. Dropping it frees the address.
pub struct Mailbox {
    address: Address,
    receiver: mpsc::Receiver<Message>,
    node: Weak<Inner>,
    generation: u64,
}

impl Mailbox {
    pub fn address(&self) -> &Address {
        &self.address
    }

    pub async fn recv(&mut self) -> Option<Message> {
        self.receiver.recv().await
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        if let Some(inner) = self.node.upgrade() {
            let mut workers = inner.workers.lock().unwrap_or_else(|e| e.into_inner());
            if workers
                .get(&self.address)
                .is_some_and(|e| e.generation == self.generation)
            {
                workers.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Route;

    #[tokio::test]
    async fn delivers_to_first_hop_and_unregisters_on_drop() {
        let node = Node::new("n");
        let mut mb = node.register("a".into()).unwrap();
        node.send(Message::new(
            Route::from(["a", "b"]),
            Route::new(),
            b"x".to_vec(),
        ))
        .await
        .unwrap();
        assert_eq!(mb.recv().await.unwrap().payload, b"x");
        assert!(matches!(
            node.register("a".into()),
            Err(RuntimeError::AddressInUse(_))
        ));
        assert!(node.unregister(&"a".into()));
        assert!(mb.recv().await.is_none(), "mailbox ends once unregistered");
        drop(mb);
        assert!(matches!(
            node.send(Message::new(Route::from(["a"]), Route::new(), vec![]))
                .await,
            Err(RuntimeError::UnknownAddress(_))
        ));
    }

    #[tokio::test]
    async fn bounded_mailbox_reports_full() {
        let node = Node::new("n");
        let _mb = node.register_with("a".into(), 2, Access::Any).unwrap();
        let m = Message::new(Route::from(["a"]), Route::new(), vec![]);
        node.try_send(m.clone()).unwrap();
        node.try_send(m.clone()).unwrap();
        assert!(matches!(node.try_send(m), Err(RuntimeError::QueueFull(_))));
    }

    #[tokio::test]
    async fn access_control_refuses_unauthenticated_and_untrusted() {
        let node = Node::new("n");
        let trusted = Identifier::from_bytes([1; 32]);
        let mut mb = node
            .register_with("svc".into(), 4, Access::identifiers([trusted]))
            .unwrap();
        let mut m = Message::new(Route::from(["svc"]), Route::new(), vec![]);
        assert!(matches!(
            node.try_send(m.clone()),
            Err(RuntimeError::AccessDenied { .. })
        ));
        m.local.peer = Some(Identifier::from_bytes([2; 32]));
        assert!(matches!(
            node.try_send(m.clone()),
            Err(RuntimeError::AccessDenied { .. })
        ));
        m.local.peer = Some(trusted);
        node.try_send(m).unwrap();
        assert!(mb.recv().await.is_some());
    }
}
