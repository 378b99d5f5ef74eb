//! The `html` engine and web pages, printed by the real Chromium (Debian's `chromium`
//! package) through `folio run`, `folio serve` and the engine's pool: an HTML invoice
//! with a logo file becomes a PDF that poppler reads and an og PNG of 1200 × 630; a
//! page that reaches for anything but its own files gets nothing (a listener on
//! loopback counts the connections); a web page on a private address is refused; a
//! browser that hangs or is left behind by a `kill -9` does not outlive its render.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use folio::render::html::{ChromiumConfig, ChromiumPool};
use folio::render::{Asset, RenderRequest};
use folio::resources::{ErrorCode, OutputFormat, ScreenshotOptions, TemplateEngine};
use serde_json::{Value, json};
use support::rest::Api;
use support::{Server, pdftotext, report, reports, run_manifest};

/// The invoice: Jinja placeholders, a loop, the logo by its file name, CSS page size.
const INVOICE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><style>
  @page { size: A4; margin: 18mm }
  body { font-family: sans-serif; color: #222 }
  th { background: #1d4ed8; color: white; text-align: left }
  .total { font-weight: bold }
</style></head>
<body>
  <img src="logo.png" width="120" alt="logo">
  <h1>Invoice {{ number }}</h1>
  <p>Bill to: {{ customer.name }}</p>
  <table>
    <tr><th>Item</th><th>Qty</th><th>Price</th></tr>
    {% for item in items %}<tr><td>{{ item.description }}</td><td>{{ item.qty }}</td><td>{{ item.price }} {{ currency }}</td></tr>
    {% endfor %}
  </table>
  <p class="total">Total: {{ total }} {{ currency }}</p>
</body></html>
"#;

/// A 60 × 30 logo, solid blue.
fn logo() -> Vec<u8> {
    let mut pixmap = tiny_skia::Pixmap::new(60, 30).unwrap();
    pixmap.fill(tiny_skia::Color::from_rgba8(29, 78, 216, 255));
    pixmap.encode_png().unwrap()
}

fn invoice_data() -> Value {
    json!({
        "number": "2026-0042",
        "customer": {"name": "Ada Lovelace"},
        "items": [
            {"description": "Analytical engine, rental", "qty": 3, "price": "120.00"},
            {"description": "Punched cards", "qty": 500, "price": "0.10"}
        ],
        "total": "410.00"
    })
}

/// Width and height of a PNG, read from its header.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let word = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

/// Pixels of a PNG that are clearly red (the PREVIEW mark), out of all.
fn reddish_pixels(png: &[u8]) -> usize {
    let pixmap = tiny_skia::Pixmap::decode_png(png).unwrap();
    pixmap.pixels().iter().filter(|p| p.red() as i32 - p.blue() as i32 > 40 && p.red() > 150).count()
}

/// Whether `pdfinfo`'s answer says the PDF is tagged.
fn tagged(pdfinfo: &str) -> bool {
    pdfinfo.lines().any(|line| line.starts_with("Tagged:") && line.ends_with("yes"))
}

fn indented(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

#[test]
fn an_html_invoice_with_a_logo_renders_to_pdf_and_og_through_folio_run() {
    support::require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let logo = base64::engine::general_purpose::STANDARD.encode(logo());
    let data = serde_json::to_string(&invoice_data()).unwrap();
    let manifest = format!(
        "apiVersion: folio.dev/v1alpha1\nkind: RenderTemplate\nmetadata: {{name: invoice}}\nspec:\n  engine: html\n  source: |\n{source}  assets:\n  - {{name: logo.png, base64: \"{logo}\"}}\n  defaults: {{currency: EUR}}\n  dataSchema: {{type: object, required: [customer], properties: {{customer: {{type: object, required: [name]}}}}}}\n---\n\
         apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {{name: inv-pdf}}\nspec: {{templateRef: {{name: invoice}}, data: {data}, page: {{format: Letter, footerHtml: '<span style=\"font-size:8px\">Page <span class=pageNumber></span> of <span class=totalPages></span></span>', margin: {{bottom: 2cm}}}}}}\n---\n\
         apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {{name: inv-untagged}}\nspec: {{templateRef: {{name: invoice}}, data: {data}, page: {{tagged: false}}}}\n---\n\
         apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {{name: inv-og}}\nspec: {{templateRef: {{name: invoice}}, data: {data}, output: og}}\n---\n\
         apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {{name: inv-shot}}\nspec: {{templateRef: {{name: invoice}}, data: {data}, output: screenshot, preview: true, screenshot: {{width: 800, height: 600, deviceScaleFactor: 2}}}}\n---\n\
         apiVersion: folio.dev/v1alpha1\nkind: RenderJob\nmetadata: {{name: inv-no-customer}}\nspec: {{templateRef: {{name: invoice}}, data: {{number: x}}}}\n",
        source = indented(INVOICE),
    );
    let out = run_manifest(dir.path(), &manifest, &[]);
    let reports = reports(&out);
    let status = &report(&reports, "inv-pdf")["status"];
    assert_eq!(status["phase"], "Succeeded", "{status:?}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(status["warnings"], serde_yaml::Value::Null, "every request was the template's own: {status:?}");
    let pdf = dir.path().join("out/default/inv-pdf.pdf");
    let text = pdftotext(&pdf);
    for expected in ["Invoice 2026-0042", "Bill to: Ada Lovelace", "Punched cards", "Total: 410.00 EUR", "Page 1 of 1"]
    {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    assert_eq!(support::image_count(&pdf), 1, "the logo");
    let info = support::pdfinfo(&pdf);
    assert!(info.contains("Producer:") && info.contains("(Chromium)"), "{info}");
    assert!(tagged(&info), "an accessible PDF by default: {info}");
    let untagged = support::pdfinfo(&dir.path().join("out/default/inv-untagged.pdf"));
    assert!(!tagged(&untagged), "page.tagged: false: {untagged}");
    assert!(info.contains("A4") || info.contains("595."), "the CSS page size wins over format: {info}");

    let og = std::fs::read(dir.path().join("out/default/inv-og.png")).unwrap();
    assert_eq!(png_size(&og), (1200, 630));
    assert_eq!(report(&reports, "inv-og")["status"]["pageCount"], 1);
    assert_eq!(reddish_pixels(&og), 0, "not a preview: no mark");
    let shot = std::fs::read(dir.path().join("out/default/inv-shot.png")).unwrap();
    assert_eq!(png_size(&shot), (1600, 1200), "800 × 600 at device scale 2");
    assert!(reddish_pixels(&shot) > 1000, "a preview's screenshot carries the PREVIEW mark");

    let refused = &report(&reports, "inv-no-customer")["status"];
    assert_eq!(refused["errorCode"], "DATA_INVALID", "{refused:?}");
}

/// A loopback listener that counts the connections made to it.
fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut stream = stream;
            let mut buffer = [0u8; 1024];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut buffer);
            let page = "<h1>A page on loopback</h1>";
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
        }
    });
    (address, count)
}

