//! A real PostgreSQL 15 (Debian's `postgresql-15`) started by the test in
//! a temporary directory: `initdb` and `pg_ctl` run as an unprivileged user
//! (`nobody` when the test runs as root, as CI does; else the current
//! user), listening on a 127.x address and a free port with TLS on (a
//! certificate from a CA the test makes) and password authentication. It
//! is stopped and its directory removed when dropped. Missing binaries are
//! a loud failure, never a pass.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Where Debian puts PostgreSQL 15's server binaries.
const BIN: &str = "/usr/lib/postgresql/15/bin";
pub const USER: &str = "fleet";
pub const PASSWORD: &str = "a-test-password-not-a-secret";

pub struct PgServer {
    dir: tempfile::TempDir,
    pub ip: String,
    pub port: u16,
    /// Runs the server's tools as this user (None: the current user).
    run_as: Option<&'static str>,
}

fn bin(name: &str) -> PathBuf {
    let path = Path::new(BIN).join(name);
    assert!(
        path.exists(),
        "this test needs PostgreSQL 15's server binaries ({}): apt-get install postgresql-15 \
         (.ci/run does)",
        path.display()
    );
    path
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    /// Starts a server on `ip` with a database `fleet` owned by [`USER`].
    pub fn start(ip: &str) -> Self {
        let (initdb, pg_ctl) = (bin("initdb"), bin("pg_ctl"));
        bin("postgres");
        let dir = tempfile::Builder::new()
            .prefix("fleetctl-pg-")
            .tempdir()
            .unwrap();
        let run_as = is_root().then_some("nobody");
        let server = Self {
            ip: ip.to_owned(),
            port: free_port(ip),
            run_as,
            dir,
        };
        // TLS: a certificate for the address, from a CA of the test's own.
        let ca = fleetctl::pki::FleetCa::load_or_create(&server.path("ca")).unwrap();
        let (cert, key) = ca
            .issue_server(&[ip.to_owned()], Duration::from_hours(2))
            .unwrap();
        std::fs::write(server.path("server.crt"), &cert.pem).unwrap();
        std::fs::write(server.path("server.key"), &key).unwrap();
        std::fs::write(server.ca_file(), ca.ca_pem()).unwrap();
        std::fs::write(server.path("pwfile"), PASSWORD).unwrap();
        std::fs::write(server.password_file(), PASSWORD).unwrap();
        server.hand_over();

        server.run(
            Command::new(initdb)
                .arg("-D")
                .arg(server.path("data"))
                .args([
                    "-U",
                    USER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .arg(format!("--pwfile={}", server.path("pwfile").display()))
                .args(["-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
            "initdb",
        );
        let conf = format!(
            "listen_addresses = '{ip}'\nport = {port}\nunix_socket_directories = '{sock}'\n\
             ssl = on\nssl_cert_file = '{crt}'\nssl_key_file = '{key}'\n\
             max_connections = 300\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nshared_buffers = 128MB\n",
            port = server.port,
            sock = server.dir.path().display(),
            crt = server.path("server.crt").display(),
            key = server.path("server.key").display(),
        );
        let conf_path = server.path("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();
        server.hand_over();
        server.run(
            Command::new(pg_ctl)
                .arg("-D")
                .arg(server.path("data"))
                .arg("-l")
                .arg(server.path("server.log"))
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        );
        server.run(
            Command::new(bin("psql"))
                .args(["-h", &server.dir.path().display().to_string()])
                .args(["-p", &server.port.to_string(), "-U", USER, "-d", "postgres"])
                .args(["-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE fleet"]),
            "psql CREATE DATABASE",
        );
        server
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.path("db-ca.pem")
    }

    /// The password, in a file as `control.registry_password_file` wants.
    pub fn password_file(&self) -> PathBuf {
        self.path("db.password")
    }

    /// The URL of database `db` (TLS required, no password in it).
    pub fn url_for(&self, db: &str) -> String {
        format!(
            "postgres://{USER}@{}:{}/{db}?sslmode=require",
            self.ip, self.port
        )
    }

    pub fn url(&self) -> String {
        self.url_for("fleet")
    }

    /// What `[control]` says to use this server's database `db`.
    pub fn control_settings_for(&self, db: &str) -> String {
        format!(
            "registry = \"{}\"\nregistry_ca_file = \"{}\"\nregistry_password_file = \"{}\"\n",
            self.url_for(db),
            self.ca_file().display(),
            self.password_file().display()
        )
    }

    pub fn control_settings(&self) -> String {
        self.control_settings_for("fleet")
    }

    /// The settings the library takes to reach database `db`.
    pub fn settings_for(&self, db: &str) -> fleetctl::store::registry::postgres::PgSettings {
        fleetctl::store::registry::postgres::PgSettings {
            url: self.url_for(db),
            ca_pem: Some(std::fs::read_to_string(self.ca_file()).unwrap()),
            password: Some(PASSWORD.to_owned()),
            pool_size: 8,
        }
    }

    /// A new, empty database `name`.
    pub fn create_database(&self, name: &str) {
        self.run(
            Command::new(bin("psql"))
                .args(["-h", &self.dir.path().display().to_string()])
                .args(["-p", &self.port.to_string(), "-U", USER, "-d", "postgres"])
                .args([
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    &format!("CREATE DATABASE {name}"),
                ]),
            "psql CREATE DATABASE",
        );
    }

    /// Runs SQL in database `db` over the server's own socket; its stdout.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.run(
            Command::new(bin("psql"))
                .args(["-h", &self.dir.path().display().to_string()])
                .args(["-p", &self.port.to_string(), "-U", USER, "-d", db])
                .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql]),
            "psql",
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    /// Gives the directory (and what is in it) to the user the server runs as.
    fn hand_over(&self) {
        use std::os::unix::fs::PermissionsExt as _;
        if let Some(user) = self.run_as {
            let status = Command::new("chown")
                .args(["-R", &format!("{user}:")])
                .arg(self.dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown -R {user} failed");
        }
        std::fs::set_permissions(
            self.path("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }

    fn run(&self, cmd: &mut Command, what: &str) -> Output {
        let cmd = match self.run_as {
            Some(user) => {
                let mut wrapped = Command::new("runuser");
                wrapped
                    .args(["-u", user, "--"])
                    .arg(cmd.get_program())
                    .args(cmd.get_args());
                wrapped
            }
            None => std::mem::replace(cmd, Command::new("true")),
        };
        let mut cmd = cmd;
        let out = cmd
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{}\n{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut stop = Command::new(bin("pg_ctl"));
        stop.arg("-D")
            .arg(self.path("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let cmd = match self.run_as {
            Some(user) => {
                let mut wrapped = Command::new("runuser");
                wrapped
                    .args(["-u", user, "--"])
                    .arg(stop.get_program())
                    .args(stop.get_args());
                wrapped
            }
            None => stop,
        };
        let mut cmd = cmd;
        let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}
