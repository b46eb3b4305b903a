//! Logs as hclog JSON lines on stderr, the format go-plugin parses into the server's log.
//!
//! go-plugin reads `@level`, `@message` and `@timestamp` (exactly six fractional digits, else
//! the line is logged raw at DEBUG); every other key becomes a key/value pair. `@message` and
//! `@level` are always written as JSON strings: a non-string value crashes the whole server.
//! Level filter: `QLIK_PLUGIN_LOG` (an `EnvFilter` directive such as `debug`), default `info`.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The environment variable that sets the log filter.
pub const LOG_ENV: &str = "QLIK_PLUGIN_LOG";

/// Installs the stderr logger (and a panic hook that logs through it).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .event_format(HclogJson)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic: {}", panic_message(info));
    }));
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
