//! The short text content that goes with each tool result (the structured content carries
//! the full JSON): the lines a model reads first, and for clients that show only text.

use crate::error::Error;
use crate::workspace::clip;
use serde_json::Value;

fn st(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn streams(v: &Value, out: &mut String) {
    for k in ["stdout", "stderr"] {
        let s = st(&v[k]);
        if !s.is_empty() {
            out.push_str(&format!(
                "\n[{k}{}]\n{s}",
                if v[format!("{k}_truncated")] == true { ", truncated" } else { "" }
            ));
        }
    }
}

fn workspace_line(v: &Value) -> String {
    let name = v["name"].as_str().map(|n| format!(" ({n})")).unwrap_or_default();
    let reason = v["state_reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default();
    let mut s = format!(
        "workspace {}{name}: {}{reason}, {}, {} vCPU, {} MiB, {} commands",
        st(&v["id"]),
        st(&v["state"]),
        st(&v["environment"]),
        v["vcpu_count"],
        v["mem_mib"],
        v["command_count"]
    );
    if let Some(seed) = v.get("seed").filter(|s| !s.is_null()) {
        s.push_str(&format!(
            "\nseed: {} {} ({} entries, {} bytes)",
            st(&seed["kind"]),
            st(&seed["source"]),
            seed["entries"],
            seed["bytes"]
        ));
    }
    if let Some(src) = v.get("seed_source") {
        let at = src.get("path").or_else(|| src.get("url")).map(|p| format!(" {}", st(p))).unwrap_or_default();
        s.push_str(&format!("\nseed_source: {}{at}", st(&src["kind"])));
    }
    s
}

/// Text for a successful call of `tool` that returned `v`.
pub fn text(tool: &str, v: &Value) -> String {
    match tool {
        "vm_run" | "workspace_exec" => {
            let mut s = format!("exit_code={}", v["exit_code"]);
            if v["timed_out"] == true {
                s.push_str(" timed_out=true");
            }
            s.push_str(&format!(" duration_ms={}", v["duration_ms"]));
            if let Some(seq) = v.get("sequence") {
                s.push_str(&format!(" sequence={seq}"));
            }
            if let Some(r) = v.get("vm_restarted").and_then(Value::as_str) {
                s.push_str(&format!("\nnote: {r}"));
            }
            streams(v, &mut s);
            s
        }
        "workspace_create" | "workspace_status" | "workspace_update" | "workspace_reset" => workspace_line(v),
        "workspace_list" => {
            let list = v["workspaces"].as_array().cloned().unwrap_or_default();
            let mut s = format!("{} workspaces", list.len());
            for w in &list {
                let name = w["name"].as_str().map(|n| format!(" ({n})")).unwrap_or_default();
                s.push_str(&format!("\n{}{name} {} {}", st(&w["id"]), st(&w["state"]), st(&w["environment"])));
            }
            s
        }
        "workspace_logs" => {
            let list = v["entries"].as_array().cloned().unwrap_or_default();
            let mut s = format!("{} commands since the last reset", list.len());
            for e in &list {
                s.push_str(&format!("\n#{} exit={} {}", e["sequence"], e["exit_code"], clip(st(&e["command"]), 200)));
            }
            s
        }
        "workspace_summary" => crate::workspace::summary::render(v),
        "workspace_file_list" => {
            let list = v["entries"].as_array().cloned().unwrap_or_default();
            let mut s = format!("{} entries under {}", list.len(), st(&v["path"]));
            for e in &list {
                let target = e.get("target").and_then(Value::as_str).map(|t| format!(" -> {t}")).unwrap_or_default();
                s.push_str(&format!("\n{} {} {}{target}", st(&e["kind"]), e["size"], st(&e["path"])));
            }
            if v["truncated"] == true {
                s.push_str(&format!("\n[truncated] {}", st(&v["hint"])));
            }
            s
        }
        "workspace_file_read" => {
            let mut s = format!("{} ({} bytes", st(&v["path"]), v["size_bytes"]);
            for flag in ["truncated", "binary"] {
                if v[flag] == true {
                    s.push_str(&format!(", {flag}"));
                }
            }
            s.push_str(")\n");
            s.push_str(st(&v["content"]));
            s
        }
        "workspace_diff" => {
            let m = &v["summary"];
            let mut s = if v["changed"] == true {
                format!(
                    "{} changed: {} added, {} modified, {} deleted",
                    m["total"], m["added"], m["modified"], m["deleted"]
                )
            } else {
                "no changes since the baseline".to_string()
            };
            if let Some(h) = v.get("hint").and_then(Value::as_str) {
                s.push_str(&format!(" ({h})"));
            }
            let patch = st(&v["patch"]);
            if !patch.is_empty() {
                s.push('\n');
                s.push_str(patch);
            }
            s
        }
        _ => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// Text for an error result.
pub fn error_text(e: &Error) -> String {
    match &e.hint {
        Some(h) => format!("error ({}): {}\nhint: {h}", e.code.as_str(), e.message),
        None => format!("error ({}): {}", e.code.as_str(), e.message),
    }
}
