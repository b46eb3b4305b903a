//! Logs as hclog JSON lines on stderr, the format go-plugin parses into the server's log.
//!
//! go-plugin reads `@level`, `@message` and `@timestamp` (exactly six fractional digits, else
//! the line is logged raw at DEBUG); every other key becomes a key/value pair. `@message` and
//! `@level` are always written as JSON strings: a non-string value crashes the whole server.
//! Every line also carries the fields of the spans it was logged in (outermost first), so a
//! span entered around a request puts its fields (the mount, the request) on every line.
//!
//! Level filter: `QLIK_PLUGIN_LOG`, default `info`: a level (`debug`) or comma-separated
//! `target=level` directives (`info,vault_plugin_secrets_qlik::qlik=trace`). The transport
//! libraries (HTTP/2, gRPC, TLS) stay at `warn` whatever the level, unless a directive names
//! them. An invalid value is logged as a warning and `info` is used. It is a
//! `tracing_subscriber` `Targets` filter rather than an `EnvFilter`: the same directive syntax
//! without span/field matching, and without the regex engines (300 KB of the binary).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable that sets the log filter.
pub const LOG_ENV: &str = "QLIK_PLUGIN_LOG";

/// Libraries under the plugin's own code whose debug output is wire traffic (HTTP/2 frames,
/// TLS records): kept at `warn` unless a directive names them.
pub const TRANSPORT_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "rustls",
    "tokio_rustls",
    "reqwest",
];

/// Installs the stderr logger (and a panic hook that logs through it).
pub fn init() {
    let (filter, rejected) = filter_from(std::env::var(LOG_ENV).ok().as_deref());
    let _ = tracing_subscriber::registry()
        .with(SpanFields)
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(HclogJson)
                .with_writer(std::io::stderr),
        )
        .with(filter)
        .try_init();
    if let Some(error) = rejected {
        tracing::warn!(%error, "invalid {LOG_ENV}: logging at info");
    }
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic: {}", panic_message(info));
    }));
}

/// The level filter from a `QLIK_PLUGIN_LOG`-style value: unset or empty gives `info`; a
/// level, or comma-separated directives each a level or `target=level` (a list without a
/// bare level keeps `info` for every other target). Levels: `off`, `error`, `warn`, `info`,
/// `debug`, `trace`. [`TRANSPORT_TARGETS`] not named in the value are capped at `warn`. An
/// invalid value (any directive that is neither form) gives `info` and the reason, to be
/// logged once logging works.
pub fn filter_from(value: Option<&str>) -> (Targets, Option<String>) {
    let value = value.map(str::trim).unwrap_or_default();
    match parse_directives(value) {
        Ok((default, targets)) => (build_filter(default, targets), None),
        Err(error) => (build_filter(LevelFilter::INFO, Vec::new()), Some(error)),
    }
}

type Directives = (LevelFilter, Vec<(String, LevelFilter)>);

fn parse_directives(value: &str) -> Result<Directives, String> {
    const ACCEPTED: &str = "accepted: a level (off, error, warn, info, debug, trace) or \
                            comma-separated target=level directives, e.g. \
                            info,vault_plugin_secrets_qlik::qlik=debug";
    let mut default = LevelFilter::INFO;
    let mut targets = Vec::new();
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.split_once('=') {
            Some((target, level)) => {
                let target = target.trim();
                let valid_target = !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-');
                let level = parse_level(level.trim());
                match (valid_target, level) {
                    (true, Some(level)) => targets.push((target.to_string(), level)),
                    _ => return Err(format!("{directive:?} is not target=level; {ACCEPTED}")),
                }
            }
            None => match parse_level(directive) {
                Some(level) => default = level,
                None => return Err(format!("{directive:?} is not a level; {ACCEPTED}")),
            },
        }
    }
    Ok((default, targets))
}

/// A level name (any case); numbers are not accepted (they read as a target in other tools).
fn parse_level(text: &str) -> Option<LevelFilter> {
    match text.to_ascii_lowercase().as_str() {
        "off" => Some(LevelFilter::OFF),
        "error" => Some(LevelFilter::ERROR),
        "warn" => Some(LevelFilter::WARN),
        "info" => Some(LevelFilter::INFO),
        "debug" => Some(LevelFilter::DEBUG),
        "trace" => Some(LevelFilter::TRACE),
        _ => None,
    }
}

fn build_filter(default: LevelFilter, targets: Vec<(String, LevelFilter)>) -> Targets {
    let named = |transport: &str| {
        targets
            .iter()
            .any(|(target, _)| target == transport || target.starts_with(&format!("{transport}::")))
    };
    // Quieter than the default only: `error` stays `error` for them too.
    let transport_level = default.min(LevelFilter::WARN);
    let mut filter = Targets::new().with_default(default);
    for transport in TRANSPORT_TARGETS {
        if !named(transport) {
            filter = filter.with_target(*transport, transport_level);
        }
    }
    filter.with_targets(targets)
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
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = FieldCollector::default();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(recorded) = span.extensions().get::<RecordedFields>() {
                    fields.pairs.extend(recorded.0.iter().cloned());
                }
            }
        }
        let line = render(event, fields, &jiff::Timestamp::now());
        writeln!(writer, "{line}")
    }
}

/// The fields of a span, kept in its extensions by [`SpanFields`].
struct RecordedFields(Vec<(String, Value)>);

/// Records every span's fields (at creation and on `Span::record`) for [`HclogJson`], which
/// writes them on each line logged inside the span.
pub struct SpanFields;

