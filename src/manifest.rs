//! Reading manifest files: multi-document YAML holding RenderTemplates, RenderJobs,
//! RenderAccounts and the ConfigMaps they refer to, exactly as `kubectl apply` takes
//! them. Errors name the file and the line, so a typo in document 40 of a GitOps
//! bundle is found at once. Namespaces are read and skipped: a bundle that creates its
//! namespace for `kubectl apply` works here too, where a namespace is only a name.
//!
//! Reading is as strict as `kubectl apply` with strict field validation: a field the
//! kind's schema does not know is an error naming its line (see [`strict`]), names
//! must be ones the API server takes, and an object defined twice in one set of files
//! is an error naming both places.

mod strict;

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::resources::{API_VERSION, RenderAccount, RenderJob, RenderTemplate, job_rules};

/// Namespace of manifests that name none, as with kubectl.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Everything read from a set of manifest files, in file order.
#[derive(Default, Debug, Clone)]
pub struct Manifests {
    /// RenderTemplates.
    pub templates: Vec<RenderTemplate>,
    /// RenderJobs.
    pub jobs: Vec<RenderJob>,
    /// RenderAccounts.
    pub accounts: Vec<RenderAccount>,
    /// ConfigMaps (template sources, assets, large data).
    pub config_maps: Vec<ConfigMap>,
    /// Secrets (webhook signing secrets).
    pub secrets: Vec<Secret>,
    /// Names of the Namespaces, which are read and otherwise skipped.
    pub namespaces: Vec<String>,
    /// Where each object was defined, by kind and `namespace/name`: `file:line:1`.
    defined: HashMap<(String, String), String>,
}

/// Why a manifest file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file cannot be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not YAML, or a document does not fit its kind's schema.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

