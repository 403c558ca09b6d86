//! `fleetctl tui` (and `fleetctl` alone): the console over the engine.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{BadInput, Context};
use crate::engine;
use crate::tui::app::App;
use crate::tui::theme::{ThemeSet, no_color_requested};

#[derive(Debug, Args, Default)]
pub struct TuiArgs {
    /// Colour theme: default, light, high-contrast, catppuccin-mocha, or a
    /// NAME.toml in the config dir's themes/ [default: the config's tui.theme].
    #[arg(long, value_name = "NAME")]
    theme: Option<String>,
    /// Look, don't touch: deploy, undeploy and revoke are refused (scans,
    /// fingerprints and the agents' stats still run).
    #[arg(long)]
    read_only: bool,
}

/// Where user themes live: `themes/` beside the config file.
pub(super) fn theme_dir(config_file: &Path) -> PathBuf {
    config_file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("themes")
}

/// `commands.toml` beside the config file, if there is one; a bad one is
/// the operator's mistake, said with the file's name (exit 2).
fn custom_commands(config_file: &Path) -> anyhow::Result<Vec<crate::tui::custom::CustomCommand>> {
    let file = config_file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("commands.toml");
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(BadInput::wrap(
                anyhow::Error::new(e).context(format!("cannot read {}", file.display())),
            ));
        }
    };
    // The short forms `:q` and `:fp` are taken too.
    let mut builtin = crate::tui::complete::COMMANDS.to_vec();
    builtin.extend(["q", "fp"]);
    crate::tui::custom::parse(&text, &builtin)
        .map_err(|e| BadInput::wrap(anyhow::anyhow!("{}: {e}", file.display())))
}

/// The console's `:` lines, in the data dir.
const HISTORY_FILE: &str = "history";

pub fn run(args: &TuiArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let themes = ThemeSet::load(
        Some(&theme_dir(&ctx.paths.config_file)),
        no_color_requested(std::env::var_os("NO_COLOR").as_deref()),
    );
    let name = args.theme.as_deref().unwrap_or(&ctx.config.tui.theme);
    let theme = themes.get(name).map_err(BadInput::wrap)?;
    let custom = custom_commands(&ctx.paths.config_file)?;
    if !std::io::stdout().is_terminal() {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "the console needs a terminal; for scripts use `fleetctl scan` or `fleetctl fingerprint`"
        )));
    }
    let _log = init_file_logging(&ctx.paths.log_dir, "tui.log")?;
    tracing::info!(theme = %theme.name, "console starting");

    let max_in_flight = super::raise_open_files_limit();
    let mut app = App::new(themes, theme);
    let history_file = ctx.paths.data_dir.join(RUN_HISTORY_FILE);
    app.runs.history = read_history(&history_file);
    app.custom = custom;
    app.read_only = args.read_only;
    app.history = crate::tui::complete::History::load(&ctx.paths.data_dir.join(HISTORY_FILE));
    super::runtime()?.block_on(async move {
        let (link, embedded, source) = super::console::control(ctx).await?;
        tracing::info!(?source, "control plane");
        let config = super::console::engine_config(
            ctx,
            super::console::FrontEnd::Console,
            link,
            max_in_flight,
        )?;
        let shell = shell_opener(config.ssh.clone());
        let (engine, events) = engine::spawn(config);
        let result = crate::tui::run(engine, events, app, Some(shell)).await;
        if let Some(embedded) = embedded {
            embedded.stop().await;
        }
        let app = result.context("the console failed")?;
        write_history(&history_file, &app.runs.history)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The run prompt's history, one command a line, in the data dir.
const RUN_HISTORY_FILE: &str = "run_history";

fn read_history(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Written owner-only: commands can hold what others should not read.
fn write_history(path: &Path, history: &[String]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot save the run history to {}", path.display()))?;
    for command in history.iter().filter(|c| !c.contains('\n')) {
        writeln!(file, "{command}")?;
    }
    Ok(())
}

/// `S` in the console: the same shell as `fleetctl shell`, with the
/// console's SSH settings (an unknown host key is asked on the terminal).
fn shell_opener(ssh: engine::SshSettings) -> crate::tui::OpenShell {
    std::sync::Arc::new(move |addr| {
        let ssh = ssh.clone();
        Box::pin(async move {
            let host = addr.to_string();
            match super::shell::open(&ssh, &engine::SshRequest::default(), &host).await {
                Ok(end) => Ok(format!("shell on {host}: {}", super::shell::describe(&end))),
                Err(e) => Err(format!("shell on {host}: {}", super::error_text(&e))),
            }
        })
    })
}

/// Logs go to `file` (`tui.log`) in the log dir through a non-blocking
/// writer: the screen belongs to the console. `RUST_LOG` picks what
/// (default: info).
pub(super) fn init_file_logging(
    dir: &Path,
    file: &str,
) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::EnvFilter;
    crate::store::create_private_dir(dir).context("cannot create the log directory")?;
    let (writer, guard) =
        tracing_appender::non_blocking(tracing_appender::rolling::never(dir, file));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init();
    Ok(guard)
}
