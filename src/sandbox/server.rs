//! The SSH server of one sandbox host (russh's server side): public-key
//! authentication with the demo key only, exec requests and the SFTP
//! subsystem. No shell, no pty, no forwarding: the console needs none.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Disconnect, MethodKind, MethodSet};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::exec;
use super::host::HostEnv;
use super::jail::Jail;
use super::reaper::Tracker;
use super::sftp::Sftp;

/// Everything a host's connections share.
pub(super) struct Host {
    pub env: Arc<HostEnv>,
    pub config: Arc<russh::server::Config>,
    /// The key that may log in; `None` for a host that refuses every key.
    pub authorized: Option<PublicKey>,
    pub tracker: Tracker,
}

/// The server config of a host holding `host_key`.
pub(super) fn config(host_key: russh::keys::PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-fleetctl_sandbox".into()),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        // Rejections are timed to hide which check failed; on a loopback
        // demo that costs every client's probe of other keys a full second.
        auth_rejection_time: Duration::from_millis(20),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        inactivity_timeout: Some(Duration::from_hours(1)),
        nodelay: true,
        ..russh::server::Config::default()
    }
}

/// Accepts connections until `stop`; each one is served on its own task and
/// told goodbye at `stop`.
pub(super) async fn serve(listener: TcpListener, host: Arc<Host>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    tokio::spawn(connection(socket, Arc::clone(&host), stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait, don't spin.
                    tracing::warn!(host = %host.env.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn connection(socket: TcpStream, host: Arc<Host>, stop: CancellationToken) {
    let handler = Connection {
        host: Arc::clone(&host),
        channels: HashMap::new(),
    };
    let session = tokio::select! {
        () = stop.cancelled() => return,
        session = russh::server::run_stream(Arc::clone(&host.config), socket, handler) => session,
    };
    let Ok(session) = session else { return };
    let handle = session.handle();
    tokio::select! {
        () = stop.cancelled() => {
            let _ = handle
                .disconnect(Disconnect::ByApplication, "the sandbox is shutting down".into(), "en".into())
                .await;
        }
        result = session => {
            if let Err(e) = result {
                tracing::debug!(host = %host.env.name, error = %e, "connection ended");
            }
        }
    }
}

/// One client connection.
struct Connection {
    host: Arc<Host>,
    /// Session channels opened and not yet given a command or subsystem.
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl Connection {
    fn accepts(&self, key: &PublicKey) -> Auth {
        match &self.host.authorized {
            Some(ok) if ok.key_data() == key.key_data() => Auth::Accept,
            _ => Auth::reject(),
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.accepts(offer.public_key))
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.accepts(key.public_key))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(chan) = self.channels.remove(&channel) else {
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        tokio::spawn(exec::run(
            chan,
            session.handle(),
            data.to_vec(),
            Arc::clone(&self.host.env),
            self.host.tracker.clone(),
        ));
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let jail = Jail::new(&self.host.env.home);
        let (true, Some(chan), Ok(jail)) = (name == "sftp", self.channels.remove(&channel), jail)
        else {
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        // Runs on a task of its own until the client closes the channel.
        russh_sftp::server::run(chan.into_stream(), Sftp::new(jail)).await;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    #[allow(clippy::too_many_arguments)] // the trait's signature
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // As sshd without AcceptEnv: the client's environment is not taken.
        session.channel_failure(channel)
    }
}
