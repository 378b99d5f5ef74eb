//! Brand-ready templates over the REST API alone, against the real `folio serve`: a
//! template gets a PNG logo and a TrueType font as files (`PUT …/assets/{name}`), its
//! renders use both (poppler's `pdfimages` and `pdffonts` read the PDF), every change
//! makes a version, and a job pinned to an old version renders that version.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::Server;
use support::rest::{Api, error_code};

const FONT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fonts/FolioTestSans.ttf");
/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xfc, 0xcf, 0xc0, 0x50, 0x0f, 0x00, 0x04, 0x85, 0x01, 0x80, 0x84, 0xa9, 0x8c,
    0x21, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// A branded invoice: the logo, and text in the uploaded font.
const BRANDED: &str =
    "#set text(font: \"Folio Test Sans\")\n#image(\"logo.png\", width: 2cm)\n= Invoice #json(\"data.json\").number\n";

/// Render `body` to a PDF in `dir`; the job as it ended.
fn render(api: &Api, dir: &Path, body: Value) -> (Value, std::path::PathBuf) {
    let job: Value = api.post("/v1/renders", body).json().unwrap();
    let id = job["id"].as_str().unwrap_or_else(|| panic!("no job: {job}")).to_owned();
    let ended = api.wait(&id);
    assert_eq!(ended["status"], "succeeded", "{ended}");
    let pdf = dir.join(format!("{id}.pdf"));
    std::fs::write(&pdf, api.get(&format!("/v1/renders/{id}/download")).bytes().unwrap()).unwrap();
    (ended, pdf)
}

#[test]
fn a_template_with_an_uploaded_logo_and_font_renders_with_both() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server, "acme");
    let created = api.post("/v1/templates", json!({"name": "invoice", "source": BRANDED}));
    assert_eq!(created.status(), 201);
    assert_eq!(created.json::<Value>().unwrap()["version"], 1);

    // The type is sniffed from the bytes: a PNG sent as text is a PNG.
    let logo = api.http.put(api.url("/v1/templates/invoice/assets/logo.png")).bearer_auth(&api.key);
    let logo = logo.header("content-type", "text/plain").body(PNG.to_vec()).send().unwrap();
    assert_eq!(logo.status(), 201);
    let logo: Value = logo.json().unwrap();
    assert_eq!((logo["contentType"].as_str(), logo["size"].as_u64()), (Some("image/png"), Some(PNG.len() as u64)));
    let font = std::fs::read(FONT).unwrap();
    let uploaded = api.put_bytes("/v1/templates/invoice/assets/FolioTestSans.ttf", font.clone());
    assert_eq!(uploaded.status(), 201);
    assert_eq!(uploaded.json::<Value>().unwrap()["contentType"], "font/ttf");

    let listed: Value = api.get("/v1/templates/invoice/assets").json().unwrap();
    let names: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["logo.png", "FolioTestSans.ttf"]);
    let fetched = api.get("/v1/templates/invoice/assets/FolioTestSans.ttf");
    assert_eq!(fetched.headers()["content-type"], "font/ttf");
    assert_eq!(fetched.bytes().unwrap().as_ref(), font.as_slice(), "the bytes come back as sent");

    let (job, pdf) = render(&api, dir.path(), json!({"templateId": "invoice", "data": {"number": "2026-7"}}));
    assert_eq!(job["templateVersion"], 3, "created, then two files: version 3");
    assert_eq!(job["warnings"], json!([]), "the font is found: {job}");
    assert!(support::embeds_font(&pdf, "FolioTestSans"), "the uploaded font is embedded");
    assert!(!support::embeds_font(&pdf, "Libertinus"), "and the default is not used");
    assert_eq!(support::image_count(&pdf), 1, "the logo");

    // A family nobody has falls back, and the job says so.
    let unknown = "#set text(font: \"Helvetica Neue Pro\")\nHello";
    let (job, _) = render(&api, dir.path(), json!({"template": {"source": unknown}}));
    assert!(job["warnings"][0].as_str().unwrap().contains("unknown font family: helvetica neue pro"), "{job}");

    // The families a template can use: folio's, and the template's own.
    let fonts: Value = api.get("/v1/fonts").json().unwrap();
    let family = |name: &str| fonts["data"].as_array().unwrap().iter().find(|f| f["family"] == name).cloned();
    assert_eq!(family("Inter").map(|f| f["source"].clone()), Some(json!("embedded")), "{fonts}");
    assert_eq!(
        family("Folio Test Sans"),
        Some(json!({"family": "Folio Test Sans", "source": "template", "templates": ["invoice"]}))
    );

    // Deleting a file is a new version; the render then misses it, and says how to add it.
    assert_eq!(api.delete("/v1/templates/invoice/assets/logo.png").status(), 204);
    assert_eq!(api.get("/v1/templates/invoice/assets/logo.png").status(), 404);
    let job: Value = api.post("/v1/renders", json!({"templateId": "invoice", "data": {"number": "8"}})).json().unwrap();
    let failed = api.wait(job["id"].as_str().unwrap());
    assert_eq!(failed["status"], "failed");
    let message = failed["errorMessage"].as_str().unwrap();
    assert!(message.contains("logo.png"), "{failed}");
    assert!(message.contains("files: main.typ, data.json, FolioTestSans.ttf;"), "{failed}");
    assert!(message.contains("PUT /v1/templates/{slug}/assets/{name}"), "{failed}");
}