fn pool(allow_private_targets: bool) -> ChromiumPool {
    ChromiumPool::new(ChromiumConfig { browsers: 1, allow_private_targets, ..Default::default() })
}

/// An html template whose `script` runs (JavaScript on), with no data.
fn script_page(script: &str) -> RenderRequest {
    RenderRequest {
        engine: TemplateEngine::Html,
        source: format!("<script>{script}</script>"),
        data: "{}".into(),
        javascript: true,
        ..Default::default()
    }
}

/// After a failed render, a plain page still renders to a PDF in `pool`.
async fn next_render_succeeds(pool: &ChromiumPool) {
    let fine = RenderRequest {
        engine: TemplateEngine::Html,
        source: "<h1>fine</h1>".into(),
        data: "{}".into(),
        ..Default::default()
    };
    let rendered = pool.render(&fine, Duration::from_secs(30)).await.unwrap();
    assert!(rendered.output.starts_with(b"%PDF"));
}

#[tokio::test]
async fn an_html_template_reaches_nothing_but_its_own_files() {
    support::require_chromium();
    let (outside, connections) = counting_listener();
    let source = format!(
        r#"<html><head>
        <link rel="stylesheet" href="{outside}/style.css">
        <style>@font-face {{ font-family: Far; src: url({outside}/font.woff2) }} body {{ font-family: Far }}</style>
        <script src="{outside}/script.js"></script>
        <script>fetch("{outside}/fetch"); new Image().src = "{outside}/js-image.png";
          navigator.sendBeacon && navigator.sendBeacon("{outside}/beacon", "x");
          try {{ new WebSocket("{outside}".replace("http", "ws") + "/ws") }} catch (e) {{}}
          new Worker(URL.createObjectURL(new Blob(['fetch("{outside}/worker")'], {{type: "text/javascript"}})));</script>
        </head><body>
        <img src="{outside}/logo.png"><img src="logo.png">
        <iframe src="{outside}/frame.html"></iframe>
        <object data="{outside}/object.pdf"></object>
        <video src="{outside}/video.mp4" autoplay></video>
        <p>Only my own logo</p></body></html>"#
    );
    let pool = pool(false);
    for javascript in [false, true] {
        let request = RenderRequest {
            engine: TemplateEngine::Html,
            source: source.clone(),
            data: "{}".into(),
            assets: vec![Asset { name: "logo.png".into(), bytes: logo() }],
            javascript,
            ..Default::default()
        };
        let rendered = pool.render(&request, Duration::from_secs(30)).await.unwrap();
        assert!(rendered.output.starts_with(b"%PDF"));
        let warnings = rendered.facts.warnings.join("\n");
        assert!(warnings.contains("were blocked") && warnings.contains(&outside), "{warnings}");
    }
    // Anything in flight would have connected by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing reached the loopback listener");
    pool.shut_down().await;
}

