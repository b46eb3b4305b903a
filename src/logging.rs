//! Logs as hclog JSON lines on stderr, the format go-plugin parses into the server's log.
//!
//! go-plugin reads `@level`, `@message` and `@timestamp` (exactly six fractional digits, else
//! the line is logged raw at DEBUG); every other key becomes a key/value pair. `@message` and
//! `@level` are always written as JSON strings: a non-string value crashes the whole server.
//! Level filter: `QLIK_PLUGIN_LOG`, default `info`: a level (`debug`) or comma-separated
//! `target=level` directives (`info,vault_plugin_secrets_qlik::qlik=trace`). It is a
//! `tracing_subscriber` `Targets` filter rather than an `EnvFilter`: the same directive syntax
//! without span/field matching, and without the regex engines (300 KB of the binary).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable that sets the log filter.
pub const LOG_ENV: &str = "QLIK_PLUGIN_LOG";

/// Installs the stderr logger (and a panic hook that logs through it).
pub fn init() {
    let (filter, rejected) = filter_from(std::env::var(LOG_ENV).ok().as_deref());
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(HclogJson)
                .with_writer(std::io::stderr),
        )
        .with(filter)
        .try_init();
    if let Some(error) = rejected {
        tracing::warn!(%error, "{LOG_ENV} is not a level or target=level list: logging at info");
    }
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic: {}", panic_message(info));
    }));
}

/// The level filter from a `QLIK_PLUGIN_LOG`-style value (unset or empty: `info`); an
/// invalid value gives `info` and the parse error, to be logged once logging works.
pub fn filter_from(value: Option<&str>) -> (Targets, Option<String>) {
    let info = || Targets::new().with_default(Level::INFO);
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => (info(), None),
        Some(value) => match value.parse::<Targets>() {
            Ok(targets) => (targets, None),
            Err(error) => (info(), Some(error.to_string())),
        },
    }
}

fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// The hclog JSON event format.
pub struct HclogJson;

impl<S, N> FormatEvent<S, N> for HclogJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let line = render(event, &jiff::Timestamp::now());
        writeln!(writer, "{line}")
    }
}

/// One event as one JSON object.
fn render(event: &Event<'_>, now: &jiff::Timestamp) -> String {
    let mut fields = FieldCollector::default();
    event.record(&mut fields);
    let mut object = Map::new();
    object.insert(
        "@level".into(),
        Value::String(level_name(event.metadata().level()).into()),
    );
    object.insert("@message".into(), Value::String(fields.message));
    object.insert(
        "@timestamp".into(),
        Value::String(now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
    );
    object.insert(
        "@module".into(),
        Value::String(event.metadata().target().to_string()),
    );
    for (key, value) in fields.pairs {
        // '@'-keys are the format's own: a field must not shadow them.
        let key = if key.starts_with('@') {
            format!("_{key}")
        } else {
            key
        };
        object.insert(key, value);
    }
    Value::Object(object).to_string()
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

#[derive(Default)]
struct FieldCollector {
    message: String,
    pairs: Vec<(String, Value)>,
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

impl FieldCollector {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            // Always a string, whatever was recorded.
            self.message = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.pairs.push((field.name().to_string(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn log_filter_reads_levels_and_targets_and_falls_back_to_info() {
        use tracing::level_filters::LevelFilter;
        let (unset, error) = filter_from(None);
        assert_eq!(unset.default_level(), Some(LevelFilter::INFO));
        assert!(error.is_none());
        let (debug, _) = filter_from(Some(" debug "));
        assert!(debug.would_enable("vault_plugin_secrets_qlik::engine", &Level::DEBUG));
        assert!(!debug.would_enable("vault_plugin_secrets_qlik::engine", &Level::TRACE));
        let (per_target, _) = filter_from(Some("warn,vault_plugin_secrets_qlik::qlik=trace"));
        assert!(per_target.would_enable("vault_plugin_secrets_qlik::qlik::client", &Level::TRACE));
        assert!(!per_target.would_enable("vault_plugin_secrets_qlik::engine", &Level::INFO));
        let (bad, error) = filter_from(Some("qlik=loud"));
        assert!(error.is_some(), "an unknown level is reported");
        assert!(bad.would_enable("anything", &Level::INFO));
        assert!(!bad.would_enable("anything", &Level::DEBUG));
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_hclog_json_with_string_message_and_six_digit_timestamp() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(HclogJson)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(count = 3, ok = true, "rotation {}", "late");
            tracing::info!(message = 42, "@level" = "x");
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["@level"], "warn");
        assert_eq!(lines[0]["@message"], "rotation late");
        assert_eq!(lines[0]["count"], 3);
        assert_eq!(lines[0]["ok"], true);
        assert!(lines[0]["@module"].as_str().is_some());
        let ts = lines[0]["@timestamp"].as_str().expect("timestamp");
        // 2006-01-02T15:04:05.000000Z
        assert_eq!(ts.len(), 27, "{ts}");
        assert_eq!(&ts[19..20], ".");
        assert!(ts.ends_with('Z'));
        // A numeric message is still written as a string, and '@' keys cannot be forged.
        assert_eq!(lines[1]["@message"], "42");
        assert_eq!(lines[1]["@level"], "info");
        assert_eq!(lines[1]["_@level"], "x");
    }
}
