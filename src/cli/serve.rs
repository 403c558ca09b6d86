//! `fleetctl serve`: the control plane as a long-running service.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::{BadInput, Context};
use crate::config::{ControlConfig, Paths, parse_duration};
use crate::control::{self, ControlPlane, Settings};
use crate::store::registry::Backend;
use crate::store::registry::postgres::{POOL_SIZE, PgSettings, redacted};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on [default: control.listen, 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// The URL agents use to reach this control plane [default: https://<listen>].
    #[arg(long)]
    url: Option<String>,
    /// Another name or address for the control plane's certificate (repeatable).
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Lifetime of the certificates the CA issues [default: 24h].
    #[arg(long, value_parser = parse_duration)]
    cert_ttl: Option<Duration>,
    /// Lifetime of agents' identity tokens [default: 1h].
    #[arg(long, value_parser = parse_duration)]
    identity_ttl: Option<Duration>,
    /// Default lifetime of join tokens [default: 15m].
    #[arg(long, value_parser = parse_duration)]
    join_ttl: Option<Duration>,
    /// How often agents send a heartbeat [default: 30s].
    #[arg(long = "heartbeat", value_parser = parse_duration)]
    heartbeat_interval: Option<Duration>,
    /// No heartbeat for this long and an agent is lost [default: 90s].
    #[arg(long, value_parser = parse_duration)]
    lost_after: Option<Duration>,
    /// Where the registry lives: `sqlite` or a `postgres://` URL shared by
    /// replicas [default: control.registry, sqlite].
    #[arg(long, value_name = "sqlite|postgres://...")]
    registry: Option<String>,
}

impl ServeArgs {
    /// The file's `[control]` with the flags laid over it.
    fn resolve(&self, file: &ControlConfig) -> anyhow::Result<ControlConfig> {
        let mut c = file.clone();
        if let Some(listen) = self.listen {
            c.listen = listen;
        }
        if self.url.is_some() {
            c.url.clone_from(&self.url);
        }
        c.names.extend(self.names.iter().cloned());
        c.cert_ttl = self.cert_ttl.unwrap_or(c.cert_ttl);
        c.identity_ttl = self.identity_ttl.unwrap_or(c.identity_ttl);
        c.join_ttl = self.join_ttl.unwrap_or(c.join_ttl);
        c.heartbeat_interval = self.heartbeat_interval.unwrap_or(c.heartbeat_interval);
        c.lost_after = self.lost_after.unwrap_or(c.lost_after);
        if let Some(registry) = &self.registry {
            c.registry.clone_from(registry);
        }
        c.check()
            .map_err(|e| BadInput::wrap(anyhow::anyhow!("{}", e.replace("control.", "--"))))?;
        Ok(c)
    }
}

/// The control plane's settings from the config section.
#[must_use]
pub fn settings(c: &ControlConfig) -> Settings {
    Settings {
        url: c.url.clone(),
        names: c.names.clone(),
        cert_ttl: c.cert_ttl,
        identity_ttl: c.identity_ttl,
        join_ttl: c.join_ttl,
        heartbeat_interval: c.heartbeat_interval,
        lost_after: c.lost_after,
        max_operator_ttl: c.max_operator_ttl,
        max_connections_per_source: c.max_connections_per_source,
    }
}

pub async fn run(args: ServeArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = args.resolve(&ctx.config.control)?;
    // Each agent keeps a connection open for its heartbeats and renewals.
    super::raise_open_files_limit();
    let dir = ctx.paths.control_dir();
    let registry = open_registry(&config, &ctx.paths).await?;
    let backend = registry.name();
    let plane = ControlPlane::with_registry(&dir, registry, settings(&config))
        .context("cannot start the control plane")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (another fleetctl serve? pick one with --listen)",
                config.listen
            )
        })?;
    let started =
        control::start(listener, plane, stop_signal()).context("cannot start the control plane")?;
    eprintln!(
        "fleetctl serve: listening on https://{} (agents use {}; CA {}; pin {}; registry {})",
        started.local_addr,
        started.url,
        dir.join("ca.pem").display(),
        started.control_pin,
        match config.postgres_url() {
            Some(url) => redacted(url),
            None => format!("{backend} {}", ctx.paths.inventory().display()),
        }
    );
    started
        .task
        .await
        .context("the control plane stopped unexpectedly")?
        .context("the control plane failed")?;
    eprintln!("fleetctl serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// How to reach the PostgreSQL registry `control` names, if it names one:
/// its CA and password read from their files.
pub fn pg_settings(control: &ControlConfig) -> anyhow::Result<Option<PgSettings>> {
    let Some(url) = control.postgres_url() else {
        return Ok(None);
    };
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {what} {}", path.display()))
    };
    let ca_pem = control
        .registry_ca_file
        .as_deref()
        .map(|p| read(p, "control.registry_ca_file"))
        .transpose()?;
    let password = control
        .registry_password_file
        .as_deref()
        .map(|p| read(p, "control.registry_password_file"))
        .transpose()?
        .map(|p| p.trim_end_matches(['\r', '\n']).to_owned());
    Ok(Some(PgSettings {
        url: url.to_owned(),
        ca_pem,
        password,
        pool_size: POOL_SIZE,
    }))
}

/// The registry `control.registry` names: the SQLite inventory in the data
/// dir, or the shared PostgreSQL database (its schema brought up to date).
pub async fn open_registry(control: &ControlConfig, paths: &Paths) -> anyhow::Result<Backend> {
    match pg_settings(control)? {
        Some(pg) => Backend::postgres(&pg)
            .await
            .with_context(|| format!("cannot open the registry at {}", redacted(&pg.url))),
        None => Backend::sqlite(&paths.inventory()).context("cannot open the registry"),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for SIGTERM; stop with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
