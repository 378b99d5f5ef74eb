//! `folio serve` as clients meet it: the real server on a free port with its own data
//! folder, driven over HTTP by a real client (reqwest), PDFs read by poppler.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::blocking::Response;
use serde_json::{Value, json};
use support::Server;
use support::rest::{Api, client, error_code};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/invoice.yaml");

fn invoice(number: &str, items: usize) -> Value {
    let items: Vec<Value> =
        (0..items).map(|i| json!({"name": format!("Item {i}"), "qty": 1 + i % 3, "price": 9.5})).collect();
    json!({"number": number, "date": "2026-11-23", "customer": {"name": "ACME GmbH"}, "items": items})
}

fn pdf_pages(bytes: &[u8]) -> i64 {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    support::pdfinfo_pages(file.path())
}

fn pdf_text(bytes: &[u8]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    support::pdftotext(file.path())
}

/// Craftkit: create a template, render by slug, poll `pollUrl`, download.
#[test]
fn craftkit_journey_template_render_poll_download() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server, "shop");
    let created = api.post(
        "/v1/templates",
        json!({"name": "receipt", "source": "#let d = json(\"data.json\")\n= Receipt #d.number\n#for i in range(d.pages) [Page #(i + 1) #pagebreak(weak: true)]"}),
    );
    assert_eq!(created.status(), 201);
    let accepted = api.post("/v1/templates/receipt/render", json!({"data": {"number": "R-1", "pages": 3}}));
    assert_eq!(accepted.status(), 202);
    let location = accepted.headers().get("location").unwrap().to_str().unwrap().to_owned();
    let job: Value = accepted.json().unwrap();
    assert_eq!(job["status"], "queued");
    assert_eq!(job["pollUrl"].as_str().unwrap(), location);
    let done = api.wait(job["id"].as_str().unwrap());
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["durationMs"].as_i64().is_some() && done["completedAt"].is_string());
    // downloadUrl works without an API key.
    let pdf = client().get(done["downloadUrl"].as_str().unwrap()).send().unwrap();
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let bytes = pdf.bytes().unwrap();
    assert_eq!(pdf_pages(&bytes), 3);
    assert_eq!(done["pageCount"], 3);
    assert_eq!(done["totalBytes"].as_i64(), Some(bytes.len() as i64));
    assert!(pdf_text(&bytes).contains("Receipt R-1"));
    // The authenticated stream serves the same bytes.
    let streamed = api.get(&format!("/v1/renders/{}/download", done["id"].as_str().unwrap())).bytes().unwrap();
    assert_eq!(streamed, bytes);
}

/// HookPDF: credits per page, balance after each job, previews free and watermarked.
#[test]
fn hookpdf_journey_credits_and_previews() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["-f", EXAMPLE]);
    let api = Api::new(&server, "acme");
    let job: Value =
        api.post("/v1/renders", json!({"templateId": "invoice", "data": invoice("H-1", 60)})).json().unwrap();
    let done = api.wait(job["id"].as_str().unwrap());
    assert_eq!(done["status"], "succeeded", "{done}");
    let pages = done["pageCount"].as_i64().unwrap();
    assert!(pages >= 2);
    assert_eq!(done["baseCredits"].as_i64(), Some(pages));
    assert_eq!(done["sizeExtra"].as_i64(), Some(0));
    assert_eq!(done["creditsUsed"].as_i64(), Some(pages));
    assert_eq!(done["creditsRemaining"].as_i64(), Some(15500 - pages));
    assert_eq!(done["isPreview"], false);
    assert_eq!(done["retryCount"], 0);
    for field in
        ["id", "tenant", "templateId", "createdAt", "updatedAt", "completedAt", "expiresAt", "outputUrl", "downloadUrl"]
    {
        assert!(!done[field].is_null(), "{field} missing: {done}");
    }
    let preview: Value = api
        .post("/v1/renders", json!({"templateId": "invoice", "preview": true, "data": invoice("H-2", 3)}))
        .json()
        .unwrap();
    let preview = api.wait(preview["id"].as_str().unwrap());
    assert_eq!(preview["creditsUsed"].as_i64(), Some(0));
    assert_eq!(preview["isPreview"], true);
    let bytes = api.get(&format!("/v1/renders/{}/download", preview["id"].as_str().unwrap())).bytes().unwrap();
    assert!(pdf_text(&bytes).contains("PREVIEW"));
    let account: Value = api.get("/v1/account").json().unwrap();
    assert_eq!(account["creditsUsed"].as_i64(), Some(pages));
    assert_eq!(account["creditsRemaining"].as_i64(), Some(15500 - pages));
}

/// A client that never finishes its request's headers (a slowloris), and one that
/// connects and sends nothing, have their connections closed after the 10 s header
/// read timeout, not held open forever.
#[test]
fn clients_that_trickle_headers_or_send_nothing_are_cut_off() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let address = server.url.trim_start_matches("http://").to_owned();
    let cut_off_after = |greeting: &'static [u8]| {
        let address = address.clone();
        std::thread::spawn(move || {
            let mut connection = std::net::TcpStream::connect(address).unwrap();
            connection.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let started = Instant::now();
            connection.write_all(greeting).unwrap();
            let mut answer = Vec::new();
            let read = connection.read_to_end(&mut answer);
            assert!(read.is_ok(), "the server closed the connection: {read:?}");
            started.elapsed()
        })
    };
    let trickling = cut_off_after(b"GET /healthz HTTP/1.1\r\nHost: folio\r\nX-Slow: ");
    let silent = cut_off_after(b"");
    for (who, waited) in [("trickling", trickling.join().unwrap()), ("silent", silent.join().unwrap())] {
        eprintln!("a {who} client was cut off after {waited:?}");
        assert!(waited >= Duration::from_secs(9) && waited < Duration::from_secs(15), "{who}: {waited:?}");
    }
}

