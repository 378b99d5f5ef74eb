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
//! Frames on the pipes are a 4-byte big-endian length followed by that many bytes:
//! the request as JSON; the answer as JSON (facts or failure) followed by the PDF.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

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
}

impl PoolConfig {
    /// One worker per core, running this executable, 4 GiB each.
    pub fn for_this_machine() -> io::Result<PoolConfig> {
        Ok(PoolConfig {
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            executable: std::env::current_exe()?,
            memory_limit_mib: 4096,
        })
    }
}

/// Renders in worker processes, at most `workers` at a time.
pub struct RenderPool {
    config: PoolConfig,
    idle: Mutex<Vec<Worker>>,
    slots: Semaphore,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    renders: u32,
}

impl RenderPool {
    /// A pool that starts workers as renders need them.
    pub fn new(config: PoolConfig) -> RenderPool {
        let workers = config.workers.max(1);
        RenderPool {
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

    /// Render `request`, giving up with `DEADLINE_EXCEEDED` after `limit`.
    pub async fn render(&self, request: &RenderRequest, limit: Duration) -> Result<Rendered, RenderFailure> {
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
        let mut child = Command::new(&self.config.executable)
            .arg(WORKER_SUBCOMMAND)
            .arg("--memory-limit-mib")
            .arg(self.config.memory_limit_mib.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| io::Error::other("worker has no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("worker has no stdout"))?;
        Ok(Worker { child, stdin, stdout: BufReader::new(stdout), renders: 0 })
    }
}

/// Allocation failure under the address-space limit aborts the worker (SIGABRT).
fn aborted(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(libc::SIGABRT)
}

impl Worker {
    async fn exchange(&mut self, request: &RenderRequest) -> io::Result<Result<Rendered, RenderFailure>> {
        let body = serde_json::to_vec(request)?;
        write_frame(&mut self.stdin, &body).await?;
        let header = read_frame(&mut self.stdout).await?;
        let pdf = read_frame(&mut self.stdout).await?;
        let answer: Result<RenderFacts, RenderFailure> = serde_json::from_slice(&header)?;
        Ok(answer.map(|facts| Rendered { pdf, facts }))
    }

    /// An empty frame asks the worker to answer with an empty frame once it is ready.
    async fn ping(&mut self) -> io::Result<()> {
        write_frame(&mut self.stdin, &[]).await?;
        read_frame(&mut self.stdout).await.map(drop)
    }
}

async fn write_frame(out: &mut ChildStdin, body: &[u8]) -> io::Result<()> {
    out.write_all(&frame_len(body.len())?).await?;
    out.write_all(body).await?;
    out.flush().await
}

async fn read_frame(input: &mut BufReader<ChildStdout>) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).await?;
    let len = checked_len(len)?;
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).await?;
    Ok(body)
}

fn frame_len(len: usize) -> io::Result<[u8; 4]> {
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes is too large")));
    }
    Ok((len as u32).to_be_bytes())
}

fn checked_len(len: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes is too large")));
    }
    Ok(len)
}

/// The worker's side: limit this process's memory, load the engine, and answer
/// requests from stdin until it closes.
pub fn serve_worker(memory_limit_mib: u64) -> io::Result<()> {
    die_with_parent()?;
    limit_address_space(memory_limit_mib)?;
    let engine = Engine::new();
    let mut input = io::stdin().lock();
    let mut output = io::BufWriter::new(io::stdout().lock());
    loop {
        let mut len = [0u8; 4];
        match input.read_exact(&mut len) {
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            other => other?,
        }
        let mut body = vec![0u8; checked_len(len)?];
        input.read_exact(&mut body)?;
        if body.is_empty() {
            write_sync_frame(&mut output, &[])?;
        } else {
            let (header, pdf) = answer(&engine, &body);
            write_sync_frame(&mut output, &header)?;
            write_sync_frame(&mut output, &pdf)?;
        }
        output.flush()?;
    }
}

fn answer(engine: &Engine, body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let outcome = match serde_json::from_slice::<RenderRequest>(body) {
        Ok(request) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.render(&request)))
            .unwrap_or_else(|_| Err(RenderFailure::new(ErrorCode::Internal, "the renderer panicked"))),
        Err(err) => Err(RenderFailure::new(ErrorCode::Internal, format!("unreadable render request: {err}"))),
    };
    let (header, pdf) = match outcome {
        Ok(rendered) => (Ok(rendered.facts), rendered.pdf),
        Err(failure) => (Err(failure), Vec::new()),
    };
    let header: Result<RenderFacts, RenderFailure> = header;
    // Serializing these plain structs cannot fail.
    (serde_json::to_vec(&header).unwrap_or_default(), pdf)
}

fn write_sync_frame(out: &mut impl Write, body: &[u8]) -> io::Result<()> {
    out.write_all(&frame_len(body.len())?)?;
    out.write_all(body)
}

/// A worker must not outlive the process that started it: if that process is killed
/// (even with SIGKILL, which gives it no chance to stop its workers), a worker stuck in
/// a hostile template would otherwise go on burning a core. (The signal follows the
/// parent's spawning thread; the pool spawns from runtime worker threads, which live
/// as long as the process.)
fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a signal for this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
    // The parent may have died before the call above took effect.
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } == 1 {
        return Err(io::Error::other("the process that started this worker is gone"));
    }
    Ok(())
}

fn limit_address_space(mib: u64) -> io::Result<()> {
    let bytes = mib.saturating_mul(1024 * 1024) as libc::rlim_t;
    let limit = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
    // SAFETY: setrlimit reads the struct we pass and changes only this process.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
