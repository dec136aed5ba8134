//! dashgate: a web dashboard server for terminal agents, guarded by one gate.
//!
//! Every request — REST, WebSocket upgrade, static file — passes through one
//! `authorize()` warp filter compiled from one YAML policy:
//!
//! * [`policy`]  – the pure policy engine: facts in, a decision out.
//! * `gate`      – the `authorize()` filter: request -> facts -> decision.
//! * `reject`    – the one rejection type and its JSON replies.
//! * `routes`    – the one route tree, wrapped by the gate once.
//! * [`events`]  – the channel hub behind `/api/events` and `/api/pub`.
//! * [`chat`]    – PTY sessions behind `/api/ws`.
//! * [`cli`], `serve`, `policy_cmd` – the command line.

pub mod chat;
pub mod cli;
pub mod conns;
pub mod events;
pub mod gate;
pub mod limiter;
pub mod metrics;
pub mod policy;
mod policy_cmd;
pub mod reject;
pub mod reload;
pub mod routes;
pub mod serve;
pub mod server;
pub mod sessions;
mod signals;
pub mod state;
pub mod util;
