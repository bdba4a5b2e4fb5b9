//! The page's routes: the embedded files, JSON reads (one SDK call each) and the actions.
//! Reads and actions run the blocking SDK on tokio's blocking pool; errors come back as
//! `{"error": {"code", "message", "hint"}}` with an HTTP status for the code, never a trace.

use super::assets;
use super::live;
use super::state::{blocking, error, App};
use crate::error::{Code, Error, Result};
use crate::mcp::source::HostRoots;
use crate::Workspaces;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most patch text a download carries (each file at most 256 KiB, as in `diff`).
const MAX_DOWNLOAD_PATCH: usize = 64 << 20;

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { page(assets::INDEX_HTML, "text/html; charset=utf-8") }))
        .route("/app.js", get(|| async { page(assets::APP_JS, "text/javascript; charset=utf-8") }))
        .route("/app.css", get(|| async { page(assets::APP_CSS, "text/css; charset=utf-8") }))
        .route("/api/workspaces", get(list))
        .route("/api/workspaces/{id}", get(status))
        .route("/api/workspaces/{id}/summary", get(summary))
        .route("/api/workspaces/{id}/timeline", get(timeline))
        .route("/api/workspaces/{id}/usage", get(usage))
        .route("/api/workspaces/{id}/diff", get(diff))
        .route("/api/workspaces/{id}/hunks", get(hunks))
        .route("/api/workspaces/{id}/patch", get(patch))
        .route("/api/workspaces/{id}/services", get(services))
        .route("/api/workspaces/{id}/shells", get(shells))
        .route("/api/workspaces/{id}/snapshots", get(snapshots))
        .route("/api/workspaces/{id}/services/{name}/live", get(live::service))
        .route("/api/workspaces/{id}/shells/{shell}/live", get(live::shell))
        .route("/api/workspaces/{id}/actions/{action}", post(action))
        .fallback(|| async { error(Error::not_found("no such page")) })
        .with_state(app)
}

fn page(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// `blocking`, answered as JSON.
async fn json<T: Serialize + Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&mut Workspaces<'_>) -> Result<T> + Send + 'static,
) -> Response {
    match blocking(app, f).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(e),
    }
}

async fn list(State(app): State<Arc<App>>) -> Response {
    json(&app, |ws| ws.list()).await
}

async fn status(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    json(&app, move |ws| ws.status(&id)).await
}

async fn summary(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    json(&app, move |ws| ws.summary(&id)).await
}

async fn timeline(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    json(&app, move |ws| ws.timeline(&id)).await
}

async fn usage(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    json(&app, move |ws| ws.usage(&id)).await
}

#[derive(Deserialize)]
struct PathArg {
    path: Option<String>,
}

async fn diff(State(app): State<Arc<App>>, Path(id): Path<String>, Query(q): Query<PathArg>) -> Response {
    json(&app, move |ws| ws.diff_listing(&id, q.path.as_deref())).await
}

async fn hunks(State(app): State<Arc<App>>, Path(id): Path<String>, Query(q): Query<PathArg>) -> Response {
    let Some(path) = q.path else {
        return error(Error::invalid("hunks needs ?path=FILE"));
    };
    json(&app, move |ws| ws.diff_path(&id, Some(&path), crate::workspace::diff::MAX_PATCH_TEXT)).await
}

/// The whole patch as a file to save (`git apply` takes it).
async fn patch(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match blocking(&app, move |ws| ws.diff_patch(&id, MAX_DOWNLOAD_PATCH)).await {
        Ok(d) => {
            let disposition = format!("attachment; filename=\"pyro-{}.patch\"", d.workspace_id);
            (
                [
                    (header::CONTENT_TYPE, "text/x-diff; charset=utf-8".to_string()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                d.patch,
            )
                .into_response()
        }
        Err(e) => error(e),
    }
}

async fn services(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    json(&app, move |ws| ws.service_list(&id)).await
}

/// Open shells of a running workspace (none when it is not running: no VM is booted for this).
async fn shells(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    json(&app, move |ws| {
        let info = ws.status(&id)?;
        if info.state != "running" {
            return Ok(serde_json::json!({"workspace_id": info.id, "count": 0, "shells": []}));
        }
        serde_json::to_value(ws.shell_list(&id)?).map_err(|e| Error::internal(e.to_string()))
    })
    .await
}

async fn snapshots(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    json(&app, move |ws| ws.snapshot_list(&id)).await
}

/// An action's body: the nonce, and what the action takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    nonce: String,
    /// export: the path in the workspace (default /workspace).
    path: Option<String>,
    /// export: the host directory to create, inside the project.
    dest: Option<String>,
    /// snapshot: its name.
    name: Option<String>,
    /// reset: the snapshot to reset to (default the baseline).
    snapshot: Option<String>,
}

/// Where an export from `seed` may go: the workspace's own seed directory, and the project
/// `pyro ui` was started for.
fn export_roots(seed: Option<&crate::workspace::WorkspaceSeed>, project: Option<&std::path::Path>) -> HostRoots {
    let from_seed = seed
        .filter(|s| s.kind == "directory" || s.kind == "git_checkout")
        .map(|s| std::path::PathBuf::from(&s.source))
        .filter(|p| p.is_dir());
    let mut roots: Vec<std::path::PathBuf> = from_seed.into_iter().collect();
    roots.extend(project.map(|p| p.to_path_buf()));
    roots.dedup();
    HostRoots { base: roots.first().cloned(), roots }
}

async fn action(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
    body: std::result::Result<Json<ActionBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(a)) = body else {
        return error(Error::invalid("an action's body is a JSON object with a nonce (and its fields)"));
    };
    let nonce_ok =
        (16..=128).contains(&a.nonce.len()) && a.nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !nonce_ok {
        return error(Error::invalid("nonce: 16 to 128 letters, digits or dashes"));
    }
    if !app.guard.fresh(&a.nonce) {
        return error(
            Error::new(Code::Conflict, "this action was already sent (a replayed request); nothing was done again")
                .hint("reload the page to act again"),
        );
    }
    let project = app.project.clone();
    match action.as_str() {
        "export" => {
            json(&app, move |ws| {
                let dest = a.dest.ok_or_else(|| Error::invalid("export needs dest, a directory inside the project"))?;
                let info = ws.status(&id)?;
                let roots = export_roots(info.seed.as_ref(), project.as_deref());
                let out = roots.confine(&dest, "dest")?;
                ws.export(&id, a.path.as_deref().unwrap_or("/workspace"), &out)
            })
            .await
        }
        "snapshot" => {
            json(&app, move |ws| {
                let name = a.name.ok_or_else(|| Error::invalid("snapshot needs a name"))?;
                ws.snapshot_create(&id, &name)
            })
            .await
        }
        "reset" => json(&app, move |ws| ws.reset_to(&id, a.snapshot.as_deref())).await,
        "stop" => json(&app, move |ws| ws.stop(&id, false)).await,
        "start" => json(&app, move |ws| ws.start(&id)).await,
        "delete" => json(&app, move |ws| ws.delete(&id)).await,
        other => error(Error::not_found(format!("no action {}", crate::text::clip(other, 40)))),
    }
}