/// A template printed without scripts is opened with no frames drawn; it must print
/// as one with frames does. Its style sheet is a file of its own, so the web font and
/// the background it names are asked for only once that sheet applies, which may be
/// after the load event; the printed band's background is named only by print styles;
/// a `loading="lazy"` image far down loads too. Renders that
/// need frames (scripts, an og image) come in between, so each kind of tab is opened
/// and handed over.
#[tokio::test]
async fn a_page_printed_without_frames_gets_its_style_sheets_files() {
    support::require_chromium();
    let font = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fonts/FolioTestSans.ttf")).unwrap();
    let png = |r: u8, g: u8, b: u8| {
        let mut pixmap = tiny_skia::Pixmap::new(8, 8).unwrap();
        pixmap.fill(tiny_skia::Color::from_rgba8(r, g, b, 255));
        pixmap.encode_png().unwrap()
    };
    let style = "@font-face { font-family: Own; src: url(own.ttf) }\n\
                 body { font-family: Own; margin: 0 }\n\
                 .band { height: 3cm; background: url(red.png) }\n\
                 @media print { .band { background: url(print.png) } }\n";
    let source = r#"<link rel="stylesheet" href="style.css">
        <p>Set in my own font</p><div class="band"></div>
        <div style="height: 40cm"></div><img loading="lazy" src="lazy.png" width="40" height="40">"#;
    let pool = pool(false);
    let dir = tempfile::tempdir().unwrap();
    let turns = [
        (OutputFormat::Pdf, false),
        (OutputFormat::Og, false),
        (OutputFormat::Pdf, false),
        (OutputFormat::Pdf, true),
        (OutputFormat::Pdf, false),
    ];
    for (turn, (output, javascript)) in turns.into_iter().enumerate() {
        let request = RenderRequest {
            engine: TemplateEngine::Html,
            source: source.into(),
            data: "{}".into(),
            assets: vec![
                Asset { name: "style.css".into(), bytes: style.as_bytes().to_vec() },
                Asset { name: "own.ttf".into(), bytes: font.clone() },
                Asset { name: "red.png".into(), bytes: png(220, 20, 20) },
                Asset { name: "print.png".into(), bytes: png(230, 30, 30) },
                Asset { name: "lazy.png".into(), bytes: png(20, 20, 220) },
            ],
            javascript,
            output,
            ..Default::default()
        };
        let what = format!("turn {turn} ({output:?}, javascript {javascript})");
        let rendered = pool.render(&request, Duration::from_secs(30)).await.unwrap();
        assert!(rendered.facts.warnings.is_empty(), "{what}: {:?}", rendered.facts.warnings);
        if output == OutputFormat::Og {
            assert_eq!(png_size(&rendered.output), (1200, 630));
            assert!(reddish_pixels(&rendered.output) > 1000, "{what}: the background band");
            continue;
        }
        let pdf = dir.path().join(format!("page-{turn}.pdf"));
        std::fs::write(&pdf, &rendered.output).unwrap();
        assert!(support::embeds_font(&pdf, "FolioTestSans"), "{what}: the web font");
        assert!(pdftotext(&pdf).contains("Set in my own font"));
        assert!(support::image_count(&pdf) >= 1, "{what}: the lazy image");
        let picture = dir.path().join(format!("page-{turn}"));
        let status = std::process::Command::new("pdftoppm")
            .args(["-r", "20", "-png", "-f", "1", "-l", "1", "-singlefile"])
            .arg(&pdf)
            .arg(&picture)
            .status()
            .expect("pdftoppm (poppler-utils) must be installed");
        assert!(status.success());
        let first_page = std::fs::read(picture.with_extension("png")).unwrap();
        assert!(reddish_pixels(&first_page) > 100, "{what}: the background band");
    }
    pool.shut_down().await;
}

