//! W3C Trace Context `traceparent` (W3C Recommendation "Trace Context", §3.2): accepted from
//! the client (the HTTP header, or `params._meta.traceparent`), recorded in the audit record,
//! and passed on to upstreams with the gateway's own span as the parent (HTTP header for HTTP
//! upstreams, `_meta.traceparent` for stdio ones).

use std::fmt;

/// A parsed `traceparent`: `{version}-{trace-id}-{parent-id}-{trace-flags}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id (never all zeros).
    pub trace_id: [u8; 16],
    /// The caller's span id (never all zeros).
    pub parent_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value. Version `00` must be exactly 55 characters; a later
    /// version is read by its first four fields (§3.2.4, forward compatibility); `ff`, upper
    /// case hex and all-zero ids are invalid.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let bytes = text.as_bytes();
        if bytes.len() < 55 || (bytes.len() > 55 && bytes.get(55) != Some(&b'-')) {
            return None;
        }
        let mut version = [0u8; 1];
        decode(&bytes[0..2], &mut version)?;
        if version[0] == 0xff || (version[0] == 0 && bytes.len() != 55) {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        let mut flags = [0u8; 1];
        decode(&bytes[3..35], &mut trace_id)?;
        decode(&bytes[36..52], &mut parent_id)?;
        decode(&bytes[53..55], &mut flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags: flags[0],
        })
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        base16ct::lower::encode_string(&self.trace_id)
    }

    /// The same trace, with `span_id` (the gateway's span) as the parent.
    pub fn with_parent(self, span_id: [u8; 8]) -> Self {
        Self {
            parent_id: span_id,
            ..self
        }
    }

    /// A random span id (never all zeros), for when no tracer makes one.
    pub fn random_span_id() -> [u8; 8] {
        loop {
            let id: [u8; 8] = rand::random();
            if id != [0; 8] {
                return id;
            }
        }
    }
}

/// The span of one client request, `mcp.request`, child of the client's trace when it sent
/// one (exported as such when OTLP export is on). Fields: `rpc.method`, and `mcp.upstream`
/// once the call is resolved.
pub fn request_span(method: &str, client: Option<TraceParent>) -> tracing::Span {
    let span = tracing::info_span!(
        "mcp.request",
        otel.kind = "server",
        rpc.system = "jsonrpc",
        rpc.method = method,
        mcp.upstream = tracing::field::Empty,
    );
    if let Some(parent) = client {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
        };
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.parent_id),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        // Without an exporter there is no OpenTelemetry context to attach to: nothing to do.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    span
}

/// The trace the current span belongs to, with the current span as the parent: what is
/// passed on to an upstream and recorded in the audit log. With OTLP export, the span's own
/// context (a trace the gateway started when the client sent none); without it, the client's
/// trace under a fresh span id; `None` when neither exists.
pub fn current(client: Option<TraceParent>) -> Option<TraceParent> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let own = span.span_context();
    if own.is_valid() {
        return Some(TraceParent {
            trace_id: own.trace_id().to_bytes(),
            parent_id: own.span_id().to_bytes(),
            flags: own.trace_flags().to_u8(),
        });
    }
    client.map(|t| t.with_parent(TraceParent::random_span_id()))
}

/// Lowercase hex only (§3.2.2.x: "lowercase hex").
fn decode(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    base16ct::lower::decode(hex, out).ok().map(|_| ())
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        let trace =
            base16ct::lower::encode_str(&self.trace_id, &mut buf).map_err(|_| fmt::Error)?;
        write!(f, "00-{trace}-")?;
        let mut buf = [0u8; 16];
        let parent =
            base16ct::lower::encode_str(&self.parent_id, &mut buf).map_err(|_| fmt::Error)?;
        write!(f, "{parent}-{:02x}", self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_spec_example() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(text).expect("valid");
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.flags, 1);
        assert_eq!(tp.to_string(), text);
        let child = tp.with_parent([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            child.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
    }

    #[test]
    fn rejects_what_the_spec_rejects() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(TraceParent::parse(future).is_some());
    }
}