/// Pixdoc: the render log with filters and pagination, signed URLs, share links.
#[test]
fn pixdoc_journey_render_log_signed_urls_and_shares() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["-f", EXAMPLE]);
    let api = Api::new(&server, "acme");
    let mut ids = Vec::new();
    for n in 0..5 {
        let job: Value = api
            .post("/v1/renders", json!({"templateId": "invoice", "data": invoice(&format!("P-{n}"), 2)}))
            .json()
            .unwrap();
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    let broken: Value = api.post("/v1/renders", json!({"template": {"source": "#panic(\"no\")"}})).json().unwrap();
    for id in &ids {
        assert_eq!(api.wait(id)["status"], "succeeded");
    }
    assert_eq!(api.wait(broken["id"].as_str().unwrap())["status"], "failed");

    let page: Value = api.get("/v1/renders?limit=2").json().unwrap();
    assert_eq!(page["pagination"]["total"], 6);
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["id"], broken["id"], "newest first");
    assert!(page["data"][0]["downloadUrl"].is_null());
    let next = page["pagination"]["next"].as_str().unwrap();
    assert!(next.contains("offset=2"));
    let succeeded: Value =
        api.get("/v1/renders?status=succeeded&type=pdf&limit=10&offset=1&signed=true").json().unwrap();
    assert_eq!(succeeded["pagination"]["total"], 5);
    assert_eq!(succeeded["data"].as_array().unwrap().len(), 4);
    assert!(succeeded["data"][0]["downloadUrl"].is_string(), "signed=true adds URLs");
    let failed: Value = api.get("/v1/renders?status=failed").json().unwrap();
    assert_eq!(failed["data"][0]["errorCode"], "TEMPLATE_COMPILE_ERROR");
    let screenshots: Value = api.get("/v1/renders?type=screenshot").json().unwrap();
    assert_eq!(screenshots["pagination"]["total"], 0);
    assert_eq!(error_code(api.get("/v1/renders?limit=101")).0, 400);
    assert_eq!(error_code(api.get("/v1/renders?status=done")).0, 400);

    let signed: Value =
        api.post(&format!("/v1/renders/{}/signed-url", ids[0]), json!({"expiresIn": 3600})).json().unwrap();
    let signed_url = signed["signedUrl"].as_str().unwrap();
    let share_url = signed["shareUrl"].as_str().unwrap();
    assert!(signed["expiresAt"].is_string());
    let anonymous = client();
    assert_eq!(anonymous.get(signed_url).send().unwrap().status(), 200);
    let tampered = signed_url.replace("expires=", "expires=9");
    assert_eq!(error_code(anonymous.get(tampered).send().unwrap()).1, "SIGNATURE_INVALID");
    assert_eq!(anonymous.get(share_url).send().unwrap().status(), 200);
    let token = share_url.rsplit('/').next().unwrap();
    let shares: Value = api.get("/v1/shares").json().unwrap();
    assert_eq!(shares["data"][0]["token"], token);
    assert_eq!(api.delete(&format!("/v1/shares/{token}")).status(), 204);
    assert_eq!(anonymous.get(share_url).send().unwrap().status(), 404, "revocation takes effect at once");
    for bad in [59, 7_776_001] {
        let response = api.post(&format!("/v1/renders/{}/signed-url", ids[0]), json!({"expiresIn": bad}));
        assert_eq!(error_code(response).0, 400);
    }
    let default: Value = api
        .http
        .post(api.url(&format!("/v1/renders/{}/signed-url", ids[0])))
        .bearer_auth(&api.key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(default["signedUrl"].is_string(), "the body is optional: {default}");

    // Every time in every answer: RFC 3339 UTC to the millisecond.
    let job: Value = api.get(&format!("/v1/renders/{}", ids[0])).json().unwrap();
    let answers = [job, succeeded, page, signed, api.get("/v1/shares").json().unwrap()];
    let times: usize = answers.iter().map(support::assert_times_to_the_millisecond).sum();
    assert!(times >= 20, "only {times} times found");
}

/// When `value` (an RFC 3339 time in a response) is.
fn time(value: &Value) -> jiff::Timestamp {
    value.as_str().unwrap_or_else(|| panic!("not a time: {value}")).parse().unwrap()
}

/// The unix second a signed download URL stops working at.
fn url_expiry(url: &Value) -> i64 {
    let url = reqwest::Url::parse(url.as_str().unwrap()).unwrap();
    let expires = url.query_pairs().find(|(name, _)| name == "expires").unwrap().1.into_owned();
    expires.parse().unwrap()
}

