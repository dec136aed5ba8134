//! The chat terminal: `WS /api/ws` and the `/api/sessions` REST routes
//! (SPEC §3.1), thin adapters over [`crate::chat`].
//!
//! Everything that can fail is decided before the upgrade (unknown session
//! 404, too many sessions 503, a bad size 400), so a client sees an HTTP
//! status with a JSON body rather than a socket that opens and closes.
//!
//! Once open, the socket runs two halves so neither can hold up the other:
//! output (session frame, scrollback, live output, exit) is written by the
//! connection's task; input (keystrokes, control messages) is read by a
//! second task that may wait on a child that does not read its input
//! without stopping the output.

use crate::server::ws::{Message, WebSocket, Ws};
use bytes::Bytes;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::events::{register, ws_required, ws_upgrade};
use super::Endpoint;
use crate::chat::{ChatError, Session, Viewer, ViewerEvent};
use crate::gate::{query_param, refuse_read_only, Access};
use crate::reject::error_reply;
use crate::server::conns::{Close, ConnGuard};
use crate::state::{with_state, AppState};

/// Largest client frame (keystrokes or a control message); over it the
/// socket is closed with 1009.
pub const MAX_INPUT_FRAME: usize = 64 * 1024;
/// Frames above this are refused by the WebSocket layer itself; between
/// [`MAX_INPUT_FRAME`] and this they get a clean close 1009 from us.
const HARD_FRAME_LIMIT: usize = 4 * MAX_INPUT_FRAME;
/// A client that has not taken an output frame for this long is gone: stop
/// writing to it (the session itself never waits for it).
const SEND_STALL: Duration = Duration::from_secs(10);
/// Most queued output frames written before one flush.
const OUTPUT_BATCH: usize = 16;
/// How long the close frame may take to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Size of a new session when the client does not say.
pub const DEFAULT_COLS: u16 = 80;
pub const DEFAULT_ROWS: u16 = 24;
/// Largest `POST /api/sessions` body.
const MAX_CREATE_BODY: u64 = 4 * 1024;

pub fn routes(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    terminal(state)
        .or(list(state))
        .unify()
        .or(create(state))
        .unify()
        .or(get(state))
        .unify()
        .or(delete(state))
        .unify()
}

