//! One headless Chromium process, started by folio and driven over the DevTools
//! protocol ([`super::devtools`]).
//!
//! folio starts the process itself so that it can put Chromium in a process group of
//! its own and ask the kernel to kill it when folio dies (`PR_SET_PDEATHSIG`): killing the group on a restart, a crash or
//! a timeout takes the renderer and GPU processes with it, and a `kill -9` of folio
//! leaves no browser behind. Chromium never reaches the network itself: every request
//! goes through [`super::sandbox`], and the flags send anything that could slip past it
//! (DNS, a proxy-less connection) nowhere.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chromiumoxide_cdp::cdp::browser_protocol::browser::BrowserContextId;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::devtools::Devtools;
use super::page::{self, Frames, Tab};
use crate::render::RenderFailure;

/// Longest Chromium may take to start and print its DevTools address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// What Chromium prints on standard error once it listens.
const LISTENING: &str = "DevTools listening on ";

/// The flags every browser runs with: headless, no first-run work, nothing that calls
/// home, iframes in the page's own process (so that the page's request interception
/// sees theirs), and any request that escapes interception sent to an address that
/// answers nothing.
const FLAGS: &[&str] = &[
    "--headless",
    // Chromium's own sandbox needs user namespaces, which containers rarely grant; the
    // render's isolation is the interception, JavaScript off by default, and the
    // process or Pod folio runs in.
    "--no-sandbox",
    "--disable-gpu",
    // No GPU process: the software compositor runs on a thread of the browser, which
    // saves a process and its messages on every render.
    "--in-process-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--disable-site-isolation-trials",
    "--disable-features=IsolateOrigins,site-per-process,Translate,MediaRouter,OptimizationHints,DialMediaRouteProvider,AcceptCHFrame",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--font-render-hinting=none",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    // WebRTC's UDP goes past request interception and the proxy: none without a proxy.
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--js-flags=--max-old-space-size=512",
    "--remote-debugging-port=0",
];

/// A running Chromium and the DevTools connection to it.
pub struct Browser {
    child: Child,
    /// The process group Chromium leads (its pid), kept apart from `child`, which
    /// forgets its pid once reaped while helpers of a crashed browser may still run.
    group: Pid,
    /// The DevTools connection.
    cdp: Devtools,
    /// The task that carries the connection; it ends when the browser goes away.
    connection: JoinHandle<()>,
    /// The tab opened ahead for the next render (opened, or still opening), and how
    /// it draws.
    next_tab: Option<(Frames, JoinHandle<Result<Tab, RenderFailure>>)>,
    _profile: tempfile::TempDir,
    /// Renders done in this browser.
    pub renders: u32,
}

impl Browser {
    /// Start `executable` and connect to it.
    pub async fn launch(executable: &Path) -> io::Result<Browser> {
        let profile = tempfile::Builder::new().prefix("folio-chromium-").tempdir()?;
        let mut command = Command::new(executable);
        command
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            // Chromium writes caches and settings under HOME and XDG folders; keep them
            // in the profile, which is writable even on a read-only root file system.
            // Nothing of folio's environment (credentials, say) reaches the browser.
            .env_clear()
            .envs(
                ["PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "FONTCONFIG_PATH"]
                    .iter()
                    .filter_map(|name| std::env::var_os(name).map(|value| (name, value))),
            )
            .env("HOME", profile.path())
            .env("XDG_CONFIG_HOME", profile.path())
            .env("XDG_CACHE_HOME", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // The signal follows the thread that spawned Chromium: the pool spawns from the
        // runtime's worker threads, which live as long as the process.
        // SAFETY: `prctl` is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from));
        }
        let mut child = command.spawn()?;
        let group = Pid::from_raw(child.id().ok_or_else(|| io::Error::other("Chromium exited at once"))? as i32);
        let stderr = child.stderr.take().ok_or_else(|| io::Error::other("Chromium has no standard error"))?;
        let address = match tokio::time::timeout(START_TIMEOUT, devtools_address(stderr)).await {
            Ok(Ok(address)) => address,
            Ok(Err(err)) => {
                kill_group(group, &mut child).await;
                return Err(err);
            }
            Err(_) => {
                kill_group(group, &mut child).await;
                return Err(io::Error::other(format!("Chromium did not start within {} s", START_TIMEOUT.as_secs())));
            }
        };
        // The pool bounds every render's time itself; a DevTools command has no time
        // limit of its own.
        let (cdp, connection) = match Devtools::connect(&address).await {
            Ok(connected) => connected,
            Err(err) => {
                kill_group(group, &mut child).await;
                return Err(io::Error::other(format!("connecting to Chromium failed: {err}")));
            }
        };
        let mut browser = Browser { child, group, cdp, connection, next_tab: None, _profile: profile, renders: 0 };
        // Most renders print a template without scripts.
        browser.open_next_tab(Frames::Withheld);
        Ok(browser)
    }

    /// A fresh tab for a render that needs `frames`: the one opened ahead if it serves,
    /// else a new one (and the one opened ahead waits for a later render).
    pub async fn take_tab(&mut self, frames: Frames) -> Result<Tab, RenderFailure> {
        if let Some((_, opening)) = self.next_tab.take_if(|(ahead, _)| ahead.serves(frames))
            && let Ok(Ok(tab)) = opening.await
        {
            return Ok(tab);
        }
        Tab::open(&self.cdp, frames).await
    }

    /// Have a tab for renders that need `frames` opened ahead for the next render,
    /// while this browser waits for it. One already opened ahead is kept if it serves
    /// them, else closed: after a render that needed frames, a run of such renders
    /// each get their tab ahead, at the cost of one unused tab when the kind changes.
    pub fn open_next_tab(&mut self, frames: Frames) {
        if matches!(&self.next_tab, Some((ahead, _)) if ahead.serves(frames)) {
            return;
        }
        if let Some((_, opening)) = self.next_tab.take() {
            let cdp = self.cdp.clone();
            tokio::spawn(async move {
                if let Ok(Ok(tab)) = opening.await {
                    page::close(&cdp, tab.context()).await;
                }
            });
        }
        let cdp = self.cdp.clone();
        self.next_tab = Some((frames, tokio::spawn(async move { Tab::open(&cdp, frames).await })));
    }

    /// Dispose of a spent tab's context, in the background.
    pub fn close_tab(&self, context: BrowserContextId) {
        let cdp = self.cdp.clone();
        tokio::spawn(async move { page::close(&cdp, context).await });
    }

    /// Whether the process still runs.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None)) && !self.connection.is_finished()
    }

