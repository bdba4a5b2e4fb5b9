//! The MCP App of the review (the MCP Apps extension, `io.modelcontextprotocol/ui`): a chat
//! host that supports it gets `workspace_summary` and `workspace_diff` tied to the UI resource
//! `ui://pyro/review` (`_meta.ui.resourceUri` on the tools), can read that resource, and
//! renders it next to the call with the call's result: the summary or the grouped diff, with
//! approve (= `workspace_export`) and reset through the host.
//!
//! Only for clients that declare the extension (in `initialize`, or in a stateless request's
//! `_meta`): everyone else gets the tools, results and capabilities they got before, byte for
//! byte.

use rmcp::model::{ClientCapabilities, MetaObject, Resource, ResourceContents, Tool};
use serde_json::json;

/// The extension's identifier, as clients declare it.
pub const EXTENSION: &str = "io.modelcontextprotocol/ui";
/// The one UI resource.
pub const REVIEW_URI: &str = "ui://pyro/review";
/// What an MCP App's HTML is served as.
pub const MIME: &str = "text/html;profile=mcp-app";
/// The tools whose results the app renders.
const TOOLS: &[&str] = &["workspace_summary", "workspace_diff"];

/// Whether the client declared the extension.
pub fn supported(caps: Option<&ClientCapabilities>) -> bool {
    caps.and_then(|c| c.extensions.as_ref()).is_some_and(|e| e.contains_key(EXTENSION))
}

/// `tools` as a UI client sees them: the review tools carry `_meta.ui.resourceUri`.
pub fn with_ui(tools: &[Tool]) -> Vec<Tool> {
    tools
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if TOOLS.contains(&t.name.as_ref()) {
                let mut meta = t.meta.take().unwrap_or_else(MetaObject::new);
                meta.insert("ui".into(), json!({ "resourceUri": REVIEW_URI }));
                t.meta = Some(meta);
            }
            t
        })
        .collect()
}

/// The resource as `resources/list` shows it.
pub fn resource() -> Resource {
    Resource::new(REVIEW_URI, "pyro review")
        .with_description("Review a workspace: its session, its grouped diff, approve (export) or reset.")
        .with_mime_type(MIME)
}

/// The resource's contents: one self-contained HTML document.
pub fn contents() -> ResourceContents {
    let mut meta = MetaObject::new();
    meta.insert("ui".into(), json!({ "prefersBorder": true, "csp": { "connectDomains": [], "resourceDomains": [] } }));
    ResourceContents::TextResourceContents {
        uri: REVIEW_URI.into(),
        mime_type: Some(MIME.into()),
        text: crate::ui::assets::REVIEW_APP_HTML.into(),
        meta: Some(meta),
    }
}