impl Manifests {
    /// Read and parse every file, in order.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<Manifests, ManifestError> {
        let mut all = Manifests::default();
        for path in paths {
            let path = path.as_ref();
            let file = path.display().to_string();
            let text =
                std::fs::read_to_string(path).map_err(|source| ManifestError::Read { file: file.clone(), source })?;
            all.parse(&file, &text)?;
        }
        Ok(all)
    }

    /// Parse one file's text (`file` names it in errors) and add what it holds.
    pub fn parse(&mut self, file: &str, text: &str) -> Result<(), ManifestError> {
        for document in split_documents(text) {
            self.parse_document(file, &document)?;
        }
        Ok(())
    }

    fn parse_document(&mut self, file: &str, document: &Document) -> Result<(), ManifestError> {
        let at = |line: usize, column: usize, message: String| ManifestError::Invalid {
            file: file.to_owned(),
            line: document.first_line + line.saturating_sub(1),
            column,
            message,
        };
        let value: serde_yaml::Value = serde_yaml::from_str(&document.text).map_err(|err| yaml_error(&err, &at))?;
        if value.is_null() {
            return Ok(());
        }
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or("").to_owned();
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        let known = matches!(
            (api_version.as_str(), kind.as_str()),
            (API_VERSION, "RenderTemplate" | "RenderJob" | "RenderAccount")
                | ("v1", "ConfigMap" | "Secret" | "Namespace")
        );
        if known {
            let name = value.get("metadata").and_then(|m| m.get("name")).and_then(|n| n.as_str());
            strict::check(&document.text, &kind, name).map_err(|r| at(r.line, r.column, r.message))?;
        }
        match (api_version.as_str(), kind.as_str()) {
            (API_VERSION, "RenderTemplate") => {
                let template = typed(document, &at)?;
                self.define(file, document, &template)?;
                self.templates.push(template);
            }
            (API_VERSION, "RenderJob") => {
                let job: RenderJob = typed(document, &at)?;
                // What the API server refuses is refused here, by the same rules.
                job_rules::check(&job, None)
                    .map_err(|why| at(1, 1, format!("RenderJob {:?}: {why}", job.name_any())))?;
                self.define(file, document, &job)?;
                self.jobs.push(job);
            }
            (API_VERSION, "RenderAccount") => {
                let account = typed(document, &at)?;
                self.define(file, document, &account)?;
                self.accounts.push(account);
            }
            ("v1", "ConfigMap") => {
                let config_map = typed(document, &at)?;
                self.define(file, document, &config_map)?;
                self.config_maps.push(config_map);
            }
            ("v1", "Secret") => {
                let secret = typed(document, &at)?;
                self.define(file, document, &secret)?;
                self.secrets.push(secret);
            }
            // Locally a namespace (a tenant) exists as soon as something names it; a
            // bundle may create it as often as it likes.
            ("v1", "Namespace") => {
                let name = value.get("metadata").and_then(|m| m.get("name")).and_then(|n| n.as_str());
                self.namespaces.push(name.unwrap_or_default().to_owned());
            }
            (_, "") => return Err(at(1, 1, "the document has no kind".into())),
            (_, kind) => {
                return Err(at(
                    1,
                    1,
                    format!(
                        "unknown kind {kind:?} with apiVersion {api_version:?}: folio reads RenderTemplate, RenderJob and RenderAccount ({API_VERSION}), ConfigMap, Secret and Namespace (v1)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Remember where `object` is defined; an object defined before is an error naming
    /// both places, as one run cannot hold two objects of one kind and name.
    fn define<K>(&mut self, file: &str, document: &Document, object: &K) -> Result<(), ManifestError>
    where
        K: Resource<DynamicType = ()>,
    {
        let kind = K::kind(&()).into_owned();
        let meta = object.meta();
        let id = format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
            meta.name.as_deref().unwrap_or_default()
        );
        let line = document.first_content_line();
        match self.defined.entry((kind.clone(), id.clone())) {
            std::collections::hash_map::Entry::Occupied(previous) => Err(ManifestError::Invalid {
                file: file.to_owned(),
                line,
                column: 1,
                message: format!("{kind} {id:?} is already defined at {}", previous.get()),
            }),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(format!("{file}:{line}:1"));
                Ok(())
            }
        }
    }
}

fn typed<K>(document: &Document, at: &impl Fn(usize, usize, String) -> ManifestError) -> Result<K, ManifestError>
where
    K: DeserializeOwned + Resource,
    K::DynamicType: Default,
{
    let mut object: K = serde_yaml::from_str(&document.text).map_err(|err| yaml_error(&err, at))?;
    let meta = object.meta_mut();
    if meta.name.as_deref().unwrap_or("").is_empty() {
        return Err(at(1, 1, format!("{} has no metadata.name", K::kind(&Default::default()))));
    }
    if meta.namespace.is_none() {
        meta.namespace = Some(DEFAULT_NAMESPACE.to_owned());
    }
    Ok(object)
}

fn yaml_error(err: &serde_yaml::Error, at: &impl Fn(usize, usize, String) -> ManifestError) -> ManifestError {
    let text = err.to_string();
    // serde_yaml appends its (document-relative) position; ours replaces it.
    let message = text.split(" at line ").next().unwrap_or(&text).to_owned();
    match err.location() {
        Some(location) => at(location.line(), location.column(), message),
        None => at(1, 1, message),
    }
}

struct Document {
    text: String,
    first_line: usize,
}

impl Document {
    /// The file's line of the document's first line that is not blank or a comment.
    fn first_content_line(&self) -> usize {
        let skipped = self.text.lines().take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#')).count();
        self.first_line + skipped
    }
}

/// Split YAML text on `---` separator lines, remembering where each document starts.
fn split_documents(text: &str) -> Vec<Document> {
    let mut documents = Vec::new();
    let mut current = Document { text: String::new(), first_line: 1 };
    for (index, line) in text.lines().enumerate() {
        if line == "---" || line.starts_with("--- ") || line.starts_with("---\t") {
            documents.push(std::mem::replace(&mut current, Document { text: String::new(), first_line: index + 2 }));
            let rest = line[3..].trim();
            if !rest.is_empty() {
                // `--- {inline: document}` starts the document on the separator line.
                current.first_line = index + 1;
                current.text.push_str(rest);
                current.text.push('\n');
            }
        } else if line == "..." {
            continue;
        } else {
            current.text.push_str(line);
            current.text.push('\n');
        }
    }
    documents.push(current);
    documents.into_iter().filter(|d| !d.text.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLE: &str = "\
apiVersion: folio.dev/v1alpha1
kind: RenderTemplate
metadata: {name: invoice, namespace: acme}
spec:
  source: Hello
---
# a comment-only document is skipped
---
apiVersion: folio.dev/v1alpha1
kind: RenderJob
metadata: {name: invoice-1}
spec:
  templateRef: {name: invoice}
  data: {number: 1}
";

    #[test]
    fn reads_every_kind_and_defaults_the_namespace() {
        let mut m = Manifests::default();
        m.parse("bundle.yaml", BUNDLE).unwrap();
        assert_eq!(m.templates.len(), 1);
        assert_eq!(m.jobs.len(), 1);
        assert_eq!(m.jobs[0].metadata.namespace.as_deref(), Some("default"));
        assert_eq!(m.templates[0].metadata.namespace.as_deref(), Some("acme"));
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let text = format!("{BUNDLE}---\napiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {{name: x\n");
        let err = Manifests::default().parse("bad.yaml", &text).unwrap_err().to_string();
        assert!(err.starts_with("bad.yaml:18:") || err.starts_with("bad.yaml:19:"), "{err}");
    }

    #[test]
    fn wrong_field_types_name_the_line_of_the_field() {
        let text =
            "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {name: x}\nspec:\n  backoffLimit: many\n";
        let err = Manifests::default().parse("job.yaml", text).unwrap_err().to_string();
        assert!(err.starts_with("job.yaml:5:"), "{err}");
        assert!(err.contains("backoffLimit"), "{err}");
    }

    #[test]
    fn namespaces_are_read_and_skipped() {
        let text = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: acme\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n---\n{BUNDLE}"
        );
        let mut m = Manifests::default();
        m.parse("bundle.yaml", &text).unwrap();
        assert_eq!((m.templates.len(), m.jobs.len()), (1, 1));
    }

    #[test]
    fn unknown_kinds_are_named() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n";
        let err = Manifests::default().parse("d.yaml", text).unwrap_err().to_string();
        assert!(err.contains("unknown kind \"Deployment\""), "{err}");
    }

    #[test]
    fn documents_without_a_name_are_refused() {
        let text = "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {}\nspec: {}\n";
        let err = Manifests::default().parse("n.yaml", text).unwrap_err().to_string();
        assert!(err.contains("has no metadata.name"), "{err}");
    }

    #[test]
    fn a_job_the_api_server_would_refuse_is_refused_with_its_rule() {
        let text = "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {name: both}\nspec:\n  templateRef: {name: t}\n  template: {source: x}\n";
        let err = Manifests::default().parse("j.yaml", &format!("{BUNDLE}---\n{text}")).unwrap_err().to_string();
        assert!(
            err.starts_with("j.yaml:") && err.contains("RenderJob \"both\": spec: give exactly one of templateRef"),
            "{err}"
        );
    }

    fn refused(file: &str, text: &str) -> String {
        Manifests::default().parse(file, text).unwrap_err().to_string()
    }

    #[test]
    fn an_unknown_field_names_its_line_and_the_fields_the_kind_has() {
        let text = "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata:\n  name: x\n# a comment\nspec:\n  templatRef: {name: invoice}\n";
        let err = refused("jobs.yaml", text);
        assert!(
            err.starts_with("jobs.yaml:7:3: unknown field \"templatRef\" in RenderJob \"x\" spec; expected one of "),
            "{err}"
        );
        assert!(err.contains("templateRef") && err.contains("backoffLimit"), "{err}");
        // Line numbers count from the file's start, not the document's.
        let err = refused("jobs.yaml", &format!("{BUNDLE}---\n{text}"));
        assert!(err.starts_with("jobs.yaml:22:3: unknown field \"templatRef\""), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level_of_every_kind() {
        let cases = [
            (
                "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {name: x}\nspec: {templateRef: {name: t}}\nspecs: {}\n",
                "5:1",
                "in RenderJob \"x\";",
            ),
            (
                "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata:\n  name: x\n  lables: {a: b}\nspec: {templateRef: {name: t}}\n",
                "5:3",
                "\"lables\" in RenderJob \"x\" metadata;",
            ),
            (
                "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {name: x}\nspec:\n  templateRef:\n    name: t\n    namespace: other\n",
                "7:5",
                "\"namespace\" in RenderJob \"x\" spec.templateRef;",
            ),
            (
                "apiVersion: folio.dev/v1alpha1\nkind: RenderTemplate\nmetadata: {name: t}\nspec:\n  source: x\n  assets:\n  - name: logo.png\n    base46: AAAA\n",
                "8:5",
                "\"base46\" in RenderTemplate \"t\" spec.assets[0];",
            ),
            (
                "apiVersion: folio.dev/v1alpha1\nkind: RenderAccount\nmetadata: {name: default}\nspec:\n  credit: 10\n",
                "5:3",
                "\"credit\" in RenderAccount \"default\" spec;",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\nbinarydata: {}\n",
                "5:1",
                "\"binarydata\" in ConfigMap \"c\";",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringdata: {a: b}\n",
                "4:1",
                "\"stringdata\" in Secret \"s\";",
            ),
        ];
        for (text, at, what) in cases {
            let err = refused("m.yaml", text);
            assert!(err.starts_with(&format!("m.yaml:{at}: unknown field ")) && err.contains(what), "{err}");
        }
    }

    #[test]
    fn free_form_fields_and_maps_take_any_keys() {
        let text = "\
apiVersion: folio.dev/v1alpha1
kind: RenderTemplate
metadata:
  name: t
  labels: {anything: goes}
  annotations: {example.com/note: x}
spec:
  source: x
  defaults: {any: {nested: [{thing: 1}]}}
  dataSchema: {type: object, properties: {number: {type: integer}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data: {any-key: x, 1: y}
---
apiVersion: v1
kind: Namespace
metadata: {name: acme}
spec: {finalizers: [kubernetes]}
";
        let mut m = Manifests::default();
        m.parse("free.yaml", text).unwrap();
        assert_eq!((m.templates.len(), m.config_maps.len(), m.namespaces.len()), (1, 1, 1));
    }

    #[test]
    fn names_and_namespaces_must_be_ones_the_api_server_takes() {
        let err = refused(
            "n.yaml",
            "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata:\n  name: Bad_Name\nspec: {}\n",
        );
        assert!(
            err.starts_with(
                "n.yaml:4:9: metadata.name \"Bad_Name\" is not a valid RenderJob name: it must be a DNS-1123 subdomain"
            ),
            "{err}"
        );
        let err = refused("n.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: acme.corp}\n");
        assert!(
            err.starts_with("n.yaml:3:")
                && err.contains(
                    "metadata.namespace \"acme.corp\" is not a valid namespace name: it must be a DNS-1123 label"
                ),
            "{err}"
        );
        let err = refused("n.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: acme.corp}\n");
        assert!(err.contains("is not a valid Namespace name: it must be a DNS-1123 label"), "{err}");
        // Dots are fine in an object's name.
        let mut m = Manifests::default();
        m.parse(
            "n.yaml",
            "apiVersion: folio.dev/v1alpha1\nkind: RenderTemplate\nmetadata: {name: invoice.v2}\nspec: {source: x}\n",
        )
        .unwrap();
    }

    #[test]
    fn an_object_defined_twice_names_both_places() {
        let job = "# invoice two\napiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {name: invoice-2}\nspec: {templateRef: {name: t}}\n";
        let mut m = Manifests::default();
        m.parse("a.yaml", &format!("{BUNDLE}---\n{job}")).unwrap();
        let err = m.parse("b.yaml", &format!("---\n{job}")).unwrap_err().to_string();
        assert_eq!(err, "b.yaml:3:1: RenderJob \"default/invoice-2\" is already defined at a.yaml:17:1");
        // The same name in another namespace, or of another kind, is another object.
        let other = "apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {name: invoice-1, namespace: acme}\nspec: {templateRef: {name: t}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: invoice-1}\n";
        m.parse("c.yaml", other).unwrap();
        // A Namespace is only a name here; bundles may each create theirs.
        let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: acme}\n";
        m.parse("d.yaml", &format!("{ns}---\n{ns}")).unwrap();
    }

    #[test]
    fn the_examples_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let files = [
            "invoice.yaml",
            "gitops/tenant/namespace.yaml",
            "gitops/tenant/account.yaml",
            "gitops/tenant/invoice-template.yaml",
            "gitops/tenant/monthly-report-template.yaml",
            "gitops/jobs/invoice-2026-11-0042.yaml",
            "gitops/jobs/invoice-2026-11-0043.yaml",
            "gitops/jobs/monthly-report-2026-11.yaml",
        ];
        let m = Manifests::load(&files.map(|f| root.join(f))).unwrap();
        assert!(m.jobs.len() >= 3 && m.templates.len() >= 3, "{m:?}");
    }
}
