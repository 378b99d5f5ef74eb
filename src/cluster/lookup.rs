//! Resolving a RenderJob's references for the shared [`prepare`] rules, which are
//! synchronous: run them over what has been fetched so far, note what they asked
//! for and did not find, fetch that, and run them again. A job refers to a handful
//! of objects at most, so this settles in two or three rounds and no rule of
//! `prepare` is written a second time for the cluster.
//!
//! RenderTemplates come from the operator's watch cache; one the cache does not hold
//! is read from the API server, since it may have been created with the job and not
//! reached the cache yet (a job must not fail for a template that exists).
//! ConfigMaps a job or template refers to are read by name: watching every
//! ConfigMap of every namespace would cost more than the few reads. A job pinned to
//! a version of its template that is no longer current reads that version's
//! snapshot ([`super::template_versions`]).

use std::cell::RefCell;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::reflector::ObjectRef;

use super::context::Context;

use super::template_versions::{keep, snapshot_name, snapshot_spec};
use crate::prepare::{FoundTemplate, Lookup, LookupError, prepare};
use crate::render::{RenderFailure, RenderRequest};
use crate::resources::{RenderJob, RenderTemplate};

/// Most fetch rounds before giving up (each round fetches everything asked for).
const MAX_ROUNDS: usize = 6;

/// Objects fetched so far; `None` records one that does not exist.
#[derive(Default)]
struct Fetched {
    templates: BTreeMap<(String, Option<i64>), Option<FoundTemplate>>,
    config_maps: BTreeMap<String, Option<ConfigMap>>,
    /// The RenderTemplates as they are now, by name.
    current: BTreeMap<String, RenderTemplate>,
}

/// A reference `prepare` asked for that has not been fetched yet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Missing {
    Template(String, Option<i64>),
    ConfigMap(String),
}

struct FetchedLookup<'a> {
    fetched: &'a Fetched,
    missing: RefCell<Vec<Missing>>,
}

impl Lookup for FetchedLookup<'_> {
    fn template(&self, name: &str, version: Option<i64>) -> Result<Option<FoundTemplate>, LookupError> {
        match self.fetched.templates.get(&(name.to_owned(), version)) {
            Some(found) => Ok(found.clone()),
            None => {
                self.missing.borrow_mut().push(Missing::Template(name.to_owned(), version));
                Err(LookupError(format!("RenderTemplate {name} not fetched yet")))
            }
        }
    }

    fn config_map(&self, name: &str) -> Result<Option<ConfigMap>, LookupError> {
        match self.fetched.config_maps.get(name) {
            Some(found) => Ok(found.clone()),
            None => {
                self.missing.borrow_mut().push(Missing::ConfigMap(name.to_owned()));
                Err(LookupError(format!("ConfigMap {name} not fetched yet")))
            }
        }
    }
}

/// The render request of `job`, its references read from its namespace.
/// `Err(LookupError)` means the API server could not be read (transient);
/// `Ok(Err(failure))` means the job cannot be rendered as it stands.
pub async fn prepare_job(ctx: &Context, job: &RenderJob) -> Result<Result<RenderRequest, RenderFailure>, LookupError> {
    let namespace = job.metadata.namespace.as_deref().unwrap_or("default");
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let templates: Api<RenderTemplate> = Api::namespaced(ctx.client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let mut fetched = Fetched::default();
    for _ in 0..MAX_ROUNDS {
        let lookup = FetchedLookup { fetched: &fetched, missing: RefCell::new(Vec::new()) };
        let outcome = prepare(name, &job.spec, &lookup);
        let mut missing = lookup.missing.into_inner();
        if missing.is_empty() {
            keep_rendered_version(&config_maps, &fetched, job, &outcome).await;
            return Ok(outcome);
        }
        missing.sort();
        missing.dedup();
        for reference in missing {
            match reference {
                Missing::Template(name, version) => {
                    let cached = ctx.caches().templates.get(&ObjectRef::new(&name).within(namespace));
                    // A job may be pinned to a version the cache has not shown yet.
                    let current = match cached {
                        Some(template) if version.is_none_or(|v| template.metadata.generation >= Some(v)) => {
                            Some(RenderTemplate::clone(&template))
                        }
                        _ => templates.get_opt(&name).await.map_err(|err| api_error("RenderTemplate", &name, err))?,
                    };
                    if let Some(current) = &current {
                        fetched.current.insert(name.clone(), current.clone());
                    }
                    let found = match (current, version) {
                        (None, _) => None,
                        (Some(current), wanted) if wanted.is_none() || wanted == current.metadata.generation => {
                            Some(FoundTemplate { version: current.metadata.generation, spec: current.spec })
                        }
                        (Some(current), Some(version)) => {
                            let uid = current.metadata.uid.unwrap_or_default();
                            let snapshot = snapshot_name(&name, version);
                            let map = config_maps
                                .get_opt(&snapshot)
                                .await
                                .map_err(|err| api_error("ConfigMap", &snapshot, err))?;
                            map.as_ref()
                                .and_then(|map| snapshot_spec(map, &uid))
                                .filter(|(kept, _)| *kept == version)
                                .map(|(version, spec)| FoundTemplate { spec, version: Some(version) })
                        }
                        (Some(_), None) => None,
                    };
                    fetched.templates.insert((name, version), found);
                }
                Missing::ConfigMap(name) => {
                    let found = config_maps.get_opt(&name).await.map_err(|err| api_error("ConfigMap", &name, err))?;
                    fetched.config_maps.insert(name, found);
                }
            }
        }
    }
    Err(LookupError(format!("the references of RenderJob {name} did not settle in {MAX_ROUNDS} rounds")))
}

/// Keep the version of its template a job is about to render, when it is the current
/// one, so that `status.templateVersion` always names a version that can be read and
/// restored, also when it was made with `kubectl`. Not keeping it only loses that.
async fn keep_rendered_version(
    maps: &Api<ConfigMap>,
    fetched: &Fetched,
    job: &RenderJob,
    outcome: &Result<RenderRequest, RenderFailure>,
) {
    let (Ok(request), Some(reference)) = (outcome, &job.spec.template_ref) else { return };
    let Some(template) = fetched.current.get(&reference.name) else { return };
    if request.template_version.is_some()
        && request.template_version == template.metadata.generation
        && let Err(problem) = keep(maps, template).await
    {
        tracing::warn!(template = %reference.name, %problem, "could not keep the version a job renders");
    }
}

fn api_error(kind: &str, name: &str, err: kube::Error) -> LookupError {
    LookupError(format!("reading {kind} {name}: {}", crate::error_chain(&err)))
}
