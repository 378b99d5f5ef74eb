//! `folio serve` against its own `/openapi.json`, checked by schemathesis (pinned in
//! `tests/contract/install.sh`, configured in `tests/contract/schemathesis.toml`): every
//! operation fuzzed with schema-valid and schema-violating requests, the answers held
//! to the document (status codes, bodies, headers), stateful sequences along its links.
//! Any check that fails fails this test.

mod support;

use std::process::Command;

use support::Server;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract/schemathesis.toml");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/invoice.yaml");

/// The schemathesis command: `FOLIO_SCHEMATHESIS`, else the pinned one that
/// `tests/contract/install.sh` installs (into `~/.cache`, the first time).
fn schemathesis() -> Option<String> {
    let command = match std::env::var("FOLIO_SCHEMATHESIS") {
        Ok(command) => command,
        Err(_) => {
            let install =
                Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract/install.sh")).output().ok()?;
            String::from_utf8(install.stdout).ok()?.trim().to_owned()
        }
    };
    Command::new(&command).arg("--version").output().ok().filter(|o| o.status.success()).map(|_| command)
}

#[test]
fn the_server_does_what_its_openapi_document_says() {
    let Some(schemathesis) = schemathesis() else {
        let why = "needs schemathesis: tests/contract/install.sh installs it (python3 with venv, e.g. Debian's python3-venv, and PyPI)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("*** SKIP the_server_does_what_its_openapi_document_says: {why} ***");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["-f", EXAMPLE]);
    let key = server.key("acme");
    let seed = std::env::var("FOLIO_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261129".to_owned());
    let run = Command::new(&schemathesis)
        .args(["--config-file", CONFIG, "--no-color", "run", &format!("{}/openapi.json", server.url)])
        .args(["--checks", "all", "--max-examples", "50", "--workers", "1", "--seed", &seed])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    let summary = report.lines().last().unwrap_or_default();
    eprintln!("schemathesis (seed {seed}): {summary}");
    assert!(run.status.success(), "schemathesis found the server and its document apart:\n{report}");
}
