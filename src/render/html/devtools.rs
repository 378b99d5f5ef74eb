//! The DevTools connection to one browser: commands with their answers, and the
//! events of each page session. The protocol's types come from `chromiumoxide_cdp`,
//! generated from Chromium's own protocol definition; the connection is folio's, so
//! that a page turns on only the domains a render uses (Page, Fetch, Inspector). A
//! general client turns on Runtime, Network, Log, Performance and target
//! auto-attach for every page it sees, and in a fresh context per render that costs
//! the browser CPU time on every render.
//!
//! Nothing waits forever on a browser that went away: when the connection ends (the
//! browser exited, or folio dropped it), every command still waiting fails and every
//! event stream ends; when a page's session ends (its page closed, or its renderer
//! crashed), so do that session's.

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

/// Largest message Chromium may send: a PDF or PNG as large as folio keeps by
/// default, in base64, with room to spare.
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// The events after which a page's session says nothing more.
const SESSION_ENDED: &str = "Target.detachedFromTarget";
const PAGE_CRASHED: &str = "Inspector.targetCrashed";

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

/// A command waiting for its answer, and the page session it went to.
struct Waiting {
    session: Option<String>,
    answer: oneshot::Sender<Result<Value, String>>,
}

struct Shared {
    outgoing: mpsc::UnboundedSender<Message>,
    next_id: AtomicU64,
    /// What waits and listens, by id and by (session, event); `None` once the
    /// connection has ended.
    open: Mutex<Option<Open>>,
}

#[derive(Default)]
struct Open {
    waiting: HashMap<u64, Waiting>,
    listeners: HashMap<(String, MethodId), Listener>,
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

/// Ends the connection's waiters when the task that carries it stops, however it
/// stops (the browser closed the connection, or the task was aborted).
struct EndOnDrop(Arc<Shared>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        // Dropping the senders wakes every waiting command with `Closed` and ends
        // every event stream.
        lock(&self.0.open).take();
    }
}

impl Devtools {
    /// Connect to the browser's DevTools `address` (`ws://...`); the task carries the
    /// connection, and its end, or its abort, fails every command still waiting.
    pub async fn connect(address: &str) -> Result<(Devtools, JoinHandle<()>), tungstenite::Error> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let (socket, _) = async_tungstenite::tokio::connect_async_with_config(address, Some(config)).await?;
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut queue) = mpsc::unbounded_channel::<Message>();
        let shared = Arc::new(Shared { outgoing, next_id: AtomicU64::new(1), open: Mutex::new(Some(Open::default())) });
        let connection = EndOnDrop(shared.clone());
        let task = tokio::spawn(async move {
            let write = async {
                while let Some(message) = queue.recv().await {
                    if futures::SinkExt::send(&mut sink, message).await.is_err() {
                        return;
                    }
                }
            };
            let read = async {
                while let Some(Ok(message)) = stream.next().await {
                    if let Message::Text(text) = message {
                        connection.0.dispatch(&text);
                    }
                }
            };
            tokio::select! {
                () = write => {}
                () = read => {}
            }
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
        {
            let mut open = lock(&self.0.open);
            let Some(open) = open.as_mut() else { return Err(DevtoolsError::Closed) };
            let session = session.map(|session| session.as_ref().to_owned());
            open.waiting.insert(id, Waiting { session, answer });
        }
        // Sent after the entry is in place, so that no answer can come before it.
        if self.0.outgoing.send(Message::Text(message.to_string().into())).is_err() {
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

    /// The events `E` of the page `session`, from now until the session ends (the
    /// stream then ends too).
    pub fn listen<E: MethodType + DeserializeOwned + Send + 'static>(
        &self,
        session: &SessionId,
    ) -> mpsc::UnboundedReceiver<E> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let listener: Listener = Box::new(move |params| match serde_json::from_value::<E>(params) {
            Ok(event) => sender.send(event).is_ok(),
            Err(err) => {
                tracing::warn!(event = %E::method_id(), "an unreadable DevTools event was dropped: {err}");
                !sender.is_closed()
            }
        });
        if let Some(open) = lock(&self.0.open).as_mut() {
            open.listeners.insert((session.as_ref().to_owned(), E::method_id()), listener);
        }
        receiver
    }
}

impl Shared {
    /// Hand a message from Chromium to whoever waits for it.
    fn dispatch(&self, text: &str) {
        let Ok(incoming) = serde_json::from_str::<Incoming>(text) else { return };
        let mut open = lock(&self.open);
        let Some(open) = open.as_mut() else { return };
        if let Some(id) = incoming.id {
            if let Some(waiting) = open.waiting.remove(&id) {
                let answer = match incoming.error {
                    Some(error) => Err(error.message),
                    None => Ok(incoming.result.unwrap_or(Value::Null)),
                };
                let _ = waiting.answer.send(answer);
            }
            return;
        }
        let Some(method) = incoming.method else { return };
        let ended = match (&incoming.session_id, method.as_str()) {
            (Some(session), PAGE_CRASHED) => Some((session.clone(), "the page's renderer crashed")),
            (None, SESSION_ENDED) => incoming
                .params
                .get("sessionId")
                .and_then(Value::as_str)
                .map(|session| (session.to_owned(), "the page was closed")),
            _ => None,
        };
        if let Some((session, why)) = ended {
            open.end_session(&session, why);
            return;
        }
        if let Some(session) = incoming.session_id {
            let key = (session, MethodId::from(method));
            if let Some(listener) = open.listeners.get(&key)
                && !listener(incoming.params)
            {
                open.listeners.remove(&key);
            }
        }
    }
}