/// The JSON reply for a chat error, with the status a client can act on.
fn chat_error(e: &ChatError) -> Response {
    let status = match e {
        ChatError::TooManySessions { .. }
        | ChatError::TooManyViewers { .. }
        | ChatError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ChatError::BadSize { .. } => StatusCode::BAD_REQUEST,
        ChatError::Exited => StatusCode::CONFLICT,
        ChatError::Spawn(_) | ChatError::WriteTimeout | ChatError::Io(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error_reply(status, e.code(), &e.to_string())
}

fn no_such_session() -> Response {
    error_reply(
        StatusCode::NOT_FOUND,
        "session_not_found",
        "no chat session with this id",
    )
}

fn bad_size() -> Response {
    error_reply(
        StatusCode::BAD_REQUEST,
        "bad_size",
        "cols and rows are integers in 1..=1000",
    )
}

/// Whether the caller may see (list, attach to, end) session `s`: its own,
/// or every one when the admitting rule gave it a group `chat.see_all`
/// names (SPEC §2.5). Anyone else's answers 404, as an unknown id does: a
/// session's existence is not told to those who may not see it.
fn visible(state: &AppState, access: &Access, s: &Session) -> bool {
    s.owner() == access.owner() || state.policy().compiled.sees_all_sessions(&access.groups)
}

/// The session `id`, if the caller may see it.
fn visible_session(state: &AppState, access: &Access, id: &str) -> Option<Arc<Session>> {
    state.chat.get(id).filter(|s| visible(state, access, s))
}

/// `cols`/`rows` from the query, defaulting to 80x24 when absent.
fn size_of(query: &str) -> Option<(u16, u16)> {
    let dim = |name, default| match query_param(query, name) {
        None => Some(default),
        Some(v) => v.parse::<u16>().ok(),
    };
    Some((dim("cols", DEFAULT_COLS)?, dim("rows", DEFAULT_ROWS)?))
}

/// WS /api/ws?session=ID (attach) or /api/ws?cols=C&rows=R (new session)
pub fn terminal(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "ws")
        .and(warp::get())
        .and(ws_upgrade())
        .and(with_state(state))
        .map(|ws: Option<Ws>, state: AppState| {
            Endpoint::sync(move |access| {
                let Some(ws) = ws else { return ws_required() };
                let session_id = query_param(access.query(), "session");
                let size = size_of(access.query());
                let owner = access.owner();
                let read_only = access.read_only();
                // A read-only admission watches; it does not start a shell.
                if read_only && session_id.is_none() {
                    return refuse_read_only(&state, &access);
                }
                let seen = session_id
                    .as_deref()
                    .map(|id| visible_session(&state, &access, id));
                // Register first: no child is started for a socket over the limit.
                let guard = match register(&state, "/api/ws", access) {
                    Ok(g) => g,
                    Err(r) => return r.into_response(),
                };
                let session = match seen {
                    Some(Some(s)) => s,
                    Some(None) => return no_such_session(),
                    None => {
                        let Some((cols, rows)) = size else {
                            return bad_size();
                        };
                        match state.chat.create_owned(cols, rows, &owner) {
                            Ok(s) => s,
                            Err(e) => return chat_error(&e),
                        }
                    }
                };
                // A reload re-decides whether the caller still sees it.
                guard.watching(session.owner(), session.id());
                let viewer = match session.attach_as(&owner, read_only) {
                    Ok(v) => v,
                    Err(e) => return chat_error(&e),
                };
                ws.max_message_size(HARD_FRAME_LIMIT)
                    .max_frame_size(HARD_FRAME_LIMIT)
                    .on_upgrade(move |socket| run_terminal(socket, viewer, guard, read_only))
                    .into_response()
            })
        })
}

/// A control message from the client (text frame).
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ControlMsg {
    /// The terminal's new size, each of cols and rows in 1..=1000.
    Resize { cols: u16, rows: u16 },
    /// Keystrokes, as text.
    Input { data: String },
}

/// Parse one client text frame as [`read_input`] does: a [`ControlMsg`]
/// with a size in range, or the close (1007) the socket answers it with.
/// Public for the fuzz target `chat_control` (`fuzz/`) and its replay test;
/// the socket's input half is its only other caller.
///
/// # Errors
/// The close frame for a frame that is no control message, or a resize out
/// of range.
pub fn control_message(frame: &[u8]) -> Result<ControlMsg, Close> {
    match serde_json::from_slice::<ControlMsg>(frame) {
        Ok(ControlMsg::Resize { cols, rows }) if crate::chat::check_size(cols, rows).is_err() => {
            Err(bad_resize())
        }
        Ok(msg) => Ok(msg),
        Err(e) => Err(Close::new(1007, format!("bad control message: {e}"))),
    }
}

fn bad_resize() -> Close {
    Close::new(1007, "cols and rows are 1..=1000")
}

async fn run_terminal(
    socket: WebSocket,
    mut viewer: Viewer,
    mut guard: ConnGuard,
    read_only: bool,
) {
    let session = viewer.session().clone();
    let (mut tx, rx) = socket.split();
    // The input half reports a protocol violation here; dropping the sender
    // (the client went away) ends the output half too.
    let (violation_tx, mut violation) = mpsc::channel::<Close>(1);
    let input = tokio::spawn(read_input(rx, session.clone(), violation_tx, read_only));

    let hello = json!({
        "type": "session",
        "id": session.id(),
        "command": session.command(),
        "owner": session.owner(),
    });
    let mut first = vec![Message::text(hello.to_string())];
    // Told once, up front, instead of keys that silently vanish.
    if read_only {
        let note = json!({ "type": "read_only", "message": "read-only: your keys are not sent" });
        first.push(Message::text(note.to_string()));
    }
    if !viewer.scrollback.is_empty() {
        first.push(Message::binary(std::mem::take(&mut viewer.scrollback)));
    }
    let mut close = None;
    for m in first {
        if !send(&mut tx, m).await {
            close = Some(None);
            break;
        }
    }
    let close = match close {
        Some(c) => c,
        None => loop {
            tokio::select! {
                c = guard.wait() => break Some(c),
                v = violation.recv() => break v,
                ev = viewer.recv() => match ev {
                    Some(ViewerEvent::Output(b)) => {
                        let sent = tokio::select! {
                            r = tokio::time::timeout(SEND_STALL, send_output(&mut tx, b, &mut viewer)) => r,
                            c = guard.wait() => break Some(c),
                        };
                        match sent {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => break None,
                            // Not reading for this long is falling behind too.
                            Err(_) => break Some(lagged()),
                        }
                    }
                    Some(ViewerEvent::Exit { code, signal }) => {
                        let info = crate::chat::ExitInfo { code, signal };
                        let frame = json!({ "type": "exit", "code": info.shell_code(), "signal": signal });
                        if !send(&mut tx, Message::text(frame.to_string())).await {
                            break None;
                        }
                        break Some(Close::new(1000, "program exited"));
                    }
                    Some(ViewerEvent::Lagged) => break Some(lagged()),
                    None => break Some(Close::new(1011, "session ended")),
                },
            }
        },
    };
    if let Some(c) = close {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = tx.send(Message::close_with(c.code, c.reason)).await;
            let _ = tx.close().await;
        })
        .await;
    }
    input.abort();
    // `viewer` drops here: detached.
}