/// Links never outlive their job: a signed URL and a share link asked for longer than
/// the job is kept stop at the job's `expiresAt` (the job is not extended), a share
/// link's listing says so, and a render's `downloadUrl` (a preview's too) states when
/// it stops, never after its job's retention.
#[test]
fn links_never_outlive_their_job() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["-f", EXAMPLE]);
    let api = Api::new(&server, "acme");
    let anonymous = client();

    let job: Value = api
        .post("/v1/renders", json!({"templateId": "invoice", "data": invoice("L-1", 2), "ttlSeconds": 60}))
        .json()
        .unwrap();
    let id = job["id"].as_str().unwrap();
    let done = api.wait(id);
    assert_eq!(done["status"], "succeeded", "{done}");
    let job_end = time(&done["expiresAt"]);
    assert!(job_end <= time(&done["completedAt"]) + jiff::SignedDuration::from_secs(60), "{done}");
    let url_end = time(&done["downloadUrlExpiresAt"]);
    assert!(url_end <= job_end, "the poll's downloadUrl stops with the job: {done}");
    assert!(url_expiry(&done["downloadUrl"]) <= job_end.as_second(), "{done}");
    assert_eq!(anonymous.get(done["downloadUrl"].as_str().unwrap()).send().unwrap().status(), 200);

    let signed: Value = api.post(&format!("/v1/renders/{id}/signed-url"), json!({"expiresIn": 3600})).json().unwrap();
    assert_eq!(time(&signed["expiresAt"]), job_end, "capped at the job's expiresAt, not refused: {signed}");
    assert!(url_expiry(&signed["signedUrl"]) <= job_end.as_second(), "{signed}");
    assert_eq!(anonymous.get(signed["signedUrl"].as_str().unwrap()).send().unwrap().status(), 200);
    assert_eq!(anonymous.get(signed["shareUrl"].as_str().unwrap()).send().unwrap().status(), 200);
    let again: Value = api.get(&format!("/v1/renders/{id}")).json().unwrap();
    assert_eq!(time(&again["expiresAt"]), job_end, "a link never extends its job");
    let token = signed["shareUrl"].as_str().unwrap().rsplit('/').next().unwrap();
    let shares: Value = api.get("/v1/shares").json().unwrap();
    let share = shares["data"].as_array().unwrap().iter().find(|s| s["token"] == token).unwrap();
    assert_eq!(time(&share["expiresAt"]), job_end, "{share}");
    assert_eq!(share["active"], true);

    // A job kept longer than the link: the link lasts what was asked.
    let kept: Value =
        api.post("/v1/renders", json!({"templateId": "invoice", "data": invoice("L-2", 1)})).json().unwrap();
    let kept_id = kept["id"].as_str().unwrap();
    let kept = api.wait(kept_id);
    // To the millisecond, as the server keeps times.
    let now = jiff::Timestamp::from_millisecond(jiff::Timestamp::now().as_millisecond()).unwrap();
    let asked = now + jiff::SignedDuration::from_secs(3600);
    let signed: Value =
        api.post(&format!("/v1/renders/{kept_id}/signed-url"), json!({"expiresIn": 3600})).json().unwrap();
    let link_end = time(&signed["expiresAt"]);
    assert!(link_end >= asked && link_end < time(&kept["expiresAt"]), "{signed} {kept}");

    // A preview is kept briefly; its downloadUrl and links say so.
    let account: Value = api.get("/v1/account").json().unwrap();
    let preview_ttl = jiff::SignedDuration::from_secs(account["previewTtlSeconds"].as_i64().unwrap());
    let preview: Value = api
        .post("/v1/renders", json!({"templateId": "invoice", "preview": true, "data": invoice("L-3", 1)}))
        .json()
        .unwrap();
    let preview_id = preview["id"].as_str().unwrap();
    let preview = api.wait(preview_id);
    assert_eq!(preview["status"], "succeeded", "{preview}");
    let preview_end = time(&preview["expiresAt"]);
    assert!(preview_end <= time(&preview["completedAt"]) + preview_ttl, "{preview}");
    let url_end = time(&preview["downloadUrlExpiresAt"]);
    assert!(url_end <= preview_end, "{preview}");
    assert!(url_end.duration_since(jiff::Timestamp::now()) <= preview_ttl, "not 24 h: {preview}");
    assert!(url_expiry(&preview["downloadUrl"]) <= preview_end.as_second(), "{preview}");
    let default: Value = api
        .http
        .post(api.url(&format!("/v1/renders/{preview_id}/signed-url")))
        .bearer_auth(&api.key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(time(&default["expiresAt"]), preview_end, "the default 24 h is capped too: {default}");
}

/// Errors the HTTP layer produces itself (headers too large, no such route, wrong
/// method, not JSON) come in the one error shape with an `X-Request-Id`, like every
/// other error.
#[test]
fn errors_of_the_http_layer_come_in_the_one_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server, "acme");
    let http = client();

    let huge = "x".repeat(1024 * 1024);
    let response = http.get(api.url("/v1/renders")).bearer_auth(&api.key).header("x-padding", huge).send().unwrap();
    let (status, code, body) = error_code(response);
    assert_eq!((status, code.as_str()), (431, "HEADERS_TOO_LARGE"), "{body}");
    let mut many = http.get(api.url("/v1/renders")).bearer_auth(&api.key);
    for n in 0..150 {
        many = many.header(format!("x-field-{n}"), "1");
    }
    let (status, code, _) = error_code(many.send().unwrap());
    assert_eq!((status, code.as_str()), (431, "HEADERS_TOO_LARGE"));
    // Large but within the limit: served.
    let large = "y".repeat(32 * 1024);
    assert_eq!(
        http.get(api.url("/v1/renders")).bearer_auth(&api.key).header("x-padding", large).send().unwrap().status(),
        200
    );

    let (status, code, _) = error_code(http.put(api.url("/v1/renders")).bearer_auth(&api.key).send().unwrap());
    assert_eq!((status, code.as_str()), (405, "METHOD_NOT_ALLOWED"));
    let (status, code, _) = error_code(http.get(api.url("/v2/nothing")).send().unwrap());
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
    let not_json = http
        .post(api.url("/v1/renders"))
        .bearer_auth(&api.key)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .unwrap();
    let (status, code, _) = error_code(not_json);
    assert_eq!((status, code.as_str()), (415, "UNSUPPORTED_MEDIA_TYPE"));
    // The client's own request id comes back on such an error too.
    let response = http
        .get(api.url("/v1/renders"))
        .header("x-request-id", "client-431")
        .header("x-padding", "z".repeat(100 * 1024))
        .send()
        .unwrap();
    let (status, _, body) = error_code(response);
    assert_eq!((status, body["error"]["requestId"].as_str()), (431, Some("client-431")));
    assert_eq!(api.get("/v1/account").status(), 200);
}

