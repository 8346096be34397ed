//! The last phase of a request: count it by route and status, and log it (one line, personal
//! numbers masked, the query left out).

use pingora::protocols::http::ServerSession;

use super::Gateway;
use super::admission::RequestCtx;
use crate::personid;

impl Gateway {
    /// Count the request and, when the access log is on, log it (personal numbers masked).
    pub fn log(&self, session: &ServerSession, status: u16, error: Option<&str>, ctx: &RequestCtx) {
        let route = ctx.route.as_deref().unwrap_or("-");
        let elapsed = ctx.started.elapsed();
        match self.route(ctx) {
            Some(admitted) => {
                if status == 200 {
                    admitted.metrics.ok.inc();
                } else {
                    self.metrics.gateway.requests.with_label_values(&[route, status_label(status)]).inc();
                }
                admitted.metrics.duration.observe(elapsed.as_secs_f64());
            }
            None => {
                self.metrics.gateway.requests.with_label_values(&[route, status_label(status)]).inc();
                self.metrics.gateway.request_duration.with_label_values(&[route]).observe(elapsed.as_secs_f64());
            }
        }
        if self.access_log {
            let header = session.req_header();
            // The query is left out: tokens and keys travel there too.
            let target = header.raw_path();
            let path = &target[..target.iter().position(|b| *b == b'?').unwrap_or(target.len())];
            let path = personid::mask_in_text(&String::from_utf8_lossy(path)).into_owned();
            let token = ctx.token.as_deref();
            tracing::info!(
                target: "portvakt::access",
                request_id = ctx.request_id(),
                method = %header.method,
                path = %path,
                route,
                status,
                client_id = token.and_then(|t| t.client_id.as_deref()).unwrap_or("-"),
                pid = %token.and_then(|t| t.pid.as_deref()).map(personid::mask).unwrap_or_default(),
                latency_us = elapsed.as_micros() as u64,
                error = error.unwrap_or_default(),
            );
        }
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "0",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
