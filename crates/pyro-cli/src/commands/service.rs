//! `pyro workspace service ...`: long-running services in a workspace, each subcommand one SDK
//! call, rendered.

use crate::render;
use pyro_mcp::types::{ReadinessArgs, RestartPolicy, ServiceOptions};
use pyro_mcp::{Command, Error, PortSpec, Workspaces};
use std::io::Write;

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand)]
pub enum ServiceCmd {
    /// Start a service and wait until it is ready (several words: argv; one word: /bin/sh -c)
    Start {
        id: String,
        name: String,
        #[arg(long)]
        cwd: Option<String>,
        /// Ready once this file exists (relative: from the service's cwd)
        #[arg(long, value_name = "PATH")]
        ready_file: Option<String>,
        /// Ready once a TCP connect succeeds (HOST: an IP address or localhost)
        #[arg(long, value_name = "HOST:PORT")]
        ready_tcp: Option<String>,
        /// Ready once GET answers 2xx or 3xx
        #[arg(long, value_name = "URL")]
        ready_http: Option<String>,
        /// Ready once this shell command exits 0
        #[arg(long, value_name = "CMD")]
        ready_command: Option<String>,
        #[arg(long, default_value_t = 30)]
        ready_timeout_seconds: u64,
        #[arg(long, default_value_t = 500)]
        ready_interval_ms: u64,
        /// no, or on-failure (restart after a failing exit, with a backoff, at most 5 times)
        #[arg(long, default_value = "no", value_name = "POLICY")]
        restart: String,
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Put a workspace secret in the service's environment (repeatable)
        #[arg(long = "secret-env", value_name = "SECRET[=ENV]")]
        secret_env: Vec<String>,
        /// Publish a guest port on the host's 127.0.0.1 (needs egress+published-ports)
        #[arg(long = "publish", value_name = "[HOST_PORT:]GUEST_PORT")]
        publish: Vec<String>,
        /// Print only the service's name (what status, logs and stop take) once it is ready
        #[arg(long, conflicts_with = "json")]
        id_only: bool,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The workspace's services
    List { id: String },
    /// One service's state, exit code, readiness and timestamps
    Status { id: String, name: String },
    /// The end of a service's output (stdout to stdout, stderr to stderr)
    Logs {
        id: String,
        name: String,
        #[arg(long, default_value_t = 200)]
        tail_lines: u64,
        /// Everything the log rings hold (1 MiB per stream)
        #[arg(long)]
        all: bool,
    },
    /// Stop a service: TERM to its process group, KILL after the grace
    Stop {
        id: String,
        name: String,
        #[arg(long, default_value_t = 5)]
        grace_seconds: u64,
    },
}

pub fn run(ws: &mut Workspaces<'_>, c: ServiceCmd, json: bool) -> Result<i32, Error> {
    match c {
        ServiceCmd::Start {
            id,
            name,
            cwd,
            ready_file,
            ready_tcp,
            ready_http,
            ready_command,
            ready_timeout_seconds,
            ready_interval_ms,
            restart,
            env,
            secret_env,
            publish,
            id_only,
            command,
        } => {
            let readiness =
                ReadinessArgs { file: ready_file, tcp: ready_tcp, http: ready_http, command: ready_command }.parse()?;
            let command = Command::from_words(&command).ok_or_else(|| Error::invalid("no command given"))?;
            let mut o = ServiceOptions::new(name, command);
            o.cwd = cwd;
            o.readiness = readiness;
            o.ready_timeout_s = ready_timeout_seconds;
            o.ready_interval_ms = ready_interval_ms;
            o.restart = RestartPolicy::parse(&restart)?;
            o.env = super::kv(&env, "--env")?;
            o.secret_env = secret_env.iter().map(|s| pyro_mcp::SecretEnv::parse(s)).collect::<Result<_, _>>()?;
            o.publish = publish.iter().map(|p| PortSpec::parse(p)).collect::<Result<_, _>>()?;
            // An interrupted start leaves the service to the guest, which stops it if it is
            // not ready by its deadline.
            let s = ws.service_start(&id, &o)?;
            render::show_or_id(&s, &s.name, id_only, json);
        }
        ServiceCmd::List { id } => render::show(&ws.service_list(&id)?, json),
        ServiceCmd::Status { id, name } => render::show(&ws.service_status(&id, &name)?, json),
        ServiceCmd::Logs { id, name, tail_lines, all } => {
            let l = ws.service_logs(&id, &name, Some(tail_lines), all)?;
            if json {
                render::json(&l);
            } else {
                // The service's own output passes through untouched, as `exec` does.
                let _ = std::io::stdout().write_all(l.stdout.as_bytes());
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().write_all(l.stderr.as_bytes());
                if l.log_dropped_bytes > 0 {
                    eprintln!("[service-logs] {} older bytes were dropped from the log rings", l.log_dropped_bytes);
                }
            }
        }
        ServiceCmd::Stop { id, name, grace_seconds } => {
            render::show(&ws.service_stop(&id, &name, Some(grace_seconds))?, json)
        }
    }
    Ok(0)
}