/// A page whose own element names shadow `document.images` and `document.fonts` (a
/// form named `fonts`) still prints at once, with no warning that it was still loading.
#[tokio::test]
async fn a_page_that_shadows_the_documents_own_names_prints_without_a_warning() {
    support::require_chromium();
    let pool = pool(false);
    let request = RenderRequest {
        engine: TemplateEngine::Html,
        source: r#"<form name="fonts"></form><img name="images" src="logo.png"><p>Shadowed</p>"#.into(),
        data: "{}".into(),
        assets: vec![Asset { name: "logo.png".into(), bytes: logo() }],
        ..Default::default()
    };
    let rendered = pool.render(&request, Duration::from_secs(30)).await.unwrap();
    assert!(rendered.output.starts_with(b"%PDF"));
    assert!(rendered.facts.warnings.is_empty(), "{:?}", rendered.facts.warnings);
    pool.shut_down().await;
}

#[tokio::test]
async fn a_web_page_on_a_private_address_is_refused_unless_allowed() {
    support::require_chromium();
    let (address, connections) = counting_listener();
    let page = |url: &str| RenderRequest { url: Some(url.to_owned()), data: "{}".into(), ..Default::default() };
    let refused = pool(false);
    for url in [format!("{address}/page"), "http://localhost:9/".to_owned(), "http://[::1]:9/".to_owned()] {
        let failure = refused.render(&page(&url), Duration::from_secs(30)).await.unwrap_err();
        assert_eq!(failure.code, ErrorCode::UrlRefused, "{url}: {}", failure.message);
        assert!(failure.message.contains("--allow-private-targets"), "{}", failure.message);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "a refused page is never asked for");
    refused.shut_down().await;

    // With private targets allowed, the same page renders: folio fetches it.
    let allowed = pool(true);
    let request = RenderRequest { output: OutputFormat::Screenshot, ..page(&format!("{address}/page")) };
    let rendered = allowed.render(&request, Duration::from_secs(30)).await.unwrap();
    assert_eq!(png_size(&rendered.output), (1280, 800));
    assert!(connections.load(Ordering::SeqCst) >= 1);
    allowed.shut_down().await;
}

