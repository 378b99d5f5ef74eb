//! What `folio serve` logs: one line per finished job, naming it and how it ended,
//! never its data.

mod support;

use std::io::BufRead;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A succeeded and a failed job each leave one JSON log line `job finished` with the
/// job, tenant, phase, pages, render time and error code; the data a job was given
/// appears in no log line.
#[test]
fn each_finished_job_logs_one_line_without_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let key_out = support::folio().args(["keys", "create", "--tenant", "acme", "--data-dir"]).arg(dir.path()).output();
    let key = String::from_utf8(key_out.unwrap().stdout).unwrap().trim().to_owned();
    let mut child = support::dies_with_test(support::folio())
        .args(["serve", "--listen", "127.0.0.1:0", "--log-json", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut announced = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut announced).unwrap();
    let url = announced.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
    let stderr = child.stderr.take().unwrap();
    let lines =
        std::thread::spawn(move || std::io::BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());

    let client = reqwest::blocking::Client::new();
    let secret = "4111-1111-1111-1111";
    let mut ids = Vec::new();
    for source in ["= Receipt\n#json(\"data.json\").card", "= Receipt\n#json(\"data.json\").nothing"] {
        let body = json!({"template": {"source": source}, "data": {"card": secret}});
        let created: Value =
            client.post(format!("{url}/v1/renders")).bearer_auth(&key).json(&body).send().unwrap().json().unwrap();
        ids.push(created["id"].as_str().map(str::to_owned).unwrap_or_else(|| panic!("{created}")));
    }
    let started = Instant::now();
    for id in &ids {
        loop {
            let job: Value =
                client.get(format!("{url}/v1/renders/{id}")).bearer_auth(&key).send().unwrap().json().unwrap();
            if ["succeeded", "failed"].contains(&job["status"].as_str().unwrap_or_default()) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{job}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    child.wait().unwrap();
    let lines = lines.join().unwrap();
    assert!(lines.iter().all(|l| !l.contains(secret)), "the data was logged");
    let finished: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "job finished")
        .collect();
    assert_eq!(finished.len(), 2, "{lines:#?}");
    let of = |id: &str| finished.iter().find(|l| l["fields"]["job"] == id).unwrap()["fields"].clone();
    let (done, failed) = (of(&ids[0]), of(&ids[1]));
    assert_eq!(
        (done["tenant"].as_str(), done["phase"].as_str(), done["pages"].as_i64()),
        (Some("acme"), Some("succeeded"), Some(1))
    );
    assert!(done["duration_ms"].is_i64(), "{done}");
    assert_eq!(
        (failed["phase"].as_str(), failed["error_code"].as_str()),
        (Some("failed"), Some("TEMPLATE_COMPILE_ERROR"))
    );
}