impl<S> Layer<S> for SpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = FieldCollector::default();
        attrs.record(&mut fields);
        span.extensions_mut()
            .insert(RecordedFields(fields.into_pairs()));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = FieldCollector::default();
        values.record(&mut fields);
        let mut extensions = span.extensions_mut();
        if let Some(recorded) = extensions.get_mut::<RecordedFields>() {
            for (key, value) in fields.into_pairs() {
                match recorded.0.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = value,
                    None => recorded.0.push((key, value)),
                }
            }
        }
    }
}

/// One event as one JSON object: `@`-keys, then `context` (its spans' fields), then the
/// event's own fields (which win over a span field of the same name).
fn render(event: &Event<'_>, context: FieldCollector, now: &jiff::Timestamp) -> String {
    let mut fields = context;
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
    /// The pairs, with a span's `message` field (if any) kept as a pair.
    fn into_pairs(self) -> Vec<(String, Value)> {
        let mut pairs = self.pairs;
        if !self.message.is_empty() {
            pairs.push(("message".into(), Value::String(self.message)));
        }
        pairs
    }

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
        let engine = "vault_plugin_secrets_qlik::engine";
        let (unset, error) = filter_from(None);
        assert_eq!(unset.default_level(), Some(LevelFilter::INFO));
        assert!(error.is_none());
        assert!(unset.would_enable(engine, &Level::INFO));
        assert!(!unset.would_enable(engine, &Level::DEBUG));
        let (debug, error) = filter_from(Some(" debug "));
        assert!(error.is_none());
        assert!(debug.would_enable(engine, &Level::DEBUG));
        assert!(!debug.would_enable(engine, &Level::TRACE));
        let (per_target, _) = filter_from(Some("warn,vault_plugin_secrets_qlik::qlik=trace"));
        assert!(per_target.would_enable("vault_plugin_secrets_qlik::qlik::client", &Level::TRACE));
        assert!(!per_target.would_enable(engine, &Level::INFO));
        assert!(per_target.would_enable(engine, &Level::WARN));
        // A list without a bare level keeps info for everything else.
        let (only_target, error) = filter_from(Some("vault_plugin_secrets_qlik::qlik=debug"));
        assert!(error.is_none());
        assert!(only_target.would_enable("vault_plugin_secrets_qlik::qlik", &Level::DEBUG));
        assert!(only_target.would_enable(engine, &Level::INFO));
        assert!(!only_target.would_enable(engine, &Level::DEBUG));
    }

    #[test]
    fn every_invalid_value_warns_and_gives_info() {
        for bad in [
            "verbose",
            "qlik=loud",
            "debug,verbose",
            "=debug",
            "info,h2=",
            "3",
            "a b=debug",
        ] {
            let (filter, error) = filter_from(Some(bad));
            let error = error.unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert!(error.contains("accepted: a level"), "{bad:?}: {error}");
            assert!(filter.would_enable("anything", &Level::INFO), "{bad:?}");
            assert!(!filter.would_enable("anything", &Level::DEBUG), "{bad:?}");
            assert!(!filter.would_enable("h2::codec", &Level::INFO), "{bad:?}");
        }
        for good in ["", "  ", "off", "ERROR", "Warn", "info,", "trace,h2=info"] {
            assert!(filter_from(Some(good)).1.is_none(), "{good:?} was refused");
        }
    }

    #[test]
    fn transport_libraries_stay_at_warn_unless_named() {
        let (debug, _) = filter_from(Some("debug"));
        for transport in [
            "h2::codec",
            "hyper::proto",
            "tonic::transport",
            "rustls::conn",
            "tower",
        ] {
            assert!(!debug.would_enable(transport, &Level::INFO), "{transport}");
            assert!(debug.would_enable(transport, &Level::WARN), "{transport}");
        }
        let (trace, _) = filter_from(Some("trace"));
        assert!(!trace.would_enable("h2::codec", &Level::DEBUG));
        // Named: as asked.
        let (named, _) = filter_from(Some("debug,h2=trace"));
        assert!(named.would_enable("h2::codec", &Level::TRACE));
        assert!(!named.would_enable("hyper::proto", &Level::DEBUG));
        // Never louder than the default.
        let (error, _) = filter_from(Some("error"));
        assert!(!error.would_enable("h2::codec", &Level::WARN));
        assert!(error.would_enable("h2::codec", &Level::ERROR));
    }

    #[test]
    fn lines_carry_the_fields_of_their_spans() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(SpanFields).with(
            tracing_subscriber::fmt::layer()
                .event_format(HclogJson)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let mount =
                tracing::error_span!("mount", mount_uuid = "u-1", mount = tracing::field::Empty);
            mount.record("mount", "qlik2/");
            let request = tracing::error_span!(parent: &mount, "request", request_path = "rotate", key_id = "span");
            request.in_scope(|| tracing::info!(key_id = "event", "inside"));
            mount.in_scope(|| tracing::warn!("background"));
            tracing::info!("outside");
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["@message"], "inside");
        assert_eq!(lines[0]["mount_uuid"], "u-1");
        assert_eq!(lines[0]["mount"], "qlik2/");
        assert_eq!(lines[0]["request_path"], "rotate");
        assert_eq!(lines[0]["key_id"], "event", "the event's own field wins");
        assert_eq!(lines[1]["mount"], "qlik2/");
        assert!(lines[1].get("request_path").is_none(), "{}", lines[1]);
        assert!(lines[2].get("mount").is_none(), "{}", lines[2]);
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