/// A full-page screenshot is as tall as the page at the viewport's width and scale;
/// a page taller than folio captures is refused, and the browser renders on.
#[tokio::test]
async fn a_full_page_screenshot_holds_the_whole_page_and_a_giant_one_is_refused() {
    support::require_chromium();
    let page = |height: u32| RenderRequest {
        engine: TemplateEngine::Html,
        source: format!("<body style=\"margin:0\"><div style=\"height:{height}px;background:red\"></div></body>"),
        data: "{}".into(),
        output: OutputFormat::Screenshot,
        screenshot: Some(ScreenshotOptions {
            width: Some(400.0),
            height: Some(300.0),
            full_page: true,
            device_scale_factor: Some(2.0),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pool = pool(false);
    let shot = pool.render(&page(1500), Duration::from_secs(30)).await.unwrap();
    assert_eq!(png_size(&shot.output), (800, 3000), "400 × 1500 CSS pixels at device scale 2");
    assert!(reddish_pixels(&shot.output) > 800 * 3000 * 9 / 10, "the page below the first viewport is captured too");
    let giant = pool.render(&page(20_000), Duration::from_secs(30)).await.unwrap_err();
    assert_eq!(giant.code, ErrorCode::OutputTooLarge, "{}", giant.message);
    assert!(giant.message.contains("fullPage"), "{}", giant.message);
    let again = pool.render(&page(100), Duration::from_secs(30)).await.unwrap();
    assert_eq!(png_size(&again.output), (800, 600), "a page shorter than the viewport keeps the viewport");
    pool.shut_down().await;
}

#[tokio::test]
async fn a_page_that_never_finishes_loses_its_browser_and_the_next_render_gets_a_fresh_one() {
    support::require_chromium();
    let pool = pool(false);
    let spin = script_page("while (true) {}");
    let failure = pool.render(&spin, Duration::from_secs(3)).await.unwrap_err();
    assert_eq!(failure.code, ErrorCode::DeadlineExceeded, "{}", failure.message);
    next_render_succeeds(&pool).await;
    pool.shut_down().await;
}

/// A page that grows past the memory limit fails `RESOURCE_EXHAUSTED` naming the
/// limit, its browser is replaced, and the next render succeeds.
#[tokio::test]
async fn a_page_that_grows_past_the_memory_limit_fails_and_the_next_render_succeeds() {
    support::require_chromium();
    let pool = ChromiumPool::new(ChromiumConfig { browsers: 1, memory_limit_mib: 600, ..Default::default() });
    // Array buffers live outside the script heap's own limit; each is written to so
    // that its pages are really held.
    let grow =
        script_page("const kept = []; for (let i = 0; i < 60; i++) { kept.push(new Uint8Array(32 << 20).fill(1)); }");
    let failure = pool.render(&grow, Duration::from_secs(60)).await.unwrap_err();
    assert_eq!(failure.code, ErrorCode::ResourceExhausted, "{}", failure.message);
    assert!(failure.message.contains("600 MiB"), "{}", failure.message);
    next_render_succeeds(&pool).await;
    pool.shut_down().await;
}

/// A page whose renderer crashes (its script heap runs out) fails `RENDERER_CRASHED`
/// at once, not at its time limit, and the next render gets a fresh browser.
#[tokio::test]
async fn a_page_whose_renderer_crashes_fails_at_once() {
    support::require_chromium();
    let pool = pool(false);
    let crash =
        script_page("const kept = []; while (true) { kept.push({ filler: new Array(1000).fill(kept.length) }); }");
    let started = std::time::Instant::now();
    let failure = pool.render(&crash, Duration::from_secs(120)).await.unwrap_err();
    assert_eq!(failure.code, ErrorCode::RendererCrashed, "{}", failure.message);
    assert!(failure.message.contains("crashed"), "{}", failure.message);
    assert!(started.elapsed() < Duration::from_secs(60), "failed after {:?}", started.elapsed());
    next_render_succeeds(&pool).await;
    pool.shut_down().await;
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let pid = entry.ok()?.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then(|| format!("{pid}: {cmdline}"))
        })
        .collect()
}

#[test]
fn html_renders_through_folio_serve_and_a_kill_9_leaves_no_browser_behind() {
    support::require_chromium();
    let dir = tempfile::tempdir().unwrap();
    // The browsers' profiles go under this folder, which names them in `ps`.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut server = Server::spawn_with_env(&dir.path().join("data"), &[], false, &[("TMPDIR", tmp.to_str().unwrap())]);
    let api = Api::new(&server, "acme");
    let created = api.post(
        "/v1/templates",
        json!({"name": "invoice", "engine": "html", "source": INVOICE, "defaults": {"currency": "EUR"}}),
    );
    assert_eq!(created.status(), 201, "{:?}", created.text());
    assert_eq!(api.put_bytes("/v1/templates/invoice/assets/logo.png", logo()).status(), 201);

    let pdf_job: Value =
        api.post("/v1/renders", json!({"templateId": "invoice", "data": invoice_data()})).json().unwrap();
    let og_job: Value = api
        .post("/v1/renders", json!({"templateId": "invoice", "data": invoice_data(), "output": "og"}))
        .json()
        .unwrap();
    assert_eq!(og_job["type"], "og");
    for job in [&pdf_job, &og_job] {
        let ended = api.wait(job["id"].as_str().unwrap());
        assert_eq!(ended["status"], "succeeded", "{ended}");
    }
    let pdf = api.get(&format!("/v1/renders/{}/download", pdf_job["id"].as_str().unwrap()));
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let pdf_path = dir.path().join("invoice.pdf");
    std::fs::write(&pdf_path, pdf.bytes().unwrap()).unwrap();
    assert!(pdftotext(&pdf_path).contains("Bill to: Ada Lovelace"));
    assert_eq!(support::image_count(&pdf_path), 1, "the uploaded logo");
    let og = api.get(&format!("/v1/renders/{}/download", og_job["id"].as_str().unwrap()));
    assert_eq!(og.headers()["content-type"], "image/png");
    assert!(og.headers()["content-disposition"].to_str().unwrap().ends_with(".png\""), "{:?}", og.headers());
    assert_eq!(png_size(&og.bytes().unwrap()), (1200, 630));
    // Its signed URL names a PNG and serves it without an API key.
    let signed: Value = api
        .post(&format!("/v1/renders/{}/signed-url", og_job["id"].as_str().unwrap()), json!({"expiresIn": 600}))
        .json()
        .unwrap();
    let signed_url = signed["signedUrl"].as_str().unwrap();
    assert!(signed_url.split('?').next().unwrap().ends_with(".png"), "{signed_url}");
    let anonymous = reqwest::blocking::get(signed_url).unwrap();
    assert_eq!(anonymous.headers()["content-type"], "image/png");
    assert_eq!(png_size(&anonymous.bytes().unwrap()), (1200, 630));

    // The render log filters by type.
    let ogs: Value = api.get("/v1/renders?type=og").json().unwrap();
    let ids: Vec<&str> = ogs["data"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [og_job["id"].as_str().unwrap()]);
    assert_eq!(api.get("/v1/renders?type=jpeg").status(), 400);

    // A web page on loopback is refused at the door.
    let refused = api.post("/v1/renders", json!({"url": "http://127.0.0.1:9/", "output": "screenshot"}));
    let (status, code, _) = support::rest::error_code(refused);
    assert_eq!((status, code.as_str()), (422, "URL_REFUSED"));

    let browsers = processes_mentioning(tmp.to_str().unwrap());
    assert!(!browsers.is_empty(), "the warm browser runs between renders");
    server.kill_hard();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(tmp.to_str().unwrap()).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(processes_mentioning(tmp.to_str().unwrap()), Vec::<String>::new(), "no browser outlives folio");
}
