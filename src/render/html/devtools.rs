//! The DevTools connection to one browser: commands with their answers, and the
//! events of each page session. The protocol's types come from `chromiumoxide_cdp`,
//! generated from Chromium's own protocol definition; the connection is folio's, so
//! that a page turns on only the domains a render uses (Page and Fetch). A general
//! client turns on Runtime, Network, Log, Performance and target auto-attach for
//! every page it sees, and in a fresh context per render that costs the browser CPU
//! time on every render (about a tenth of a small invoice's).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_tungstenite::tungstenite::{self, Message, protocol::WebSocketConfig};
use chromiumoxide_cdp::cdp::browser_protocol::target::SessionId;
use chromiumoxide_types::{Command, MethodId, MethodType};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Largest message Chromium may send: a PDF or PNG as large as folio keeps, in base64.
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// A command that did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum DevtoolsError {
    #[error("the connection to Chromium closed")]
    Closed,
    #[error("{method}: {message}")]
    Refused { method: MethodId, message: String },
    #[error("{method}: unreadable answer: {error}")]
    Unreadable { method: MethodId, error: serde_json::Error },
    #[error("{method}: could not be written: {error}")]
    Unwritable { method: MethodId, error: serde_json::Error },
}

/// A connection to one browser; clones share it.
#[derive(Clone)]
pub struct Devtools(Arc<Shared>);

/// An event's params, handed to its listener; `false` once the listener is gone.
type Listener = Box<dyn Fn(Value) -> bool + Send>;

struct Shared {
    outgoing: mpsc::UnboundedSender<Message>,
    next_id: AtomicU64,
    /// Commands sent and not yet answered, by id.
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>,
    /// Who listens to which event of which page session.
    listeners: Mutex<HashMap<(String, MethodId), Listener>>,
}

/// A message from Chromium: an answer (`id`) or an event (`method`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Incoming {
    id: Option<u64>,
    result: Option<Value>,
    error: Option<ProtocolError>,
    method: Option<String>,
    #[serde(default)]
    params: Value,
    session_id: Option<String>,
}

#[derive(Deserialize)]
struct ProtocolError {
    message: String,
}

impl Devtools {
    /// Connect to the browser's DevTools `address` (`ws://...`); the task carries the
    /// connection and ends when it closes, which fails every command still waiting.
    pub async fn connect(address: &str) -> Result<(Devtools, JoinHandle<()>), tungstenite::Error> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let (socket, _) = async_tungstenite::tokio::connect_async_with_config(address, Some(config)).await?;
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut queue) = mpsc::unbounded_channel::<Message>();
        let shared = Arc::new(Shared {
            outgoing,
            next_id: AtomicU64::new(1),
            waiting: Mutex::default(),
            listeners: Mutex::default(),
        });
        let connection = shared.clone();
        let task = tokio::spawn(async move {
            let write = async {
                while let Some(message) = queue.recv().await {
                    if sink.send(message).await.is_err() {
                        return;
                    }
                }
            };
            let read = async {
                while let Some(Ok(message)) = stream.next().await {
                    if let Message::Text(text) = message {
                        connection.dispatch(&text);
                    }
                }
            };
            tokio::select! {
                () = write => {}
                () = read => {}
            }
            // Dropping the senders wakes every waiting command with `Closed`.
            lock(&connection.waiting).clear();
            lock(&connection.listeners).clear();
        });
        Ok((Devtools(shared), task))
    }

    /// Send `command` to the browser, or to the page `session`, and wait for its answer.
    pub async fn execute<C: Command>(
        &self,
        session: Option<&SessionId>,
        command: C,
    ) -> Result<C::Response, DevtoolsError> {
        let method = command.identifier();
        let params = match serde_json::to_value(&command) {
            Ok(params) => params,
            Err(error) => return Err(DevtoolsError::Unwritable { method, error }),
        };
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = Value::from(session.as_ref());
        }
        let (answer, answered) = oneshot::channel();
        lock(&self.0.waiting).insert(id, answer);
        if self.0.outgoing.send(Message::Text(message.to_string().into())).is_err() {
            lock(&self.0.waiting).remove(&id);
            return Err(DevtoolsError::Closed);
        }
        match answered.await {
            Err(_) => Err(DevtoolsError::Closed),
            Ok(Err(message)) => Err(DevtoolsError::Refused { method, message }),
            Ok(Ok(result)) => {
                C::response_from_value(result).map_err(|error| DevtoolsError::Unreadable { method, error })
            }
        }
    }

    /// The events `E` of the page `session`, from now until the session ends.
    pub fn listen<E: MethodType + DeserializeOwned + Send + 'static>(
        &self,
        session: &SessionId,
    ) -> mpsc::UnboundedReceiver<E> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let listener: Listener = Box::new(move |params| match serde_json::from_value::<E>(params) {
            Ok(event) => sender.send(event).is_ok(),
            Err(_) => !sender.is_closed(),
        });
        lock(&self.0.listeners).insert((session.as_ref().to_owned(), E::method_id()), listener);
        receiver
    }
}

impl Shared {
    /// Hand a message from Chromium to whoever waits for it.
    fn dispatch(&self, text: &str) {
        let Ok(incoming) = serde_json::from_str::<Incoming>(text) else { return };
        if let Some(id) = incoming.id {
            if let Some(waiter) = lock(&self.waiting).remove(&id) {
                let answer = match incoming.error {
                    Some(error) => Err(error.message),
                    None => Ok(incoming.result.unwrap_or(Value::Null)),
                };
                let _ = waiter.send(answer);
            }
            return;
        }
        let Some(method) = incoming.method else { return };
        match incoming.session_id {
            Some(session) => {
                let key = (session, MethodId::from(method));
                let mut listeners = lock(&self.listeners);
                if let Some(listener) = listeners.get(&key)
                    && !listener(incoming.params)
                {
                    listeners.remove(&key);
                }
            }
            // A page session ended (its page closed or crashed): nobody hears from it again.
            None if method == "Target.detachedFromTarget" => {
                if let Some(session) = incoming.params.get("sessionId").and_then(Value::as_str) {
                    lock(&self.listeners).retain(|(listened, _), _| listened != session);
                }
            }
            None => {}
        }
    }
}

/// A lock that a panic elsewhere left poisoned still guards valid maps.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One page's session on a connection.
#[derive(Clone)]
pub struct Session {
    devtools: Devtools,
    id: SessionId,
}

impl Session {
    pub fn new(devtools: Devtools, id: SessionId) -> Session {
        Session { devtools, id }
    }

    /// Send `command` to this page and wait for its answer.
    pub async fn execute<C: Command>(&self, command: C) -> Result<C::Response, DevtoolsError> {
        self.devtools.execute(Some(&self.id), command).await
    }
}
