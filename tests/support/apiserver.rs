//! A stand-in Kubernetes API server, in process, for end-to-end tests of folio's cluster
//! home without a cluster.
//!
//! It is an axum server on `127.0.0.1:0` (plain HTTP) that speaks the part of the
//! Kubernetes REST API that kube's `Client`, `Api<K>`, `watcher`, `reflector`,
//! `Controller`, `finalizer`, the events `Recorder` and `kube-lease-manager` use, so
//! that code under test runs unchanged against it. Storage is generic: any kind
//! addressed by path, keyed by (apiVersion, plural, namespace, name), so adding a kind
//! to folio needs no change here. What a kind is called and whether it has a `/status`
//! subresource comes from a small table of built-in kinds and from the stored
//! CustomResourceDefinitions (folio's own are preloaded, `Established=True`).
//!
//! What it emulates, because controllers depend on it:
//! - one global, monotonic `resourceVersion`; `uid`, `creationTimestamp`, `generation`
//!   (bumped when anything but metadata and status changes); writes that change nothing
//!   are not writes (no new version, no watch event), as on a real server, so a
//!   controller that re-writes the same status does not wake itself up forever;
//! - list with label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!`), field
//!   selectors on any dotted path, `limit`/`continue`; watch from a resourceVersion
//!   with `timeoutSeconds`, bookmarks, `sendInitialEvents` (streaming lists), objects
//!   moving in and out of a selector (ADDED/DELETED), `410 Gone` for a version older
//!   than the kept history, and `PartialObjectMetadata` answers for metadata watchers;
//! - create (`generateName`, 409 AlreadyExists), replace (409 Conflict on a stale
//!   `resourceVersion`; 422 for a custom resource replaced without one), merge,
//!   strategic-merge (as a merge), JSON patch (a failed `test` is 422 Invalid; a `test`
//!   for `null` passes on a missing path, as kube's finalizer helper expects),
//!   server-side apply as a merge of the applied object, creating it when missing and
//!   removing fields its manager applied before and applies no more;
//! - `/status`: writes there change only `.status`, writes to the main resource keep it;
//! - deletion: finalizers hold an object with `deletionTimestamp` until they are gone;
//!   owner references are garbage-collected in the background (dependents whose owners
//!   are all gone are deleted), `propagationPolicy: Orphan` releases them instead;
//! - server-side apply conflicts in a reduced form: a field last applied by another
//!   field manager with a different value makes an apply without `force` fail with 409
//!   (kube-lease-manager relies on this to keep two candidates from both locking);
//!   writes that are not applies take fields away from appliers but own nothing.
//!
//! What it does NOT emulate: authentication, authorization and RBAC, admission
//! (webhooks, defaulting, quotas, namespaces that must exist), validation against the
//! OpenAPI schema or any kind's rules, immutable fields, field ownership of updates and
//! `managedFields`, list-map merging (`x-kubernetes-list-type: map`, strategic merge
//! keys: lists are replaced whole), `dryRun`, any scheduler or kubelet (a new pod stays
//! `Pending` until a test moves it on with `put_object`; a pod without finalizers is
//! deleted at once, without a grace period), foreground deletion, namespace termination,
//! discovery (`/api`, `/apis`), protobuf, compression, and a consistent snapshot across
//! the pages of a list.
//!
//! Test hooks on [`StandInApiServer`]: read and write objects directly (as another
//! client would), the log of requests, and fault injection (`fail_next`) to simulate a
//! crash between two writes. Note that kube's client retries 429, 503 and 504 itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

/// How many changes the watch history keeps; older resourceVersions answer 410 Gone.
const HISTORY_LIMIT: usize = 100_000;
/// The real server's request body limit.
const BODY_LIMIT: usize = 3 * 1024 * 1024;
/// Watch duration when the client names none (the real server picks 30–60 minutes).
const DEFAULT_WATCH_SECONDS: u64 = 1800;

/// A running stand-in API server. Dropping it stops the server and ends open watches.
pub struct StandInApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    store: Mutex<Store>,
    /// The latest resourceVersion, so that watches wake up on every change.
    changes: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StandInApiServer {
    /// Start on an ephemeral port with folio's CRDs and the `default` namespace loaded.
    pub async fn start() -> StandInApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the stand-in API server");
        let addr = listener.local_addr().expect("stand-in API server address");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changes: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
        });
        {
            let mut store = shared.lock();
            for crd in folio::resources::crds() {
                let mut crd = serde_json::to_value(crd).expect("CRD as JSON");
                let names = crd["spec"]["names"].clone();
                crd["status"] = json!({
                    "acceptedNames": names,
                    "storedVersions": ["v1alpha1"],
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now()},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now()},
                    ],
                });
                store.put_direct(&coll("apiextensions.k8s.io/v1", "customresourcedefinitions"), crd).expect("load CRD");
            }
            for ns in ["default", "kube-system"] {
                let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "status": {"phase": "Active"}});
                store.put_direct(&coll("v1", "namespaces"), namespace).expect("load namespace");
            }
            shared.changes.send_replace(store.revision);
        }
        let app = Router::new().fallback(handle).layer(DefaultBodyLimit::max(BODY_LIMIT)).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandInApiServer { addr, shared, server }
    }

    /// Base URL, e.g. `http://127.0.0.1:34567`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server, default namespace `default`.
    pub fn client(&self) -> kube::Client {
        let uri: http::Uri = self.url().parse().expect("stand-in URL");
        kube::Client::try_from(kube::Config::new(uri)).expect("kube client for the stand-in")
    }

    /// One object as stored; `ns` is `""` for cluster-scoped kinds.
    pub fn get(&self, api_version: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.shared.lock().object(&coll(api_version, plural), ns, name).cloned()
    }

    /// Every object of a kind, across namespaces, ordered by namespace and name.
    pub fn list(&self, api_version: &str, plural: &str) -> Vec<Value> {
        let store = self.shared.lock();
        store
            .objects
            .get(&coll(api_version, plural))
            .map(|objects| objects.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Create or replace an object exactly as given (status included), as another client
    /// such as the kubelet would, assigning versions and emitting watch events. Returns
    /// the stored object (or the removed one, when a deleting object lost its last finalizer).
    pub fn put_object(&self, api_version: &str, plural: &str, value: Value) -> Value {
        let mut store = self.shared.lock();
        let stored = store.put_direct(&coll(api_version, plural), value).expect("put_object");
        self.shared.changes.send_replace(store.revision);
        stored
    }

    /// Delete an object as a client would (finalizers and garbage collection apply).
    pub fn delete(&self, api_version: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let mut store = self.shared.lock();
        let deleted = store.delete(&coll(api_version, plural), ns, name, &Value::Null).ok();
        self.shared.changes.send_replace(store.revision);
        deleted
    }

    /// Every request so far, as `"METHOD path?query"`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    /// Make the next request with this method whose `path?query` contains
    /// `path_substring` fail with `status_code` (a `Status` body), without effect.
    pub fn fail_next(&self, method: &str, path_substring: &str, status_code: u16) {
        self.shared.lock().faults.push(Fault {
            method: method.to_ascii_uppercase(),
            path_substring: path_substring.to_string(),
            status_code,
        });
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().revision
    }
}

impl Drop for StandInApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.server.abort();
    }
}

