//! The console: `fleetctl tui`. The Elm shape: [`app::update`] turns
//! messages (keys, mouse, engine events, snapshots) into state and engine
//! commands with no I/O; [`view::view`] only draws. One `select!` loop
//! feeds it and draws only when something changed.
//!
//! ```text
//!  crossterm EventStream ─┐
//!  engine Event channel ──┼─▶ update(&mut App, Msg) ──Vec<Command>──▶ EngineHandle
//!  snapshot watch ────────┘        │
//!                                  └─▶ (if changed) view(&App, &FleetSnapshot, frame)
//! ```
//!
//! The screen's layout is drawn in [`view`]'s module doc.

pub mod agent_log;
pub mod app;
pub mod complete;
pub mod custom;
pub mod format;
mod keys;
pub mod layout;
pub mod runs;
pub mod sample;
pub mod table;
pub mod theme;
pub mod view;

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use futures_util::StreamExt;

use crate::engine::EngineHandle;
use app::{App, Msg, update};

/// Engine events handled before a frame is drawn, at most.
const EVENT_BATCH: usize = 4096;
/// The render tick: at most one frame per tick, and only when something
/// changed, so a burst of events costs one frame.
const FRAME: Duration = Duration::from_millis(16);

/// Opens an interactive shell on a host on this terminal, the console's
/// screen put away meanwhile; says how it ended, or why it could not open.
/// The front end provides it (the console reaches no host itself).
pub type OpenShell = Arc<
    dyn Fn(IpAddr) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync,
>;

/// Runs the console until the operator quits; returns the app as it ended
/// (the front end keeps the run prompt's history). The terminal is
/// restored on return and on panic.
pub async fn run(
    engine: EngineHandle,
    events: crate::engine::Events,
    app: App,
    shell: Option<OpenShell>,
) -> io::Result<App> {
    let mut terminal = ratatui::init();
    // ratatui's hook restores the screen; mouse capture is ours to undo.
    let restore = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = crossterm::execute!(io::stdout(), DisableMouseCapture);
        restore(info);
    }));
    let result = match crossterm::execute!(io::stdout(), EnableMouseCapture) {
        Ok(()) => event_loop(&mut terminal, engine, events, app, shell).await,
        Err(e) => Err(e),
    };
    let _ = crossterm::execute!(io::stdout(), DisableMouseCapture);
    ratatui::restore();
    result
}

/// Runs a custom command with the terminal its own: the console steps
/// aside, the command runs under `sh -c` with the hosts in its
/// environment, and Enter brings the console back. Returns a line for the
/// event log.
fn suspended_for(
    terminal: &mut ratatui::DefaultTerminal,
    exec: &custom::Exec,
) -> io::Result<String> {
    use std::io::Write as _;
    let _ = crossterm::execute!(io::stdout(), DisableMouseCapture);
    ratatui::restore();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&exec.command)
        .envs(exec.env.iter().map(|(k, v)| (k, v)))
        .status();
    let said = match &status {
        Ok(s) => format!("{} ended: {s}", exec.name),
        Err(e) => format!("{} could not start: {e}", exec.name),
    };
    let mut out = io::stdout();
    let _ = write!(out, "\n[{said}; press Enter to return to the console]");
    let _ = out.flush();
    let mut line = String::new();
    let _ = io::stdin().read_line(&mut line);
    *terminal = ratatui::init();
    crossterm::execute!(io::stdout(), EnableMouseCapture)?;
    terminal.clear()?;
    Ok(said)
}

