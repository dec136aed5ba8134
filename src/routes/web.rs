//! The web UI: files from the static folder (`--static-dir`).
//!
//! `/` and the UI's page paths serve `index.html`, `/login` serves
//! `login.html`, `/assets/**` the UI's own files and `/vendor/**` the npm
//! packages `make` installs (xterm.js). Everything passed the gate first.

use std::path::PathBuf;

use warp::filters::fs::File;
use warp::{Filter, Rejection};

use super::Endpoint;
use crate::state::AppState;

/// Pages of the single-page UI that all load `index.html`.
pub const PAGES: &[&str] = &["chat", "sessions", "events", "access"];

pub fn routes(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    let dir = state.config.static_dir.clone();
    index(dir.clone())
        .or(login(dir.clone()))
        .unify()
        .or(assets(dir))
        .unify()
        // Boxed: `warp::fs` filters hold their paths in `Arc`s, and warp's
        // `Or` clones its second half on every request; one `Arc` to clone
        // instead of four.
        .boxed()
}

fn serve(file: File) -> Endpoint {
    Endpoint::sync(move |_| file)
}

/// GET / and GET /{page} for each of [`PAGES`]
pub fn index(dir: PathBuf) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    let page = warp::path::param::<String>()
        .and(warp::path::end())
        .and_then(|p: String| async move {
            if PAGES.contains(&p.as_str()) {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one();
    warp::get()
        .and(warp::path::end().or(page).unify())
        .and(warp::fs::file(dir.join("index.html")))
        .map(serve)
}

/// GET /login
pub fn login(dir: PathBuf) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::get()
        .and(warp::path!("login"))
        .and(warp::fs::file(dir.join("login.html")))
        .map(serve)
}

/// GET /assets/** and GET /vendor/**
pub fn assets(dir: PathBuf) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    let a = warp::path("assets").and(warp::fs::dir(dir.join("assets")));
    let v = warp::path("vendor").and(warp::fs::dir(dir.join("vendor")));
    warp::get().and(a.or(v).unify()).map(serve)
}