#[test]
fn bad_files_are_refused_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server, "acme");
    assert_eq!(api.post("/v1/templates", json!({"name": "memo", "source": "Hi"})).status(), 201);
    for (path, bytes, status, code) in [
        ("/v1/templates/memo/assets/a%20b.png", PNG.to_vec(), 400, "INVALID_REQUEST"),
        ("/v1/templates/memo/assets/%C3%BCber.png", PNG.to_vec(), 400, "INVALID_REQUEST"),
        ("/v1/templates/memo/assets/empty.png", Vec::new(), 400, "INVALID_REQUEST"),
        ("/v1/templates/memo/assets/main.typ", b"= Other".to_vec(), 422, "ASSET_NAME_TAKEN"),
        ("/v1/templates/nope/assets/logo.png", PNG.to_vec(), 404, "NOT_FOUND"),
        ("/v1/templates/memo/assets/big.bin", vec![7; 10 * 1024 * 1024 + 1], 413, "PAYLOAD_TOO_LARGE"),
    ] {
        let (got, got_code, error) = error_code(api.put_bytes(path, bytes));
        assert_eq!((got, got_code.as_str()), (status, code), "{path}: {error}");
    }
    // Five files of 10 MiB fit a template; a sixth would pass its 50 MiB.
    for i in 0..5 {
        assert_eq!(
            api.put_bytes(&format!("/v1/templates/memo/assets/part{i}.bin"), vec![i; 10 * 1024 * 1024]).status(),
            201
        );
    }
    let (status, _, error) = error_code(api.put_bytes("/v1/templates/memo/assets/part5.bin", vec![9; 1024]));
    assert_eq!(status, 413, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("50 MiB"), "{error}");
    // Replacing a file counts its new size, not both.
    assert_eq!(api.put_bytes("/v1/templates/memo/assets/part4.bin", vec![1; 1024]).status(), 200);
    assert_eq!(api.delete("/v1/templates/memo/assets/nope.png").status(), 404);
    let other = Api::new(&server, "globex");
    assert_eq!(other.get("/v1/templates/memo/assets").status(), 404, "another tenant's template is not there");
}

