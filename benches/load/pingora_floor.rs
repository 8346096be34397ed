//! Pingora's own HTTP proxy engine (pingora-proxy) with nothing of Portvakt in it (no token
//! check, no headers, no metrics), forwarding to one upstream. Measured beside Portvakt in the
//! same run, it shows what moving the gateway off pingora-proxy onto its own connection loop
//! over Pingora's core (`src/gateway/engine.rs`) is worth.
//!
//! `pingora_floor LISTEN UPSTREAM [THREADS]`, e.g. `pingora_floor 127.0.0.1:8086 127.0.0.1:8081 1`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

use async_trait::async_trait;
use pingora::prelude::{HttpPeer, ProxyHttp, Result, Session};
use pingora::server::Server;
use pingora::server::configuration::{Opt, ServerConf};

// The same allocator as Portvakt, so the comparison is of the engines alone.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Floor {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream.as_str(), false, String::new())))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: pingora_floor LISTEN UPSTREAM [THREADS]";
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let threads = args.next().map_or(Ok(1), |t| t.parse()).unwrap_or_else(|_| {
        eprintln!("{usage}");
        std::process::exit(2);
    });
    let conf = ServerConf { threads, work_stealing: false, grace_period_seconds: Some(0), ..ServerConf::default() };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Floor { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
