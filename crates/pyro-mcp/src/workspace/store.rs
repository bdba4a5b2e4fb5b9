//! Workspace state in SQLite (`<data>/pyro.db`, WAL): workspaces, command history and
//! review events. Every mutation that changes a workspace also appends its event in the same
//! transaction, so the history can never disagree with the state it describes.

use super::event::{StoredEvent, WorkspaceEvent};
use crate::clock::now_s;
use crate::error::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;

pub struct Store {
    /// Open to sibling modules that keep their own tables here (`services`).
    pub(super) conn: Connection,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub name: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub environment: String,
    pub environment_dir: String,
    pub vcpu_count: u32,
    pub mem_mib: u32,
    pub created_at: u64,
    pub last_activity_at: u64,
    pub reset_count: u32,
    pub last_reset_at: Option<u64>,
    pub command_count: u64,
    pub seed: Option<super::WorkspaceSeed>,
    /// The network it was created with, and the ports its VM published last.
    pub network: WorkspaceNetwork,
}

/// A workspace's network settings as stored (JSON in the `network` column).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct WorkspaceNetwork {
    #[serde(flatten)]
    pub options: crate::net::NetworkOptions,
    #[serde(default)]
    pub published: Vec<crate::net::PublishedPort>,
}

/// One command of the history (`workspace logs`), output clipped to `HISTORY_OUTPUT`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CommandRow {
    pub sequence: u64,
    pub command: String,
    pub cwd: String,
    pub exit_code: i32,
    pub timed_out: bool,
    /// Cancelled by its caller (an MCP client's cancellation): the guest killed it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// False while the command runs, and for good when it never reported back (the guest
    /// crashed, the caller was killed): then `exit_code` is -1 and the output is empty.
    pub finished: bool,
    pub duration_ms: u64,
    pub recorded_at: u64,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

/// `ALTER TABLE table ADD COLUMN column decl` unless the column exists.
fn add_column(conn: &Connection, table: &str, column: &str, decl: &str) -> Result<()> {
    let exists: bool = conn
        .prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"))
        .and_then(|mut s| s.exists([column]))
        .map_err(db_err)?;
    if !exists {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}")).map_err(db_err)?;
    }
    Ok(())
}

/// Switch to WAL (it persists in the file, so only the first opener changes anything). SQLite
/// answers a journal-mode change that races another opener with "database is locked" without
/// consulting the busy handler, so the wait is ours.
fn wal_mode(conn: &Connection) -> Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => return other.map_err(db_err),
        }
    }
}

/// A workspace deleted while an operation on it was under way.
pub(super) fn gone(id: &str) -> Error {
    Error::not_found(format!("workspace {id} was deleted")).hint("`pyro workspace list` shows yours")
}

pub(super) fn db_err(e: rusqlite::Error) -> Error {
    Error::internal(format!("workspace database: {e}"))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS workspaces (
  id TEXT PRIMARY KEY, name TEXT UNIQUE, labels TEXT NOT NULL, environment TEXT NOT NULL,
  environment_dir TEXT NOT NULL, vcpu_count INTEGER NOT NULL, mem_mib INTEGER NOT NULL,
  created_at INTEGER NOT NULL, last_activity_at INTEGER NOT NULL, reset_count INTEGER NOT NULL DEFAULT 0,
  last_reset_at INTEGER, command_count INTEGER NOT NULL DEFAULT 0, seed TEXT
);
CREATE TABLE IF NOT EXISTS commands (
  workspace_id TEXT NOT NULL, sequence INTEGER NOT NULL, generation INTEGER NOT NULL,
  command TEXT NOT NULL, cwd TEXT NOT NULL, exit_code INTEGER NOT NULL, timed_out INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL, recorded_at INTEGER NOT NULL, stdout TEXT NOT NULL, stderr TEXT NOT NULL,
  stdout_truncated INTEGER NOT NULL, stderr_truncated INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, sequence)
);
CREATE TABLE IF NOT EXISTS event_rollup (
  workspace_id TEXT NOT NULL, generation INTEGER NOT NULL, kind TEXT NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, generation, kind)
);
CREATE TABLE IF NOT EXISTS events (
  workspace_id TEXT NOT NULL, sequence INTEGER NOT NULL, generation INTEGER NOT NULL,
  kind TEXT NOT NULL, recorded_at INTEGER NOT NULL, payload TEXT NOT NULL,
  PRIMARY KEY (workspace_id, sequence)
);
CREATE TABLE IF NOT EXISTS services (
  workspace_id TEXT NOT NULL, name TEXT NOT NULL, boot_id TEXT NOT NULL, started_at INTEGER NOT NULL,
  info TEXT NOT NULL,
  PRIMARY KEY (workspace_id, name)
);
CREATE TABLE IF NOT EXISTS snapshots (
  workspace_id TEXT NOT NULL, name TEXT NOT NULL, layer TEXT NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, name)
);
";

