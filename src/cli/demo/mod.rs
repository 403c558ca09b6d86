//! `fleetctl demo`: a sandbox fleet on loopback and the console over it;
//! with `--headless` (or without a terminal) the same flow, printed.
//!
//! Nothing of the operator's is used or touched: the inventory, control
//! plane keys and SSH settings live in the sandbox's temporary root, and
//! every way out (q, Ctrl-C, SIGTERM, SIGHUP, an error, a panic) stops
//! every agent and removes that root.

mod fleet;
mod headless;

use std::io::IsTerminal as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::{BadInput, Context, EXIT_INTERRUPTED};
use crate::config::parse_duration;
use crate::engine;
use crate::tui::app::{App, Level};
use crate::tui::theme::{ThemeSet, no_color_requested};
use fleet::{DemoFleet, FleetOptions, Lifetimes, Roles};

/// The most hosts a demo runs.
const MAX_HOSTS: u16 = 200;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many sandbox hosts (4 to 200); three of them fail on purpose.
    #[arg(long, value_name = "N", default_value_t = 12)]
    hosts: u16,
    /// Run the flow without the console and print the outcome (the default
    /// without a terminal).
    #[arg(long)]
    headless: bool,
    /// Picks which hosts fail (same seed, same hosts) [default: demo-03, demo-05, demo-07].
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Colour theme of the console (see `fleetctl tui --theme`).
    #[arg(long, value_name = "NAME")]
    theme: Option<String>,
    /// The first sandbox address; the control plane takes .1 and the relay .2 of its /24.
    #[arg(long, value_name = "ADDR", default_value = "127.42.0.10")]
    base: Ipv4Addr,
    /// Headless: give up (exit 1) when the fleet is not as expected after this long.
    #[arg(long, value_parser = parse_duration, default_value = "180s", value_name = "DURATION")]
    timeout: Duration,
    /// The agent build to push [default: this binary; a stripped copy when it is a debug build].
    #[arg(long, value_name = "PATH")]
    agent_binary: Option<PathBuf>,
}

pub fn run(args: &DemoArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if !(4..=MAX_HOSTS).contains(&args.hosts) {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "--hosts {}: choose 4 to {MAX_HOSTS} (three hosts fail on purpose; at least one is healthy)",
            args.hosts
        )));
    }
    let [a, _, _, last] = args.base.octets();
    if a != 127 || last < 3 || u16::from(last) + args.hosts - 1 > 254 {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "--base {}: choose a loopback address 127.x.y.z with z from 3 and room for {} hosts before .254",
            args.base,
            args.hosts
        )));
    }
    let headless = args.headless || !std::io::stdout().is_terminal();
    let console = if headless {
        None
    } else {
        Some(console_app(args, ctx)?)
    };
    if !args.headless && headless {
        eprintln!("demo: no terminal: running headless (scan, fingerprint, deploy, watch)");
    }
    let _log = if console.is_some() {
        Some(super::tui::init_file_logging(
            &ctx.paths.log_dir,
            "demo.log",
        )?)
    } else {
        super::init_tracing("warn");
        None
    };
    let options = FleetOptions {
        base: args.base,
        hosts: usize::from(args.hosts),
        roles: Roles::pick(usize::from(args.hosts), args.seed),
        lifetimes: if headless {
            Lifetimes::HEADLESS
        } else {
            Lifetimes::CONSOLE
        },
        agent_binary: args.agent_binary.clone(),
    };
    let timeout = args.timeout;
    super::runtime()?.block_on(async move {
        let fleet = DemoFleet::start(options).await?;
        // The release build aborts on panic, so no destructor would run:
        // the hook cleans up instead. (Where panics unwind, the sandbox's
        // own drop does, and a panic a task survives must not end the demo.)
        if cfg!(panic = "abort") {
            let cleanup = fleet.sandbox.cleanup();
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                cleanup.run();
                previous(info);
            }));
        }
        let result = match console {
            Some(app) => run_console(&fleet, app).await,
            None => run_headless(&fleet, timeout).await,
        };
        if cfg!(panic = "abort") {
            let _ = std::panic::take_hook();
        }
        let stopped = fleet.shutdown().await;
        let code = result?;
        stopped?;
        Ok(code)
    })
}

