//! `fleetctl token ...`: tokens minted locally with the control plane's
//! signing key (printed on stdout and nowhere else), the record of the
//! ones minted for people and services, their revocation, and rotating
//! the signing key.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};

use super::{BadInput, Context};
use crate::auth::{Audience, AuthError, JoinGrant, TokenIssuer};
use crate::config::parse_duration;
use crate::model::control::TokenRecord;
use crate::model::time::now_unix;
use crate::pki::ControlPin;
use crate::store::registry::Backend;

/// The longest a join token may live, as the API's cap.
const MAX_JOIN_TTL: Duration = Duration::from_hours(24);

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// A one-use join token for HOST: the agent there must register with
    /// that hostname or address, and its certificate names exactly HOST
    /// and the --name values. Carries the control plane's pin.
    Join {
        /// The host's name or address, as its agent will report it.
        host: String,
        /// Another name or address the host has, vouched for too (repeatable):
        /// the console reads the agent at the first address.
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// Lifetime [default: control.join_ttl, 15m; at most 24h].
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// An operator token: the control plane's API (agents refuse it).
    Operator(PersonToken),
    /// A read-only stats token for every agent's /v1/stats and /metrics
    /// (Prometheus scraping); the control plane refuses it.
    Stats(PersonToken),
    /// A read-only token for the control plane's /v1/sd (Prometheus
    /// service discovery) and nothing else.
    Sd(PersonToken),
    /// The operator, stats and sd tokens minted here (never the tokens).
    List {
        /// Expired ones too.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
    },
    /// Revoke an operator, stats or sd token by its id (`token list`; a
    /// unique prefix will do). The control plane refuses it at once,
    /// agents within one heartbeat interval.
    Revoke {
        /// The token's id.
        id: String,
    },
    /// Rotate the token signing key: the new key is published to agents
    /// first and signs after --publish-for; the old one verifies until
    /// every token it signed has expired. No agent needs enrolling again.
    RotateKey {
        /// How long the new key is published before it signs [default:
        /// two control.heartbeat_interval].
        #[arg(long, value_parser = parse_duration)]
        publish_for: Option<Duration>,
        /// Sign with the new key at once (agents that have not heard of it
        /// yet refuse stats tokens until their next heartbeat).
        #[arg(long)]
        now: bool,
        /// The old key is stolen: stop it verifying at once (implies
        /// --now). Every token it signed stops working, agents' identities
        /// too: every agent must be given a new join token.
        #[arg(long)]
        drop_old: bool,
    },
}

/// Who a person's token is for, and for how long.
#[derive(Debug, clap::Args)]
pub struct PersonToken {
    /// Lifetime [default: control.operator_ttl, 1h; at most control.max_operator_ttl, 30d].
    #[arg(long, value_parser = parse_duration)]
    ttl: Option<Duration>,
    /// Who the token is for (shown by `token list` and in logs).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON array.
    Json,
}

/// The signing key of the control plane in `dir`, which must exist: a
/// token from a key nobody serves with would be refused everywhere.
pub fn local_issuer(dir: &Path) -> anyhow::Result<TokenIssuer> {
    match TokenIssuer::load(dir) {
        Err(e @ AuthError::NoKey { .. }) => Err(BadInput::wrap(e)),
        other => other.context("cannot load the token signing key"),
    }
}

/// The fleet CA's certificate (public half only) of the control plane in
/// `dir`: what clients and agents trust.
pub fn local_ca_pem(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("ca.pem");
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the fleet CA {} (start `fleetctl serve` once with this data dir)",
            path.display()
        )
    })
}

/// The pin of the control plane whose keys are in `dir`.
pub fn local_control_pin(dir: &Path) -> anyhow::Result<ControlPin> {
    let path = dir.join("control-ca.pem");
    let pem = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the control plane CA {} (start `fleetctl serve` once with this data dir)",
            path.display()
        )
    })?;
    ControlPin::of_cert_pem(&pem).with_context(|| format!("{} is damaged", path.display()))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.parse::<std::net::IpAddr>().is_err()
        && rustls_pki_types::DnsName::try_from(name).is_err()
    {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "{name:?} is neither a host name nor an IP address"
        )));
    }
    Ok(())
}

