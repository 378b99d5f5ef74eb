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
//! ConfigMap of every namespace would cost more than the few reads.

use std::cell::RefCell;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::reflector::ObjectRef;

use super::context::Context;

use crate::prepare::{Lookup, LookupError, prepare};
use crate::render::{RenderFailure, RenderRequest};
use crate::resources::{RenderJob, RenderTemplate, RenderTemplateSpec};

/// Most fetch rounds before giving up (each round fetches everything asked for).
const MAX_ROUNDS: usize = 6;

/// Objects fetched so far; `None` records one that does not exist.
#[derive(Default)]
struct Fetched {
    templates: BTreeMap<String, Option<RenderTemplateSpec>>,
    config_maps: BTreeMap<String, Option<ConfigMap>>,
}

/// A reference `prepare` asked for that has not been fetched yet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Missing {
    Template(String),
    ConfigMap(String),
}

struct FetchedLookup<'a> {
    fetched: &'a Fetched,
    missing: RefCell<Vec<Missing>>,
}

impl Lookup for FetchedLookup<'_> {
    fn template(&self, name: &str) -> Result<Option<RenderTemplateSpec>, LookupError> {
        match self.fetched.templates.get(name) {
            Some(found) => Ok(found.clone()),
            None => {
                self.missing.borrow_mut().push(Missing::Template(name.to_owned()));
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
            return Ok(outcome);
        }
        missing.sort();
        missing.dedup();
        for reference in missing {
            match reference {
                Missing::Template(name) => {
                    let cached = ctx.caches().templates.get(&ObjectRef::new(&name).within(namespace));
                    let found = match cached {
                        Some(template) => Some(template.spec.clone()),
                        None => templates
                            .get_opt(&name)
                            .await
                            .map_err(|err| api_error("RenderTemplate", &name, err))?
                            .map(|t| t.spec),
                    };
                    fetched.templates.insert(name, found);
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

fn api_error(kind: &str, name: &str, err: kube::Error) -> LookupError {
    LookupError(format!("reading {kind} {name}: {}", crate::error_chain(&err)))
}
