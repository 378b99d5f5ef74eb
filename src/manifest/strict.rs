//! Strict reading, as `kubectl apply` with strict field validation: a field that the
//! kind's schema does not know is an error, at every level, and so is a name the API
//! server would refuse.
//!
//! The schemas are the ones the cluster checks against: the CRD that `folio crd`
//! generates for folio's kinds (with `metadata` as Kubernetes' `ObjectMeta`), and
//! k8s-openapi's schemas of ConfigMap, Secret and Namespace. An object with
//! `properties` takes only those fields, unless it says
//! `x-kubernetes-preserve-unknown-fields` (free-form job data, template defaults);
//! `additionalProperties` is a map with any keys.
//!
//! The document is walked with serde_yaml's own deserializer, so an error raised at a
//! key carries that key's line and column.

use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResourceExt;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::resources::names::{DNS_LABEL_RULE, OBJECT_NAME_RULE, is_dns_label, is_object_name};
use crate::resources::{RenderAccount, RenderJob, RenderTemplate};

/// What is wrong in a document, and where (1-based, in the document's text).
#[derive(Debug)]
pub(super) struct Refusal {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Check `text`, one document of `kind` (whose name, when it has one, is `name`),
/// against its kind's schema. Kinds without a schema here pass.
pub(super) fn check(text: &str, kind: &str, name: Option<&str>) -> Result<(), Refusal> {
    let Some(root) = schema_of(kind) else {
        return Ok(());
    };
    let walk = Walk { root, kind, name, refusal: RefCell::new(None) };
    let node = Node { walk: &walk, schema: Some(root), path: Vec::new() };
    node.deserialize(serde_yaml::Deserializer::from_str(text)).map_err(|err| {
        let (line, column) = err.location().map_or((1, 1), |at| (at.line(), at.column()));
        // The walk's own words; serde_yaml's would put its path and position around them.
        let message = walk.refusal.take().unwrap_or_else(|| err.to_string());
        Refusal { line, column, message }
    })
}

/// The schema of `kind`, built once: a JSON Schema whose `$ref`s point into its own
/// `$defs`.
fn schema_of(kind: &str) -> Option<&'static Value> {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    static JOB: OnceLock<Value> = OnceLock::new();
    static ACCOUNT: OnceLock<Value> = OnceLock::new();
    static CONFIG_MAP: OnceLock<Value> = OnceLock::new();
    static SECRET: OnceLock<Value> = OnceLock::new();
    static NAMESPACE: OnceLock<Value> = OnceLock::new();
    Some(match kind {
        "RenderTemplate" => TEMPLATE.get_or_init(crd_schema::<RenderTemplate>),
        "RenderJob" => JOB.get_or_init(crd_schema::<RenderJob>),
        "RenderAccount" => ACCOUNT.get_or_init(crd_schema::<RenderAccount>),
        "ConfigMap" => CONFIG_MAP.get_or_init(|| schemars::schema_for!(ConfigMap).to_value()),
        "Secret" => SECRET.get_or_init(|| schemars::schema_for!(Secret).to_value()),
        "Namespace" => NAMESPACE.get_or_init(|| schemars::schema_for!(Namespace).to_value()),
        _ => return None,
    })
}

/// The CRD's `openAPIV3Schema` with what the API server adds to every custom
/// resource's: `apiVersion` and `kind`, and `metadata` (a bare object in a CRD)
/// checked as `ObjectMeta`.
fn crd_schema<K: CustomResourceExt>() -> Value {
    let crd = serde_json::to_value(K::crd()).unwrap_or_default();
    let mut root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    let mut meta = schemars::schema_for!(ObjectMeta).to_value();
    if let Some(defs) = meta.as_object_mut().and_then(|m| m.remove("$defs")) {
        root["$defs"] = defs;
    }
    if let Some(properties) = root.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("metadata".into(), meta);
        properties.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
        properties.insert("kind".into(), serde_json::json!({"type": "string"}));
    }
    root
}

/// One document's walk: its schema, and its kind and name for messages.
struct Walk<'a> {
    root: &'a Value,
    kind: &'a str,
    name: Option<&'a str>,
    /// The message of the refusal the walk raised, if it raised one.
    refusal: RefCell<Option<String>>,
}

impl Walk<'_> {
    /// Refuse the document with `message`, at the position serde_yaml is at.
    fn refuse<E: de::Error>(&self, message: String) -> E {
        let error = E::custom(&message);
        *self.refusal.borrow_mut() = Some(message);
        error
    }

    /// `schema` with its `$ref` followed, and the branches of `allOf`/`anyOf`/`oneOf`.
    fn branches<'s>(&'s self, schema: &'s Value, out: &mut Vec<&'s Value>) {
        let mut schema = schema;
        for _ in 0..32 {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(reference) => match self.root.pointer(reference.trim_start_matches('#')) {
                    Some(target) => schema = target,
                    None => return,
                },
                None => break,
            }
        }
        out.push(schema);
        for combinator in ["allOf", "anyOf", "oneOf"] {
            for branch in schema.get(combinator).and_then(Value::as_array).into_iter().flatten() {
                self.branches(branch, out);
            }
        }
    }

    /// Where the walk is, for messages: `RenderJob "x" spec.assets[0]`.
    fn place(&self, path: &[String]) -> String {
        let mut place = self.kind.to_owned();
        if let Some(name) = self.name {
            place.push_str(&format!(" {name:?}"));
        }
        let mut at = String::new();
        for segment in path {
            if !segment.starts_with('[') && !at.is_empty() {
                at.push('.');
            }
            at.push_str(segment);
        }
        if !at.is_empty() {
            place.push(' ');
            place.push_str(&at);
        }
        place
    }
}