/// The console's app, themed, before anything starts (a bad theme is bad input).
fn console_app(args: &DemoArgs, ctx: &Context) -> anyhow::Result<App> {
    let themes = ThemeSet::load(
        Some(&super::tui::theme_dir(&ctx.paths.config_file)),
        no_color_requested(std::env::var_os("NO_COLOR").as_deref()),
    );
    let name = args.theme.as_deref().unwrap_or(&ctx.config.tui.theme);
    let theme = themes.get(name).map_err(BadInput::wrap)?;
    Ok(App::new(themes, theme))
}

/// The fleet as `fleetctl status` prints it.
fn table(fleet: &engine::FleetSnapshot) -> String {
    let mut out = Vec::new();
    let _ = super::status::write(&mut out, fleet, super::output::Format::Table);
    String::from_utf8_lossy(&out).into_owned()
}

/// Ctrl-C, SIGTERM or SIGHUP.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return "Ctrl-C";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

async fn run_console(fleet: &DemoFleet, mut app: App) -> anyhow::Result<ExitCode> {
    app.scan_suggestion = Some(fleet.range.clone());
    app.status = Some((
        Level::Info,
        format!(
            "demo: {} hosts · s Enter scans {} (TCP to :{}, no root) · * marks all · f fingerprint · d deploy",
            fleet.sandbox.hosts().len(),
            fleet.range,
            fleet::SSH_PORT
        ),
    ));
    let (engine, events) = engine::spawn(fleet.engine.clone());
    let cutter = tokio::spawn(fleet::cut_when_registered(
        engine.watch(),
        std::sync::Arc::clone(&fleet.relay),
        fleet.addr(fleet.roles.cut_off),
        fleet.describe(fleet.roles.cut_off),
        |msg| tracing::info!("{msg}"),
    ));
    let watcher = engine.clone();
    let result = tokio::select! {
        r = crate::tui::run(engine, events, app, None) => r.context("the console failed").map(|_| {
            // What the console last showed stays on the terminal.
            print!("{}", table(&watcher.snapshot()));
            println!("demo: stopping every agent and removing the sandbox fleet");
            ExitCode::SUCCESS
        }),
        signal = stop_signal() => {
            // The console's own restore did not run: its future was dropped.
            let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
            ratatui::restore();
            eprintln!("demo: {signal}: stopping the sandbox fleet");
            Ok(ExitCode::from(EXIT_INTERRUPTED))
        }
    };
    cutter.abort();
    drop(watcher);
    result
}

async fn run_headless(fleet: &DemoFleet, timeout: Duration) -> anyhow::Result<ExitCode> {
    let hosts = fleet.sandbox.hosts().len();
    eprintln!(
        "demo: {hosts} sandbox hosts on {} (ssh port {}); {} is silent, {} rejects the demo key, {} loses its control plane once registered",
        fleet.range,
        fleet::SSH_PORT,
        fleet.describe(fleet.roles.silent),
        fleet.describe(fleet.roles.rejects_key),
        fleet.describe(fleet.roles.cut_off),
    );
    let (engine, mut events) = engine::spawn(fleet.engine.clone());
    let cutter = tokio::spawn(fleet::cut_when_registered(
        engine.watch(),
        std::sync::Arc::clone(&fleet.relay),
        fleet.addr(fleet.roles.cut_off),
        fleet.describe(fleet.roles.cut_off),
        |msg| eprintln!("demo: {msg}"),
    ));
    let code = tokio::select! {
        report = headless::run(fleet, &engine, &mut events, timeout) => {
            print!("{}", report.table);
            println!("{}", report.outcome);
            if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        signal = stop_signal() => {
            eprintln!("demo: {signal}: stopping the sandbox fleet");
            ExitCode::from(EXIT_INTERRUPTED)
        }
    };
    cutter.abort();
    drop(engine);
    Ok(code)
}
