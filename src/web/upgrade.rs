//! Upgraded connections (WebSockets): the relay between client and upstream, which
//! counts as the client connection it came from (its `max_connections` slot, the
//! shutdown's wait) and ends when its session does: logout or any revocation,
//! the session's absolute end, the secret deleted or given to another user,
//! checked every [`CHECK_EVERY`].

use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;

use crate::state::secrets::cache::{Resolved, SecretCache, Staleness};
use crate::state::session::{Session, Sessions};

/// How often an upgraded connection's session is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long closing either side may take once the relay ends.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The session behind an upgraded connection, to check while it lasts.
pub struct SessionWatch {
    sessions: Arc<Sessions>,
    secrets: Arc<SecretCache>,
    session: Session,
}

impl SessionWatch {
    pub fn new(sessions: Arc<Sessions>, secrets: Arc<SecretCache>, session: Session) -> Self {
        Self { sessions, secrets, session }
    }

    /// Whether the session still holds: not revoked, not past its absolute end,
    /// its secret still there for the same user. A backend outage ends nothing
    /// (as for requests, within `stale_if_error`).
    pub async fn holds(&self) -> bool {
        if !self.sessions.still_holds(&self.session) {
            return false;
        }
        match self.secrets.resolve(&self.session.secret, Staleness::AllowStale).await {
            Ok(Resolved::Found(creds)) => creds.username == self.session.user,
            Ok(Resolved::NotFound) => false,
            Err(_) => true,
        }
    }
}

/// Relay bytes both ways once both sides have switched protocols, until either
/// closes or the session ends. The client's upgraded stream carries its
/// connection's lease (`transport::lease`): the relay counts as that connection.
pub async fn relay(client: OnUpgrade, upstream: OnUpgrade, watch: Option<SessionWatch>) {
    let Ok((client, upstream)) = tokio::try_join!(client, upstream) else { return };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    {
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::pin!(copy);
        let mut every = tokio::time::interval(CHECK_EVERY);
        every.tick().await;
        loop {
            tokio::select! {
                _ = &mut copy => return,
                _ = every.tick(), if watch.is_some() => {
                    if let Some(watch) = &watch && !watch.holds().await {
                        tracing::info!("an upgraded connection closed: its session ended");
                        break;
                    }
                }
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, client.shutdown()).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, upstream.shutdown()).await;
}
