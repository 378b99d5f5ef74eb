//! Command-line pieces shared by folio's commands: how durations are written, how
//! the servers log, the render limits of `run` and `serve`, and webhook delivery of
//! `serve` and `operator`. Each command's own flags live beside the code they
//! configure, and flatten these.
//!
//! Every duration flag takes humantime text (`30s`, `5m`, `1h30m`, `500ms`) or a plain
//! number, which means seconds as it always has (`30`, `0.5`, and `1e+06` as Helm
//! writes large numbers), so existing scripts, environments and charts keep working.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::render::pool::PoolConfig;
use crate::webhooks::{RetryPolicy, Sender, TargetPolicy};

/// A clap value parser for a positive duration: humantime text or plain seconds.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() => Duration::try_from_secs_f64(seconds).map_err(|err| err.to_string()),
        Ok(_) => Err("not a finite number".to_owned()),
        Err(_) => humantime::parse_duration(text).map_err(|err| err.to_string()),
    };
    match parsed {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err("must be longer than zero".to_owned()),
        Err(err) => Err(format!("{err}; write a duration such as 30s, 5m or 1h30m, or a number of seconds")),
    }
}

/// A clap value parser for a duration of whole seconds, at least `min` (for what is
/// kept in seconds elsewhere, like a Lease's duration): `15`, `15s`, `1m`.
pub fn whole_seconds_at_least(min: u64) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |text| {
        let parsed = duration(text)?;
        if parsed.subsec_nanos() != 0 {
            return Err("must be a whole number of seconds".to_owned());
        }
        let seconds = parsed.as_secs();
        if seconds < min {
            return Err(format!("must be at least {min} seconds"));
        }
        Ok(seconds)
    }
}

/// How an on/off flag reads its environment variable `variable`: `1`/`0`,
/// `true`/`false`, `yes`/`no`, `on`/`off` (as shells and container specs spell them);
/// anything else is refused naming the variable, where the value most likely came from.
pub fn boolish(variable: &'static str) -> impl Fn(&str) -> Result<bool, String> + Clone + Send + Sync + 'static {
    move |value: &str| match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Ok(true),
        "0" | "false" | "no" | "off" | "n" | "" => Ok(false),
        _ => Err(format!("{variable} (or the flag) takes 1/0, true/false, yes/no or on/off")),
    }
}

/// How a long-running command logs; flattened into `serve`, `api` and `operator`.
#[derive(Clone, Debug, clap::Args)]
pub struct Logging {
    /// Log as JSON lines.
    #[arg(long, env = "FOLIO_LOG_JSON", value_parser = crate::cli::boolish("FOLIO_LOG_JSON"))]
    pub log_json: bool,
}

impl Logging {
    /// Log to stderr, filtered by `RUST_LOG` (default `info`), as text (coloured on a
    /// terminal) or as JSON lines. Call once, at startup.
    pub fn init(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let ansi = io::IsTerminal::is_terminal(&io::stderr());
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr).with_ansi(ansi);
        if self.log_json {
            builder.json().init();
        } else {
            builder.init();
        }
    }
}

/// How many renders run at once and what each may use; shared by `run` and `serve`.
#[derive(Clone, Debug, clap::Args)]
pub struct RenderLimits {
    /// Renders at once (default: one per core).
    #[arg(short = 'j', long, env = "FOLIO_JOBS")]
    pub jobs: Option<usize>,
    /// Time limit of one render attempt (`90s`, `5m`, or plain seconds).
    #[arg(long, env = "FOLIO_RENDER_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub render_timeout: Duration,
    /// Memory limit of one render, in MiB.
    #[arg(long, env = "FOLIO_RENDER_MEMORY_MIB", default_value_t = 4096)]
    pub render_memory_mib: u64,
    /// Folder of fonts (`.ttf`, `.otf`, `.ttc`, searched recursively) that every
    /// template can use, beside the embedded ones.
    #[arg(long, env = "FOLIO_FONT_PATH", value_name = "DIR")]
    pub font_path: Option<PathBuf>,
    /// The Chromium that renders html templates and web pages (default: Debian's
    /// headless shell, else `chrome-headless-shell`, `headless_shell`, `chromium`,
    /// `chromium-browser` or `google-chrome` on PATH).
    #[arg(long, env = "FOLIO_CHROMIUM", value_name = "PATH")]
    pub chromium: Option<PathBuf>,
}