/// Plangrep: externalId, blocked on credits, resume, cancel, expiry.
#[test]
fn plangrep_journey_blocked_resume_cancel_expire() {
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("account.yaml");
    let write_account = |credits: i64| {
        std::fs::write(
            &account,
            format!("apiVersion: folio.dev/v1alpha1\nkind: RenderAccount\nmetadata: {{name: default, namespace: plan}}\nspec: {{credits: {credits}}}\n"),
        )
        .unwrap()
    };
    write_account(3);
    let template = "#let d = json(\"data.json\")\n#for i in range(d.pages) [Page #(i + 1) #pagebreak(weak: true)]";
    let mut server = Server::start(dir.path(), &["-f", account.to_str().unwrap()]);
    let api = Api::new(&server, "plan");
    let key = api.key.clone();
    let first: Value = api
        .post("/v1/renders", json!({"template": {"source": template}, "data": {"pages": 2}, "externalId": "order-1"}))
        .json()
        .unwrap();
    assert_eq!(api.wait(first["id"].as_str().unwrap())["status"], "succeeded");
    let again = api
        .post("/v1/renders", json!({"template": {"source": template}, "data": {"pages": 2}, "externalId": "order-1"}));
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().unwrap()["id"], first["id"], "same externalId, same job");

    let second: Value =
        api.post("/v1/renders", json!({"template": {"source": template}, "data": {"pages": 2}})).json().unwrap();
    let id = second["id"].as_str().unwrap().to_owned();
    let blocked = api.wait(&id);
    assert_eq!(blocked["status"], "blocked");
    assert_eq!(blocked["creditsRemaining"].as_i64(), Some(1));
    assert!(blocked["downloadUrl"].is_null());
    assert_eq!(error_code(api.get(&format!("/v1/renders/{id}/download"))).1, "NOT_READY");
    assert_eq!(error_code(api.post(&format!("/v1/renders/{id}/resume"), json!({}))).1, "INSUFFICIENT_CREDITS");
    let account_view: Value = api.get("/v1/account").json().unwrap();
    assert_eq!(account_view["blockedJobs"], 1);

    // Top up by applying the account with more credits: the job continues by itself.
    drop(api);
    server.kill_hard();
    write_account(10);
    let server = Server::start(dir.path(), &["-f", account.to_str().unwrap()]);
    let api = Api { server: &server, key, http: client() };
    let resumed: Value = api.get(&format!("/v1/renders/{id}")).json().unwrap();
    assert_eq!(resumed["status"], "succeeded", "{resumed}");
    assert_eq!(resumed["creditsRemaining"].as_i64(), Some(6));
    let account_view: Value = api.get("/v1/account").json().unwrap();
    assert_eq!(account_view["creditsUsed"], 4);
    assert_eq!(error_code(api.post(&format!("/v1/renders/{id}/resume"), json!({}))).1, "NOT_BLOCKED");

    // Cancel a job that is still waiting (its deadline keeps it from ever starting late).
    let slow = "#let n = 0\n#for i in range(100000) { for j in range(100000) { n += 1 } }";
    let stuck: Value =
        api.post("/v1/renders", json!({"template": {"source": slow}, "activeDeadlineSeconds": 2})).json().unwrap();
    let expired = api.wait(stuck["id"].as_str().unwrap());
    assert_eq!(expired["status"], "expired");
    assert_eq!(expired["errorCode"], "DEADLINE_EXCEEDED");
    let victim: Value = api.post("/v1/renders", json!({"template": {"source": slow}})).json().unwrap();
    let victim_id = victim["id"].as_str().unwrap();
    let cancelled: Value = api.post(&format!("/v1/renders/{victim_id}/cancel"), json!({})).json().unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(error_code(api.post(&format!("/v1/renders/{victim_id}/cancel"), json!({}))).1, "ALREADY_FINISHED");
    assert_eq!(api.get(&format!("/v1/renders/{victim_id}")).json::<Value>().unwrap()["status"], "cancelled");
}

#[test]
fn tenants_never_see_each_others_anything() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let alice = Api::new(&server, "alice");
    let bob = Api::new(&server, "bob");
    assert_eq!(
        alice.post("/v1/templates", json!({"name": "letter", "source": "Dear #json(\"data.json\").name"})).status(),
        201
    );
    let job: Value =
        alice.post("/v1/renders", json!({"templateId": "letter", "data": {"name": "Ann"}})).json().unwrap();
    let id = job["id"].as_str().unwrap();
    assert_eq!(alice.wait(id)["status"], "succeeded");
    let signed: Value = alice.post(&format!("/v1/renders/{id}/signed-url"), json!({})).json().unwrap();
    let token = signed["shareUrl"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();

    for (method, path) in [
        ("GET", format!("/v1/renders/{id}")),
        ("GET", format!("/v1/renders/{id}/download")),
        ("POST", format!("/v1/renders/{id}/cancel")),
        ("POST", format!("/v1/renders/{id}/resume")),
        ("POST", format!("/v1/renders/{id}/signed-url")),
        ("DELETE", format!("/v1/renders/{id}")),
        ("GET", "/v1/templates/letter".to_owned()),
        ("DELETE", "/v1/templates/letter".to_owned()),
        ("POST", "/v1/templates/letter/render".to_owned()),
        ("DELETE", format!("/v1/shares/{token}")),
    ] {
        let response = match method {
            "GET" => bob.get(&path),
            "DELETE" => bob.delete(&path),
            _ => bob.post(&path, json!({})),
        };
        assert_eq!(error_code(response).0, 404, "{method} {path} must be 404 for another tenant");
    }
    let log: Value = bob.get("/v1/renders").json().unwrap();
    assert_eq!(log["pagination"]["total"], 0);
    assert_eq!(bob.get("/v1/templates").json::<Value>().unwrap()["data"].as_array().unwrap().len(), 0);
    assert_eq!(bob.get("/v1/shares").json::<Value>().unwrap()["data"].as_array().unwrap().len(), 0);
    // Bob's own template of the same name is his, not Alice's.
    assert_eq!(bob.post("/v1/templates", json!({"name": "letter", "source": "Bob's"})).status(), 201);
    assert_eq!(alice.get("/v1/templates/letter").json::<Value>().unwrap()["source"], "Dear #json(\"data.json\").name");
    assert_eq!(alice.get(&format!("/v1/renders/{id}")).status(), 200, "nothing of Alice's was touched");
}