    /// The browser's processes, to measure while it renders.
    pub fn processes(&self) -> Processes {
        Processes(self.group)
    }

    /// Stop the browser and every process it started, and reap it.
    pub async fn kill(mut self) {
        self.connection.abort();
        if let Some((_, opening)) = self.next_tab.take() {
            opening.abort();
        }
        kill_group(self.group, &mut self.child).await;
    }
}

/// The process group of a browser.
#[derive(Clone, Copy)]
pub struct Processes(Pid);

impl Processes {
    /// Bytes of memory the browser's processes hold (resident set, all of its group).
    pub fn memory_bytes(self) -> u64 {
        group_resident_bytes(self.0.as_raw() as u32)
    }
}

/// A browser dropped mid-render (its job was cancelled) takes its processes with it.
impl Drop for Browser {
    fn drop(&mut self) {
        let _ = killpg(self.group, Signal::SIGKILL);
    }
}

/// Kill the process group `group` that `child` leads, then wait for `child` so it
/// leaves no zombie (its helpers are reaped by whoever reaps orphans: init, or tini
/// in the Chromium image).
async fn kill_group(group: Pid, child: &mut Child) {
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Read Chromium's standard error until it names its DevTools address; keep draining
/// it afterwards, so that a chatty browser never blocks on a full pipe.
async fn devtools_address(stderr: tokio::process::ChildStderr) -> io::Result<String> {
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await? {
        if let Some(address) = line.strip_prefix(LISTENING) {
            let address = address.trim().to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(address);
        }
        if seen.len() < 5 {
            seen.push(line);
        }
    }
    Err(io::Error::other(format!("Chromium exited before it listened: {}", seen.join(" | "))))
}

/// The memory every process in the process group `group` holds on its own: resident
/// pages less those shared (the browser's helpers map the same libraries and shared
/// memory, which a plain sum of resident sets would count once per process).
fn group_resident_bytes(group: u32) -> u64 {
    // Linux pages on the machines folio runs on are 4 KiB.
    let page = 4096;
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name, which is in parentheses and may hold spaces.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let process_group: u32 = fields.get(2)?.parse().ok()?;
            if process_group != group {
                return None;
            }
            let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
            let pages: Vec<u64> = statm.split_whitespace().filter_map(|n| n.parse().ok()).collect();
            Some(pages.get(1)?.saturating_sub(*pages.get(2)?) * page)
        })
        .sum()
}

/// Chromium's headless shell where distributions install the binary itself. Debian's
/// `/usr/bin/chromium-headless-shell` is a script that runs it without `exec`, so a
/// `PR_SET_PDEATHSIG` given to the script would not reach the browser.
const HEADLESS_SHELL_BINARIES: &[&str] = &["/usr/lib/chromium/chromium-headless-shell"];
/// Names searched on `PATH`, best first: the headless shell (a browser built for
/// automation: a render in a fresh context costs it about a quarter of the CPU time
/// full Chromium spends), then full Chromium or Chrome.
const PATH_NAMES: &[&str] = &[
    "chrome-headless-shell",
    "headless_shell",
    "chromium",
    "chromium-browser",
    "google-chrome-stable",
    "google-chrome",
    "chrome",
];

/// The Chromium to run: `FOLIO_CHROMIUM` if set, else the headless shell, else the
/// first of the usual names on `PATH`.
pub fn find_executable() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FOLIO_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = PATH_NAMES.iter().flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)));
    HEADLESS_SHELL_BINARIES.iter().map(PathBuf::from).chain(on_path).find(|candidate| candidate.is_file())
}
