//! `portvakt serve`: one Pingora server running the configured roles on their listeners.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::{self, AdminState, metrics::Metrics};
use crate::config::{Config, ConfigError};
use crate::gateway::maintenance::{HealthChecker, KeyRefresher};
use crate::gateway::{Gateway, GatewayState};
use crate::issuer::Issuer;
use crate::oppslag::Simulator;
use crate::web::app::AxumApp;

/// Admin requests are tiny.
const ADMIN_MAX_REQUEST_BYTES: usize = 16 * 1024;

pub struct ServeOptions {
    /// Take the listeners over from a running process (zero-downtime upgrade).
    pub upgrade: bool,
}

/// Every role built from one config, before any listener opens. `check-config` stops here.
pub struct Roles {
    pub metrics: Arc<Metrics>,
    pub gateway: Option<Arc<ArcSwap<GatewayState>>>,
    pub issuer: Option<Arc<Issuer>>,
    pub oppslag: Option<Arc<Simulator>>,
}

impl Roles {
    pub fn build(config: &Config) -> Result<Roles, ConfigError> {
        crate::token::self_test().map_err(|e| config.error("", e))?;
        let metrics = Arc::new(Metrics::new());
        let gateway = match &config.gateway {
            Some(settings) => Some(Arc::new(ArcSwap::from_pointee(
                GatewayState::build(settings, &metrics, None).map_err(|e| config.error("gateway", e))?,
            ))),
            None => None,
        };
        let issuer = match &config.issuer {
            Some(settings) => Some(Arc::new(Issuer::build(settings, metrics.clone()).map_err(|e| config.error("issuer", e))?)),
            None => None,
        };
        let oppslag = match &config.oppslag {
            Some(settings) => Some(Arc::new(Simulator::build(settings, metrics.clone()).map_err(|e| config.error("oppslag.register", e))?)),
            None => None,
        };
        Ok(Roles { metrics, gateway, issuer, oppslag })
    }

    /// What the process still waits for; empty when every role can take traffic.
    fn waiting_for(&self) -> Vec<String> {
        let mut waiting = Vec::new();
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
        grace_period_seconds: Some(config.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(config.server.graceful_shutdown_timeout_seconds),
        upgrade_sock: path_string(&config.server.upgrade_socket),
        pid_file: path_string(&config.server.pid_file),
        ..ServerConf::default()
    };
    let opt = Opt { upgrade: options.upgrade, ..Opt::default() };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    if let (Some(settings), Some(state)) = (&config.gateway, &roles.gateway) {
        let gateway = Gateway::new(state.clone(), roles.metrics.clone(), config.log.access_log);
        let mut service = pingora::proxy::http_proxy_service_with_name(&server.configuration, gateway, "gateway");
        let addr = settings.listen.to_string();
        match &settings.tls {
            Some(tls) => service
                .add_tls(&addr, &path_string(&tls.cert), &path_string(&tls.key))
                .map_err(|e| config.error("gateway.tls", e.to_string()))?,
            None => service.add_tcp(&addr),
        }
        server.add_service(service);
        server.add_service(background_service(
            "issuer keys",
            KeyRefresher { state: state.clone(), refresh: Duration::from_secs(settings.jwks.refresh_seconds) },
        ));
        if settings.upstream.health_check_seconds > 0 {
            server.add_service(background_service(
                "upstream health",
                HealthChecker { state: state.clone(), interval: Duration::from_secs(settings.upstream.health_check_seconds) },
            ));
        }
    }

    if let (Some(settings), Some(issuer)) = (&config.issuer, &roles.issuer) {
        let app = AxumApp::new(issuer.clone().router(), crate::issuer::MAX_REQUEST_BYTES);
        let mut service = Service::new("issuer".into(), app);
        service.add_tcp(&settings.listen.to_string());
        server.add_service(service);
    }

    if let (Some(settings), Some(simulator)) = (&config.oppslag, &roles.oppslag) {
        let app = AxumApp::new(simulator.clone().router(), settings.max_request_bytes);
        let mut service = Service::new("oppslagstjenesten".into(), app);
        service.add_tcp(&settings.listen.to_string());
        server.add_service(service);
    }

    let probe_roles = roles.clone();
    let admin_state = AdminState {
        metrics: roles.metrics.clone(),
        readiness: Arc::new(move || probe_roles.waiting_for()),
        reload: None,
    };
    let mut admin_service =
        Service::new("admin".into(), AxumApp::new(admin::router(admin_state), ADMIN_MAX_REQUEST_BYTES));
    admin_service.add_tcp(&config.admin.listen.to_string());
    server.add_service(admin_service);

    print_banner(&config);
    server.run(RunArgs::default());
    Ok(())
}

fn print_banner(config: &Config) {
    tracing::info!(config = %config.source.display(), "portvakt starting");
    if let Some(gateway) = &config.gateway {
        tracing::info!("gateway    http://{}", gateway.listen);
    }
    if let Some(issuer) = &config.issuer {
        tracing::info!("issuer     {}  (listening on {})", issuer.issuer, issuer.listen);
    }
    if let Some(oppslag) = &config.oppslag {
        tracing::info!("oppslag    http://{}{}  (?wsdl for the WSDL)", oppslag.listen, crate::oppslag::PATH);
    }
    tracing::info!("admin      http://{}  (/metrics /healthz /readyz)", config.admin.listen);
}

fn path_string(path: &Path) -> String {
    PathBuf::from(path).to_string_lossy().into_owned()
}
