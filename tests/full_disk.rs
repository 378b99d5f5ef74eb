//! `folio serve` with its data on a file system that fills up: a real tmpfs mounted in
//! a mount namespace of the server's own (`unshare`, as root), so nothing else on the
//! machine sees it.

mod support;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

/// Whether this machine can mount a tmpfs in a private mount namespace; fails in CI,
/// skips loudly elsewhere.
fn can_mount(test: &str) -> bool {
    // /proc/self belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if root && Command::new("unshare").arg("--version").output().is_ok() {
        return true;
    }
    let why = "needs root and util-linux's unshare to mount a small tmpfs";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("*** SKIP {test}: {why} ***");
    false
}

/// `folio serve` on `data` after `setup` (shell commands run in its own mount
/// namespace, where `$FOLIO` is the binary); the server and its URL.
fn serve_in_private_mount(data: &str, setup: &str) -> (Child, String) {
    let folio = env!("CARGO_BIN_EXE_folio");
    let script = format!("FOLIO={folio}; {setup} && exec $FOLIO serve --listen 127.0.0.1:0 --data-dir {data}");
    let mut server = support::dies_with_test({
        let mut command = Command::new("unshare");
        command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
        command
    })
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut announced = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap()).read_line(&mut announced).unwrap();
    let url = announced.split_whitespace().find(|w| w.starts_with("http://")).expect(&announced).to_owned();
    (server, url)
}

/// Run `command` in the server's mount namespace.
fn in_namespace_of(server: &Child, command: &[&str]) -> std::process::Output {
    let pid = server.id().to_string();
    Command::new("nsenter").args(["-t", &pid, "-m"]).args(command).output().unwrap()
}

/// Poll job `id` until `ended` says so or `limit` passes; the job.
fn poll(client: &Client, url: &str, key: &str, id: &str, limit: Duration, ended: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let job: Value = client.get(format!("{url}/v1/renders/{id}")).bearer_auth(key).send().unwrap().json().unwrap();
        if ended(&job) || started.elapsed() > limit {
            return job;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A PDF that cannot be written fails its job with `STORAGE_UNAVAILABLE` and leaves no
/// file behind: the folder does not stay full after a failed write.
#[test]
fn a_pdf_that_does_not_fit_fails_its_job_and_leaves_nothing_behind() {
    if !can_mount("a_pdf_that_does_not_fit_fails_its_job_and_leaves_nothing_behind") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let key_out = support::folio().args(["keys", "create", "--tenant", "acme", "--data-dir", &data]).output().unwrap();
    let key = String::from_utf8(key_out.stdout).unwrap().trim().to_owned();
    let setup = format!("mkdir -p {data}/outputs && mount -t tmpfs -o size=8k tmpfs {data}/outputs");
    let (mut server, url) = serve_in_private_mount(&data, &setup);

    let client = Client::new();
    let body = json!({"template": {"source": "= A report\n#lorem(400)"}, "backoffLimit": 0});
    let created: Value =
        client.post(format!("{url}/v1/renders")).bearer_auth(&key).json(&body).send().unwrap().json().unwrap();
    let id = created["id"].as_str().expect("an id").to_owned();
    let ended = |job: &Value| job["status"] == "failed" || job["status"] == "succeeded";
    let job = poll(&client, &url, &key, &id, Duration::from_secs(30), ended);
    assert_eq!(
        (job["status"].as_str(), job["errorCode"].as_str()),
        (Some("failed"), Some("STORAGE_UNAVAILABLE")),
        "{job}"
    );
    assert!(job["errorMessage"].as_str().unwrap().contains("could not be stored"), "{job}");
    // What the server's namespace sees in its outputs folder: nothing.
    let listing = in_namespace_of(&server, &["find", &format!("{data}/outputs"), "-type", "f"]);
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert_eq!(listing.trim(), "", "files left in the full folder");
    server.kill().unwrap();
    server.wait().unwrap();
}

/// A job whose outcome the database cannot record (its disk filled up mid-render)
/// ends within seconds of the space coming back, without a restart: the worker keeps
/// trying to record it instead of holding the job until the server restarts.
#[test]
fn a_job_whose_outcome_cannot_be_recorded_ends_once_the_disk_has_room_again() {
    if !can_mount("a_job_whose_outcome_cannot_be_recorded_ends_once_the_disk_has_room_again") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").to_str().unwrap().to_owned();
    let key_file = dir.path().join("key");
    let setup = format!(
        "mkdir -p {data} && mount -t tmpfs -o size=8m tmpfs {data} && $FOLIO keys create --tenant acme --data-dir {data} > {}",
        key_file.display()
    );
    let (server, url) = serve_in_private_mount(&data, &setup);
    let key = std::fs::read_to_string(&key_file).unwrap().trim().to_owned();
    let client = Client::new();
    // About two seconds of work: the disk fills while it renders.
    let slow = "#let n = 0\n#for i in range(12000) { for j in range(1000) { n += 1 } }\n#n";
    let body = json!({"template": {"source": slow}, "backoffLimit": 0});
    let created: Value =
        client.post(format!("{url}/v1/renders")).bearer_auth(&key).json(&body).send().unwrap().json().unwrap();
    let id = created["id"].as_str().expect("an id").to_owned();
    let rendering = poll(&client, &url, &key, &id, Duration::from_secs(10), |job| job["status"] != "queued");
    assert_eq!(rendering["status"], "rendering", "{rendering}");
    let filler = format!("{data}/filler");
    let filled = in_namespace_of(&server, &["dd", "if=/dev/zero", &format!("of={filler}"), "bs=64k"]);
    assert!(!filled.status.success(), "dd stops when the disk is full");
    // The render ends meanwhile; neither its PDF nor its outcome can be written.
    std::thread::sleep(Duration::from_secs(5));
    let held = poll(&client, &url, &key, &id, Duration::ZERO, |_| true);
    assert_eq!(held["status"], "rendering", "nothing can be recorded on a full disk: {held}");
    assert!(in_namespace_of(&server, &["rm", &filler]).status.success());
    let freed = Instant::now();
    let job = poll(&client, &url, &key, &id, Duration::from_secs(30), |job| job["status"] != "rendering");
    let waited = freed.elapsed();
    eprintln!("the job ended {waited:?} after the disk had room again");
    assert_eq!(
        (job["status"].as_str(), job["errorCode"].as_str()),
        (Some("failed"), Some("STORAGE_UNAVAILABLE")),
        "{job}"
    );
    assert!(waited < Duration::from_secs(4), "the job ended {waited:?} after the fault cleared");
}
