//! `portvakt serve`: one Pingora server running the configured roles on their listeners, with
//! graceful shutdown (SIGTERM), listener hand-over to a new process (SIGQUIT + `--upgrade`) and
//! configuration reload (SIGHUP or `POST /reload` on the admin listener).

mod reload;
mod shutdown;

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::{self, AdminState, metrics::Metrics};
use crate::audit::AuditLog;
use crate::config::{Config, ConfigError, Environment, IdpKind};
use crate::gateway::maintenance::{HealthChecker, KeyRefresher};
use crate::gateway::{Gateway, GatewayService, GatewayState};
use crate::issuer::Issuer;
use crate::issuer::idp::{IdentityProvider, TestIdp};
use crate::issuer::store::{MemoryStore, RedisStore, Store, StoreWatch};
use crate::oppslag::Simulator;
use crate::web::app::{AxumApp, SharedRouter};
use reload::{ReloadOnHangup, Reloader};
use shutdown::Signals;

/// Admin requests are tiny.
const ADMIN_MAX_REQUEST_BYTES: usize = 16 * 1024;

pub struct ServeOptions {
    /// Take the listeners over from a running process (zero-downtime upgrade).
    pub upgrade: bool,
}

/// The issuer's state lives as long as the process: a reload builds a new issuer on it.
pub struct IssuerRole {
    pub router: SharedRouter,
    pub store: Arc<dyn Store>,
    pub idp: Arc<dyn IdentityProvider>,
}

/// Every role built from one config, before any listener opens. `check-config` stops here.
pub struct Roles {
    pub metrics: Arc<Metrics>,
    /// One audit trail for every role of the process (kept across reloads).
    pub audit: Option<Arc<AuditLog>>,
    pub gateway: Option<Arc<ArcSwap<GatewayState>>>,
    pub issuer: Option<IssuerRole>,
    pub oppslag: Option<SharedRouter>,
}

/// Newly built state for every role, not yet in use.
pub struct Built {
    gateway: Option<GatewayState>,
    issuer: Option<Router>,
    oppslag: Option<Router>,
}

impl Roles {
    pub fn build(config: &Config) -> Result<Roles, ConfigError> {
        crate::token::self_test().map_err(|e| config.error("", e.chain()))?;
        let metrics = Arc::new(Metrics::new());
        let store: Arc<dyn Store> = match &config.issuer {
            Some(settings) => match &settings.store.redis {
                Some(redis) => Arc::new(
                    RedisStore::new(redis, &settings.store, &settings.pairwise_secret, metrics.clone())
                        .map_err(|e| config.error("issuer.store.redis", e.chain()))?,
                ),
                None => Arc::new(MemoryStore::with_limits(&settings.store)),
            },
            None => Arc::new(MemoryStore::new()),
        };
        // Config validation has refused the test IdP in production already.
        let idp: Arc<dyn IdentityProvider> = match config.issuer.as_ref().map(|i| i.idp).unwrap_or_default() {
            IdpKind::Test => Arc::new(TestIdp),
        };
        let audit = match &config.audit {
            Some(settings) => Some(Arc::new(
                AuditLog::open(settings, metrics.clone()).map_err(|e| config.error("audit.dir", e.chain()))?,
            )),
            None => None,
        };
        let built = Roles::build_states(config, &metrics, None, &store, &idp, &audit)?;
        let shared = |router: Router| Arc::new(ArcSwap::from_pointee(router));
        Ok(Roles {
            gateway: built.gateway.map(|g| Arc::new(ArcSwap::from_pointee(g))),
            issuer: built.issuer.map(|router| IssuerRole { router: shared(router), store, idp }),
            oppslag: built.oppslag.map(shared),
            metrics,
            audit,
        })
    }

    /// Build every configured role; the gateway takes over what it can from `previous`.
    fn build_states(
        config: &Config,
        metrics: &Arc<Metrics>,
        previous: Option<&GatewayState>,
        store: &Arc<dyn Store>,
        idp: &Arc<dyn IdentityProvider>,
        audit: &Option<Arc<AuditLog>>,
    ) -> Result<Built, ConfigError> {
        let gateway = match &config.gateway {
            Some(settings) => {
                let production = config.server.environment == Environment::Production;
                Some(
                    GatewayState::build(settings, production, metrics, previous, audit.clone())
                        .map_err(|e| config.error("gateway", e.chain()))?,
                )
            }
            None => None,
        };
        let issuer = match &config.issuer {
            Some(settings) => {
                let issuer = Issuer::build_with(settings, metrics.clone(), store.clone(), idp.clone(), audit.clone())
                    .map_err(|e| config.error("issuer", e.chain()))?;
                Some(Arc::new(issuer).router())
            }
            None => None,
        };
        let oppslag = match &config.oppslag {
            Some(settings) => Some(
                Arc::new(
                    Simulator::build(settings, metrics.clone(), audit.clone())
                        .map_err(|e| config.error("oppslag.register", e.chain()))?,
                )
                .router(),
            ),
            None => None,
        };
        Ok(Built { gateway, issuer, oppslag })
    }

