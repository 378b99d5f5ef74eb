//! The cluster home (in progress): what the RenderJob controller builds and reads.
//! So far the pure parts: the renderer Pod built for a job, and the result a renderer
//! reports in its termination message.

pub mod api;
pub mod pod;
