//! `fleetctl registry migrate`: brings the registry's schema up to date,
//! under the same advisory lock `fleetctl serve` takes at start, so it is
//! safe beside running replicas.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use super::Context;
use crate::store::registry::Backend;
use crate::store::registry::postgres::redacted;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Apply the schema versions this fleetctl knows and the registry
    /// lacks (PostgreSQL: once, under an advisory lock; SQLite: on open).
    Migrate {
        /// The registry: `sqlite` or a `postgres://` URL [default: control.registry].
        #[arg(long, value_name = "sqlite|postgres://...")]
        registry: Option<String>,
    },
}

pub async fn run(cmd: RegistryCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let RegistryCommand::Migrate { registry } = cmd;
    let mut control = ctx.config.control.clone();
    if let Some(registry) = registry {
        control.registry = registry;
        control
            .check()
            .map_err(|e| super::BadInput::wrap(anyhow::anyhow!("--registry: {e}")))?;
    }
    if let Some(pg) = super::serve::pg_settings(&control)? {
        let target = redacted(&pg.url);
        let db = Backend::postgres_unmigrated(&pg)
            .await
            .with_context(|| format!("cannot reach the registry at {target}"))?;
        let (before, after) = db
            .migrate()
            .await
            .with_context(|| format!("cannot migrate the registry at {target}"))?;
        if before == after {
            println!("{target}: schema version {after}, up to date");
        } else {
            println!("{target}: schema version {before} -> {after}");
        }
    } else {
        let path = ctx.paths.inventory();
        // Opening migrates the SQLite file.
        let db = Backend::sqlite(&path)
            .with_context(|| format!("cannot open the registry {}", path.display()))?;
        let health = db.health().await;
        println!(
            "{}: schema version {}, up to date",
            path.display(),
            health
                .schema_version
                .map_or_else(|| "?".to_owned(), |v| v.to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}