/// What a schema says about an object's keys.
struct Shape<'s> {
    branches: Vec<&'s Value>,
}

impl<'s> Shape<'s> {
    fn of(walk: &'s Walk<'s>, schema: Option<&'s Value>) -> Shape<'s> {
        let mut branches = Vec::new();
        if let Some(schema) = schema {
            walk.branches(schema, &mut branches);
        }
        Shape { branches }
    }

    /// Whether only the schema's `properties` are allowed.
    fn closed(&self) -> bool {
        let open = self.branches.iter().any(|b| {
            b.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true)
                || b.get("additionalProperties").is_some_and(|a| a != &Value::Bool(false))
        });
        !open && self.branches.iter().any(|b| b.get("properties").is_some_and(Value::is_object))
    }

    /// The schema of `key`'s value, if the schema has one.
    fn field(&self, key: &str) -> Option<&'s Value> {
        let property = self.branches.iter().find_map(|b| b.get("properties").and_then(|p| p.get(key)));
        property.or_else(|| self.branches.iter().find_map(|b| b.get("additionalProperties").filter(|a| a.is_object())))
    }

    /// The schema of an array's items.
    fn items(&self) -> Option<&'s Value> {
        self.branches.iter().find_map(|b| b.get("items").filter(|i| i.is_object()))
    }

    /// The known fields, sorted.
    fn known(&self) -> Vec<&'s str> {
        let mut known: Vec<&str> = self
            .branches
            .iter()
            .filter_map(|b| b.get("properties").and_then(Value::as_object))
            .flat_map(|p| p.keys().map(String::as_str))
            .collect();
        known.sort_unstable();
        known.dedup();
        known
    }
}

/// A value at `path`, checked against `schema` (none: anything goes).
struct Node<'w> {
    walk: &'w Walk<'w>,
    schema: Option<&'w Value>,
    path: Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Node<'_> {
    /// A name at `metadata.name` or `metadata.namespace` that the API server refuses.
    fn check_name(&self, value: &str) -> Result<(), String> {
        let [first, second] = self.path.as_slice() else {
            return Ok(());
        };
        if first != "metadata" {
            return Ok(());
        }
        let kind = self.walk.kind;
        match second.as_str() {
            // A Namespace is named by one DNS label.
            "name" if kind == "Namespace" && !is_dns_label(value) => {
                Err(format!("metadata.name {value:?} is not a valid Namespace name: it must be {DNS_LABEL_RULE}"))
            }
            "name" if kind != "Namespace" && !is_object_name(value) => {
                Err(format!("metadata.name {value:?} is not a valid {kind} name: it must be {OBJECT_NAME_RULE}"))
            }
            "namespace" if !is_dns_label(value) => {
                Err(format!("metadata.namespace {value:?} is not a valid namespace name: it must be {DNS_LABEL_RULE}"))
            }
            _ => Ok(()),
        }
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let shape = Shape::of(self.walk, self.schema);
        while let Some(key) = map.next_key_seed(Key { node: &self, shape: &shape })? {
            let mut path = self.path.clone();
            path.push(key.clone());
            map.next_value_seed(Node { walk: self.walk, schema: shape.field(&key), path })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let items = Shape::of(self.walk, self.schema).items();
        let mut index = 0;
        loop {
            let mut path = self.path.clone();
            path.push(format!("[{index}]"));
            if seq.next_element_seed(Node { walk: self.walk, schema: items, path })?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.check_name(value).map_err(|message| self.walk.refuse(message))
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
    /// A YAML tag (`!Thing value`): not for the schema to judge; the typed reading does.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (IgnoredAny, variant) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant::<IgnoredAny>(variant).map(|_| ())
    }
}

/// A key of the object at `node`: refused when the schema does not know it.
struct Key<'a, 'w> {
    node: &'a Node<'w>,
    shape: &'a Shape<'w>,
}

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Key<'_, '_> {
    fn known<E: de::Error>(&self, key: String) -> Result<String, E> {
        if !self.shape.closed() || self.shape.field(&key).is_some() {
            return Ok(key);
        }
        let place = self.node.walk.place(&self.node.path);
        let known = self.shape.known().join(", ");
        Err(self.node.walk.refuse(format!("unknown field {key:?} in {place}; expected one of {known}")))
    }
}

impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        self.known(key.to_owned())
    }
    fn visit_bool<E: de::Error>(self, key: bool) -> Result<String, E> {
        self.known(key.to_string())
    }
    fn visit_i64<E: de::Error>(self, key: i64) -> Result<String, E> {
        self.known(key.to_string())
    }
    fn visit_u64<E: de::Error>(self, key: u64) -> Result<String, E> {
        self.known(key.to_string())
    }
    fn visit_f64<E: de::Error>(self, key: f64) -> Result<String, E> {
        self.known(key.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.known("null".to_owned())
    }
}
