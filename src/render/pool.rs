//! A pool of render worker processes with a time and a memory limit per render.
//!
//! Typst compiles without any way to interrupt it, so a template that loops for ever
//! or allocates without end can only be stopped from outside. Each worker is this
//! same binary (`folio render-worker`) holding a warm [`Engine`]: it reads requests on
//! stdin and answers on stdout, one at a time, under an address-space limit. When a
//! render overruns its time limit the pool kills that worker and starts a fresh one,
//! so one hostile template never stalls the renders beside it. Workers are also
//! replaced after a number of renders, which bounds what typst interns for good.
//!
//! Frames on the pipes are a 4-byte big-endian length followed by that many bytes
//! (tokio-util's [`LengthDelimitedCodec`], the same on both sides): the request as
//! JSON; the answer as JSON (facts or failure) followed by the PDF. A frame over
//! `MAX_FRAME_BYTES` (512 MiB) is never sent: writing one fails before a byte goes
//! out, and a header announcing one fails the read at once (`InvalidData`, "frame
//! size too big"). In the pool either way ends the exchange as a worker that stopped:
//! the worker is killed and the render fails with `RENDERER_CRASHED`; a worker whose
//! request or answer is too large exits, which the pool sees the same way.

use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nix::sys::prctl;
use nix::sys::resource::{self, Resource};
use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio_util::bytes::{Bytes, BytesMut};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::html::{ChromiumConfig, ChromiumPool};
use super::{Engine, RenderFacts, RenderFailure, RenderRequest, Rendered};
use crate::resources::ErrorCode;

/// The hidden subcommand a worker runs as.
pub const WORKER_SUBCOMMAND: &str = "render-worker";
/// A worker is replaced after this many renders.
const RENDERS_PER_WORKER: u32 = 2_000;
/// Largest frame accepted on the pipes (requests carry data and assets; answers a PDF).
const MAX_FRAME_BYTES: usize = 512 * 1024 * 1024;

/// How the pool runs its workers.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Renders that run at once (one worker process each).
    pub workers: usize,
    /// The `folio` executable that workers run.
    pub executable: PathBuf,
    /// Address-space limit of a worker, in MiB.
    pub memory_limit_mib: u64,
    /// Folder of server-wide fonts (`--font-path`) that workers load.
    pub font_path: Option<PathBuf>,
    /// The browsers of html templates and web pages.
    pub chromium: ChromiumConfig,
}

impl PoolConfig {
    /// One worker per core, running this executable, 4 GiB each.
    pub fn for_this_machine() -> io::Result<PoolConfig> {
        Ok(PoolConfig {
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            executable: std::env::current_exe()?,
            memory_limit_mib: 4096,
            font_path: None,
            chromium: ChromiumConfig::default(),
        })
    }
}

/// Renders Typst in worker processes, at most `workers` at a time, and hands html
/// templates and web pages to warm Chromium browsers.
pub struct RenderPool {
    config: PoolConfig,
    idle: Mutex<Vec<Worker>>,
    slots: Semaphore,
    chromium: ChromiumPool,
}

struct Worker {
    child: Child,
    requests: FramedWrite<ChildStdin, LengthDelimitedCodec>,
    answers: FramedRead<ChildStdout, LengthDelimitedCodec>,
    renders: u32,
}

impl RenderPool {
    /// A pool that starts workers as renders need them.
    pub fn new(config: PoolConfig) -> RenderPool {
        let workers = config.workers.max(1);
        RenderPool {
            chromium: ChromiumPool::new(config.chromium.clone()),
            config: PoolConfig { workers, ..config },
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(workers),
        }
    }

    /// Renders that can run at once.
    pub fn size(&self) -> usize {
        self.config.workers
    }

    /// Start every worker now, so that the first renders do not pay for loading fonts.
    pub async fn warm_up(&self) -> io::Result<()> {
        let mut started = Vec::new();
        let missing = self.config.workers.saturating_sub(self.idle_workers().len());
        for _ in 0..missing {
            started.push(self.spawn()?);
        }
        for worker in &mut started {
            worker.ping().await?;
        }
        self.idle_workers().extend(started);
        Ok(())
    }

    fn idle_workers(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        // A poisoned lock only means another caller panicked while holding the idle
        // list; the list itself is still a valid list of workers.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The browsers of html templates and web pages (started when first needed).
    pub fn chromium(&self) -> &ChromiumPool {
        &self.chromium
    }

    /// Render `request`, giving up with `DEADLINE_EXCEEDED` after `limit`.
    pub async fn render(&self, request: &RenderRequest, limit: Duration) -> Result<Rendered, RenderFailure> {
        if request.needs_chromium() {
            return self.chromium.render(request, limit).await;
        }
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| RenderFailure::new(ErrorCode::Internal, "the render pool is shut down"))?;
        let mut worker = match self.live_idle_worker() {
            Some(worker) => worker,
            None => self.spawn().map_err(|err| {
                RenderFailure::new(ErrorCode::RendererCrashed, format!("could not start a render worker: {err}"))
            })?,
        };
        match tokio::time::timeout(limit, worker.exchange(request)).await {
            Ok(Ok(answer)) => {
                worker.renders += 1;
                if worker.renders < RENDERS_PER_WORKER {
                    self.idle_workers().push(worker);
                }
                answer
            }
            Ok(Err(io_error)) => Err(self.crashed(worker, io_error).await),
            Err(_elapsed) => {
                let _ = worker.child.start_kill();
                tokio::spawn(async move { worker.child.wait().await });
                Err(RenderFailure::new(
                    ErrorCode::DeadlineExceeded,
                    format!("the render did not finish within {:.1} s", limit.as_secs_f64()),
                ))
            }
        }
    }

