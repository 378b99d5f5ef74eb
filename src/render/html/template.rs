//! An `html` template filled in with its data: Jinja syntax through `minijinja`, the
//! job's data as the context (`{{ customer.name }}`, `{% for item in items %}`).
//! Values are HTML-escaped unless a template says `|safe`. Fuel bounds the work a
//! template may do, so a loop without end stops with an error instead of holding a
//! render slot.

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

use crate::render::RenderFailure;
use crate::resources::ErrorCode;

/// The name errors give the template's source.
pub const MAIN_FILE: &str = "main.html";
/// Instructions a template may run (a few hundred thousand rows of an invoice).
const FUEL: u64 = 50_000_000;
/// Largest HTML a template may produce.
const MAX_HTML_BYTES: usize = 20 * 1024 * 1024;

/// `source` filled in with `data` (JSON text).
pub fn fill(source: &str, data: &str) -> Result<String, RenderFailure> {
    let context: serde_json::Value = serde_json::from_str(data)
        .map_err(|err| RenderFailure::new(ErrorCode::DataInvalid, format!("data is not valid JSON: {err}")))?;
    let env = environment();
    let template = env.template_from_named_str(MAIN_FILE, source).map_err(template_failure)?;
    let html = template.render(Value::from(minijinja::value::Serde(&context))).map_err(template_failure)?;
    if html.len() > MAX_HTML_BYTES {
        return Err(RenderFailure::new(
            ErrorCode::OutputTooLarge,
            format!(
                "the template produced {} MiB of HTML; the limit is {} MiB",
                html.len() >> 20,
                MAX_HTML_BYTES >> 20
            ),
        ));
    }
    Ok(html)
}

/// Check that `source` parses, so that a template with a syntax error is refused when
/// it is stored.
pub fn check_syntax(source: &str) -> Result<(), RenderFailure> {
    environment().template_from_named_str(MAIN_FILE, source).map(drop).map_err(template_failure)
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    // Every template is HTML, whatever its name.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env
}

/// A template error as a failure naming the line: `main.html:3: ...`.
fn template_failure(err: Error) -> RenderFailure {
    let code = match err.kind() {
        ErrorKind::OutOfFuel => ErrorCode::DeadlineExceeded,
        _ => ErrorCode::TemplateCompileError,
    };
    let location = err.line().map(|line| format!("{MAIN_FILE}:{line}: ")).unwrap_or_default();
    let detail = err.detail().map(|detail| format!(": {detail}")).unwrap_or_default();
    RenderFailure::new(code, format!("{location}error: {}{detail}", err.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_fills_the_placeholders_and_is_escaped() {
        let html = fill(
            "<h1>{{ customer.name }}</h1>{% for item in items %}<td>{{ item.qty }}</td>{% endfor %}{{ missing.field }}",
            r#"{"customer": {"name": "Ada <b>"}, "items": [{"qty": 1}, {"qty": 2}]}"#,
        )
        .unwrap();
        assert_eq!(html, "<h1>Ada &lt;b&gt;</h1><td>1</td><td>2</td>");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = fill("<p>\n{% for x in items %}\n{{ x }", "{}").unwrap_err();
        assert_eq!(err.code, ErrorCode::TemplateCompileError);
        assert!(err.message.starts_with("main.html:3: error: syntax error"), "{}", err.message);
        assert!(check_syntax("{% if %}").is_err());
        assert!(check_syntax("{% if a %}{{ a }}{% endif %}").is_ok());
    }

    #[test]
    fn a_template_that_never_ends_runs_out_of_fuel() {
        let err =
            fill("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "{}").unwrap_err();
        assert_eq!(err.code, ErrorCode::DeadlineExceeded, "{}", err.message);
    }
}
