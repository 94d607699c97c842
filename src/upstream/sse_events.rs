//! Reading an upstream's SSE body: line by line, with a bound on each event.
//!
//! The body is cut into whole lines before the SSE parser (eventsource-stream) sees it, one line
//! per item: that parser scans its whole buffer again for every chunk that arrives, which over
//! a long line (a large result in one `data:` line, sent in many chunks) costs time quadratic
//! in its length, and it copies what follows each line it consumes. And an upstream that never
//! ends an event (no blank line) would make it buffer without limit: more than the bound since
//! the last event boundary ends the stream with an error.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use eventsource_stream::{Event, EventStreamError, Eventsource as _};
use futures::{Stream, StreamExt};

/// Why an upstream's event stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The connection failed.
    #[error("{}", crate::redact::error(.0))]
    Http(reqwest::Error),
    /// More than the limit arrived without an event boundary.
    #[error("an event of more than {0} bytes")]
    TooLarge(usize),
}

/// The events of `response`, each at most `max` bytes.
pub fn events(
    response: reqwest::Response,
    max: usize,
) -> impl Stream<Item = Result<Event, EventStreamError<BodyError>>> + Send + Unpin {
    lines(response.bytes_stream(), max).eventsource()
}

/// Cuts `bytes` into lines.
struct Lines<S> {
    bytes: S,
    /// Bytes of the line being read.
    partial: BytesMut,
    /// Complete lines not yet yielded.
    ready: VecDeque<Bytes>,
    /// Bytes since the last event boundary (a blank line).
    event: usize,
    max: usize,
    done: bool,
}

/// `bytes` as one item per line (each ending in `\n`, but a last one without), failing once more
/// than `max` bytes pass without a blank line.
fn lines(
    bytes: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin + 'static,
    max: usize,
) -> impl Stream<Item = Result<Bytes, BodyError>> + Send + Unpin {
    let state = Lines {
        bytes,
        partial: BytesMut::new(),
        ready: VecDeque::new(),
        event: 0,
        max,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(line) = s.ready.pop_front() {
                return Some((Ok(line), s));
            }
            if s.done {
                return None;
            }
            match s.bytes.next().await {
                None => {
                    s.done = true;
                    if !s.partial.is_empty() {
                        let last = s.partial.split().freeze();
                        s.ready.push_back(last);
                    }
                }
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(BodyError::Http(e)), s));
                }
                Some(Ok(chunk)) => {
                    let mut rest = &chunk[..];
                    while let Some(at) = rest.iter().position(|b| *b == b'\n') {
                        s.partial.extend_from_slice(&rest[..=at]);
                        rest = &rest[at + 1..];
                        let line = s.partial.split().freeze();
                        let blank = matches!(&line[..], b"\n" | b"\r\n");
                        s.event = if blank { 0 } else { s.event + line.len() };
                        s.ready.push_back(line);
                    }
                    s.partial.extend_from_slice(rest);
                    if s.event + s.partial.len() > s.max {
                        s.done = true;
                        s.ready.clear();
                        return Some((Err(BodyError::TooLarge(s.max)), s));
                    }
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn events_within_the_bound_pass_and_an_endless_one_fails() {
        let ok: Vec<_> = lines(chunks(&[b"data: 12345\n\n", b"data: 67890\r\n\r\n"]), 16)
            .collect()
            .await;
        assert!(ok.iter().all(Result::is_ok));
        let text: Vec<Bytes> = ok.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            text,
            ["data: 12345\n", "\n", "data: 67890\r\n", "\r\n"],
            "one line per item"
        );
        let many_short: Vec<_> = lines(chunks(&[b"data: a\ndata: b\ndata: c\ndata: d\n"]), 16)
            .collect()
            .await;
        assert!(
            matches!(many_short.last(), Some(Err(BodyError::TooLarge(16)))),
            "an endless event of short lines fails too"
        );
        let endless: Vec<_> = lines(chunks(&[b"data: 1234567", b"8901234567890"]), 16)
            .collect()
            .await;
        assert!(matches!(endless.last(), Some(Err(BodyError::TooLarge(16)))));
        assert_eq!(endless.len(), 1, "the unfinished line is not passed on");
    }
}
