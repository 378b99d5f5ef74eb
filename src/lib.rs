//! folio: render jobs (template + JSON data → PDF) as Kubernetes custom resources,
//! with the same rules and engine on one machine (`folio run`, `folio serve`).
//!
//! - [`resources`]: the CRD types, the one source of truth for every shape.
//! - [`lifecycle`]: pure rules: phases, retries, deadlines, retention, credits.
//! - [`render`]: the Typst engine, post-processing, and the worker pool that bounds
//!   each render's time and memory.
//! - [`prepare`]: what a job and its references turn into for the renderer.
//! - [`manifest`]: reading manifest files.
//! - [`run`]: `folio run`.

#![warn(missing_docs)]

pub mod lifecycle;
pub mod manifest;
pub mod prepare;
pub mod render;
pub mod resources;
pub mod run;