impl Store {
    pub fn open(data_dir: &Path) -> Result<Store> {
        crate::paths::private_dir(data_dir)?;
        let conn = Connection::open(data_dir.join("pyro.db")).map_err(db_err)?;
        // Writers queue for up to BUSY_TIMEOUT; with immediate transactions (`tx`) that wait
        // covers every write, so parallel calls serialise instead of failing.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        wal_mode(&conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db_err)?;
        // Schema and column upgrades in one immediate transaction: processes opening a fresh
        // database at once (eight MCP servers starting together) take turns, so a second one
        // sees the first one's columns instead of adding them again.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
        let upgraded = Self::upgrade(&conn);
        let end = if upgraded.is_ok() { "COMMIT" } else { "ROLLBACK" };
        conn.execute_batch(end).map_err(db_err)?;
        upgraded?;
        Ok(Store { conn })
    }

    fn upgrade(conn: &Connection) -> Result<()> {
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        // Columns added after the first release, appended (in this order) to older databases
        // and to new ones alike, so positional inserts see one layout.
        add_column(conn, "workspaces", "network", "TEXT")?;
        add_column(conn, "commands", "cancelled", "INTEGER NOT NULL DEFAULT 0")?;
        // 0 while a command runs, and for good if it never reported back.
        add_column(conn, "commands", "finished", "INTEGER NOT NULL DEFAULT 1")?;
        Ok(())
    }