/// Write `first` and whatever output is already queued behind it (up to
/// [`OUTPUT_BATCH`] frames), then flush once: a backlog costs one flush, not
/// one per chunk.
async fn send_output(
    tx: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    first: Bytes,
    viewer: &mut Viewer,
) -> Result<(), crate::server::ws::Error> {
    tx.feed(Message::binary(first)).await?;
    for _ in 1..OUTPUT_BATCH {
        let Some(more) = viewer.try_recv_output() else {
            break;
        };
        tx.feed(Message::binary(more)).await?;
    }
    tx.flush().await
}

fn lagged() -> Close {
    Close::new(1013, "viewer fell behind; reattach to resume")
}

/// Send one frame, giving up on a client that takes none for [`SEND_STALL`].
async fn send(tx: &mut futures_util::stream::SplitSink<WebSocket, Message>, m: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_STALL, tx.send(m)).await,
        Ok(Ok(()))
    )
}

/// The input half: binary frames are keystrokes, text frames control JSON.
/// A read-only viewer's keystrokes and control messages are dropped (it was
/// told so once by a `read_only` frame).
async fn read_input(
    mut rx: SplitStream<WebSocket>,
    session: Arc<Session>,
    violation: mpsc::Sender<Close>,
    read_only: bool,
) {
    while let Some(msg) = rx.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(_) => {
                // The WebSocket layer refused the frame (over the hard limit)
                // or the connection broke; the close may not reach anyone.
                let _ = violation.send(Close::new(1009, "frame over 64 KiB")).await;
                return;
            }
        };
        if msg.is_close() {
            return;
        }
        if msg.as_bytes().len() > MAX_INPUT_FRAME {
            let _ = violation.send(Close::new(1009, "frame over 64 KiB")).await;
            return;
        }
        if read_only {
            continue;
        }
        let result = if msg.is_binary() {
            session.write(msg.as_bytes()).await
        } else if msg.is_text() {
            match control_message(msg.as_bytes()) {
                Ok(ControlMsg::Input { data }) => session.write(data.as_bytes()).await,
                Ok(ControlMsg::Resize { cols, rows }) => match session.resize(cols, rows) {
                    Err(ChatError::BadSize { .. }) => {
                        let _ = violation.send(bad_resize()).await;
                        return;
                    }
                    other => other,
                },
                Err(close) => {
                    let _ = violation.send(close).await;
                    return;
                }
            }
        } else {
            Ok(()) // ping / pong
        };
        match result {
            // The exit frame is on its way through the output half.
            Ok(()) | Err(ChatError::Exited) => {}
            Err(e) => {
                tracing::debug!(session = %session.id(), error = %e, "chat input dropped");
            }
        }
    }
}

/// GET /api/sessions
pub fn list(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "sessions")
        .and(warp::get())
        .and(with_state(state))
        .map(|state: AppState| {
            Endpoint::sync(move |access| {
                let sees_all = state.policy().compiled.sees_all_sessions(&access.groups);
                let owner = access.owner();
                let mine: Vec<_> = state
                    .chat
                    .list()
                    .into_iter()
                    .filter(|s| sees_all || s.owner == owner)
                    .collect();
                warp::reply::json(&mine)
            })
        })
}