struct Fault {
    method: String,
    path_substring: String,
    status_code: u16,
}

/// (apiVersion, plural): one kind's objects.
type Collection = (String, String);

fn coll(api_version: &str, plural: &str) -> Collection {
    (api_version.to_string(), plural.to_string())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

struct Change {
    revision: u64,
    collection: Collection,
    namespace: String,
    change_type: ChangeType,
    object: Value,
    previous: Option<Value>,
}

/// A field path in an object, e.g. `["spec", "holderIdentity"]`.
type FieldPath = Vec<String>;

#[derive(Default)]
struct Store {
    revision: u64,
    objects: BTreeMap<Collection, BTreeMap<(String, String), Value>>,
    history: VecDeque<Change>,
    /// Changes at or below this version have been dropped from the history.
    history_floor: u64,
    /// Fields set by server-side apply, per object and field manager.
    appliers: HashMap<(Collection, String, String), BTreeMap<String, BTreeSet<FieldPath>>>,
    requests: Vec<String>,
    faults: Vec<Fault>,
}

/// What the server knows about a kind.
struct KindInfo {
    kind: String,
    status_subresource: bool,
    /// Custom resources: generation always tracked, unconditional updates refused.
    custom: bool,
}

#[derive(Debug)]
struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into() }
    }
    fn not_found(collection: &Collection, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", group_resource(collection)))
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }
    fn conflict(collection: &Collection, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                group_resource(collection)
            ),
        )
    }
}

fn group_resource(collection: &Collection) -> String {
    match collection.0.split_once('/') {
        Some((group, _)) => format!("{}.{group}", collection.1),
        None => collection.1.clone(),
    }
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

fn error_response(error: &ApiError) -> Response {
    json_response(error.code, &status_body(error.code, error.reason, &error.message))
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The resource a request addresses.
struct Target {
    collection: Collection,
    /// `None`: cluster-scoped, or a list across namespaces.
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

impl Target {
    fn storage_namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, plural, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => {
            (Some(ns.to_string()), *plural, tail)
        }
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return None,
    };
    let (name, status) = match tail {
        [] => (None, false),
        [name] => (Some(name.to_string()), false),
        [name, "status"] => (Some(name.to_string()), true),
        _ => return None,
    };
    let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(Target { collection: (api_version, plural.to_string()), namespace, name, status })
}

fn parse_query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path_and_query = uri.path_and_query().map(|pq| pq.as_str().to_string()).unwrap_or_default();
    {
        let mut store = shared.lock();
        store.requests.push(format!("{method} {path_and_query}"));
        let fault =
            store.faults.iter().position(|f| f.method == method.as_str() && path_and_query.contains(&f.path_substring));
        if let Some(index) = fault {
            let fault = store.faults.remove(index);
            let reason = reason_for(fault.status_code);
            return json_response(
                fault.status_code,
                &status_body(fault.status_code, reason, "injected failure from the stand-in API server"),
            );
        }
    }
    if uri.path() == "/version" {
        return json_response(
            200,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-standin", "gitCommit": "0000000",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                "compiler": "gc", "platform": "linux/amd64",
            }),
        );
    }
    let Some(target) = parse_path(uri.path()) else {
        return error_response(&ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({})", uri.path()),
        ));
    };
    let query = parse_query(&uri);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let metadata_only = accept.contains("as=PartialObjectMetadata");
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();

    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    if method == Method::GET && target.name.is_none() && watch {
        return match start_watch(shared, &target, &query, metadata_only) {
            Ok(response) => response,
            Err(error) => error_response(&error),
        };
    }

    let result = {
        let mut store = shared.lock();
        let result = match (&method, target.name.as_deref()) {
            (&Method::GET, Some(name)) => store
                .object(&target.collection, target.storage_namespace(), name)
                .cloned()
                .map(|object| (200, if metadata_only { partial_metadata(&object) } else { object }))
                .ok_or_else(|| ApiError::not_found(&target.collection, name)),
            (&Method::GET, None) => store.list(&target, &query, metadata_only).map(|list| (200, list)),
            (&Method::POST, None) => store.create(&target, &body).map(|object| (201, object)),
            (&Method::PUT, Some(name)) => store.replace(&target, name, &body).map(|object| (200, object)),
            (&Method::PATCH, Some(name)) => store.patch(&target, name, &content_type, &query, &body),
            (&Method::DELETE, Some(name)) => {
                let options = parse_body_or_null(&body);
                store.delete(&target.collection, target.storage_namespace(), name, &options).map(|object| (200, object))
            }
            (&Method::DELETE, None) => store.delete_collection(&target, &query, &body).map(|list| (200, list)),
            _ => Err(ApiError::new(405, "MethodNotAllowed", format!("{method} is not supported on {}", uri.path()))),
        };
        shared.changes.send_replace(store.revision);
        result
    };
    match result {
        Ok((code, value)) => json_response(code, &value),
        Err(error) => error_response(&error),
    }
}