    /// A write transaction, taken at BEGIN (`BEGIN IMMEDIATE`). A deferred transaction that
    /// reads first and writes later cannot wait for another writer in WAL mode (SQLite
    /// answers SQLITE_BUSY at once, the busy timeout does not apply), so 8 of 24 parallel
    /// execs lost their history row; an immediate one queues under the busy timeout.
    pub(super) fn tx(&mut self) -> Result<rusqlite::Transaction<'_>> {
        self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db_err)
    }

    fn row(r: &rusqlite::Row) -> rusqlite::Result<Row> {
        let labels: String = r.get(2)?;
        let seed: Option<String> = r.get(12)?;
        let network: Option<String> = r.get(13)?;
        Ok(Row {
            id: r.get(0)?,
            name: r.get(1)?,
            labels: serde_json::from_str(&labels).unwrap_or_default(),
            environment: r.get(3)?,
            environment_dir: r.get(4)?,
            vcpu_count: r.get(5)?,
            mem_mib: r.get(6)?,
            created_at: r.get(7)?,
            last_activity_at: r.get(8)?,
            reset_count: r.get(9)?,
            last_reset_at: r.get(10)?,
            command_count: r.get(11)?,
            seed: seed.and_then(|s| serde_json::from_str(&s).ok()),
            network: network.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default(),
        })
    }

    const COLS: &'static str = "id, name, labels, environment, environment_dir, vcpu_count, mem_mib, created_at, last_activity_at, reset_count, last_reset_at, command_count, seed, network";

    fn insert_row(tx: &rusqlite::Transaction, w: &Row) -> Result<()> {
        tx.execute(
            &format!("INSERT INTO workspaces ({}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)", Self::COLS),
            params![
                w.id,
                w.name,
                serde_json::to_string(&w.labels).unwrap(),
                w.environment,
                w.environment_dir,
                w.vcpu_count,
                w.mem_mib,
                w.created_at,
                w.last_activity_at,
                w.reset_count,
                w.last_reset_at,
                w.command_count,
                w.seed.as_ref().map(|s| serde_json::to_string(s).unwrap()),
                serde_json::to_string(&w.network).unwrap()
            ],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => Error::new(
                crate::Code::Conflict,
                format!("a workspace named '{}' already exists", w.name.clone().unwrap_or_default()),
            ),
            e => db_err(e),
        })?;
        Ok(())
    }

    pub fn insert(&mut self, w: &Row, event: &WorkspaceEvent) -> Result<()> {
        let tx = self.tx()?;
        Self::insert_row(&tx, w)?;
        add_event(&tx, &w.id, event)?;
        tx.commit().map_err(db_err)
    }

    /// A fork's row, with the history of `from` (commands, events and their rollup, named
    /// snapshots) copied under the new id and `event` after it, in one transaction.
    pub fn insert_fork(&mut self, w: &Row, from: &str, event: &WorkspaceEvent) -> Result<()> {
        let tx = self.tx()?;
        Self::insert_row(&tx, w)?;
        for (table, cols) in [
            (
                "commands",
                "sequence, generation, command, cwd, exit_code, timed_out, duration_ms, recorded_at, stdout, stderr, stdout_truncated, stderr_truncated",
            ),
            ("events", "sequence, generation, kind, recorded_at, payload"),
            ("event_rollup", "generation, kind, count"),
            ("snapshots", "name, layer, created_at"),
        ] {
            tx.execute(
                &format!(
                    "INSERT INTO {table} (workspace_id, {cols}) SELECT ?1, {cols} FROM {table} WHERE workspace_id = ?2"
                ),
                params![w.id, from],
            )
            .map_err(db_err)?;
        }
        add_event(&tx, &w.id, event)?;
        tx.commit().map_err(db_err)
    }

    pub fn get(&self, id: &str) -> Result<Option<Row>> {
        self.conn
            .query_row(&format!("SELECT {} FROM workspaces WHERE id = ?1", Self::COLS), [id], Self::row)
            .optional()
            .map_err(db_err)
    }

    /// All workspaces, most recently active first.
    pub fn list(&self) -> Result<Vec<Row>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {} FROM workspaces ORDER BY last_activity_at DESC, created_at DESC", Self::COLS))
            .map_err(db_err)?;
        let rows =
            st.query_map([], Self::row).map_err(db_err)?.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)?;
        Ok(rows)
    }

    /// Resolve an id, a unique id prefix (4+ chars) or a unique name.
    pub fn resolve(&self, key: &str) -> Result<Row> {
        if key.is_empty() || key.len() > 128 {
            return Err(Error::invalid("workspace id must be 1-128 characters"));
        }
        if let Some(r) = self.get(key)? {
            return Ok(r);
        }
        let all = self.list()?;
        if let Some(r) = all.iter().find(|r| r.name.as_deref() == Some(key)) {
            return Ok(r.clone());
        }
        let matches: Vec<&Row> =
            if key.len() >= 4 { all.iter().filter(|r| r.id.starts_with(key)).collect() } else { vec![] };
        match matches.len() {
            1 => Ok(matches[0].clone()),
            0 => Err(Error::not_found(format!("no workspace '{key}'")).hint("`pyro workspace list` shows yours")),
            n => Err(Error::invalid(format!("'{key}' matches {n} workspaces")).hint("use more of the id")),
        }
    }

    /// Record the ports a (re)booted VM published.
    pub fn set_network(&mut self, id: &str, network: &WorkspaceNetwork) -> Result<()> {
        self.conn
            .execute(
                "UPDATE workspaces SET network = ?2 WHERE id = ?1",
                params![id, serde_json::to_string(network).unwrap_or_default()],
            )
            .map_err(db_err)?;
        Ok(())
    }

    pub fn update_meta(&mut self, w: &Row, event: &WorkspaceEvent) -> Result<()> {
        let tx = self.tx()?;
        tx.execute(
            "UPDATE workspaces SET name = ?2, labels = ?3, last_activity_at = ?4 WHERE id = ?1",
            params![w.id, w.name, serde_json::to_string(&w.labels).unwrap(), now_s()],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => Error::new(
                crate::Code::Conflict,
                format!("a workspace named '{}' already exists", w.name.clone().unwrap_or_default()),
            ),
            e => db_err(e),
        })?;
        add_event(&tx, &w.id, event)?;
        tx.commit().map_err(db_err)
    }

    /// Record a command as started, before it runs, so that a command which never reports
    /// back (it crashed the guest kernel, the caller was killed) still appears in the history,
    /// unfinished. Returns its sequence. A workspace deleted meanwhile is `not_found`.
    pub fn start_command(&mut self, id: &str, command: &str, cwd: &str) -> Result<u64> {
        let tx = self.tx()?;
        let generation: u32 = tx
            .query_row("SELECT reset_count FROM workspaces WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(db_err)?
            .ok_or_else(|| gone(id))?;
        let seq: u64 = tx
            .query_row("SELECT COALESCE(MAX(sequence), 0) + 1 FROM commands WHERE workspace_id = ?1", [id], |r| {
                r.get(0)
            })
            .map_err(db_err)?;
        tx.execute(
            "INSERT INTO commands VALUES (?1,?2,?3,?4,?5,-1,0,0,?6,'','',0,0,0,0)",
            params![id, seq, generation, command, cwd, now_s()],
        )
        .map_err(db_err)?;
        tx.execute(
            "UPDATE workspaces SET command_count = command_count + 1, last_activity_at = ?2 WHERE id = ?1",
            params![id, now_s()],
        )
        .map_err(db_err)?;
        // The history keeps the newest MAX_COMMANDS commands; the counts live on in the
        // workspace row and in the event roll-up.
        tx.execute(
            "DELETE FROM commands WHERE workspace_id = ?1 AND sequence <= ?2 - ?3",
            params![id, seq, MAX_COMMANDS],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(seq)
    }

    /// Complete a started command (`start_command`) with its result, and append its event, in
    /// one transaction. `secrets` names the secrets the command had in its environment.
    pub fn finish_command(&mut self, id: &str, seq: u64, c: &CommandRow, secrets: &[&str]) -> Result<()> {
        let tx = self.tx()?;
        let n = tx
            .execute(
                "UPDATE commands SET exit_code = ?3, timed_out = ?4, duration_ms = ?5, recorded_at = ?6, stdout = ?7,
                 stderr = ?8, stdout_truncated = ?9, stderr_truncated = ?10, cancelled = ?11, finished = 1
                 WHERE workspace_id = ?1 AND sequence = ?2",
                params![
                    id,
                    seq,
                    c.exit_code,
                    c.timed_out,
                    c.duration_ms,
                    c.recorded_at,
                    c.stdout,
                    c.stderr,
                    c.stdout_truncated,
                    c.stderr_truncated,
                    c.cancelled
                ],
            )
            .map_err(db_err)?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM workspaces WHERE id = ?1", [id], |_| Ok(()))
            .optional()
            .map_err(db_err)?
            .is_some();
        if !exists {
            return Err(gone(id));
        }
        // n == 0: the row was trimmed by MAX_COMMANDS newer ones (or a reset); the event stays.
        let _ = n;
        tx.execute("UPDATE workspaces SET last_activity_at = ?2 WHERE id = ?1", params![id, now_s()])
            .map_err(db_err)?;
        let event = WorkspaceEvent::Exec {
            sequence: seq,
            command: crate::text::clip(&c.command, 200),
            exit_code: c.exit_code.into(),
            duration_ms: c.duration_ms,
            timed_out: c.timed_out,
            cancelled: c.cancelled,
            truncated: c.stdout_truncated || c.stderr_truncated,
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
        };
        add_event(&tx, id, &event)?;
        tx.commit().map_err(db_err)
    }

    /// Commands since the last reset, oldest first.
    pub fn commands(&self, id: &str) -> Result<Vec<CommandRow>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT sequence, command, cwd, exit_code, timed_out, duration_ms, recorded_at, stdout, stderr, stdout_truncated, stderr_truncated, cancelled, finished
                 FROM commands WHERE workspace_id = ?1 AND generation = (SELECT reset_count FROM workspaces WHERE id = ?1) ORDER BY sequence",
            )
            .map_err(db_err)?;
        let rows = st
            .query_map([id], |r| {
                Ok(CommandRow {
                    sequence: r.get(0)?,
                    command: r.get(1)?,
                    cwd: r.get(2)?,
                    exit_code: r.get(3)?,
                    timed_out: r.get(4)?,
                    duration_ms: r.get(5)?,
                    recorded_at: r.get(6)?,
                    stdout: r.get(7)?,
                    stderr: r.get(8)?,
                    stdout_truncated: r.get(9)?,
                    stderr_truncated: r.get(10)?,
                    cancelled: r.get(11)?,
                    finished: r.get(12)?,
                })
            })
            .map_err(db_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)?;
        Ok(rows)
    }

    /// Append a review event (and touch last activity) in one transaction.
    pub fn event(&mut self, id: &str, event: &WorkspaceEvent) -> Result<()> {
        let tx = self.tx()?;
        tx.execute("UPDATE workspaces SET last_activity_at = ?2 WHERE id = ?1", params![id, now_s()])
            .map_err(db_err)?;
        add_event(&tx, id, event)?;
        tx.commit().map_err(db_err)
    }

    /// A reset: new generation, history since then starts empty. `snapshot` names the snapshot
    /// the disk went back to (None: the baseline); it is recorded in the `reset` event and as a
    /// `snapshot_restore` event of the new generation.
    pub fn record_reset(&mut self, id: &str, snapshot: Option<&str>) -> Result<()> {
        let tx = self.tx()?;
        let t = now_s();
        tx.execute(
            "UPDATE workspaces SET reset_count = reset_count + 1, last_reset_at = ?2, last_activity_at = ?2, command_count = 0 WHERE id = ?1",
            params![id, t],
        )
        .map_err(db_err)?;
        match snapshot {
            None => add_event(&tx, id, &WorkspaceEvent::Reset { snapshot: None })?,
            Some(n) => {
                add_event(&tx, id, &WorkspaceEvent::Reset { snapshot: Some(n.to_string()) })?;
                add_event(&tx, id, &WorkspaceEvent::SnapshotRestore { name: n.to_string() })?;
            }
        }
        tx.commit().map_err(db_err)
    }

    pub fn delete(&mut self, id: &str) -> Result<()> {
        let tx = self.tx()?;
        for t in ["commands", "events", "event_rollup", "services", "snapshots"] {
            tx.execute(&format!("DELETE FROM {t} WHERE workspace_id = ?1"), [id]).map_err(db_err)?;
        }
        tx.execute("DELETE FROM workspaces WHERE id = ?1", [id]).map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Counts of events rolled up (dropped from the log to bound it) since the last reset.
    pub fn rollup(&self, id: &str) -> Result<Vec<(String, u64)>> {
        let mut st = self
            .conn
            .prepare("SELECT kind, count FROM event_rollup WHERE workspace_id = ?1 AND generation = (SELECT reset_count FROM workspaces WHERE id = ?1) ORDER BY kind")
            .map_err(db_err)?;
        let rows = st
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)?;
        Ok(rows)
    }

    /// Events since the last reset (the reset event itself included), oldest first.
    pub fn events(&self, id: &str) -> Result<Vec<StoredEvent>> {
        let mut st = self
            .conn
            .prepare("SELECT sequence, kind, recorded_at, payload FROM events WHERE workspace_id = ?1 AND generation = (SELECT reset_count FROM workspaces WHERE id = ?1) ORDER BY sequence")
            .map_err(db_err)?;
        let rows = st
            .query_map([id], |r| {
                let kind: String = r.get(1)?;
                let p: String = r.get(3)?;
                let payload = serde_json::from_str(&p).unwrap_or_default();
                Ok(StoredEvent {
                    sequence: r.get(0)?,
                    recorded_at: r.get(2)?,
                    event: WorkspaceEvent::from_row(&kind, payload),
                })
            })
            .map_err(db_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)?;
        Ok(rows)
    }
}