    /// Reach what the config names outside this process and must answer (the shared state
    /// store): `check-config` fails when it does not.
    pub fn reach_shared_state(&self, config: &Config) -> Result<(), ConfigError> {
        let Some(issuer) = &self.issuer else { return Ok(()) };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| config.error("", format!("no async runtime: {e}")))?;
        runtime.block_on(issuer.store.check());
        match issuer.store.unready() {
            Some(reason) => Err(config.error("issuer.store.redis", format!("cannot be reached: {reason}"))),
            None => Ok(()),
        }
    }

    /// What the process still waits for; empty when every role can take traffic.
    fn waiting_for(&self) -> Vec<String> {
        let mut waiting = Vec::new();
        waiting.extend(self.issuer.as_ref().and_then(|issuer| issuer.store.unready()));
        if let Some(gateway) = &self.gateway {
            for issuer in gateway.load().validator.issuers() {
                if !issuer.is_ready() {
                    waiting.push(format!("signing keys of issuer {}", issuer.issuer));
                }
            }
        }
        waiting
    }
}

pub fn serve(config: Config, options: ServeOptions) -> Result<(), ConfigError> {
    let roles = Arc::new(Roles::build(&config)?);
    let conf = ServerConf {
        threads: config.server.threads,
        work_stealing: config.server.work_stealing,
        grace_period_seconds: Some(config.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(config.server.graceful_shutdown_timeout_seconds),
        upgrade_sock: path_string(&config.server.upgrade_socket),
        pid_file: path_string(&config.server.pid_file),
        ..ServerConf::default()
    };
    let opt = Opt { upgrade: options.upgrade, ..Opt::default() };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    // With --upgrade this waits for the old process to hand its listeners over.
    server.bootstrap();

    if let (Some(settings), Some(state)) = (&config.gateway, &roles.gateway) {
        let gateway = Gateway::new(state.clone(), roles.metrics.clone(), config.log.access_log)
            .map_err(|e| config.error("gateway", format!("{e:#}")))?;
        let mut service = Service::new(
            "gateway".into(),
            GatewayService::new(gateway, &server.configuration, config.server.client_limits()),
        );
        let addr = settings.listen.to_string();
        match &settings.tls {
            Some(tls) => {
                let tls = tls_settings(tls).map_err(|e| config.error("gateway.tls", e))?;
                service.add_tls_with_settings(&addr, None, tls);
            }
            None => service.add_tcp(&addr),
        }
        let gateway_handle = server.add_service(service);
        let keys_handle = server.add_service(background_service(
            "issuer keys",
            KeyRefresher {
                state: state.clone(),
                refresh: settings.jwks.refresh,
                startup_wait: settings.jwks.startup_wait,
            },
        ));
        gateway_handle.add_dependency(&keys_handle);
        if !settings.upstream.health_check_interval.is_zero() {
            server.add_service(background_service(
                "upstream health",
                HealthChecker { state: state.clone(), interval: settings.upstream.health_check_interval },
            ));
        }
    }
    if let (Some(settings), Some(issuer)) = (&config.issuer, &roles.issuer) {
        let mut service = Service::new(
            "issuer".into(),
            AxumApp::new(issuer.router.clone(), crate::issuer::MAX_REQUEST_BYTES, config.server.client_limits()),
        );
        match &settings.tls {
            Some(tls) => {
                let tls = tls_settings(tls).map_err(|e| config.error("issuer.tls", e))?;
                service.add_tls_with_settings(&settings.listen.to_string(), None, tls);
            }
            None => service.add_tcp(&settings.listen.to_string()),
        }
        server.add_service(service);
        if settings.store.redis.is_some() {
            server.add_service(background_service("state store check", StoreWatch(issuer.store.clone())));
        }
    }
    if let (Some(settings), Some(router)) = (&config.oppslag, &roles.oppslag) {
        let mut service = Service::new(
            "oppslagstjenesten".into(),
            AxumApp::new(router.clone(), settings.max_request_bytes, config.server.client_limits()),
        );
        service.add_tcp(&settings.listen.to_string());
        server.add_service(service);
    }

    let reloader = Arc::new(Reloader::new(&config, roles.clone()));
    server.add_service(background_service("reload on SIGHUP", ReloadOnHangup(reloader.clone())));
    let probe_roles = roles.clone();
    let role_listeners: Vec<(&'static str, std::net::SocketAddr)> = [
        config.gateway.as_ref().map(|g| ("gateway", g.listen)),
        config.issuer.as_ref().map(|i| ("issuer", i.listen)),
        config.oppslag.as_ref().map(|o| ("oppslagstjenesten", o.listen)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let admin_state = AdminState {
        metrics: roles.metrics.clone(),
        readiness: Arc::new(move || {
            let mut waiting = probe_roles.waiting_for();
            // Pingora opens each listener in its own task: ready means they all accept.
            for (name, addr) in &role_listeners {
                if !accepts(*addr) {
                    waiting.push(format!("the {name} listener on {addr}"));
                }
            }
            waiting
        }),
        reload: Some(reloader),
    };
    let mut admin_service = Service::new(
        "admin".into(),
        AxumApp::fixed(admin::router(admin_state), ADMIN_MAX_REQUEST_BYTES, config.server.client_limits()),
    );
    admin_service.add_tcp(&config.admin.listen.to_string());
    server.add_service(admin_service);

    print_banner(&config);
    // Pingora writes a pid file only when it daemonizes; an operator signalling the process
    // (SIGHUP, SIGQUIT for an upgrade) needs it either way. The newest process owns it.
    let pid_file = config.server.pid_file.clone();
    let pid = std::process::id().to_string();
    if let Err(e) = std::fs::write(&pid_file, &pid) {
        tracing::warn!(pid_file = %pid_file.display(), error = %e, "cannot write the pid file");
    }
    server.run(RunArgs { shutdown_signal: Box::new(Signals) });
    if std::fs::read_to_string(&pid_file).is_ok_and(|owner| owner == pid) {
        let _ = std::fs::remove_file(&pid_file);
    }
    tracing::info!("portvakt stopped");
    Ok(())
}

fn print_banner(config: &Config) {
    tracing::info!(config = %config.source.display(), "portvakt starting");
    if let Some(gateway) = &config.gateway {
        let scheme = if gateway.tls.is_some() { "https" } else { "http" };
        tracing::info!("gateway    {scheme}://{}", gateway.listen);
    }
    if let Some(issuer) = &config.issuer {
        tracing::info!(
            "issuer     {}  (discovery: {}/.well-known/openid-configuration)",
            issuer.issuer,
            issuer.issuer.trim_end_matches('/')
        );
    }
    if let Some(oppslag) = &config.oppslag {
        tracing::info!("oppslag    http://{}{}  (WSDL: ?wsdl)", oppslag.listen, crate::oppslag::PATH);
    }
    tracing::info!("admin      http://{}  (/metrics /healthz /readyz, POST /reload)", config.admin.listen);
    if config.issuer.as_ref().is_some_and(|i| i.clients.iter().any(|c| c.client_id == "demo-maskinporten")) {
        tracing::info!("get a machine token:  portvakt token   (then: curl -H \"Authorization: Bearer $TOKEN\" ...)");
    }
}

/// Does a listener of this process accept connections? (A wildcard address is tried on loopback.)
fn accepts(addr: std::net::SocketAddr) -> bool {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_millis(200)).is_ok()
}

/// A TLS listener's settings: TLS 1.2 and 1.3 with rustls's default suites, and client
/// certificates checked against the configured CAs when asked for.
fn tls_settings(tls: &crate::config::TlsFiles) -> Result<pingora::listeners::tls::TlsSettings, String> {
    use crate::config::ClientCertificates;
    use pingora::tls::{RootCertStore, WebPkiClientVerifier};
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    // Pingora builds the listener later and panics on a certificate or key it cannot use: the
    // same files go through rustls here first, so such a config is refused with the reason.
    pingora::tls::install_default_crypto_provider();
    let chain = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", tls.cert.display()))?;
    let key =
        rustls_pki_types::PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| format!("{}: {e}", tls.key.display()))?;
    pingora::tls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} and {}: {e}", tls.cert.display(), tls.key.display()))?;
    let mut settings =
        pingora::listeners::tls::TlsSettings::intermediate(&path_string(&tls.cert), &path_string(&tls.key))
            .map_err(|e| e.to_string())?;
    if tls.client_certificates == ClientCertificates::Off {
        return Ok(settings);
    }
    let mut roots = RootCertStore::empty();
    for path in &tls.client_cas {
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))? {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let builder = WebPkiClientVerifier::builder(std::sync::Arc::new(roots));
    let builder = match tls.client_certificates {
        ClientCertificates::Optional => builder.allow_unauthenticated(),
        ClientCertificates::Required | ClientCertificates::Off => builder,
    };
    let verifier = builder.build().map_err(|e| format!("client certificate verification: {e}"))?;
    settings.set_client_cert_verifier(verifier);
    Ok(settings)
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