fn parse_body_or_null(body: &Bytes) -> Value {
    if body.is_empty() { Value::Null } else { serde_json::from_slice(body).unwrap_or(Value::Null) }
}

fn parse_object(body: &Bytes) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body of the request is not an object"));
    }
    Ok(value)
}

fn partial_metadata(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object["metadata"].clone()})
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str)
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata") {
        Some(Value::Object(map)) => map,
        _ => unreachable!("metadata was just made an object"),
    }
}

fn finalizers(object: &Value) -> usize {
    object["metadata"]["finalizers"].as_array().map_or(0, Vec::len)
}

/// Drop what Go's `omitempty` drops, so that `null`/empty fields look as a real server's do.
fn normalize_metadata(object: &mut Value) {
    let metadata = metadata_mut(object);
    for field in ["finalizers", "labels", "annotations", "ownerReferences", "managedFields", "generateName"] {
        let empty = match metadata.get(field) {
            Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if empty {
            metadata.remove(field);
        }
    }
}

/// The object without its version, for "did anything change" comparisons.
fn without_version(object: &Value) -> Value {
    let mut object = object.clone();
    metadata_mut(&mut object).remove("resourceVersion");
    object
}

/// The parts of an object whose change bumps `metadata.generation`.
fn generation_relevant(object: &Value, status_subresource: bool) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        if status_subresource {
            map.remove("status");
        }
    }
    object
}

fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |value, key| value.get(key))
}

fn remove_at(object: &mut Value, path: &[String]) {
    if let Some((last, parents)) = path.split_last() {
        let parent = parents.iter().try_fold(object, |value, key| value.get_mut(key));
        if let Some(Value::Object(map)) = parent {
            map.remove(last);
        }
    }
}

