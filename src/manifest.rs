//! Reading manifest files: multi-document YAML holding RenderTemplates, RenderJobs,
//! RenderAccounts and the ConfigMaps they refer to, exactly as `kubectl apply` takes
//! them. Errors name the file and the line, so a typo in document 40 of a GitOps
//! bundle is found at once. Namespaces are read and skipped: a bundle that creates its
//! namespace for `kubectl apply` works here too, where a namespace is only a name.

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
        match (api_version.as_str(), kind.as_str()) {
            (API_VERSION, "RenderTemplate") => self.templates.push(typed(document, &at)?),
            (API_VERSION, "RenderJob") => {
                let job: RenderJob = typed(document, &at)?;
                // What the API server refuses is refused here, by the same rules.
                job_rules::check(&job, None)
                    .map_err(|why| at(1, 1, format!("RenderJob {:?}: {why}", job.name_any())))?;
                self.jobs.push(job);
            }
            (API_VERSION, "RenderAccount") => self.accounts.push(typed(document, &at)?),
            ("v1", "ConfigMap") => self.config_maps.push(typed(document, &at)?),
            ("v1", "Secret") => self.secrets.push(typed(document, &at)?),
            // Locally a namespace (a tenant) exists as soon as something names it.
            ("v1", "Namespace") => {}
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
}
