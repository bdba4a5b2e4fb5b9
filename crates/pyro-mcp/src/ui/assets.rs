//! The page's files, embedded at build time: the page works offline and the binary is all
//! there is to install. No external script, style sheet or font is ever loaded.

pub const INDEX_HTML: &str = include_str!("assets/index.html");
pub const APP_JS: &str = include_str!("assets/app.js");
pub const APP_CSS: &str = include_str!("assets/app.css");
/// The MCP App (`ui://pyro/review`): one self-contained document, as hosts load it.
pub const REVIEW_APP_HTML: &str = include_str!("assets/review-app.html");
