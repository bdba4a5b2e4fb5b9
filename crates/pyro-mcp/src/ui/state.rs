//! What every `pyro ui` request handler shares: the server's state, the way a handler runs a
//! blocking SDK call, and how an SDK error becomes an HTTP answer.

use super::guard::Guard;
use crate::error::{Code, Error, Result};
use crate::{Pyro, Workspaces};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::path::PathBuf;
use std::sync::Arc;

/// What every request handler shares.
pub(crate) struct App {
    pub pyro: Pyro,
    pub guard: Arc<Guard>,
    pub project: Option<PathBuf>,
}

/// An SDK error as JSON, with the HTTP status its code means.
pub(crate) fn error(e: Error) -> Response {
    let status = match e.code {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::Conflict | Code::State => StatusCode::CONFLICT,
        Code::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        Code::GuestUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Timeout => StatusCode::GATEWAY_TIMEOUT,
        Code::Internal | Code::Cancelled => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(serde_json::json!({ "error": e }))).into_response()
}

/// Run `f` on the user's workspaces on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&mut Workspaces<'_>) -> Result<T> + Send + 'static,
) -> Result<T> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let mut ws = app.pyro.workspaces()?;
        f(&mut ws)
    })
    .await
    .unwrap_or_else(|_| Err(Error::internal("the operation failed unexpectedly")))
}
