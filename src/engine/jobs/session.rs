//! One connection for a front end to drive itself (an interactive shell):
//! the host resolved, its key checked and the login made exactly as every
//! job does, with the same settings laid over the engine's.

use std::sync::Arc;

use super::{JobError, SshReach, SshRequest};
use crate::engine::SshSettings;
use crate::ssh::{Prompter, Session, SshError};

/// A connected, authenticated session to `host`, and what the ssh_config
/// holds that is not followed (for the front end to say). Host keys and
/// passwords are asked of `prompter`; time spent answering does not count
/// against the connect timeout.
pub async fn connect(
    base: &SshSettings,
    request: &SshRequest,
    host: &str,
    prompter: Arc<dyn Prompter>,
) -> Result<(Session, Vec<String>), JobError> {
    let (reach, notes) = SshReach::load(request.over(base), prompter).await?;
    let target = reach.target(host)?;
    let session = match reach
        .connector
        .within(
            target.connect_timeout + reach.timeout,
            reach.connector.connect(&target),
        )
        .await
    {
        Some(Ok(session)) => session,
        Some(Err(e)) => return Err(JobError::Failed(e.to_string())),
        None => {
            return Err(JobError::Failed(
                SshError::Timeout {
                    host: target.display(),
                    after: target.connect_timeout + reach.timeout,
                    during: "connecting",
                }
                .to_string(),
            ));
        }
    };
    Ok((session, notes))
}