#[test]
fn bad_requests_get_clear_errors_in_one_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["-f", EXAMPLE]);
    let api = Api::new(&server, "acme");
    let http = client();
    let (status, code, _) = error_code(http.get(api.url("/v1/renders")).send().unwrap());
    assert_eq!((status, code.as_str()), (401, "UNAUTHORIZED"));
    let (status, _, _) = error_code(http.get(api.url("/v1/renders")).bearer_auth("folio_wrong").send().unwrap());
    assert_eq!(status, 401);

    let raw = http
        .post(api.url("/v1/renders"))
        .bearer_auth(&api.key)
        .header("content-type", "application/json")
        .body("{\"templateId\": ")
        .send()
        .unwrap();
    assert_eq!(error_code(raw).0, 400);
    let (status, _, body) = error_code(api.post("/v1/renders", json!({"templateId": "invoice", "preview": "yes"})));
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("preview"), "{body}");
    let (status, _, body) = error_code(api.post("/v1/renders", json!({"templateID": "invoice"})));
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("templateID"), "{body}");
    assert_eq!(error_code(api.post("/v1/renders", json!({"data": {}}))).0, 400);
    // Page and screenshot options are named down to the field.
    for (options, path) in [
        (json!({"page": {"tagged": "no"}}), "page.tagged: invalid type"),
        (json!({"page": {"margin": {"top": 1}}}), "page.margin.top: invalid type"),
        (json!({"page": {"landscpe": true}}), "page.landscpe: unknown field"),
        (json!({"screenshot": {"fullPage": "yes"}}), "screenshot.fullPage: invalid type"),
    ] {
        let mut body = json!({"templateId": "invoice"});
        body.as_object_mut().unwrap().extend(options.as_object().unwrap().clone());
        let (status, code, body) = error_code(api.post("/v1/renders", body));
        assert_eq!((status, code.as_str()), (400, "INVALID_REQUEST"), "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(path), "{path}: {body}");
    }
    let (status, code, _) = error_code(api.post("/v1/renders", json!({"templateId": "nope"})));
    assert_eq!((status, code.as_str()), (404, "TEMPLATE_NOT_FOUND"));
    let (status, code, body) =
        error_code(api.post("/v1/renders", json!({"templateId": "invoice", "data": {"number": 7}})));
    assert_eq!((status, code.as_str()), (422, "DATA_INVALID"));
    assert!(body["error"]["message"].as_str().unwrap().contains("/number"), "{body}");
    let big = "x".repeat(300 * 1024);
    let (status, _, _) =
        error_code(api.post("/v1/renders", json!({"template": {"source": "x"}, "data": {"blob": big}})));
    assert_eq!(status, 413);
    let huge = "x".repeat(3 * 1024 * 1024);
    // The server answers 413 as soon as the declared length exceeds the limit and does
    // not read the rest, so the client may see the reset before it sees the answer; a
    // client of its own keeps that closed connection out of the shared pool.
    let oversized =
        client().post(api.url("/v1/renders")).bearer_auth(&api.key).json(&json!({"template": {"source": huge}})).send();
    match oversized {
        Ok(response) => assert_eq!(error_code(response).0, 413),
        Err(err) => assert!(err.is_request() || err.is_body(), "unexpected error: {err}"),
    }
    let (status, code, body) =
        error_code(api.post("/v1/templates", json!({"name": "bad", "source": "#let x = (1, 2"})));
    assert_eq!((status, code.as_str()), (422, "TEMPLATE_COMPILE_ERROR"));
    assert!(body["error"]["message"].as_str().unwrap().contains("1:"), "{body}");
    assert_eq!(error_code(api.post("/v1/templates", json!({"name": "Not A Slug", "source": "x"}))).0, 400);
    assert_eq!(error_code(api.post("/v1/templates", json!({"name": "invoice", "source": "x"}))).1, "TEMPLATE_EXISTS");
    assert_eq!(
        error_code(api.post("/v1/renders", json!({"template": {"source": "x"}, "webhook": {"url": "ftp://x"}}))).0,
        400
    );
    assert_eq!(error_code(api.get("/v1/nothing")).0, 404);
    assert_eq!(error_code(api.put("/v1/renders", json!({}))).0, 405);
    // The server is fine after all of that.
    assert_eq!(api.get("/v1/account").status(), 200);
}