pub fn run(cmd: &TokenCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let dir = ctx.paths.control_dir();
    let control = &ctx.config.control;
    match cmd {
        TokenCommand::Join { host, names, ttl } => {
            for name in std::iter::once(host).chain(names) {
                check_name(name)?;
            }
            let ttl = positive(ttl.unwrap_or(control.join_ttl))?;
            if ttl > MAX_JOIN_TTL {
                return Err(BadInput::wrap(anyhow::anyhow!(
                    "--ttl {}s is longer than a join token may live ({}s, 24 hours)",
                    ttl.as_secs(),
                    MAX_JOIN_TTL.as_secs()
                )));
            }
            let issuer = local_issuer(&dir)?;
            let grant = JoinGrant {
                host: host.clone(),
                names: names.clone(),
                control_pin: Some(local_control_pin(&dir)?.to_string()),
            };
            let (token, claims) = issuer.issue_join(&grant, ttl)?;
            print_token(&token)?;
            tracing::info!(host, names = ?claims.names, expires_at = claims.exp, "join token minted");
        }
        TokenCommand::Operator(t) => person(ctx, Audience::Operator, t, "operator")?,
        TokenCommand::Stats(t) => person(ctx, Audience::Stats, t, "prometheus")?,
        TokenCommand::Sd(t) => person(ctx, Audience::Sd, t, "prometheus")?,
        TokenCommand::List { all, output } => list(ctx, *all, *output)?,
        TokenCommand::Revoke { id } => revoke(ctx, id)?,
        TokenCommand::RotateKey {
            publish_for,
            now,
            drop_old,
        } => rotate(ctx, *publish_for, *now, *drop_old)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_token(token: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")?;
    out.flush()?;
    Ok(())
}

/// Runs `f` on the registry of issued tokens (SQLite or PostgreSQL, as
/// `control.registry` says), on a runtime of its own: the token commands
/// are otherwise synchronous.
fn with_registry<T>(
    ctx: &Context,
    f: impl AsyncFnOnce(&Backend) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let registry = super::serve::open_registry(&ctx.config.control, &ctx.paths)
            .await
            .context("cannot open the registry of issued tokens")?;
        f(&registry).await
    })
}

/// Mints and records an operator, stats or sd token.
fn person(ctx: &Context, aud: Audience, t: &PersonToken, default_name: &str) -> anyhow::Result<()> {
    let control = &ctx.config.control;
    let ttl = positive(t.ttl.unwrap_or(control.operator_ttl))?;
    if ttl > control.max_operator_ttl {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "--ttl {}s is longer than control.max_operator_ttl ({}s, {} days): tokens for people \
             and services must be renewed; mint a shorter one",
            ttl.as_secs(),
            control.max_operator_ttl.as_secs(),
            control.max_operator_ttl.as_secs() / 86_400
        )));
    }
    let name = t.name.as_deref().unwrap_or(default_name);
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "--name must be 1 to 64 printable characters"
        )));
    }
    let issuer = local_issuer(&ctx.paths.control_dir())?;
    let (token, claims) = issuer.issue(aud, name, ttl)?;
    // Recorded before it is shown: a token nobody can list could not be revoked.
    let record = TokenRecord {
        id: claims.jti.clone(),
        kind: kind_of(aud).to_owned(),
        name: name.to_owned(),
        issued_at: claims.iat,
        expires_at: claims.exp,
        revoked_at: None,
    };
    with_registry(ctx, async |r| Ok(r.record_token(record).await?))?;
    print_token(&token)?;
    tracing::info!(
        kind = kind_of(aud),
        sub = claims.sub,
        id = claims.jti,
        expires_at = claims.exp,
        "token minted"
    );
    Ok(())
}

fn kind_of(aud: Audience) -> &'static str {
    match aud {
        Audience::Operator => "operator",
        Audience::Stats => "stats",
        Audience::Sd => "sd",
        Audience::Join => "join",
        Audience::Agent => "agent",
    }
}

fn list(ctx: &Context, all: bool, output: ListFormat) -> anyhow::Result<()> {
    let now = now_unix();
    let tokens = with_registry(ctx, async |r| Ok(r.tokens(now, all).await?))?;
    let mut out = std::io::stdout().lock();
    match output {
        ListFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &tokens)?;
            writeln!(out)?;
        }
        ListFormat::Table => write_table(&mut out, &tokens, now)?,
    }
    Ok(())
}

