//! Configuration reload without a restart: the file is read and every role built anew; only
//! when all of it succeeds are the new routes, issuers, clients and keys swapped in, each in
//! one atomic step. A refused config is logged and the running one keeps serving.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::Mutex;

use super::Roles;
use crate::admin::Reload;
use crate::config::Config;
use crate::error::{Context, Error, Result};

pub struct Reloader {
    path: PathBuf,
    /// Listener addresses and TLS settings cannot change in place; that takes an upgrade.
    listeners: Vec<(&'static str, Option<std::net::SocketAddr>)>,
    tls: String,
    roles: Arc<Roles>,
    /// One reload at a time.
    running: Mutex<()>,
}

/// The listeners' TLS settings as read: each listener is built with them once.
fn tls(config: &Config) -> String {
    format!("{:?} {:?}", config.gateway.as_ref().map(|g| &g.tls), config.issuer.as_ref().map(|i| &i.tls))
}

fn listeners(config: &Config) -> Vec<(&'static str, Option<std::net::SocketAddr>)> {
    vec![
        ("admin.listen", Some(config.admin.listen)),
        ("gateway.listen", config.gateway.as_ref().map(|g| g.listen)),
        ("issuer.listen", config.issuer.as_ref().map(|i| i.listen)),
        ("oppslag.listen", config.oppslag.as_ref().map(|o| o.listen)),
    ]
}

impl Reloader {
    pub fn new(config: &Config, roles: Arc<Roles>) -> Reloader {
        Reloader {
            path: config.source.clone(),
            listeners: listeners(config),
            tls: tls(config),
            roles,
            running: Mutex::new(()),
        }
    }

    async fn try_reload(&self) -> Result<String> {
        let _one_at_a_time = self.running.lock().await;
        let path = self.path.clone();
        let roles = self.roles.clone();
        let running = self.listeners.clone();
        let running_tls = self.tls.clone();
        // Reading files and resolving upstream names blocks: keep it off the async workers.
        let built = tokio::task::spawn_blocking(move || {
            let config = Config::load(&path)
                .map_err(|errors| Error::new(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
            for ((key, old), (_, new)) in running.iter().zip(listeners(&config)) {
                if *old != new {
                    return Err(Error::new(format!(
                        "{}: key `{key}`: listeners cannot change on reload (was {old:?}, now {new:?}); use an upgrade",
                        path.display()
                    )));
                }
            }
            if tls(&config) != running_tls {
                return Err(Error::new(format!(
                    "{}: key `gateway.tls` or `issuer.tls`: TLS settings cannot change on reload (a listener keeps \
                     the ones it started with); use an upgrade",
                    path.display()
                )));
            }
            let previous = roles.gateway.as_ref().map(|g| g.load_full());
            let (store, idp) = match &roles.issuer {
                Some(issuer) => (issuer.store.clone(), issuer.idp.clone()),
                None => (
                    Arc::new(crate::issuer::store::MemoryStore::new()) as Arc<dyn crate::issuer::store::Store>,
                    Arc::new(crate::issuer::idp::TestIdp) as Arc<dyn crate::issuer::idp::IdentityProvider>,
                ),
            };
            Roles::build_states(&config, &roles.metrics, previous.as_deref(), &store, &idp, &roles.audit)
                .map_err(|e| Error::new(e.to_string()))
        })
        .await
        .context("the reload task failed")??;

        let mut summary = Vec::new();
        if let (Some(new), Some(current)) = (built.gateway, &self.roles.gateway) {
            // Keys of newly trusted issuers are fetched before the swap, so they work at once.
            for issuer in new.validator.issuers().filter(|i| i.is_fetched() && !i.has_keys()) {
                if let Err(e) = issuer.refresh().await {
                    tracing::warn!(issuer = %issuer.issuer, error = %e.chain(), "keys of a newly trusted issuer could not be fetched yet");
                }
            }
            summary.push(format!(
                "gateway: {} routes, {} issuers",
                new.routes.iter().count(),
                new.validator.issuers().count()
            ));
            current.store(Arc::new(new));
        }
        if let (Some(router), Some(issuer)) = (built.issuer, &self.roles.issuer) {
            issuer.router.store(Arc::new(router));
            summary.push("issuer: clients, scopes and keys".into());
        }
        if let (Some(router), Some(current)) = (built.oppslag, &self.roles.oppslag) {
            current.store(Arc::new(router));
            summary.push("oppslag: register".into());
        }
        Ok(summary.join("; "))
    }
}

#[async_trait]
impl Reload for Reloader {
    async fn reload(&self) -> Result<String> {
        match self.try_reload().await {
            Ok(summary) => {
                self.roles.metrics.server.reloaded(true);
                tracing::info!(config = %self.path.display(), %summary, "configuration reloaded");
                Ok(summary)
            }
            Err(reason) => {
                self.roles.metrics.server.reloaded(false);
                tracing::error!(config = %self.path.display(), reason = %reason.chain(), "configuration reload refused; the running configuration keeps serving");
                Err(reason)
            }
        }
    }
}

/// SIGHUP reloads, as for most daemons.
pub struct ReloadOnHangup(pub Arc<Reloader>);

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload with POST /reload instead");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hangups.recv() => {
                    let _ = self.0.reload().await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