/// An `Idempotency-Key` sent again with the same request (its keys in any order)
/// returns the same job, answered as GET answers it (with the download URL once it
/// succeeded); the same key with another request is refused, as Stripe does.
#[test]
fn idempotency_key_returns_the_same_job() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server, "acme");
    let send = |key: &str, body: &str| {
        api.http
            .post(api.url("/v1/renders"))
            .bearer_auth(&api.key)
            .header("Idempotency-Key", key)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap()
    };
    let hello = r#"{"template": {"source": "Hello"}, "data": {"a": 1, "b": 2}}"#;
    let first = send("k-1", hello);
    assert_eq!(first.status(), 202);
    let first: Value = first.json().unwrap();
    let id = first["id"].as_str().unwrap();
    assert_eq!(api.wait(id)["status"], "succeeded");
    let replay = send("k-1", r#"{"data": {"b": 2, "a": 1}, "template": {"source": "Hello"}}"#);
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().unwrap();
    assert_eq!(replay["id"], first["id"]);
    assert!(replay["downloadUrl"].is_string(), "a replay answers what GET answers: {replay}");
    let url_end = replay["downloadUrlExpiresAt"].as_str().unwrap();
    let digits = url_end.split_once('.').map_or(0, |(_, fraction)| fraction.trim_end_matches('Z').len());
    assert!(digits <= 3, "times are kept to the millisecond: {url_end}");

    let reused = send("k-1", r#"{"template": {"source": "Hello"}, "data": {"a": 2, "b": 2}}"#);
    let (status, code, body) = error_code(reused);
    assert_eq!((status, code.as_str()), (422, "IDEMPOTENCY_KEY_REUSED"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(id), "{body}");

    let other: Value = send("k-2", hello).json().unwrap();
    assert_ne!(other["id"], first["id"]);
    assert_eq!(api.get("/v1/renders").json::<Value>().unwrap()["pagination"]["total"], 2);

    // A new key with the externalId of a job made with another key: that job, by its
    // externalId, and no key was reused.
    let ordered = r#"{"template": {"source": "Hello"}, "externalId": "order-1"}"#;
    let by_key: Value = send("k-3", ordered).json().unwrap();
    let by_external_id = send("k-4", r#"{"template": {"source": "Hi"}, "externalId": "order-1"}"#);
    assert_eq!(by_external_id.status(), 200);
    assert_eq!(by_external_id.json::<Value>().unwrap()["id"], by_key["id"]);
}

/// What the compiler warned about is kept on the job, with line and column: a font
/// family folio does not have falls back, and the job says so instead of staying silent.
/// A file the template does not have is named with the files it has.
#[test]
fn warnings_and_missing_files_are_told_to_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server, "acme");
    let arial = json!({"template": {"source": "#set text(font: \"Arial\")\nHello"}});
    let job: Value = api.post("/v1/renders", arial).json().unwrap();
    let done = api.wait(job["id"].as_str().unwrap());
    assert_eq!(done["status"], "succeeded", "{done}");
    let warnings = done["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{done}");
    let warning = warnings[0].as_str().unwrap();
    assert!(warning.starts_with("main.typ:1:") && warning.contains("unknown font family: arial"), "{warning}");

    let logo = json!({"template": {"source": "#image(\"logo.png\")"}});
    let job: Value = api.post("/v1/renders", logo).json().unwrap();
    let failed = api.wait(job["id"].as_str().unwrap());
    let message = failed["errorMessage"].as_str().unwrap();
    assert!(message.contains("the template's files: main.typ, data.json; add one"), "{message}");
}

/// An inline template carries its own small files: a PNG logo sent as base64 is in
/// the PDF (`pdfimages` lists it); a bad name or content is refused naming the asset.
#[test]
fn an_inline_template_carries_its_logo() {
    const PNG: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server, "acme");
    let body = json!({"template": {"source": "#image(\"logo.png\", width: 2cm)", "assets": [{"name": "logo.png", "base64": PNG}]}});
    let job: Value = api.post("/v1/renders", body).json().unwrap();
    let id = job["id"].as_str().unwrap();
    assert_eq!(api.wait(id)["status"], "succeeded");
    let pdf = dir.path().join("logo.pdf");
    std::fs::write(&pdf, api.get(&format!("/v1/renders/{id}/download")).bytes().unwrap()).unwrap();
    assert_eq!(support::image_count(&pdf), 1, "the 1×1 logo (its alpha is a soft mask beside it)");

    for (asset, says) in [
        (json!({"name": "../etc/passwd", "base64": PNG}), "template.assets[0].name"),
        (json!({"name": "logo.png", "base64": "not base64!"}), "template.assets[0].base64"),
    ] {
        let body = json!({"template": {"source": "Hi", "assets": [asset]}});
        let (status, code, error) = error_code(api.post("/v1/renders", body));
        assert_eq!((status, code.as_str()), (400, "INVALID_REQUEST"), "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(says), "{error}");
    }
    for assets in [
        json!([{"name": "data.json", "base64": PNG}]),
        json!([{"name": "a", "base64": PNG}, {"name": "a", "base64": PNG}]),
    ] {
        let body = json!({"template": {"source": "Hi", "assets": assets}});
        let (status, code, error) = error_code(api.post("/v1/renders", body));
        assert_eq!((status, code.as_str()), (422, "ASSET_NAME_TAKEN"), "{error}");
        let says = "is taken";
        assert!(error["error"]["message"].as_str().unwrap().contains(says), "{error}");
    }
}

/// An `externalId` names one live job: repeating it returns that job, but once the job
/// failed the same `externalId` makes a new one, and the render log lists both.
#[test]
fn an_external_id_whose_job_failed_may_be_submitted_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server, "acme");
    let broken =
        json!({"template": {"source": "#let total = subtotal + 1"}, "externalId": "order-9", "backoffLimit": 0});
    let first: Value = api.post("/v1/renders", broken).json().unwrap();
    assert_eq!(api.wait(first["id"].as_str().unwrap())["status"], "failed");
    let fixed = json!({"template": {"source": "= Order 9"}, "externalId": "order-9"});
    let second = api.post("/v1/renders", fixed.clone());
    assert_eq!(second.status(), 202, "a failed job gives its externalId up");
    let second: Value = second.json().unwrap();
    assert_ne!(second["id"], first["id"]);
    let again = api.post("/v1/renders", fixed);
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().unwrap()["id"], second["id"], "the live job holds it");
    let log: Value = api.get("/v1/renders?externalId=order-9").json().unwrap();
    assert_eq!(log["pagination"]["total"], 2, "{log}");
}