fn write_table(
    out: &mut impl std::io::Write,
    tokens: &[TokenRecord],
    now: i64,
) -> std::io::Result<()> {
    let header = ["ID", "KIND", "NAME", "ISSUED", "EXPIRES", "STATE"];
    let rows: Vec<[String; 6]> = tokens
        .iter()
        .map(|t| {
            let state = if t.revoked_at.is_some() {
                "revoked"
            } else if t.expires_at < now {
                "expired"
            } else {
                "valid"
            };
            [
                t.id.clone(),
                t.kind.clone(),
                // --name refuses control characters: nothing here can drive a terminal.
                t.name.chars().filter(|c| !c.is_control()).collect(),
                super::agents::relative(t.issued_at, now),
                super::agents::relative(t.expires_at, now),
                state.to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header.map(String::from)).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    if tokens.is_empty() {
        writeln!(out, "(no operator, stats or sd tokens minted here)")?;
    }
    Ok(())
}

fn revoke(ctx: &Context, id: &str) -> anyhow::Result<()> {
    if id.len() < 4 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "{id:?} is not a token id (at least 4 hex digits; `fleetctl token list` shows them)"
        )));
    }
    let wanted = id.to_ascii_lowercase();
    match with_registry(ctx, async |r| {
        Ok(r.revoke_token(wanted, now_unix()).await?)
    })? {
        Ok(token) => {
            println!(
                "revoked {} token {} ({}); the control plane refuses it now, agents within one heartbeat interval",
                token.kind, token.id, token.name
            );
            Ok(())
        }
        Err(matches) if matches.is_empty() => Err(BadInput::wrap(anyhow::anyhow!(
            "no token {id:?} was minted here; `fleetctl token list --all` shows them"
        ))),
        Err(matches) => Err(BadInput::wrap(anyhow::anyhow!(
            "{id:?} names {} tokens ({}); give more of the id",
            matches.len(),
            matches.join(", ")
        ))),
    }
}

fn rotate(
    ctx: &Context,
    publish_for: Option<Duration>,
    now: bool,
    drop_old: bool,
) -> anyhow::Result<()> {
    let control = &ctx.config.control;
    let publish_for = if now || drop_old {
        Duration::ZERO
    } else {
        publish_for.unwrap_or(control.heartbeat_interval * 2)
    };
    // The longest any token signed so far may still live.
    let max_life = [
        control.max_operator_ttl,
        control.identity_ttl,
        control.join_ttl,
        Duration::from_hours(24), // join tokens from the API
    ]
    .into_iter()
    .max()
    .unwrap_or(control.max_operator_ttl);
    let dir = ctx.paths.control_dir();
    local_issuer(&dir)?;
    let rotation = match TokenIssuer::rotate(&dir, publish_for, max_life, drop_old) {
        Err(e @ AuthError::RotationUnderWay { .. }) => return Err(BadInput::wrap(e)),
        other => other.context("cannot rotate the token signing key")?,
    };
    let wait = rotation.signs_from - now_unix();
    println!(
        "new token signing key {}: {}",
        rotation.new_kid,
        if wait > 0 {
            format!("published now, signs in {wait}s (agents learn it with their next heartbeat)")
        } else {
            "signs now".to_owned()
        }
    );
    match rotation.old_verify_until {
        Some(until) => println!(
            "old key {}: verifies the tokens it signed until they expire (at the latest in {})",
            rotation.old_kid,
            super::agents::relative(until, now_unix()).trim_start_matches("in ")
        ),
        None => println!(
            "old key {}: dropped; every token it signed is refused from now on (give every agent a new join token)",
            rotation.old_kid
        ),
    }
    Ok(())
}

fn positive(ttl: Duration) -> anyhow::Result<Duration> {
    if ttl.as_secs() == 0 {
        return Err(BadInput::wrap(anyhow::anyhow!("--ttl must be at least 1s")));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_reads_at_a_glance_and_names_no_secret() {
        let tokens = [
            TokenRecord {
                id: "0123456789abcdef0123456789abcdef".into(),
                kind: "stats".into(),
                name: "prometheus".into(),
                issued_at: 1_000,
                expires_at: 1_000 + 30 * 86_400,
                revoked_at: None,
            },
            TokenRecord {
                id: "fedcba9876543210fedcba9876543210".into(),
                kind: "operator".into(),
                name: "ci\u{1b}[31m".into(),
                issued_at: 900,
                expires_at: 4_500,
                revoked_at: Some(990),
            },
        ];
        let mut out = Vec::new();
        write_table(&mut out, &tokens, 1_000).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\u{1b}'), "names are escaped: {text}");
        insta::assert_snapshot!(text, @r"
        ID                                KIND      NAME        ISSUED  EXPIRES  STATE
        0123456789abcdef0123456789abcdef  stats     prometheus  0s ago  in 30d   valid
        fedcba9876543210fedcba9876543210  operator  ci[31m      1m ago  in 58m   revoked
        ");
    }
}
