//! `fleetctl inventory`: the fleet handed to Ansible, and Ansible's
//! inventories brought in.
//!
//! `--list` and `--host NAME` speak Ansible's dynamic-inventory protocol,
//! so a one-line script (`exec fleetctl inventory "$@"`) is an inventory
//! Ansible runs; `-o ini|yaml` writes a static file; `import FILE` reads
//! one (INI or YAML): hosts, groups as tags, ports and users.

mod export;
mod import;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{IpAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use super::hosts::{inventory_hosts, parse_pattern};
use super::{BadInput, Context};
use crate::model::text;
use crate::store::{HostAccess, Inventory};
use export::{AnsibleHost, ansible_hosts};
use import::{FileInventory, parse_ini, parse_yaml};

/// A file format for `-o` and `import --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// Ansible's dynamic-inventory JSON (what `--list` prints).
    Json,
    Ini,
    Yaml,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InventoryArgs {
    #[command(subcommand)]
    command: Option<InventoryCommand>,
    /// Every host and group as Ansible's dynamic-inventory JSON (the default).
    #[arg(long, conflicts_with_all = ["host", "output"])]
    list: bool,
    /// One host's variables as JSON (by its Ansible name or address).
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Write the inventory in this format instead.
    #[arg(short, long, value_enum)]
    output: Option<FileFormat>,
    /// Only the hosts matching this host pattern (see `deploy --help`).
    #[arg(long, value_name = "PATTERN")]
    select: Option<String>,
}

#[derive(Debug, Subcommand)]
enum InventoryCommand {
    /// Bring an Ansible inventory file in: hosts (by ansible_host, else by
    /// name), their groups as tags, ansible_port and ansible_user.
    Import {
        file: PathBuf,
        /// The file's format [default: from its extension, .yml/.yaml is YAML, else INI].
        #[arg(long, value_enum)]
        format: Option<FileFormat>,
    },
}

pub fn run(args: &InventoryArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if let Some(InventoryCommand::Import { file, format }) = &args.command {
        return import_file(file, *format, ctx);
    }
    let inventory = Inventory::open(&ctx.paths.inventory())?;
    let mut hosts = inventory_hosts(&inventory)?;
    if let Some(select) = &args.select {
        let pattern = parse_pattern(select)?;
        hosts.retain(|h| pattern.matches(&h.candidate));
    }
    let hosts = ansible_hosts(&hosts);
    let mut out = std::io::stdout().lock();
    if let Some(name) = &args.host {
        let host = find(&hosts, name).ok_or_else(|| {
            BadInput::wrap(anyhow::anyhow!(
                "no host {:?} in the inventory (names are those --list prints)",
                text::escape(name)
            ))
        })?;
        super::output::write_json(&mut out, &host.vars, true)?;
        return Ok(ExitCode::SUCCESS);
    }
    match args.output.unwrap_or(FileFormat::Json) {
        FileFormat::Json => super::output::write_json(&mut out, &export::list(&hosts), true)?,
        FileFormat::Ini => out.write_all(export::ini(&hosts).as_bytes())?,
        FileFormat::Yaml => out.write_all(export::yaml(&hosts).as_bytes())?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn find<'a>(hosts: &'a [AnsibleHost], name: &str) -> Option<&'a AnsibleHost> {
    hosts.iter().find(|h| h.name == name).or_else(|| {
        hosts
            .iter()
            .find(|h| h.vars.get("ansible_host").and_then(|v| v.as_str()) == Some(name))
    })
}

/// Groups fleetctl makes from facts and deploy state: imported back, they
/// would be tags that never change again.
const DERIVED: [&str; 3] = ["os_", "arch_", "agent_"];

/// One host of a file, ready to write.
struct Incoming {
    addr: IpAddr,
    name: Option<String>,
    tags: Vec<(String, String)>,
    access: HostAccess,
}

fn import_file(
    file: &std::path::Path,
    format: Option<FileFormat>,
    ctx: &Context,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {}", file.display()))
        .map_err(BadInput::wrap)?;
    let yaml = match format {
        Some(FileFormat::Yaml) => true,
        Some(FileFormat::Ini) => false,
        Some(FileFormat::Json) => {
            return Err(BadInput::wrap(anyhow::anyhow!(
                "import reads INI or YAML files (--format ini|yaml)"
            )));
        }
        None => file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml")),
    };
    let parsed = if yaml {
        parse_yaml(&text)
    } else {
        parse_ini(&text)
    }
    .map_err(|e| BadInput::wrap(anyhow::anyhow!("{}: {e}", file.display())))?;
    let (incoming, notes) = resolve(parsed)?;
    let mut inventory = Inventory::open(&ctx.paths.inventory())?;
    let known: BTreeSet<IpAddr> = inventory_hosts(&inventory)?
        .iter()
        .map(|h| h.addr)
        .collect();
    let listed: Vec<(IpAddr, Option<String>)> =
        incoming.iter().map(|h| (h.addr, h.name.clone())).collect();
    inventory
        .add_listed(&format!("import {}", file.display()), &listed)
        .context("cannot add the hosts")?;
    let mut groups = BTreeSet::new();
    for host in &incoming {
        inventory
            .tag(&[host.addr], &host.tags)
            .context("cannot write the tags")?;
        groups.extend(host.tags.iter().map(|(k, _)| k.clone()));
        if host.access != HostAccess::default() {
            inventory
                .set_access(host.addr, &host.access)
                .context("cannot write the SSH port and user")?;
        }
    }
    for note in notes {
        eprintln!("note: {}", text::escape_lines(&note));
    }
    let new = incoming.iter().filter(|h| !known.contains(&h.addr)).count();
    println!(
        "imported {} host(s) ({new} new) and {} group(s) as tags",
        incoming.len(),
        groups.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Every host's address (ansible_host, else its name, looked up as the
/// system resolves names) and what is kept of it; any host that cannot be
/// taken fails the import before anything is written.
fn resolve(parsed: FileInventory) -> anyhow::Result<(Vec<Incoming>, Vec<String>)> {
    let mut notes = parsed.notes;
    let mut problems = Vec::new();
    let mut incoming = Vec::new();
    let mut skipped = BTreeSet::new();
    for host in parsed.hosts {
        let target = host.vars.get("ansible_host").unwrap_or(&host.name);
        let addr = target.parse::<IpAddr>().ok().or_else(|| {
            (target.as_str(), 0)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .map(|a| a.ip())
        });
        let Some(addr) = addr else {
            problems.push(format!("{}: cannot resolve {target}", host.name));
            continue;
        };
        let port = match host.vars.get("ansible_port").map(|p| p.parse::<u16>()) {
            None => None,
            Some(Ok(p)) if p > 0 => Some(p),
            Some(_) => {
                problems.push(format!("{}: ansible_port is not a port", host.name));
                continue;
            }
        };
        let user = match host.vars.get("ansible_user") {
            Some(u) if export::plain_word(u) => Some(u.clone()),
            Some(_) => {
                problems.push(format!("{}: ansible_user is not a user name", host.name));
                continue;
            }
            None => None,
        };
        let mut tags = Vec::new();
        for group in host.groups {
            if DERIVED.iter().any(|p| group.starts_with(p)) {
                skipped.insert(group);
            } else {
                tags.push((group, String::new()));
            }
        }
        incoming.push(Incoming {
            addr,
            name: host.name.parse::<IpAddr>().is_err().then_some(host.name),
            tags,
            access: HostAccess { port, user },
        });
    }
    if !problems.is_empty() {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "nothing imported: {}",
            problems.join("; ")
        )));
    }
    if !skipped.is_empty() {
        notes.push(format!(
            "groups fleetctl makes itself from facts and deploys are not kept as tags: {}",
            skipped.into_iter().collect::<Vec<_>>().join(" ")
        ));
    }
    Ok((incoming, notes))
}
