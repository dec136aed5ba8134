//! dashgate: a web dashboard server for terminal agents, guarded by one gate.
//!
//! Every request — REST, WebSocket upgrade, static file — passes through one
//! `authorize()` warp filter compiled from one YAML policy. The parts, by
//! folder:
//!
//! * [`policy`]  – the pure policy engine: facts in, a decision out.
//! * [`gate`]    – the `authorize()` filter: request -> facts -> decision.
//! * [`routes`]  – the one route tree, wrapped by the gate once; a file per area.
//! * [`server`]  – the accept loop that has the gate decide each request,
//!   the one-thread workers its connections live on, open WebSockets and
//!   their re-checks, connection limits, TLS, signals and policy reloads.
//! * [`auth`]    – sign-in sessions behind the cookie, the failure limiter.
//! * [`chat`]    – PTY sessions behind `/api/ws`.
//! * [`proxy`]   – upstream mode: the request proxied behind the same gate
//!   on a pool of kept-alive connections, WebSockets relayed frame by frame.
//! * [`cli`]     – the command line: arguments, `serve`, the policy subcommands.
//!
//! And the small things every part uses, at the root: [`events`] (the
//! channel hub), [`metrics`], [`reject`] (the one rejection type and its
//! JSON replies), [`state`] (what the routes share) and [`util`].

pub mod alloc;
pub mod auth;
pub mod chat;
pub mod cli;
pub mod events;
pub mod gate;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod reject;
pub mod routes;
pub mod server;
pub mod state;
pub mod util;
