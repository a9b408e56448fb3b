//! Streamed NDJSON responses, written on a blocking thread.
//!
//! Lines go into a buffer that is sent in chunks through a bounded channel, so a response of
//! 100,000 files starts flowing at once and the server never holds it whole.
//!
//! Errors are reported as well as the moment allows:
//! - before the first chunk is ready, the response has not started: the client gets a proper
//!   error response (status and `{"errorCode","message"}`);
//! - later, when the client asked for an `endStreamAction`, the stream ends with one that
//!   carries `errorMessage` (the protocol's way to fail a query after the 200);
//! - otherwise the body is broken off, so the client sees a failed stream, never a short one.
//!
//! The audit event counts the files of the chunks handed to the response, as they are handed:
//! each chunk carries its count, which the response adds when it takes the chunk, so an event
//! recorded when the client goes away counts every chunk that reached the connection.

use std::io;
use std::ops::ControlFlow;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::ApiError;
use crate::audit::AuditSlot;

/// Bytes buffered before a chunk is sent.
const CHUNK: usize = 64 * 1024;

/// The most bytes of rendered lines sent as one chunk. Larger pieces cost fewer hand-overs
/// (sends, wake-ups, writes); smaller ones less memory per response waiting for a slow client.
const PIECE: usize = 4 * CHUNK;

/// Writes the lines of one response body.
pub(crate) struct LineWriter {
    buf: String,
    tx: mpsc::Sender<Result<Chunk, ApiError>>,
    /// The client went away: stop producing.
    disconnected: bool,
    /// Whether a chunk was sent (the response has started).
    started: bool,
    /// Files and their bytes in `buf`, sent with it.
    pending: (i64, i64),
    audit: AuditSlot,
}

/// Part of a body, and the files (and their bytes) whose lines it holds.
struct Chunk {
    text: Bytes,
    files: i64,
    bytes: i64,
}

impl LineWriter {
    /// Writes one line with `f`, adding the newline. Breaks once the client has gone away.
    pub(crate) fn line(&mut self, f: impl FnOnce(&mut String)) -> ControlFlow<()> {
        if self.disconnected {
            return ControlFlow::Break(());
        }
        f(&mut self.buf);
        self.buf.push('\n');
        if self.buf.len() >= CHUNK { self.flush() } else { ControlFlow::Continue(()) }
    }

    /// Writes a serializable value as one line.
    pub(crate) fn json_line(&mut self, value: &impl serde::Serialize) -> ControlFlow<()> {
        self.line(|out| out.push_str(&serde_json::to_string(value).unwrap_or_default()))
    }

    /// Writes the line of a file of `size` bytes with `f`. If `f` fails, nothing of the line
    /// stays in the body.
    pub(crate) fn file_line(
        &mut self,
        size: i64,
        f: impl FnOnce(&mut String) -> Result<(), ApiError>,
    ) -> Result<ControlFlow<()>, ApiError> {
        if self.disconnected {
            return Ok(ControlFlow::Break(()));
        }
        let mark = self.buf.len();
        if let Err(e) = f(&mut self.buf) {
            self.buf.truncate(mark);
            return Err(e);
        }
        self.pending.0 += 1;
        self.pending.1 += size;
        self.buf.push('\n');
        Ok(if self.buf.len() >= CHUNK { self.flush() } else { ControlFlow::Continue(()) })
    }

    /// Writes rendered file lines (each with its newline): `files` files of `bytes` bytes. They
    /// go out in pieces of at most [`PIECE`] bytes that share the text's allocation, so a response
    /// waiting for a slow client holds a few chunks rather than a few slices of lines; the files
    /// count with the last piece, once all their lines have reached the response.
    pub(crate) fn rendered(&mut self, text: String, files: i64, bytes: i64) -> ControlFlow<()> {
        self.flush()?;
        let mut text = Bytes::from(text);
        while text.len() > PIECE {
            let piece = text.split_to(PIECE);
            self.send(Chunk { text: piece, files: 0, bytes: 0 })?;
        }
        self.send(Chunk { text, files, bytes })
    }

    /// Sends what is buffered.
    pub(crate) fn flush(&mut self) -> ControlFlow<()> {
        if self.disconnected {
            return ControlFlow::Break(());
        }
        if self.buf.is_empty() {
            return ControlFlow::Continue(());
        }
        let text = Bytes::from(std::mem::replace(&mut self.buf, String::with_capacity(CHUNK + 4096)));
        let (files, bytes) = std::mem::take(&mut self.pending);
        self.send(Chunk { text, files, bytes })
    }

    fn send(&mut self, chunk: Chunk) -> ControlFlow<()> {
        if self.disconnected {
            return ControlFlow::Break(());
        }
        if self.tx.blocking_send(Ok(chunk)).is_err() {
            self.disconnected = true;
            return ControlFlow::Break(());
        }
        self.started = true;
        ControlFlow::Continue(())
    }

    /// Ends the body after `error`, as the module documentation says.
    fn fail(mut self, error: ApiError, end_stream: bool) {
        let message = error.public_message();
        let status = error.status().as_u16();
        self.buf.clear();
        self.pending = (0, 0);
        if !self.started {
            let _ = self.tx.blocking_send(Err(error));
            return;
        }
        if error.status().is_server_error() {
            tracing::error!(%error, "response stream failed");
        } else {
            tracing::warn!(%error, "response stream failed");
        }
        self.audit.update(|e| {
            e.status = status;
            e.detail = Some(format!("failed after the response started: {message}"));
        });
        if end_stream {
            let _ = self.json_line(&serde_json::json!({"endStreamAction": {"errorMessage": message}}));
            let _ = self.flush();
        } else {
            let _ = self.tx.blocking_send(Err(error));
        }
    }
}