#[test]
fn a_job_renders_the_version_it_was_submitted_with() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server, "acme");
    api.post("/v1/templates", json!({"name": "letter", "source": "Version one"}));
    let first: Value = api.post("/v1/renders", json!({"templateId": "letter"})).json().unwrap();
    assert_eq!(first["templateVersion"], 1, "pinned when accepted: {first}");
    let second = api.put("/v1/templates/letter", json!({"source": "Version two"})).json::<Value>().unwrap();
    assert_eq!(second["version"], 2);
    let same = api.put("/v1/templates/letter", json!({"source": "Version two"})).json::<Value>().unwrap();
    assert_eq!(same["version"], 2, "a write that changes nothing makes no version");

    let (pinned, pdf) = render(&api, dir.path(), json!({"templateId": "letter", "templateVersion": 1}));
    assert_eq!(pinned["templateVersion"], 1);
    assert!(support::pdftotext(&pdf).contains("Version one"));
    let (current, pdf) = render(&api, dir.path(), json!({"templateId": "letter"}));
    assert_eq!(current["templateVersion"], 2);
    assert!(support::pdftotext(&pdf).contains("Version two"));
    let first_id = first["id"].as_str().unwrap();
    assert_eq!(api.wait(first_id)["templateVersion"], 1);
    let first_pdf = dir.path().join("first.pdf");
    std::fs::write(&first_pdf, api.get(&format!("/v1/renders/{first_id}/download")).bytes().unwrap()).unwrap();
    assert!(support::pdftotext(&first_pdf).contains("Version one"), "the version it was submitted with");

    let versions: Value = api.get("/v1/templates/letter/versions").json().unwrap();
    let listed = versions["data"].as_array().unwrap();
    assert_eq!(listed.iter().map(|v| v["version"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 2]);
    assert_ne!(listed[0]["sha256"], listed[1]["sha256"]);
    let old: Value = api.get("/v1/templates/letter/versions/1").json().unwrap();
    assert_eq!((old["version"].as_i64(), old["source"].as_str()), (Some(1), Some("Version one")));

    let restored: Value = api.post("/v1/templates/letter/versions/1/restore", json!(null)).json().unwrap();
    assert_eq!((restored["version"].as_i64(), restored["source"].as_str()), (Some(3), Some("Version one")));
    let versions: Value = api.get("/v1/templates/letter/versions").json().unwrap();
    assert_eq!(versions["data"][2]["sha256"], listed[0]["sha256"], "version 3 says what version 1 said");

    let (status, code, error) =
        error_code(api.post("/v1/renders", json!({"templateId": "letter", "templateVersion": 9})));
    assert_eq!((status, code.as_str()), (404, "TEMPLATE_NOT_FOUND"), "{error}");
    assert_eq!(api.get("/v1/templates/letter/versions/9").status(), 404);
    assert_eq!(api.post("/v1/templates/letter/versions/0/restore", json!(null)).status(), 400);
}

#[test]
fn server_wide_fonts_come_from_the_font_path() {
    let dir = tempfile::tempdir().unwrap();
    let fonts = tempfile::tempdir().unwrap();
    std::fs::create_dir(fonts.path().join("brand")).unwrap();
    std::fs::copy(FONT, fonts.path().join("brand/FolioTestSans.ttf")).unwrap();
    let font_path = fonts.path().to_str().unwrap();
    let server = Server::start(dir.path(), &["--font-path", font_path]);
    let api = Api::new(&server, "acme");
    let listed: Value = api.get("/v1/fonts").json().unwrap();
    let server_fonts: Vec<&Value> =
        listed["data"].as_array().unwrap().iter().filter(|f| f["source"] == "server").collect();
    assert_eq!(server_fonts, [&json!({"family": "Folio Test Sans", "source": "server"})]);
    let source = "#set text(font: \"Folio Test Sans\")\nServer font";
    let (job, pdf) = render(&api, dir.path(), json!({"template": {"source": source}}));
    assert_eq!(job["warnings"], json!([]));
    assert!(support::embeds_font(&pdf, "FolioTestSans"));

    let missing = support::folio()
        .args(["serve", "--listen", "127.0.0.1:0", "--font-path", "/no/such/fonts", "--data-dir"])
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("--font-path /no/such/fonts") && said.contains("No such file"), "{said}");
}

/// A template applied with `serve -f` keeps the files uploaded over the API when the
/// server starts again with the same manifest, and that start makes no new version.
#[test]
fn serve_f_keeps_uploaded_files_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("memo.yaml");
    let yaml = "apiVersion: folio.dev/v1alpha1\nkind: RenderTemplate\nmetadata: {name: memo, namespace: acme}\nspec:\n  source: '#image(\"logo.png\")'\n";
    std::fs::write(&manifest, yaml).unwrap();
    let data = dir.path().join("data");
    let manifest = manifest.to_str().unwrap();
    let mut server = Server::start(&data, &["-f", manifest]);
    let api = Api::new(&server, "acme");
    assert_eq!(api.put_bytes("/v1/templates/memo/assets/logo.png", PNG.to_vec()).status(), 201);
    let key = api.key.clone();
    server.kill_hard();
    let server = Server::start(&data, &["-f", manifest]);
    let api = Api { server: &server, key, http: support::rest::client() };
    let memo: Value = api.get("/v1/templates/memo").json().unwrap();
    assert_eq!((memo["assets"].clone(), memo["version"].as_i64()), (json!(["logo.png"]), Some(2)), "{memo}");
    let (job, _) = render(&api, dir.path(), json!({"templateId": "memo"}));
    assert_eq!(job["templateVersion"], 2);
}