/// The body of `POST /api/sessions`; both fields optional (80x24).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    cols: Option<u16>,
    rows: Option<u16>,
}

/// POST /api/sessions
pub fn create(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    // A request without a Content-Length (no body) creates an 80x24 session
    // instead of falling through to the /api 404.
    let body = warp::body::content_length_limit(MAX_CREATE_BODY)
        .and(warp::body::bytes())
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    warp::path!("api" / "sessions")
        .and(warp::post())
        .and(warp::header::optional::<u64>("content-length"))
        .and(body)
        .and(with_state(state))
        .map(
            |length: Option<u64>, body: Option<Bytes>, state: AppState| {
                Endpoint::sync(move |access| {
                    // (The gate refuses a read-only POST already; kept for
                    // a route that is reached some other way.)
                    if access.read_only() {
                        return refuse_read_only(&state, &access);
                    }
                    let req = match (length, body) {
                        (Some(n), None) if n > MAX_CREATE_BODY => {
                            return error_reply(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "payload_too_large",
                                "the body is at most 4 KiB",
                            )
                        }
                        (_, Some(b)) if !b.iter().all(u8::is_ascii_whitespace) => {
                            match serde_json::from_slice::<CreateRequest>(&b) {
                                Ok(r) => r,
                                Err(e) => {
                                    let msg = format!("expected {{\"cols\": C, \"rows\": R}}: {e}");
                                    return error_reply(StatusCode::BAD_REQUEST, "bad_body", &msg);
                                }
                            }
                        }
                        _ => CreateRequest::default(),
                    };
                    let cols = req.cols.unwrap_or(DEFAULT_COLS);
                    let rows = req.rows.unwrap_or(DEFAULT_ROWS);
                    match state.chat.create_owned(cols, rows, &access.owner()) {
                        Ok(s) => warp::reply::with_status(
                            warp::reply::json(&s.info()),
                            StatusCode::CREATED,
                        )
                        .into_response(),
                        Err(e) => chat_error(&e),
                    }
                })
            },
        )
}

/// GET /api/sessions/{id}
pub fn get(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "sessions" / String)
        .and(warp::get())
        .and(with_state(state))
        .map(|id: String, state: AppState| {
            Endpoint::sync(move |access| match visible_session(&state, &access, &id) {
                Some(s) => warp::reply::json(&s.info()).into_response(),
                None => no_such_session(),
            })
        })
}

/// DELETE /api/sessions/{id}: SIGHUP now, SIGKILL after 2 s; 202 with the
/// session as it was when asked.
pub fn delete(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "sessions" / String)
        .and(warp::delete())
        .and(with_state(state))
        .map(|id: String, state: AppState| {
            Endpoint::sync(move |access| {
                if access.read_only() {
                    return refuse_read_only(&state, &access);
                }
                let Some(s) = visible_session(&state, &access, &id) else {
                    return no_such_session();
                };
                let info = s.info();
                state.chat.kill(&id);
                warp::reply::with_status(warp::reply::json(&info), StatusCode::ACCEPTED)
                    .into_response()
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_defaults_and_refuses_junk() {
        assert_eq!(size_of(""), Some((80, 24)));
        assert_eq!(size_of("cols=101&rows=33"), Some((101, 33)));
        assert_eq!(size_of("rows=50"), Some((80, 50)));
        assert_eq!(size_of("cols=abc"), None);
        assert_eq!(size_of("cols=70000"), None);
    }

    #[test]
    fn control_messages_parse_strictly() {
        let ok: ControlMsg =
            serde_json::from_str(r#"{"type":"resize","cols":3,"rows":4}"#).unwrap();
        assert!(matches!(ok, ControlMsg::Resize { cols: 3, rows: 4 }));
        let ok: ControlMsg = serde_json::from_str(r#"{"type":"input","data":"ls\r"}"#).unwrap();
        assert!(matches!(ok, ControlMsg::Input { data } if data == "ls\r"));
        for bad in [
            r#"{"type":"resize","cols":-1,"rows":4}"#,
            r#"{"type":"explode"}"#,
            r#"{"cols":3}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<ControlMsg>(bad).is_err(), "{bad}");
        }
    }
}
