//! `folio accounts` as an operator of `folio serve` uses it: the real binary on the
//! data folder of a running server, whose REST API (a real client) sees each change at
//! once, without a restart.

mod support;

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};
use support::Server;

/// `folio accounts …` on `server`'s data folder.
fn accounts(server: &Server, args: &[&str]) -> std::process::Output {
    support::folio().arg("accounts").args(args).arg("--data-dir").arg(&server.data_dir).output().unwrap()
}

/// A grant made with `folio accounts grant` settles the job the account blocked, and
/// `set` changes pricing and retention, all while the server runs; nonsense is refused
/// naming the flag.
#[test]
fn accounts_are_granted_and_priced_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let key = server.key("acme");
    let http = Client::new();
    let get = |path: &str| -> Value {
        http.get(format!("{}{path}", server.url)).bearer_auth(&key).send().unwrap().json().unwrap()
    };
    let set = accounts(&server, &["set", "--tenant", "acme", "--credits", "1", "--default-ttl-seconds", "3600"]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let account = get("/v1/account");
    assert_eq!((account["creditsGranted"].as_i64(), account["defaultTtlSeconds"].as_i64()), (Some(1), Some(3600)));

    let two_pages = json!({"template": {"source": "One\n#pagebreak()\nTwo"}});
    let job: Value = http
        .post(format!("{}/v1/renders", server.url))
        .bearer_auth(&key)
        .json(&two_pages)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let path = format!("/v1/renders/{}", job["id"].as_str().unwrap());
    let started = Instant::now();
    while get(&path)["status"] != "blocked" {
        assert!(started.elapsed() < Duration::from_secs(20), "{}", get(&path));
        std::thread::sleep(Duration::from_millis(100));
    }
    let granted = accounts(&server, &["grant", "--tenant", "acme", "5"]);
    assert!(granted.status.success(), "{}", String::from_utf8_lossy(&granted.stderr));
    assert!(String::from_utf8_lossy(&granted.stderr).contains("settled 1 job"));
    let shown: serde_yaml::Value = serde_yaml::from_slice(&granted.stdout).unwrap();
    assert_eq!(shown["spec"]["credits"].as_i64(), Some(6));
    let done = get(&path);
    assert_eq!((done["status"].as_str(), done["creditsRemaining"].as_i64()), (Some("succeeded"), Some(4)), "{done}");

    let refused =
        accounts(&server, &["set", "--tenant", "acme", "--default-ttl-seconds", "100", "--max-ttl-seconds", "10"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--default-ttl-seconds 100"), "{refused:?}");
    let zero = accounts(&server, &["set", "--tenant", "acme", "--max-concurrent-renders", "0"]);
    assert!(!zero.status.success() && String::from_utf8_lossy(&zero.stderr).contains("--max-concurrent-renders"));
    let shown = accounts(&server, &["show", "--tenant", "acme"]);
    let shown: serde_yaml::Value = serde_yaml::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["status"]["creditsUsed"].as_i64(), Some(2), "the refused changes left it as it was");
    assert_eq!(shown["spec"]["retention"]["defaultTtlSeconds"].as_i64(), Some(3600));

    // A folder that is not the server's: an error, and no new database in it.
    let elsewhere = tempfile::tempdir().unwrap();
    let wrong = support::folio()
        .args(["accounts", "grant", "--tenant", "acme", "5", "--data-dir"])
        .arg(elsewhere.path())
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no database at"), "{wrong:?}");
    assert!(!elsewhere.path().join("folio.db").exists());
}