/// How long a write waits for another process's write transaction before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Command rows kept per workspace (older ones are dropped; counts stay exact).
pub const MAX_COMMANDS: u64 = 500;
/// Events kept per workspace; past this the oldest are folded into per-kind counts.
pub const MAX_EVENTS: u64 = 2000;

pub(super) fn add_event(tx: &rusqlite::Transaction, id: &str, event: &WorkspaceEvent) -> Result<()> {
    let (kind, payload) = event.to_row();
    let generation: u32 = tx
        .query_row("SELECT reset_count FROM workspaces WHERE id = ?1", [id], |r| r.get(0))
        .optional()
        .map_err(db_err)?
        .unwrap_or(0);
    tx.execute(
        "INSERT INTO events VALUES (?1, (SELECT COALESCE(MAX(sequence), 0) + 1 FROM events WHERE workspace_id = ?1), ?2, ?3, ?4, ?5)",
        params![id, generation, kind, now_s(), payload.to_string()],
    )
    .map_err(db_err)?;
    let count: u64 =
        tx.query_row("SELECT COUNT(*) FROM events WHERE workspace_id = ?1", [id], |r| r.get(0)).map_err(db_err)?;
    if count > MAX_EVENTS {
        // Fold the oldest quarter into counts: bounded, and nothing disappears silently.
        let cut: u64 = tx
            .query_row(
                "SELECT sequence FROM events WHERE workspace_id = ?1 ORDER BY sequence LIMIT 1 OFFSET ?2",
                params![id, MAX_EVENTS / 4],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        tx.execute(
            "INSERT INTO event_rollup (workspace_id, generation, kind, count)
             SELECT workspace_id, generation, CASE WHEN kind = 'exec' AND json_extract(payload, '$.exit_code') != 0 THEN 'exec_failed' ELSE kind END, COUNT(*)
             FROM events WHERE workspace_id = ?1 AND sequence < ?2 GROUP BY 1, 2, 3
             ON CONFLICT (workspace_id, generation, kind) DO UPDATE SET count = count + excluded.count",
            params![id, cut],
        )
        .map_err(db_err)?;
        tx.execute("DELETE FROM events WHERE workspace_id = ?1 AND sequence < ?2", params![id, cut]).map_err(db_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Store;

    /// Eight openers of one fresh database at once: each sees the schema whole, none fails on
    /// a column another one added first (CI saw "duplicate column name: network").
    #[test]
    fn parallel_openers_of_a_fresh_database_all_succeed() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    let (dir, barrier) = (dir.path().to_path_buf(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open(&dir).map(|_| ()).map_err(|e| e.to_string())
                    })
                })
                .collect();
            for o in openers {
                o.join().unwrap().unwrap();
            }
        }
    }
}