#[test]
fn retention_deletes_expired_jobs_and_their_pdfs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--sweep-interval", "0.3"]);
    let api = Api::new(&server, "acme");
    let short: Value =
        api.post("/v1/renders", json!({"template": {"source": "Short-lived"}, "ttlSeconds": 1})).json().unwrap();
    let kept: Value = api.post("/v1/renders", json!({"template": {"source": "Kept"}})).json().unwrap();
    let short_id = short["id"].as_str().unwrap();
    let done = api.wait(short_id);
    assert_eq!(done["status"], "succeeded");
    let file = dir.path().join("outputs").join(done["outputKey"].as_str().unwrap());
    assert!(file.exists());
    let started = Instant::now();
    while api.get(&format!("/v1/renders/{short_id}")).status() != 404 {
        assert!(started.elapsed() < Duration::from_secs(10), "the expired job was not swept");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!file.exists(), "the PDF is deleted with its job");
    assert_eq!(api.wait(kept["id"].as_str().unwrap())["status"], "succeeded");
    assert_eq!(api.get(&format!("/v1/renders/{}", kept["id"].as_str().unwrap())).status(), 200);
    let deleted = api.delete(&format!("/v1/renders/{}", kept["id"].as_str().unwrap()));
    assert_eq!(deleted.status(), 204);
    assert_eq!(api.get(&format!("/v1/renders/{}", kept["id"].as_str().unwrap())).status(), 404);
}

/// Accepted jobs survive `kill -9`; after a restart every one finishes and the
/// account is charged exactly once per job.
#[test]
fn accepted_jobs_survive_kill_9_and_are_charged_once() {
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("account.yaml");
    std::fs::write(&account, "apiVersion: folio.dev/v1alpha1\nkind: RenderAccount\nmetadata: {name: default, namespace: acme}\nspec: {credits: 100000}\n").unwrap();
    let mut server = Server::start(dir.path(), &["-f", account.to_str().unwrap()]);
    let api = Api::new(&server, "acme");
    let key = api.key.clone();
    let template =
        "#let d = json(\"data.json\")\n#for i in range(d.pages) [Page #(i + 1) of job #d.n #pagebreak(weak: true)]";
    let mut expected_pages = 0;
    let mut ids = Vec::new();
    for n in 0..40 {
        let pages = 20 + n % 3;
        expected_pages += pages;
        let response =
            api.post("/v1/renders", json!({"template": {"source": template}, "data": {"pages": pages, "n": n}}));
        assert_eq!(response.status(), 202);
        ids.push(response.json::<Value>().unwrap()["id"].as_str().unwrap().to_owned());
    }
    let finished: Value = api.get("/v1/renders?status=succeeded&limit=1").json().unwrap();
    let finished = finished["pagination"]["total"].as_i64().unwrap();
    assert!(finished < 40, "the crash must come while jobs are still waiting ({finished} done)");
    drop(api);
    server.kill_hard();
    let server = Server::start(dir.path(), &["-f", account.to_str().unwrap()]);
    let api = Api { server: &server, key, http: client() };
    for id in &ids {
        assert_eq!(api.wait(id)["status"], "succeeded", "job {id} after the restart");
    }
    let account: Value = api.get("/v1/account").json().unwrap();
    assert_eq!(account["creditsUsed"].as_i64(), Some(expected_pages as i64), "every job charged exactly once");
    let total: i64 = ids
        .iter()
        .map(|id| api.get(&format!("/v1/renders/{id}")).json::<Value>().unwrap()["creditsUsed"].as_i64().unwrap())
        .sum();
    assert_eq!(total, expected_pages as i64);
}

#[test]
fn operations_endpoints_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = client();
    assert_eq!(http.get(format!("{}/healthz", server.url)).send().unwrap().status(), 200);
    assert_eq!(http.get(format!("{}/readyz", server.url)).send().unwrap().status(), 200);
    let api = Api::new(&server, "acme");
    let job: Value = api.post("/v1/renders", json!({"template": {"source": "Hi"}})).json().unwrap();
    api.wait(job["id"].as_str().unwrap());
    let metrics = http.get(format!("{}/metrics", server.url)).send().unwrap().text().unwrap();
    assert!(metrics.contains("folio_jobs{phase=\"succeeded\"} 1"), "{metrics}");
    assert!(metrics.contains("folio_render_duration_seconds_count 1"), "{metrics}");
    assert!(metrics.contains("route=\"/v1/renders/{id}\""), "{metrics}");
    let openapi: Value = http.get(format!("{}/openapi.json", server.url)).send().unwrap().json().unwrap();
    for path in ["/v1/renders", "/v1/renders/{id}", "/v1/templates/{slug}/render", "/v1/share/{token}", "/v1/account"] {
        assert!(openapi["paths"][path].is_object(), "{path} missing from openapi.json");
    }
    assert!(openapi["components"]["schemas"]["RenderResponse"]["properties"]["pollUrl"].is_object());
}

/// Every response names its request in `X-Request-Id`: a client's own id comes back
/// as sent (in an error's body too), and a request without one gets a fresh one.
#[test]
fn responses_carry_a_request_id_and_echo_the_clients_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server, "acme");
    let request_id = |response: &Response| response.headers()["x-request-id"].to_str().unwrap().to_owned();

    let first = api.get("/v1/renders");
    let second = api.get("/v1/renders");
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    assert!(!request_id(&first).is_empty());
    assert_ne!(request_id(&first), request_id(&second), "each request gets its own id");

    let with_id = |path: &str, id: &str| {
        api.http.get(api.url(path)).bearer_auth(&api.key).header("x-request-id", id).send().unwrap()
    };
    let echoed = with_id("/v1/renders", "client-7f3a");
    assert_eq!(echoed.status(), 200);
    assert_eq!(request_id(&echoed), "client-7f3a");
    let (status, code, body) = error_code(with_id("/v1/renders/no-such-job", "client-404"));
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
    assert_eq!(body["error"]["requestId"], "client-404");
}