impl RenderLimits {
    /// The worker pool these limits describe, running this executable.
    pub fn pool(&self) -> anyhow::Result<PoolConfig> {
        let mut pool = PoolConfig::for_this_machine().context("could not find the folio executable")?;
        pool.memory_limit_mib = self.render_memory_mib;
        if let Some(dir) = &self.font_path {
            crate::render::fonts::in_folder(dir).with_context(|| format!("--font-path {}", dir.display()))?;
        }
        pool.font_path = self.font_path.clone();
        if let Some(jobs) = self.jobs {
            pool.workers = jobs;
        }
        pool.chromium.browsers = pool.workers;
        pool.chromium.executable = self.chromium.clone();
        pool.chromium.memory_limit_mib = self.render_memory_mib;
        Ok(pool)
    }
}

/// How webhooks are delivered: flags shared by `folio serve` and `folio operator`.
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// Allow webhook targets and the pages of `url` jobs on loopback, private and
    /// link-local addresses.
    #[arg(long, env = "FOLIO_ALLOW_PRIVATE_TARGETS", value_parser = crate::cli::boolish("FOLIO_ALLOW_PRIVATE_TARGETS"))]
    pub allow_private_targets: bool,
    /// Time limit of one webhook attempt (`10s`, or plain seconds).
    #[arg(long, env = "FOLIO_WEBHOOK_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub webhook_timeout: Duration,
    /// Delay before the first retry of a failed delivery, doubling after (`5s`, or
    /// plain seconds).
    #[arg(long, env = "FOLIO_WEBHOOK_RETRY_BASE", value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub webhook_retry_base: Duration,
    /// How long after its event a failing delivery is given up (`24h`, or plain
    /// seconds).
    #[arg(long, env = "FOLIO_WEBHOOK_MAX_AGE", value_name = "DURATION", default_value = "24h", value_parser = duration)]
    pub webhook_max_age: Duration,
}

impl WebhookArgs {
    /// The retry policy the flags describe.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy { base: self.webhook_retry_base, max_age: self.webhook_max_age, ..Default::default() }
    }

    /// A sender with the flags' target policy and time limit.
    pub fn sender(&self) -> io::Result<Sender> {
        let policy = TargetPolicy::new(self.allow_private_targets);
        Sender::new(policy, self.webhook_timeout)
            .map_err(|err| io::Error::other(format!("the webhook client could not start: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn durations_are_humantime_or_plain_seconds() {
        let cases = [
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("250ms", Duration::from_millis(250)),
            ("30", Duration::from_secs(30)),
            ("0.3", Duration::from_millis(300)),
            ("86400", Duration::from_secs(86400)),
            ("1e+06", Duration::from_secs(1_000_000)),
            (" 20 ", Duration::from_secs(20)),
        ];
        for (text, expected) in cases {
            assert_eq!(duration(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn durations_that_are_not_positive_or_not_durations_are_refused() {
        for text in ["0", "0s", "-5", "-1s", "", "soon", "5 parsecs", "NaN", "inf", "1e400"] {
            assert!(duration(text).is_err(), "{text:?} was accepted");
        }
        assert!(duration("abc").unwrap_err().contains("30s, 5m or 1h30m"), "the error says what to write");
    }

    #[test]
    fn whole_seconds_refuse_fractions_and_values_below_the_minimum() {
        let lease = whole_seconds_at_least(2);
        assert_eq!(lease("15"), Ok(15));
        assert_eq!(lease("1m"), Ok(60));
        assert_eq!(lease("2s"), Ok(2));
        for text in ["1", "1s", "2.5", "2500ms", "0", "later"] {
            assert!(lease(text).is_err(), "{text:?} was accepted");
        }
    }

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: RenderLimits,
        #[command(flatten)]
        webhooks: WebhookArgs,
    }

    #[test]
    fn duration_flags_take_humantime_and_default_to_what_they_always_were() {
        let defaults = Flags::try_parse_from(["folio"]).unwrap();
        assert_eq!(defaults.limits.render_timeout, Duration::from_secs(60));
        assert_eq!(defaults.webhooks.webhook_timeout, Duration::from_secs(10));
        let policy = defaults.webhooks.retry_policy();
        assert_eq!((policy.base, policy.max_age), (Duration::from_secs(5), Duration::from_secs(86400)));

        let flags = Flags::try_parse_from([
            "folio",
            "--render-timeout",
            "1m30s",
            "--webhook-timeout",
            "2.5",
            "--webhook-retry-base",
            "200ms",
            "--webhook-max-age",
            "2h",
        ])
        .unwrap();
        assert_eq!(flags.limits.render_timeout, Duration::from_secs(90));
        assert_eq!(flags.webhooks.webhook_timeout, Duration::from_millis(2500));
        let policy = flags.webhooks.retry_policy();
        assert_eq!((policy.base, policy.max_age), (Duration::from_millis(200), Duration::from_secs(7200)));

        let refused = Flags::try_parse_from(["folio", "--render-timeout", "0"]).err().unwrap();
        assert_eq!(refused.kind(), clap::error::ErrorKind::ValueValidation);
    }
}