fn leaf_paths(value: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                prefix.push(key.clone());
                leaf_paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The fields an apply sets and takes ownership of.
fn applied_fields(applied: &Value, status: bool, status_subresource: bool) -> BTreeSet<FieldPath> {
    let mut paths = BTreeSet::new();
    leaf_paths(applied, &mut Vec::new(), &mut paths);
    let identity = [
        &["apiVersion"][..],
        &["kind"],
        &["metadata", "name"],
        &["metadata", "namespace"],
        &["metadata", "resourceVersion"],
        &["metadata", "uid"],
        &["metadata", "creationTimestamp"],
        &["metadata", "generation"],
        &["metadata", "managedFields"],
    ];
    paths.retain(|path| {
        let is_status = path.first().is_some_and(|p| p == "status");
        let kept = if status { is_status } else { !(status_subresource && is_status) };
        kept && !identity.iter().any(|id| path.iter().map(String::as_str).eq(id.iter().copied()))
    });
    paths
}

impl Store {
    fn kind_info(&self, collection: &Collection) -> KindInfo {
        let (api_version, plural) = (collection.0.as_str(), collection.1.as_str());
        let builtin = match (api_version, plural) {
            ("v1", "pods") => Some(("Pod", true)),
            ("v1", "namespaces") => Some(("Namespace", true)),
            ("v1", "services") => Some(("Service", true)),
            ("v1", "configmaps") => Some(("ConfigMap", false)),
            ("v1", "secrets") => Some(("Secret", false)),
            ("v1", "serviceaccounts") => Some(("ServiceAccount", false)),
            ("v1", "events") | ("events.k8s.io/v1", "events") => Some(("Event", false)),
            ("coordination.k8s.io/v1", "leases") => Some(("Lease", false)),
            ("apiextensions.k8s.io/v1", "customresourcedefinitions") => Some(("CustomResourceDefinition", true)),
            ("apps/v1", "deployments") => Some(("Deployment", true)),
            ("batch/v1", "jobs") => Some(("Job", true)),
            _ => None,
        };
        if let Some((kind, status_subresource)) = builtin {
            return KindInfo { kind: kind.to_string(), status_subresource, custom: false };
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let crds = self.objects.get(&coll("apiextensions.k8s.io/v1", "customresourcedefinitions"));
        let crd = crds.and_then(|crds| {
            crds.values().find(|crd| crd["spec"]["group"] == group && crd["spec"]["names"]["plural"] == plural)
        });
        if let Some(crd) = crd {
            let status_subresource = crd["spec"]["versions"].as_array().is_some_and(|versions| {
                versions.iter().any(|v| v["name"] == version && v["subresources"].get("status").is_some())
            });
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or(plural).to_string();
            return KindInfo { kind, status_subresource, custom: true };
        }
        let singular = plural.strip_suffix('s').unwrap_or(plural);
        let mut chars = singular.chars();
        let kind = chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default();
        KindInfo { kind, status_subresource: false, custom: false }
    }

    fn object(&self, collection: &Collection, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(collection)?.get(&(namespace.to_string(), name.to_string()))
    }

    fn record(
        &mut self,
        collection: &Collection,
        namespace: &str,
        change_type: ChangeType,
        object: Value,
        previous: Option<Value>,
    ) {
        self.history.push_back(Change {
            revision: self.revision,
            collection: collection.clone(),
            namespace: namespace.to_string(),
            change_type,
            object,
            previous,
        });
        if self.history.len() > HISTORY_LIMIT {
            let dropped = self.history.len() - HISTORY_LIMIT / 2;
            for change in self.history.drain(..dropped) {
                self.history_floor = change.revision;
            }
        }
    }

    /// Store `new` in place of `old` (or as a new object): versions, generation, watch
    /// events, and removal when a deleting object has no finalizers left. A write that
    /// changes nothing returns the stored object untouched.
    fn commit(
        &mut self,
        collection: &Collection,
        namespace: &str,
        name: &str,
        old: Option<Value>,
        mut new: Value,
    ) -> Value {
        let info = self.kind_info(collection);
        normalize_metadata(&mut new);
        {
            let metadata = metadata_mut(&mut new);
            metadata.insert("name".into(), json!(name));
            if namespace.is_empty() {
                metadata.remove("namespace");
            } else {
                metadata.insert("namespace".into(), json!(namespace));
            }
        }
        if new.get("apiVersion").is_none() {
            new["apiVersion"] = json!(collection.0);
        }
        if new.get("kind").is_none() {
            new["kind"] = json!(info.kind);
        }
        let tracks_generation = info.custom || info.status_subresource;
        match &old {
            Some(old) => {
                let metadata = metadata_mut(&mut new);
                for field in
                    ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"]
                {
                    match old["metadata"].get(field) {
                        Some(value) => metadata.insert(field.into(), value.clone()),
                        None if field == "deletionTimestamp" || field == "deletionGracePeriodSeconds" => {
                            // Only deletion sets these; keep what the caller staged for it.
                            continue;
                        }
                        None => metadata.remove(field),
                    };
                }
                if without_version(old) == without_version(&new) {
                    return old.clone();
                }
                if tracks_generation
                    && generation_relevant(old, info.status_subresource)
                        != generation_relevant(&new, info.status_subresource)
                {
                    let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                    metadata_mut(&mut new).insert("generation".into(), json!(generation));
                }
            }
            None => {
                let metadata = metadata_mut(&mut new);
                metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
                metadata.insert("creationTimestamp".into(), json!(now()));
                if tracks_generation {
                    metadata.insert("generation".into(), json!(1));
                } else {
                    metadata.remove("generation");
                }
            }
        }
        self.revision += 1;
        metadata_mut(&mut new).insert("resourceVersion".into(), json!(self.revision.to_string()));
        let key = (namespace.to_string(), name.to_string());
        if meta_str(&new, "deletionTimestamp").is_some() && finalizers(&new) == 0 {
            self.objects.entry(collection.clone()).or_default().remove(&key);
            self.appliers.remove(&(collection.clone(), namespace.to_string(), name.to_string()));
            self.record(collection, namespace, ChangeType::Deleted, new.clone(), old);
            self.collect_garbage();
            return new;
        }
        self.objects.entry(collection.clone()).or_default().insert(key, new.clone());
        let change_type = if old.is_some() { ChangeType::Modified } else { ChangeType::Added };
        self.record(collection, namespace, change_type, new.clone(), old);
        new
    }

    /// A write that is not an apply takes the fields it changes away from appliers.
    fn release_changed_fields(
        &mut self,
        collection: &Collection,
        namespace: &str,
        name: &str,
        old: &Value,
        new: &Value,
    ) {
        if let Some(managers) = self.appliers.get_mut(&(collection.clone(), namespace.to_string(), name.to_string())) {
            for paths in managers.values_mut() {
                paths.retain(|path| value_at(old, path) == value_at(new, path));
            }
        }
    }

    /// Create or replace exactly as given (the `put_object` test hook).
    fn put_direct(&mut self, collection: &Collection, value: Value) -> Result<Value, ApiError> {
        let name = meta_str(&value, "name").ok_or_else(|| ApiError::invalid("metadata.name is required"))?.to_string();
        let namespace = meta_str(&value, "namespace").unwrap_or("").to_string();
        let old = self.object(collection, &namespace, &name).cloned();
        let stored = self.commit(collection, &namespace, &name, old.clone(), value);
        if let Some(old) = &old {
            self.release_changed_fields(collection, &namespace, &name, old, &stored);
        }
        Ok(stored)
    }

    fn list(&self, target: &Target, query: &HashMap<String, String>, metadata_only: bool) -> Result<Value, ApiError> {
        let selection = Selection::parse(query)?;
        let info = self.kind_info(&target.collection);
        let mut items: Vec<Value> = self
            .objects
            .get(&target.collection)
            .into_iter()
            .flat_map(|objects| objects.iter())
            .filter(|((ns, _), object)| {
                target.namespace.as_ref().is_none_or(|want| want == ns) && selection.matches(object)
            })
            .map(|(_, object)| if metadata_only { partial_metadata(object) } else { object.clone() })
            .collect();
        let offset: usize = match query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => token.parse().map_err(|_| ApiError::bad_request("invalid continue token"))?,
            None => 0,
        };
        items = items.split_off(offset.min(items.len()));
        let mut metadata = json!({"resourceVersion": self.revision.to_string()});
        if let Some(limit) = query.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0)
            && items.len() > limit
        {
            let remaining = items.len() - limit;
            items.truncate(limit);
            metadata["continue"] = json!((offset + limit).to_string());
            metadata["remainingItemCount"] = json!(remaining);
        }
        let (api_version, kind) = if metadata_only {
            ("meta.k8s.io/v1".to_string(), "PartialObjectMetadataList".to_string())
        } else {
            (target.collection.0.clone(), format!("{}List", info.kind))
        };
        Ok(json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items}))
    }

    fn create(&mut self, target: &Target, body: &Bytes) -> Result<Value, ApiError> {
        if target.status {
            return Err(ApiError::new(405, "MethodNotAllowed", "create is not supported on the status subresource"));
        }
        let mut object = parse_object(body)?;
        let namespace = target.storage_namespace().to_string();
        if let Some(body_ns) = meta_str(&object, "namespace")
            && !namespace.is_empty()
            && body_ns != namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let name = match (meta_str(&object, "name"), meta_str(&object, "generateName")) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(prefix)) if !prefix.is_empty() => {
                let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(5).collect();
                format!("{prefix}{suffix}")
            }
            _ => return Err(ApiError::invalid("metadata.name: Required value: name or generateName is required")),
        };
        if self.object(&target.collection, &namespace, &name).is_some() {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", group_resource(&target.collection)),
            ));
        }
        self.initial_status(&target.collection, &mut object);
        let metadata = metadata_mut(&mut object);
        for field in ["resourceVersion", "uid", "deletionTimestamp", "deletionGracePeriodSeconds"] {
            metadata.remove(field);
        }
        Ok(self.commit(&target.collection, &namespace, &name, None, object))
    }

    /// A new object's status: a client cannot set it through the main resource; a new
    /// pod is `Pending` (there is no scheduler or kubelet to move it on).
    fn initial_status(&self, collection: &Collection, object: &mut Value) {
        if let Some(map) = object.as_object_mut() {
            if self.kind_info(collection).status_subresource {
                map.remove("status");
            }
            if *collection == coll("v1", "pods") {
                map.insert("status".into(), json!({"phase": "Pending"}));
            }
        }
    }

    /// The object to store after a client's write of `candidate` over `old` through
    /// `target`: only deletion sets a deletion timestamp, the status subresource changes
    /// only status, and the main resource never does.
    fn confine_write(&self, target: &Target, old: &Value, mut candidate: Value) -> Value {
        for field in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
            match old["metadata"].get(field) {
                Some(value) => metadata_mut(&mut candidate).insert(field.into(), value.clone()),
                None => metadata_mut(&mut candidate).remove(field),
            };
        }
        if !self.kind_info(&target.collection).status_subresource {
            return candidate;
        }
        if target.status {
            let mut confined = old.clone();
            match candidate.get_mut("status").map(Value::take) {
                Some(status) if !status.is_null() => confined["status"] = status,
                _ => {
                    if let Some(map) = confined.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            confined
        } else {
            if let Some(map) = candidate.as_object_mut() {
                match old.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
            }
            candidate
        }
    }

    fn check_version(collection: &Collection, name: &str, old: &Value, candidate: &Value) -> Result<(), ApiError> {
        match meta_str(candidate, "resourceVersion") {
            Some(rv) if !rv.is_empty() && Some(rv) != meta_str(old, "resourceVersion") => {
                Err(ApiError::conflict(collection, name))
            }
            _ => Ok(()),
        }
    }

    fn replace(&mut self, target: &Target, name: &str, body: &Bytes) -> Result<Value, ApiError> {
        let object = parse_object(body)?;
        if meta_str(&object, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request("the name of the object does not match the name on the URL"));
        }
        let namespace = target.storage_namespace().to_string();
        let old = self
            .object(&target.collection, &namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&target.collection, name))?;
        if self.kind_info(&target.collection).custom && meta_str(&object, "resourceVersion").is_none_or(str::is_empty) {
            return Err(ApiError::invalid(
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            ));
        }
        Self::check_version(&target.collection, name, &old, &object)?;
        let candidate = self.confine_write(target, &old, object);
        let stored = self.commit(&target.collection, &namespace, name, Some(old.clone()), candidate);
        self.release_changed_fields(&target.collection, &namespace, name, &old, &stored);
        Ok(stored)
    }

    fn patch(
        &mut self,
        target: &Target,
        name: &str,
        content_type: &str,
        query: &HashMap<String, String>,
        body: &Bytes,
    ) -> Result<(u16, Value), ApiError> {
        let namespace = target.storage_namespace().to_string();
        let old = self.object(&target.collection, &namespace, name).cloned();
        if content_type == "application/apply-patch+yaml" {
            return self.apply(target, name, query, body, old);
        }
        let old = old.ok_or_else(|| ApiError::not_found(&target.collection, name))?;
        let mut candidate = old.clone();
        match content_type {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                let patch: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("the patch could not be decoded: {e}")))?;
                if !patch.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                json_patch::merge(&mut candidate, &patch);
            }
            "application/json-patch+json" => {
                let operations: Vec<json_patch::PatchOperation> = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("the JSON patch could not be decoded: {e}")))?;
                for operation in &operations {
                    // A real server's JSON patch tests `null` against a missing path as equal.
                    if let json_patch::PatchOperation::Test(test) = operation
                        && test.value.is_null()
                        && candidate.pointer(test.path.as_str()).is_none()
                    {
                        continue;
                    }
                    json_patch::patch(&mut candidate, std::slice::from_ref(operation))
                        .map_err(|e| ApiError::invalid(format!("the JSON patch could not be applied: {e}")))?;
                }
            }
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the media type {other:?} is not supported"),
                ));
            }
        }
        Self::check_version(&target.collection, name, &old, &candidate)?;
        let candidate = self.confine_write(target, &old, candidate);
        let stored = self.commit(&target.collection, &namespace, name, Some(old.clone()), candidate);
        self.release_changed_fields(&target.collection, &namespace, name, &old, &stored);
        Ok((200, stored))
    }

    fn apply(
        &mut self,
        target: &Target,
        name: &str,
        query: &HashMap<String, String>,
        body: &Bytes,
        old: Option<Value>,
    ) -> Result<(u16, Value), ApiError> {
        let manager = query.get("fieldManager").filter(|m| !m.is_empty()).ok_or_else(|| {
            ApiError::invalid(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            )
        })?;
        let force = query.get("force").is_some_and(|f| f == "true");
        let applied = parse_object(body)?;
        if applied.get("apiVersion").and_then(Value::as_str).is_none_or(str::is_empty)
            || applied.get("kind").and_then(Value::as_str).is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request("apiVersion and kind are required in an applied object"));
        }
        if meta_str(&applied, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request("the name of the object does not match the name on the URL"));
        }
        let namespace = target.storage_namespace().to_string();
        let info = self.kind_info(&target.collection);
        let fields = applied_fields(&applied, target.status, info.status_subresource);
        let object_key = (target.collection.clone(), namespace.clone(), name.to_string());

        let Some(old) = old else {
            if target.status {
                return Err(ApiError::not_found(&target.collection, name));
            }
            let mut object = applied;
            self.initial_status(&target.collection, &mut object);
            let stored = self.commit(&target.collection, &namespace, name, None, object);
            self.appliers.entry(object_key).or_default().insert(manager.clone(), fields);
            return Ok((201, stored));
        };

        let managers = self.appliers.get(&object_key).cloned().unwrap_or_default();
        let conflicts: Vec<String> = managers
            .iter()
            .filter(|(other, _)| *other != manager)
            .flat_map(|(other, paths)| {
                paths
                    .intersection(&fields)
                    .filter(|path| value_at(&old, path) != value_at(&applied, path))
                    .map(move |path| format!("conflict with \"{other}\": .{}", path.join(".")))
            })
            .collect();
        if !force && !conflicts.is_empty() {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Apply failed with {} conflict(s): {}", conflicts.len(), conflicts.join(", ")),
            ));
        }

        // Fields this manager applied before and applies no more are released, and
        // removed unless another manager applied them too.
        let in_part = |path: &FieldPath| path.first().is_some_and(|p| p == "status") == target.status;
        let related = |a: &FieldPath, b: &FieldPath| a.starts_with(b) || b.starts_with(a);
        let released: Vec<FieldPath> = managers
            .get(manager)
            .into_iter()
            .flatten()
            .filter(|path| in_part(path) && !fields.iter().any(|field| related(field, path)))
            .filter(|path| !managers.iter().any(|(other, paths)| other != manager && paths.contains(*path)))
            .cloned()
            .collect();
        let mut candidate = old.clone();
        json_patch::merge(&mut candidate, &applied);
        for path in &released {
            remove_at(&mut candidate, path);
        }
        Self::check_version(&target.collection, name, &old, &candidate)?;
        let candidate = self.confine_write(target, &old, candidate);
        let stored = self.commit(&target.collection, &namespace, name, Some(old), candidate);
        if self.object(&target.collection, &namespace, name).is_some() {
            let entry = self.appliers.entry(object_key).or_default();
            for (other, paths) in entry.iter_mut() {
                if other != manager {
                    paths.retain(|path| !fields.contains(path));
                }
            }
            let own = entry.entry(manager.clone()).or_default();
            // An apply owns what it applied; fields of the other part (status or not) stay.
            own.retain(|path| !in_part(path));
            own.extend(fields);
        }
        Ok((200, stored))
    }

    fn delete(
        &mut self,
        collection: &Collection,
        namespace: &str,
        name: &str,
        options: &Value,
    ) -> Result<Value, ApiError> {
        let old =
            self.object(collection, namespace, name).cloned().ok_or_else(|| ApiError::not_found(collection, name))?;
        let preconditions = &options["preconditions"];
        if let Some(rv) = preconditions["resourceVersion"].as_str()
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(collection, name));
        }
        if let Some(uid) = preconditions["uid"].as_str()
            && Some(uid) != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(collection, name));
        }
        if options["propagationPolicy"] == "Orphan"
            && let Some(uid) = meta_str(&old, "uid")
        {
            self.orphan_dependents(uid);
        }
        if finalizers(&old) > 0 {
            if meta_str(&old, "deletionTimestamp").is_some() {
                return Ok(old);
            }
            let mut deleting = old.clone();
            let metadata = metadata_mut(&mut deleting);
            metadata.insert("deletionTimestamp".into(), json!(now()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            return Ok(self.commit(collection, namespace, name, Some(old), deleting));
        }
        self.revision += 1;
        let mut deleted = old.clone();
        metadata_mut(&mut deleted).insert("resourceVersion".into(), json!(self.revision.to_string()));
        let key = (namespace.to_string(), name.to_string());
        self.objects.entry(collection.clone()).or_default().remove(&key);
        self.appliers.remove(&(collection.clone(), namespace.to_string(), name.to_string()));
        self.record(collection, namespace, ChangeType::Deleted, deleted.clone(), Some(old));
        self.collect_garbage();
        Ok(deleted)
    }

    fn delete_collection(
        &mut self,
        target: &Target,
        query: &HashMap<String, String>,
        body: &Bytes,
    ) -> Result<Value, ApiError> {
        let selection = Selection::parse(query)?;
        let options = parse_body_or_null(body);
        let doomed: Vec<(String, String)> = self
            .objects
            .get(&target.collection)
            .into_iter()
            .flat_map(|objects| objects.iter())
            .filter(|((ns, _), object)| {
                target.namespace.as_ref().is_none_or(|want| want == ns) && selection.matches(object)
            })
            .map(|(key, _)| key.clone())
            .collect();
        let mut items = Vec::new();
        for (namespace, name) in doomed {
            if let Ok(object) = self.delete(&target.collection, &namespace, &name, &options) {
                items.push(object);
            }
        }
        let kind = format!("{}List", self.kind_info(&target.collection).kind);
        Ok(
            json!({"apiVersion": target.collection.0, "kind": kind, "metadata": {"resourceVersion": self.revision.to_string()}, "items": items}),
        )
    }

    fn all_uids(&self) -> BTreeSet<String> {
        self.objects
            .values()
            .flat_map(|objects| objects.values())
            .filter_map(|o| meta_str(o, "uid"))
            .map(str::to_string)
            .collect()
    }

    /// Background garbage collection: delete dependents whose owners are all gone.
    fn collect_garbage(&mut self) {
        let uids = self.all_uids();
        let orphans: Vec<(Collection, String, String)> = self
            .objects
            .iter()
            .flat_map(|(collection, objects)| objects.iter().map(move |((ns, name), o)| (collection, ns, name, o)))
            .filter(|(_, _, _, object)| {
                meta_str(object, "deletionTimestamp").is_none()
                    && object["metadata"]["ownerReferences"].as_array().is_some_and(|owners| {
                        !owners.is_empty()
                            && owners.iter().all(|owner| owner["uid"].as_str().is_none_or(|uid| !uids.contains(uid)))
                    })
            })
            .map(|(collection, ns, name, _)| (collection.clone(), ns.clone(), name.clone()))
            .collect();
        for (collection, namespace, name) in orphans {
            // Each deletion collects further; a dependent may already be gone by now.
            let _ = self.delete(&collection, &namespace, &name, &Value::Null);
        }
    }

    /// `propagationPolicy: Orphan`: dependents lose their reference to the owner.
    fn orphan_dependents(&mut self, owner_uid: &str) {
        let dependents: Vec<(Collection, String, String, Value)> = self
            .objects
            .iter()
            .flat_map(|(collection, objects)| objects.iter().map(move |((ns, name), o)| (collection, ns, name, o)))
            .filter(|(_, _, _, object)| {
                object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|owners| owners.iter().any(|o| o["uid"] == owner_uid))
            })
            .map(|(collection, ns, name, object)| (collection.clone(), ns.clone(), name.clone(), object.clone()))
            .collect();
        for (collection, namespace, name, old) in dependents {
            let mut new = old.clone();
            if let Some(owners) = new["metadata"]["ownerReferences"].as_array_mut() {
                owners.retain(|o| o["uid"] != owner_uid);
            }
            self.commit(&collection, &namespace, &name, Some(old), new);
        }
    }

    /// Watch events after `revision` for one watch, as lines of JSON.
    fn watch_lines(&self, revision: u64, spec: &WatchSpec) -> Vec<Bytes> {
        let start = self.history.partition_point(|c| c.revision <= revision);
        self.history
            .range(start..)
            .filter(|c| c.collection == spec.collection && spec.namespace.as_ref().is_none_or(|ns| *ns == c.namespace))
            .filter_map(|change| {
                let now_matches = spec.selection.matches(&change.object);
                let before_matched = change.previous.as_ref().is_some_and(|p| spec.selection.matches(p));
                let event = match change.change_type {
                    ChangeType::Added if now_matches => ChangeType::Added,
                    ChangeType::Modified if now_matches && before_matched => ChangeType::Modified,
                    ChangeType::Modified if now_matches => ChangeType::Added,
                    ChangeType::Modified if before_matched => ChangeType::Deleted,
                    ChangeType::Deleted if now_matches || before_matched => ChangeType::Deleted,
                    _ => return None,
                };
                Some(spec.line(event.as_str(), &change.object))
            })
            .collect()
    }
}