/// SIGTERM stops the server cleanly: it exits 0 within the grace period, and every
/// accepted job is either finished or back in the queue for the next start.
#[test]
fn sigterm_shuts_down_cleanly_and_loses_no_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--shutdown-grace", "10"]);
    let api = Api::new(&server, "acme");
    let key = api.key.clone();
    let template = "#let d = json(\"data.json\")\n#for i in range(d.pages) [Page #(i + 1) #pagebreak(weak: true)]";
    let ids: Vec<String> = (0..30)
        .map(|n| {
            let job: Value = api
                .post("/v1/renders", json!({"template": {"source": template}, "data": {"pages": 20 + n}}))
                .json()
                .unwrap();
            job["id"].as_str().unwrap().to_owned()
        })
        .collect();
    drop(api);
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the server did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    let server = Server::start(dir.path(), &[]);
    let api = Api { server: &server, key, http: client() };
    for id in &ids {
        assert_eq!(api.wait(id)["status"], "succeeded", "job {id} after the restart");
    }
}

#[test]
fn a_tenant_over_its_rate_limit_gets_429_and_others_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--rate-limit", "5"]);
    let busy = Api::new(&server, "busy");
    let quiet = Api::new(&server, "quiet");
    let statuses: Vec<u16> = (0..40).map(|_| busy.get("/v1/account").status().as_u16()).collect();
    assert!(statuses.contains(&200) && statuses.contains(&429), "{statuses:?}");
    let limited = busy.get("/v1/account");
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(error_code(limited).1, "RATE_LIMITED");
    assert_eq!(quiet.get("/v1/account").status(), 200, "the limit is per tenant");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(busy.get("/v1/account").status(), 200, "the bucket refills");
}

/// Cancelling a job stops its render at once, so the worker is free for the next job
/// instead of finishing a render nobody wants.
#[test]
fn cancelling_a_render_frees_its_worker_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["-j", "1", "--render-timeout", "120"]);
    let api = Api::new(&server, "acme");
    let endless = "#let n = 0\n#for i in range(100000) { for j in range(100000) { n += 1 } }";
    let stuck: Value = api.post("/v1/renders", json!({"template": {"source": endless}})).json().unwrap();
    let stuck_id = stuck["id"].as_str().unwrap();
    let started = Instant::now();
    while api.get(&format!("/v1/renders/{stuck_id}")).json::<Value>().unwrap()["status"] != "rendering" {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(api.post(&format!("/v1/renders/{stuck_id}/cancel"), json!({})).status(), 200);
    let next: Value = api.post("/v1/renders", json!({"template": {"source": "Next"}})).json().unwrap();
    let started = Instant::now();
    assert_eq!(api.wait(next["id"].as_str().unwrap())["status"], "succeeded");
    assert!(started.elapsed() < Duration::from_secs(10), "the only worker was still busy: {:?}", started.elapsed());
    assert_eq!(api.get(&format!("/v1/renders/{stuck_id}")).json::<Value>().unwrap()["status"], "cancelled");
}

/// A render worker that dies mid-render (here: killed) is a transient failure: the
/// job is retried after a backoff, succeeds, and says it was retried once.
#[test]
fn a_crashed_render_is_retried_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server, "acme");
    // About a second of work, long enough to be caught mid-render.
    let slow = "#let n = 0\n#for i in range(6000) { for j in range(1000) { n += 1 } }\n#n";
    let job: Value = api.post("/v1/renders", json!({"template": {"source": slow}, "backoffLimit": 2})).json().unwrap();
    let id = job["id"].as_str().unwrap();
    let started = Instant::now();
    while api.get(&format!("/v1/renders/{id}")).json::<Value>().unwrap()["status"] != "rendering" {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(150));
    let workers = render_workers_of(server.child.id());
    assert!(!workers.is_empty(), "no render worker to kill");
    for pid in workers {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let done = api.wait(id);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["retryCount"], 1, "{done}");
}

/// The `folio render-worker` processes whose parent is `parent`, from /proc.
fn render_workers_of(parent: u32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The parent pid is the second field after the parenthesised command name.
        let ppid =
            stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(parent) && String::from_utf8_lossy(&cmdline).contains("render-worker") {
            pids.push(pid);
        }
    }
    pids
}

/// A job waiting behind a busy worker pool expires at its `activeDeadlineSeconds`, to
/// the second, not at the next retention sweep (here once a minute).
#[test]
fn a_waiting_job_expires_at_its_deadline_not_at_the_next_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["-j", "1", "--sweep-interval", "60", "--render-timeout", "8s"]);
    let api = Api::new(&server, "acme");
    let busy: Value = api
        .post("/v1/renders", json!({"template": {"source": "#let n = 0\n#for i in range(1000000000) { n += 1 }"}}))
        .json()
        .unwrap();
    let busy_path = format!("/v1/renders/{}", busy["id"].as_str().unwrap());
    let started = Instant::now();
    while api.get(&busy_path).json::<Value>().unwrap()["status"] != "rendering" {
        assert!(started.elapsed() < Duration::from_secs(5), "the endless render did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let submitted = Instant::now();
    let late: Value =
        api.post("/v1/renders", json!({"template": {"source": "= Late"}, "activeDeadlineSeconds": 1})).json().unwrap();
    let id = late["id"].as_str().unwrap();
    let path = format!("/v1/renders/{id}");
    let job = loop {
        let job: Value = api.get(&path).json().unwrap();
        if job["status"] != "queued" {
            break job;
        }
        assert!(submitted.elapsed() < Duration::from_secs(6), "still queued past its deadline: {job}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let waited = submitted.elapsed();
    assert_eq!(
        (job["status"].as_str(), job["errorCode"].as_str()),
        (Some("expired"), Some("DEADLINE_EXCEEDED")),
        "{job}"
    );
    assert!(waited < Duration::from_millis(2600), "expired {waited:?} after it was submitted with a 1 s deadline");
    eprintln!("a 1 s deadline expired the waiting job after {waited:?}");
}