    /// An idle worker that is still alive; workers that died while idle (killed from
    /// outside, say) are dropped, so a render is never charged with their death.
    fn live_idle_worker(&self) -> Option<Worker> {
        loop {
            let mut worker = self.idle_workers().pop()?;
            if matches!(worker.child.try_wait(), Ok(None)) {
                return Some(worker);
            }
        }
    }

    /// Explain why a worker stopped answering.
    async fn crashed(&self, mut worker: Worker, io_error: io::Error) -> RenderFailure {
        let _ = worker.child.start_kill();
        let status = worker.child.wait().await.ok();
        if status.is_some_and(aborted) {
            RenderFailure::new(
                ErrorCode::ResourceExhausted,
                format!("the render exceeded the memory limit of {} MiB", self.config.memory_limit_mib),
            )
        } else {
            RenderFailure::new(ErrorCode::RendererCrashed, format!("the render worker stopped: {io_error}"))
        }
    }

    fn spawn(&self) -> io::Result<Worker> {
        let mut command = Command::new(&self.config.executable);
        command.arg(WORKER_SUBCOMMAND).arg("--memory-limit-mib").arg(self.config.memory_limit_mib.to_string());
        for (name, _) in std::env::vars_os().filter(|(name, _)| name.to_string_lossy().starts_with("MIMALLOC_")) {
            command.env_remove(name);
        }
        command
            .env("MIMALLOC_ARENA_RESERVE", WORKER_ARENA_RESERVE)
            .env("MIMALLOC_ARENA_MAX_OBJECT_SIZE", WORKER_ARENA_MAX_OBJECT);
        if let Some(dir) = &self.config.font_path {
            command.arg("--font-path").arg(dir);
        }
        let mut child =
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true).spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| io::Error::other("worker has no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("worker has no stdout"))?;
        Ok(Worker {
            child,
            requests: FramedWrite::new(stdin, frames()),
            answers: FramedRead::new(stdout, frames()),
            renders: 0,
        })
    }
}

/// How much address space the worker's allocator (mimalloc v3) reserves at a time. Its
/// default, 1 GiB, would take most of a small `--render-memory-mib` before a render
/// allocates anything, since the limit caps address space, reserved or used; 64 MiB is
/// the least mimalloc reserves anyway. (Other `MIMALLOC_*` settings of the parent are
/// not passed on.)
const WORKER_ARENA_RESERVE: &str = "64MiB";
/// Blocks above this size get address space of their own, returned when freed. Arenas
/// are kept for the worker's life, so without this a render that fits its limit with
/// glibc's allocator would not: in a release build at 1024 MiB, `range(12000000)` failed
/// without it, and `range(16000000)` fits with it, as with glibc.
const WORKER_ARENA_MAX_OBJECT: &str = "32MiB";

/// Allocation failure under the address-space limit aborts the worker (SIGABRT).
fn aborted(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(Signal::SIGABRT as i32)
}

impl Worker {
    async fn exchange(&mut self, request: &RenderRequest) -> io::Result<Result<Rendered, RenderFailure>> {
        let body = serde_json::to_vec(request)?;
        self.requests.send(Bytes::from(body)).await?;
        let header = next_frame(&mut self.answers).await?;
        let pdf = next_frame(&mut self.answers).await?;
        let answer: Result<RenderFacts, RenderFailure> = serde_json::from_slice(&header)?;
        Ok(answer.map(|facts| Rendered { output: pdf.into(), facts }))
    }

    /// An empty frame asks the worker to answer with an empty frame once it is ready.
    async fn ping(&mut self) -> io::Result<()> {
        self.requests.send(Bytes::new()).await?;
        next_frame(&mut self.answers).await.map(drop)
    }
}

/// The codec of both pipes.
fn frames() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME_BYTES).new_codec()
}