/// Label and field selectors of a list or watch.
#[derive(Default)]
struct Selection {
    labels: Vec<LabelRequirement>,
    fields: Vec<(Vec<String>, bool, String)>,
}

enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
}

/// Split on commas outside parentheses (`a in (x,y),b`).
fn split_terms(selector: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    terms.push(current);
    terms.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

fn parse_set(text: &str) -> Result<BTreeSet<String>, ApiError> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| ApiError::bad_request(format!("unable to parse requirement: set {text:?}")))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

impl Selection {
    fn parse(query: &HashMap<String, String>) -> Result<Selection, ApiError> {
        let mut selection = Selection::default();
        for term in split_terms(query.get("labelSelector").map_or("", String::as_str)) {
            let requirement = if let Some(key) = term.strip_prefix('!') {
                LabelRequirement::NotExists(key.trim().to_string())
            } else if let Some((key, set)) = term.split_once(" notin ") {
                LabelRequirement::NotIn(key.trim().to_string(), parse_set(set)?)
            } else if let Some((key, set)) = term.split_once(" in ") {
                LabelRequirement::In(key.trim().to_string(), parse_set(set)?)
            } else if let Some((key, value)) = term.split_once("!=") {
                LabelRequirement::NotEquals(key.trim().to_string(), value.trim().to_string())
            } else if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
                LabelRequirement::Equals(key.trim().to_string(), value.trim().to_string())
            } else if term.contains(|c: char| c.is_whitespace() || c == '(' || c == ')') {
                return Err(ApiError::bad_request(format!("unable to parse requirement: {term:?}")));
            } else {
                LabelRequirement::Exists(term)
            };
            selection.labels.push(requirement);
        }
        for term in split_terms(query.get("fieldSelector").map_or("", String::as_str)) {
            let (path, equals, value) = if let Some((path, value)) = term.split_once("!=") {
                (path, false, value)
            } else if let Some((path, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (path, true, value)
            } else {
                return Err(ApiError::bad_request(format!("invalid field selector: {term:?}")));
            };
            let path = path.trim().split('.').map(str::to_string).collect();
            selection.fields.push((path, equals, value.trim().to_string()));
        }
        Ok(selection)
    }

    fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        let labels_match = self.labels.iter().all(|requirement| match requirement {
            LabelRequirement::Equals(k, v) => label(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            LabelRequirement::Exists(k) => label(k).is_some(),
            LabelRequirement::NotExists(k) => label(k).is_none(),
            LabelRequirement::In(k, set) => label(k).is_some_and(|v| set.contains(v)),
            LabelRequirement::NotIn(k, set) => label(k).is_none_or(|v| !set.contains(v)),
        });
        labels_match
            && self.fields.iter().all(|(path, equals, want)| {
                let actual = match value_at(object, path) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                (actual == *want) == *equals
            })
    }
}

/// What one watch request asked for.
struct WatchSpec {
    collection: Collection,
    kind: String,
    namespace: Option<String>,
    selection: Selection,
    metadata_only: bool,
}

impl WatchSpec {
    fn line(&self, event_type: &str, object: &Value) -> Bytes {
        let object = if self.metadata_only { partial_metadata(object) } else { object.clone() };
        let mut line = json!({"type": event_type, "object": object}).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    fn bookmark(&self, revision: u64, initial_events_end: bool) -> Bytes {
        let (api_version, kind) = if self.metadata_only {
            ("meta.k8s.io/v1".to_string(), "PartialObjectMetadata".to_string())
        } else {
            (self.collection.0.clone(), self.kind.clone())
        };
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let mut line =
            json!({"type": "BOOKMARK", "object": {"apiVersion": api_version, "kind": kind, "metadata": metadata}})
                .to_string();
        line.push('\n');
        Bytes::from(line)
    }
}

/// The state of one open watch stream.
struct WatchCursor {
    shared: Arc<Shared>,
    spec: WatchSpec,
    changes: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    revision: u64,
    pending: VecDeque<Bytes>,
    deadline: tokio::time::Instant,
    bookmarks: bool,
    done: bool,
}

fn start_watch(
    shared: Arc<Shared>,
    target: &Target,
    query: &HashMap<String, String>,
    metadata_only: bool,
) -> Result<Response, ApiError> {
    let selection = Selection::parse(query)?;
    let timeout = query.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(DEFAULT_WATCH_SECONDS);
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let send_initial_events = query.get("sendInitialEvents").is_some_and(|s| s == "true");
    let from = query.get("resourceVersion").filter(|rv| !rv.is_empty() && *rv != "0");
    let store = shared.lock();
    let spec = WatchSpec {
        collection: target.collection.clone(),
        kind: store.kind_info(&target.collection).kind,
        namespace: target.namespace.clone(),
        selection,
        metadata_only,
    };
    let mut pending = VecDeque::new();
    let mut done = false;
    let revision = match from {
        Some(rv) if !send_initial_events => {
            let rv: u64 = rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?;
            if rv < store.history_floor {
                let status =
                    status_body(410, "Expired", &format!("too old resource version: {rv} ({})", store.history_floor));
                let mut line = json!({"type": "ERROR", "object": status}).to_string();
                line.push('\n');
                pending.push_back(Bytes::from(line));
                done = true;
            }
            rv
        }
        _ => {
            for ((ns, _), object) in store.objects.get(&target.collection).into_iter().flatten() {
                if spec.namespace.as_ref().is_none_or(|want| want == ns) && spec.selection.matches(object) {
                    pending.push_back(spec.line("ADDED", object));
                }
            }
            if send_initial_events {
                pending.push_back(spec.bookmark(store.revision, true));
            }
            store.revision
        }
    };
    drop(store);
    let cursor = WatchCursor {
        changes: shared.changes.subscribe(),
        shutdown: shared.shutdown.subscribe(),
        shared,
        spec,
        revision,
        pending,
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
        bookmarks,
        done,
    };
    let stream = futures::stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(line) = cursor.pending.pop_front() {
                return Some((Ok::<Bytes, Infallible>(line), cursor));
            }
            if cursor.done {
                return None;
            }
            cursor.changes.borrow_and_update();
            {
                let store = cursor.shared.lock();
                let lines = store.watch_lines(cursor.revision, &cursor.spec);
                cursor.revision = cursor.revision.max(store.revision);
                cursor.pending.extend(lines);
            }
            if !cursor.pending.is_empty() {
                continue;
            }
            tokio::select! {
                changed = cursor.changes.changed() => {
                    if changed.is_err() {
                        cursor.done = true;
                    }
                }
                () = tokio::time::sleep_until(cursor.deadline) => {
                    if cursor.bookmarks {
                        let line = cursor.spec.bookmark(cursor.revision, false);
                        cursor.pending.push_back(line);
                    }
                    cursor.done = true;
                }
                _ = cursor.shutdown.wait_for(|stop| *stop) => {
                    cursor.done = true;
                }
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Ok(response)
}
