//! `folio serve` with its outputs folder on a file system that is full: a real tmpfs
//! of 8 KiB mounted in a mount namespace of the server's own (`unshare`, as root), so
//! nothing else on the machine sees it.

mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A PDF that cannot be written fails its job with `STORAGE_UNAVAILABLE` and leaves no
/// file behind: the folder does not stay full after a failed write.
#[test]
fn a_pdf_that_does_not_fit_fails_its_job_and_leaves_nothing_behind() {
    // /proc/self belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if !root || Command::new("unshare").arg("--version").output().is_err() {
        let why = "needs root and util-linux's unshare to mount a small tmpfs";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("*** SKIP a_pdf_that_does_not_fit_fails_its_job_and_leaves_nothing_behind: {why} ***");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let key_out = support::folio().args(["keys", "create", "--tenant", "acme", "--data-dir", &data]).output().unwrap();
    let key = String::from_utf8(key_out.stdout).unwrap().trim().to_owned();
    let folio = env!("CARGO_BIN_EXE_folio");
    let script = format!(
        "mkdir -p {data}/outputs && mount -t tmpfs -o size=8k tmpfs {data}/outputs && exec {folio} serve --listen 127.0.0.1:0 --data-dir {data}"
    );
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

    let client = reqwest::blocking::Client::new();
    let body = json!({"template": {"source": "= A report\n#lorem(400)"}, "backoffLimit": 0});
    let created: Value =
        client.post(format!("{url}/v1/renders")).bearer_auth(&key).json(&body).send().unwrap().json().unwrap();
    let id = created["id"].as_str().expect("an id").to_owned();
    let started = Instant::now();
    let job = loop {
        let job: Value = client.get(format!("{url}/v1/renders/{id}")).bearer_auth(&key).send().unwrap().json().unwrap();
        if job["status"] == "failed" || job["status"] == "succeeded" {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{job}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (job["status"].as_str(), job["errorCode"].as_str()),
        (Some("failed"), Some("STORAGE_UNAVAILABLE")),
        "{job}"
    );
    assert!(job["errorMessage"].as_str().unwrap().contains("could not be stored"), "{job}");
    // What the server's namespace sees in its outputs folder: nothing.
    let pid = server.id().to_string();
    let listing =
        Command::new("nsenter").args(["-t", &pid, "-m", "find", &format!("{data}/outputs"), "-type", "f"]).output();
    let listing = String::from_utf8(listing.unwrap().stdout).unwrap();
    assert_eq!(listing.trim(), "", "files left in the full folder");
    server.kill().unwrap();
    server.wait().unwrap();
}