impl Open {
    /// The page `session` says nothing more: its commands fail with `why` and its
    /// event streams end.
    fn end_session(&mut self, session: &str, why: &str) {
        self.listeners.retain(|(listened, _), _| listened != session);
        let ended: Vec<u64> =
            self.waiting.iter().filter(|(_, w)| w.session.as_deref() == Some(session)).map(|(id, _)| *id).collect();
        for id in ended {
            if let Some(waiting) = self.waiting.remove(&id) {
                let _ = waiting.answer.send(Err(why.to_owned()));
            }
        }
    }
}

/// A lock that a panic elsewhere left poisoned still guards a valid value.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chromiumoxide_cdp::cdp::browser_protocol::page::{EventLoadEventFired, GetLayoutMetricsParams};

    /// A connection with nothing behind it: what it sends goes to `sent`.
    fn unconnected() -> (Devtools, mpsc::UnboundedReceiver<Message>) {
        let (outgoing, sent) = mpsc::unbounded_channel();
        let shared = Shared { outgoing, next_id: AtomicU64::new(1), open: Mutex::new(Some(Open::default())) };
        (Devtools(Arc::new(shared)), sent)
    }

    fn session(id: &str) -> SessionId {
        SessionId::from(id.to_owned())
    }

    #[tokio::test]
    async fn answers_reach_their_command_and_events_their_session() {
        let (devtools, mut sent) = unconnected();
        let mut loads = devtools.listen::<EventLoadEventFired>(&session("s1"));
        let page = Session::new(devtools.clone(), session("s1"));
        let command = tokio::spawn(async move { page.execute(GetLayoutMetricsParams::default()).await });
        let Some(Message::Text(text)) = sent.recv().await else { panic!("nothing sent") };
        let request: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (request["method"].as_str(), request["sessionId"].as_str()),
            (Some("Page.getLayoutMetrics"), Some("s1"))
        );
        devtools.0.dispatch(r#"{"method": "Page.loadEventFired", "sessionId": "s2", "params": {"timestamp": 1}}"#);
        devtools.0.dispatch(r#"{"method": "Page.loadEventFired", "sessionId": "s1", "params": {"timestamp": 2}}"#);
        assert_eq!(loads.try_recv().unwrap().timestamp.inner(), &2.0, "only the listened session's event");
        let id = request["id"].as_u64().unwrap();
        devtools.0.dispatch(&format!(r#"{{"id": {id}, "error": {{"code": -32000, "message": "no layout"}}}}"#));
        let answer = command.await.unwrap().unwrap_err();
        assert_eq!(answer.to_string(), "Page.getLayoutMetrics: no layout");
    }

    #[tokio::test]
    async fn a_crashed_page_fails_its_commands_and_ends_its_events_and_others_go_on() {
        let (devtools, _sent) = unconnected();
        let mut loads = devtools.listen::<EventLoadEventFired>(&session("s1"));
        let mut other = devtools.listen::<EventLoadEventFired>(&session("s2"));
        let page = Session::new(devtools.clone(), session("s1"));
        let command = tokio::spawn(async move { page.execute(GetLayoutMetricsParams::default()).await });
        tokio::task::yield_now().await;
        while lock(&devtools.0.open).as_ref().unwrap().waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        devtools.0.dispatch(r#"{"method": "Inspector.targetCrashed", "sessionId": "s1", "params": {}}"#);
        assert!(command.await.unwrap().unwrap_err().to_string().contains("crashed"));
        assert!(loads.recv().await.is_none(), "the crashed page's events end");
        devtools.0.dispatch(r#"{"method": "Page.loadEventFired", "sessionId": "s2", "params": {"timestamp": 3}}"#);
        assert!(other.try_recv().is_ok(), "another page goes on");
        devtools.0.dispatch(r#"{"method": "Target.detachedFromTarget", "params": {"sessionId": "s2"}}"#);
        assert!(other.recv().await.is_none(), "a closed page's events end");
    }

    #[tokio::test]
    async fn an_ended_connection_fails_what_waits_and_what_comes_after() {
        let (devtools, _sent) = unconnected();
        let mut loads = devtools.listen::<EventLoadEventFired>(&session("s1"));
        let page = Session::new(devtools.clone(), session("s1"));
        let waiting = tokio::spawn({
            let page = page.clone();
            async move { page.execute(GetLayoutMetricsParams::default()).await }
        });
        while lock(&devtools.0.open).as_ref().unwrap().waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        drop(EndOnDrop(devtools.0.clone()));
        assert!(matches!(waiting.await.unwrap(), Err(DevtoolsError::Closed)));
        assert!(loads.recv().await.is_none());
        assert!(matches!(page.execute(GetLayoutMetricsParams::default()).await, Err(DevtoolsError::Closed)));
    }
}