/// Runs `write` on a blocking thread and answers with the body it writes, once its first chunk
/// is ready. `respond` builds the response around the body; `write` gets the expiry (ms since
/// the epoch) of the URLs it signs, `url_timeout_secs` from now.
pub(crate) async fn stream_response(
    url_timeout_secs: u64,
    end_stream: bool,
    audit: AuditSlot,
    respond: impl FnOnce(Body) -> Response,
    write: impl FnOnce(i64, &mut LineWriter) -> Result<(), ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    // A listing that matches nothing still reports its (zero) files.
    audit.update(|e| {
        e.files.get_or_insert(0);
        e.bytes.get_or_insert(0);
    });
    let (tx, mut rx) = mpsc::channel::<Result<Chunk, ApiError>>(8);
    // Counted here, where the response takes each chunk: the event never misses a chunk that
    // went out (the writer thread could be descheduled between sending and counting).
    let counted = audit.clone();
    let count = move |chunk: Chunk| {
        if chunk.files > 0 {
            counted.update(|e| {
                *e.files.get_or_insert(0) += chunk.files;
                *e.bytes.get_or_insert(0) += chunk.bytes;
            });
        }
        chunk.text
    };
    let mut writer = LineWriter {
        buf: String::with_capacity(CHUNK + 4096),
        tx,
        disconnected: false,
        started: false,
        pending: (0, 0),
        audit,
    };
    tokio::task::spawn_blocking(move || {
        // Whole seconds: pre-signed cloud URLs expire on a second.
        let expires_ms = (chrono::Utc::now().timestamp() + url_timeout_secs as i64) * 1000;
        match write(expires_ms, &mut writer) {
            Ok(()) => {
                let _ = writer.flush();
            }
            Err(e) => writer.fail(e, end_stream),
        }
    });
    let first = match rx.recv().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => return Err(e),
        None => return Err(ApiError::internal("the response writer ended without writing")),
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let body = futures::stream::once(async move { Ok(first) })
        .chain(rest)
        .map(move |item| item.map(&count).map_err(|e| io::Error::other(e.public_message())));
    Ok(respond(Body::from_stream(body.boxed())))
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// The files and bytes the audit event counts so far.
    fn counted(audit: &AuditSlot) -> (Option<i64>, Option<i64>) {
        let mut counted = (None, None);
        audit.update(|e| counted = (e.files, e.bytes));
        counted
    }

    /// The contract the audit of abandoned responses rests on: a chunk's files are in the event
    /// from the moment the response takes the chunk, and not before, whatever the writer thread
    /// is doing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chunk_is_counted_before_it_reaches_the_response() {
        let audit = AuditSlot::default();
        let (go_on, held) = std::sync::mpsc::channel::<()>();
        let response = stream_response(60, false, audit.clone(), Response::new, move |_, w| {
            let _ = w.file_line(10, |out| {
                out.push_str("{\"file\":1}");
                Ok(())
            })?;
            let _ = w.flush();
            // The writer stops here, as a thread that is descheduled would.
            let _ = held.recv();
            Ok(())
        })
        .await
        .expect("the response starts");
        let counted_now = || counted(&audit);
        // The writer has sent its chunk, but the response has not taken it: not counted yet
        // (counting at the send would claim files a client that leaves now never got).
        assert_eq!(counted_now(), (Some(0), Some(0)), "a chunk counted before the response took it");
        let mut body = response.into_body();
        let frame = body.frame().await.expect("a first chunk").expect("no error");
        assert_eq!(frame.data_ref().map(|d| d.as_ref()), Some(&b"{\"file\":1}\n"[..]));
        assert_eq!(counted_now(), (Some(1), Some(10)), "the files of the chunk the response took");
        go_on.send(()).expect("the writer waits");
        assert!(body.frame().await.is_none(), "the body ends");
    }

    /// Rendered lines leave in pieces of at most [`PIECE`] bytes, in order, and their files
    /// count only when the last piece is taken.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rendered_lines_leave_in_chunks_and_count_with_the_last() {
        let audit = AuditSlot::default();
        let line = format!("{{\"file\":\"{}\"}}\n", "x".repeat(1000));
        let text = line.repeat(600);
        let sent = text.clone();
        let response = stream_response(60, false, audit.clone(), Response::new, move |_, w| {
            let _ = w.line(|out| out.push_str("{\"protocol\":{}}"));
            let _ = w.rendered(sent, 600, 6000);
            Ok(())
        })
        .await
        .expect("the response starts");
        let counted_now = || counted(&audit);
        let mut body = response.into_body();
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.expect("no error").into_data().expect("data");
            frames.push(data);
            if frames.len() == 2 {
                assert_eq!(counted_now(), (Some(0), Some(0)), "files counted before their last piece");
            }
        }
        assert_eq!(&frames[0][..], b"{\"protocol\":{}}\n", "what was buffered goes first");
        let pieces = &frames[1..];
        assert_eq!(pieces.len(), text.len().div_ceil(PIECE));
        assert!(pieces.iter().all(|p| p.len() <= PIECE));
        assert_eq!(pieces.concat(), text.as_bytes());
        assert_eq!(counted_now(), (Some(600), Some(6000)));
    }
}
