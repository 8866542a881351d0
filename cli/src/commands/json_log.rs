//! The daemon's JSON log lines (`log_format = "json"`): one object a line, for log collectors
//! (journald, Loki, Elasticsearch). Keys: `time_ms` (Unix milliseconds, as every time in the
//! API), `level`, `target`, `message`, and the event's own fields under `fields`. Strings are
//! JSON-escaped, so no logged value can forge a line.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON event format.
#[derive(Debug)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let time_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut line = Map::new();
        line.insert("time_ms".into(), time_ms.into());
        line.insert("level".into(), meta.level().as_str().to_ascii_lowercase().into());
        line.insert("target".into(), meta.target().into());
        line.insert("message".into(), fields.message.unwrap_or_default().into());
        if !fields.rest.is_empty() {
            line.insert("fields".into(), Value::Object(fields.rest));
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields: `message` apart, the others by name.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: Map<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.rest.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer into a shared buffer, for one test's subscriber.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_are_one_json_object_a_line() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(seq = 7, author = "a\nb", ok = true, "published");
            tracing::warn!("second");
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "a newline in a value cannot split a line: {text}");
        let first: Value = serde_json::from_str(lines[0]).expect("JSON");
        assert_eq!(first["level"], "info");
        assert_eq!(first["message"], "published");
        assert_eq!(first["fields"], serde_json::json!({"seq": 7, "author": "a\nb", "ok": true}));
        assert!(first["time_ms"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "{first}");
        let second: Value = serde_json::from_str(lines[1]).expect("JSON");
        assert_eq!((second["level"].as_str(), second.get("fields")), (Some("warn"), None));
    }
}