/// Commands a read-only console never sends.
fn changes_hosts(command: &crate::engine::Command) -> bool {
    use crate::engine::Command;
    matches!(
        command,
        Command::Deploy(_) | Command::Undeploy(_) | Command::Revoke(_)
    )
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    engine: EngineHandle,
    mut events: crate::engine::Events,
    mut app: App,
    shell: Option<OpenShell>,
) -> io::Result<App> {
    let mut input = EventStream::new();
    let mut snapshots = engine.watch();
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let size = terminal.size()?;
    let mut fleet = Arc::clone(&snapshots.borrow_and_update());
    update(&mut app, Msg::Resize(size.width, size.height));
    update(&mut app, Msg::Snapshot(Arc::clone(&fleet)));
    let mut dirty = true;
    let mut fresh = false;
    while !app.quit {
        let mut msgs = Vec::new();
        tokio::select! {
            term = input.next() => match term {
                Some(Ok(TermEvent::Key(key))) => msgs.push(Msg::Key(key)),
                Some(Ok(TermEvent::Mouse(mouse))) => msgs.push(Msg::Mouse(mouse)),
                Some(Ok(TermEvent::Resize(w, h))) => msgs.push(Msg::Resize(w, h)),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => break,
            },
            event = events.recv() => {
                let Some(event) = event else { break };
                msgs.push(Msg::Engine(event));
                while msgs.len() < EVENT_BATCH {
                    match events.try_recv() {
                        Ok(event) => msgs.push(Msg::Engine(event)),
                        Err(_) => break,
                    }
                }
            }
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break; // the engine stopped
                }
                // Taken in at the next frame: a burst of snapshots (a big
                // scan publishes many) costs one re-filter and one sort.
                fleet = Arc::clone(&snapshots.borrow_and_update());
                fresh = true;
            }
            _ = tick.tick() => {
                if fresh {
                    fresh = false;
                    dirty = true;
                    update(&mut app, Msg::Snapshot(Arc::clone(&fleet)));
                }
                if dirty {
                    // The snapshot the rows were computed from.
                    terminal.draw(|frame| view::view(&app, &app.fleet, frame))?;
                    dirty = false;
                }
            }
        }
        for msg in msgs {
            dirty = true;
            for command in update(&mut app, msg) {
                // Whatever a key handler sends, a read-only console sends
                // nothing that changes hosts.
                if app.read_only && changes_hosts(&command) {
                    app.log(app::Level::Error, "read-only console: refused".to_string());
                    continue;
                }
                engine.send(command);
            }
        }
        if let Some(addr) = app.shell.take() {
            // crossterm's reader must stop: it would take the shell's keys.
            drop(input);
            // Dropping it wakes crossterm's poller; a wake left unread would
            // end the next read (the cursor query in `clear`) at once.
            let _ = crossterm::event::poll(Duration::ZERO);
            app.status = Some(match &shell {
                Some(open) => suspended(terminal, open(addr)).await?,
                None => (
                    app::Level::Error,
                    "no shell here: the demo's hosts run commands, not terminals".into(),
                ),
            });
            input = EventStream::new();
            dirty = true;
        }
        if let Some(exec) = app.pending_exec.take() {
            // As for a shell: crossterm's reader would take the command's keys.
            drop(input);
            let _ = crossterm::event::poll(Duration::ZERO);
            let note = tokio::task::block_in_place(|| suspended_for(terminal, &exec))?;
            app.log(app::Level::Info, note);
            input = EventStream::new();
            dirty = true;
        }
    }
    // Once the console is done drawing: the next run's Up finds these.
    if let Err(e) = app.history.save() {
        tracing::warn!("cannot keep the command history: {e}");
    }
    Ok(app)
}

/// Puts the screen away (alternate screen, raw mode, mouse), runs `shell`
/// on the plain terminal, and puts everything back as it was.
async fn suspended(
    terminal: &mut ratatui::DefaultTerminal,
    shell: impl Future<Output = Result<String, String>>,
) -> io::Result<(app::Level, String)> {
    crossterm::execute!(
        io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    )?;
    crossterm::terminal::disable_raw_mode()?;
    let ended = shell.await;
    crossterm::terminal::enable_raw_mode()?;
    crossterm::execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
    terminal.clear()?;
    Ok(match ended {
        Ok(how) => (app::Level::Info, how),
        Err(why) => (app::Level::Error, why),
    })
}

#[cfg(test)]
mod render_tests;
#[cfg(test)]
mod run_tests;
#[cfg(test)]
mod update_tests;