/// The next frame; the pipe closing is an error, since a frame was expected.
async fn next_frame(input: &mut FramedRead<impl AsyncRead + Unpin, LengthDelimitedCodec>) -> io::Result<BytesMut> {
    input.next().await.unwrap_or_else(|| Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the pipe closed")))
}

/// The worker's side: limit this process's memory, load the engine, and answer
/// requests from stdin until it closes. The pipes are driven by a runtime of one
/// thread so that both sides share one codec; renders block that thread, which is
/// fine, since the worker does nothing else meanwhile.
pub fn serve_worker(memory_limit_mib: u64, font_path: Option<&std::path::Path>) -> io::Result<()> {
    die_with_parent()?;
    limit_address_space(memory_limit_mib)?;
    let engine = Engine::with_font_path(font_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(answer_requests(&engine, tokio::io::stdin(), tokio::io::stdout()))
}

async fn answer_requests(
    engine: &Engine,
    input: impl AsyncRead + Unpin,
    output: impl AsyncWrite + Unpin,
) -> io::Result<()> {
    let mut requests = FramedRead::new(input, frames());
    let mut answers = FramedWrite::new(output, frames());
    while let Some(body) = requests.next().await {
        let body = body?;
        if body.is_empty() {
            answers.send(Bytes::new()).await?;
        } else {
            let (header, pdf) = answer(engine, &body);
            answers.feed(Bytes::from(header)).await?;
            answers.send(Bytes::from(pdf)).await?;
        }
    }
    Ok(())
}

fn answer(engine: &Engine, body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let outcome = match serde_json::from_slice::<RenderRequest>(body) {
        Ok(request) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.render(&request)))
            .unwrap_or_else(|_| Err(RenderFailure::new(ErrorCode::Internal, "the renderer panicked"))),
        Err(err) => Err(RenderFailure::new(ErrorCode::Internal, format!("unreadable render request: {err}"))),
    };
    let (header, pdf) = match outcome {
        Ok(rendered) => (Ok(rendered.facts), rendered.output),
        Err(failure) => (Err(failure), Vec::new()),
    };
    let header: Result<RenderFacts, RenderFailure> = header;
    // Serializing these plain structs cannot fail.
    (serde_json::to_vec(&header).unwrap_or_default(), pdf)
}

/// A worker must not outlive the process that started it: if that process is killed
/// (even with SIGKILL, which gives it no chance to stop its workers), a worker stuck in
/// a hostile template would otherwise go on burning a core. (The signal follows the
/// parent's spawning thread; the pool spawns from runtime worker threads, which live
/// as long as the process.)
///
/// The process controls here go through `nix` rather than the `rlimit` crate: `nix`
/// has safe wrappers for both `prctl(PR_SET_PDEATHSIG)` and `setrlimit`, and `rlimit`
/// has nothing for the former.
fn die_with_parent() -> io::Result<()> {
    prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The parent may have died before the call above took effect.
    if std::os::unix::process::parent_id() == 1 {
        return Err(io::Error::other("the process that started this worker is gone"));
    }
    Ok(())
}

fn limit_address_space(mib: u64) -> io::Result<()> {
    let bytes = mib.saturating_mul(1024 * 1024);
    resource::setrlimit(Resource::RLIMIT_AS, bytes, bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn frames_are_a_big_endian_length_and_the_bytes() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut out = FramedWrite::new(near, frames());
        out.send(Bytes::from_static(b"hello")).await.unwrap();
        let mut wire = [0u8; 9];
        far.read_exact(&mut wire).await.unwrap();
        assert_eq!(&wire, b"\0\0\0\x05hello");
    }

    #[tokio::test]
    async fn a_frame_announced_over_the_limit_is_refused_before_it_is_read() {
        let (mut near, far) = tokio::io::duplex(64);
        let too_long = u32::try_from(MAX_FRAME_BYTES + 1).unwrap();
        near.write_all(&too_long.to_be_bytes()).await.unwrap();
        let err = next_frame(&mut FramedRead::new(far, frames())).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_closed_pipe_where_a_frame_was_expected_is_an_error() {
        let (near, far) = tokio::io::duplex(64);
        drop(near);
        let err = next_frame(&mut FramedRead::new(far, frames())).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_worker_answers_a_ping_then_a_request_then_stops_when_its_input_closes() {
        let (requests, worker_input) = tokio::io::duplex(1 << 16);
        let (worker_output, answers) = tokio::io::duplex(1 << 20);
        let engine = Engine::new();
        let worker = answer_requests(&engine, worker_input, worker_output);
        let client = async move {
            let mut requests = FramedWrite::new(requests, frames());
            let mut answers = FramedRead::new(answers, frames());
            requests.send(Bytes::new()).await.unwrap();
            assert!(next_frame(&mut answers).await.unwrap().is_empty(), "a ping is answered with an empty frame");
            let request = RenderRequest { source: "= Hello".into(), data: "{}".into(), ..Default::default() };
            requests.send(Bytes::from(serde_json::to_vec(&request).unwrap())).await.unwrap();
            let header = next_frame(&mut answers).await.unwrap();
            let pdf = next_frame(&mut answers).await.unwrap();
            let facts: Result<RenderFacts, RenderFailure> = serde_json::from_slice(&header).unwrap();
            assert_eq!(facts.unwrap().page_count, 1);
            assert!(pdf.starts_with(b"%PDF"));
        };
        let (served, ()) = tokio::join!(worker, client);
        served.unwrap();
    }
}
