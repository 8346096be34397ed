#!/usr/bin/env python3
"""Portvakt against the edges an operator would pick instead, side by side in one run.

Started by benches/load/run.sh (which installs the peers and builds Portvakt). Every case
proxies to the same fast upstream on loopback with the same signed token and the same checks
(signature, iss, aud, exp, a scope); wrk generates a bounded load (fixed duration and
connections) and reports requests/s and p50/p99/p99.9 latency. The results go to
benches/load/results/<time>.json and .md, and docs/benchmarks.md.
"""

import argparse
import base64
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PORTVAKT = ROOT / "target" / "release" / "portvakt"
PINGORA_FLOOR = ROOT / "target" / "release" / "examples" / "pingora_floor"
LOADGEN = ROOT / "target" / "release" / "examples" / "loadgen"
PINGORA_FLOOR_PORT = 8086
PORTVAKT_BEST = "Portvakt RS256, cache on, 1 thread"
UPSTREAM_PORT, NGINX_PORT, HAPROXY_PORT, ENVOY_PORT, PORTVAKT_PORT, PORTVAKT_ADMIN = 8081, 8082, 8083, 8084, 8085, 9911


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_port(port, deadline=30.0):
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {deadline} s")


def wait_free(port, deadline=30.0):
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} is still taken after {deadline} s")


class Process:
    def __init__(self, name, argv, run_dir, env=None, cwd=None):
        self.name = name
        self.log_path = run_dir / f"{name}.log"
        self.process = subprocess.Popen(
            argv, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def cpu_seconds(self):
        """User + system CPU used so far by the process and its children (nginx and HAProxy
        workers): every process of its process group."""
        total = 0
        found = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.process.pid:
                total += int(fields[11]) + int(fields[12])
                found = True
        return total / os.sysconf("SC_CLK_TCK") if found else None


def wrk(url, args, script_env, run_dir, label):
    """Warm up, then one measured run; returns the parsed figures."""
    env = dict(os.environ, WRK_REPORT=str(HERE / "wrk-report.lua"), **script_env)
    script = script_env.get("WRK_SCRIPT", str(HERE / "wrk-report.lua"))
    base = ["wrk", f"-t{args.threads}", f"-c{args.connections}", "--timeout", "5s", "-s", script, url]
    # WRK_PHASE lets a script that sends each body once keep the warm-up's bodies apart.
    subprocess.run(base[:1] + ["-d", f"{args.warmup}s"] + base[1:], env=dict(env, WRK_PHASE="warmup"), capture_output=True, check=False)
    result = subprocess.run(base[:1] + ["-d", f"{args.duration}s"] + base[1:], env=dict(env, WRK_PHASE="run"),
                            capture_output=True, text=True, check=False)
    (run_dir / f"wrk-{label}.txt").write_text(result.stdout + result.stderr)
    line = next((l for l in result.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result for {label}:\n{result.stdout}\n{result.stderr}")
    figures = json.loads(line[len("WRK_JSON "):])
    seconds = figures["duration_us"] / 1e6
    errors = sum(figures["errors"].values())
    return {
        "requests_per_second": round((figures["requests"] - figures["errors"]["status"]) / seconds, 1),
        "p50_ms": round(figures["p50_us"] / 1000, 3),
        "p99_ms": round(figures["p99_us"] / 1000, 3),
        "p999_ms": round(figures["p999_us"] / 1000, 3),
        "requests": figures["requests"],
        "errors": errors,
    }


def measure(case, url, args, run_dir, process=None, script_env=None):
    log(f"{case}: {url}")
    cpu_before = process.cpu_seconds() if process else None
    result = wrk(url, args, script_env or {}, run_dir, case.replace(" ", "-").replace("/", "-"))
    cpu_after = process.cpu_seconds() if process else None
    if cpu_before is not None and cpu_after is not None and result["requests"]:
        # warm-up and run together: an estimate of the proxy's own CPU per request
        result["cpu_us_per_request"] = round((cpu_after - cpu_before) * 1e6 / (result["requests"] * (1 + args.warmup / args.duration)), 1)
    result["case"] = case
    log(f"  {result['requests_per_second']} req/s, p99 {result['p99_ms']} ms, errors {result['errors']}")
    return result


def median_round(case, rounds):
    """The round with the median requests/s (its latencies with it), and every round's rate."""
    ranked = sorted(rounds, key=lambda r: r["requests_per_second"])
    result = dict(ranked[(len(ranked) - 1) // 2], case=case)
    result["rounds_requests_per_second"] = [r["requests_per_second"] for r in rounds]
    return result


def keys(run_dir):
    """Bench keys (RS256, ES256), their PEMs for HAProxy, a JWKS for Envoy and Portvakt."""
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa1", "use": "sig", "alg": "RS256"}, private=True)
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec1", "use": "sig", "alg": "ES256"}, private=True)
    (run_dir / "rsa_pub.pem").write_bytes(rsa.as_pem(private=False))
    (run_dir / "ec_pub.pem").write_bytes(ec.as_pem(private=False))
    jwks = {"keys": [rsa.as_dict(private=False), ec.as_dict(private=False)]}
    (run_dir / "jwks.json").write_text(json.dumps(jwks))
    return rsa, ec, jwks


def sign(key, alg, kid, **extra):
    now = int(time.time())
    claims = {"iss": "bench-issuer", "aud": "bench-api", "sub": "bench-subject", "client_id": "bench-client",
              "scope": "bench:read other:scope", "iat": now, "exp": now + 3600}
    claims.update(extra)
    return jwt.encode({"alg": alg, "kid": kid, "typ": "at+jwt"}, claims, key)


def portvakt_edge_config(run_dir, threads, cache, cache_entries=100000):
    path = run_dir / f"portvakt-edge-{threads}-{cache}-{cache_entries}.toml"
    path.write_text(f"""
[server]
threads = {threads}
work_stealing = false
grace_period_seconds = 0
graceful_shutdown_timeout_seconds = 1
upgrade_socket = "{run_dir}/edge-upgrade.sock"
pid_file = "{run_dir}/edge.pid"

[log]
level = "warn"
access_log = false

[admin]
listen = "127.0.0.1:{PORTVAKT_ADMIN}"

[gateway]
listen = "127.0.0.1:{PORTVAKT_PORT}"

[gateway.validation_cache]
enabled = {str(cache).lower()}
max_entries = {cache_entries}

[[gateway.issuers]]
issuer = "bench-issuer"
jwks_file = "{run_dir}/jwks.json"
algorithms = ["RS256", "ES256"]

[[gateway.routes]]
name = "bench"
path = "/"
upstreams = ["http://127.0.0.1:{UPSTREAM_PORT}"]
scopes_any = ["bench:read"]
audience = "bench-api"
""")
    return path


def start_portvakt(run_dir, config, name, cwd=None):
    wait_free(PORTVAKT_PORT)
    wait_free(PORTVAKT_ADMIN)
    process = Process(name, [str(PORTVAKT), "serve", "--config", str(config)], run_dir, cwd=cwd)
    wait_port(PORTVAKT_PORT)
    return process


def edge_cases(args, run_dir, results):
    rsa, ec, jwks = keys(run_dir)
    rs_token = sign(rsa, "RS256", "rsa1")
    es_token = sign(ec, "ES256", "ec1")
    (run_dir / "rs256.token").write_text(rs_token + "\n")
    (run_dir / "es256.token").write_text(es_token + "\n")
    log(f"signing {args.distinct_tokens} distinct RS256 tokens for the cache-miss case")
    (run_dir / "distinct.tokens").write_text("\n".join(sign(rsa, "RS256", "rsa1", jti=str(i)) for i in range(args.distinct_tokens)) + "\n")
    rs = {"WRK_SCRIPT": str(HERE / "wrk-tokens.lua"), "TOKENS_FILE": str(run_dir / "rs256.token")}
    es = {"WRK_SCRIPT": str(HERE / "wrk-tokens.lua"), "TOKENS_FILE": str(run_dir / "es256.token")}
    distinct = {"WRK_SCRIPT": str(HERE / "wrk-tokens.lua"), "TOKENS_FILE": str(run_dir / "distinct.tokens")}

    def template(name):
        text = (HERE / "peers" / name).read_text().replace("RUN_DIR", str(run_dir)).replace("KEY_DIR", str(run_dir))
        text = text.replace("JWKS_JSON", json.dumps(jwks))
        out = run_dir / name
        out.write_text(text)
        return out

    upstream = Process("nginx-upstream", ["nginx", "-c", str(template("nginx-upstream.conf"))], run_dir)
    wait_port(UPSTREAM_PORT)
    try:
        results.append(measure("upstream directly (the ceiling)", f"http://127.0.0.1:{UPSTREAM_PORT}/", args, run_dir, upstream, rs))

        # The closest comparison, nginx proxying against Portvakt validating, is measured in
        # alternating rounds: this machine's speed drifts by more than the gap between them.
        nginx_rounds, portvakt_rounds = [], []
        for round_ in range(1, args.rounds + 1):
            nginx = Process("nginx-proxy", ["nginx", "-c", str(template("nginx-proxy.conf"))], run_dir)
            wait_port(NGINX_PORT)
            nginx_rounds.append(measure(f"nginx reverse proxy, no auth (round {round_})", f"http://127.0.0.1:{NGINX_PORT}/", args, run_dir, nginx, rs))
            nginx.stop()
            portvakt = start_portvakt(run_dir, portvakt_edge_config(run_dir, 1, True), f"portvakt-round-{round_}")
            portvakt_rounds.append(measure(f"Portvakt RS256, cache on, 1 thread (round {round_})", f"http://127.0.0.1:{PORTVAKT_PORT}/", args, run_dir, portvakt, rs))
            portvakt.stop()
        results.append(median_round("nginx reverse proxy, no auth", nginx_rounds))
        paired = median_round(PORTVAKT_BEST, portvakt_rounds)
        paired["ratios_to_nginx_by_round"] = [round(a["requests_per_second"] / b["requests_per_second"], 3)
                                              for a, b in zip(portvakt_rounds, nginx_rounds)]

        floor = Process("pingora-floor", [str(PINGORA_FLOOR), f"127.0.0.1:{PINGORA_FLOOR_PORT}", f"127.0.0.1:{UPSTREAM_PORT}", "1"], run_dir)
        wait_port(PINGORA_FLOOR_PORT)
        results.append(measure("pingora-proxy bare, no auth (Pingora's proxy engine alone)", f"http://127.0.0.1:{PINGORA_FLOOR_PORT}/", args, run_dir, floor, rs))
        floor.stop()

        haproxy = Process("haproxy", ["haproxy", "-f", str(template("haproxy.cfg"))], run_dir)
        wait_port(HAPROXY_PORT)
        results.append(measure("HAProxy jwt_verify RS256", f"http://127.0.0.1:{HAPROXY_PORT}/", args, run_dir, haproxy, rs))
        results.append(measure("HAProxy jwt_verify ES256", f"http://127.0.0.1:{HAPROXY_PORT}/", args, run_dir, haproxy, es))
        haproxy.stop()

        envoy = Process("envoy", [args.envoy, "-c", str(template("envoy.yaml")), "--concurrency", "1", "--base-id", "7", "--log-level", "warn"], run_dir)
        wait_port(ENVOY_PORT, deadline=60)
        results.append(measure("Envoy jwt_authn RS256", f"http://127.0.0.1:{ENVOY_PORT}/", args, run_dir, envoy, rs))
        results.append(measure("Envoy jwt_authn ES256", f"http://127.0.0.1:{ENVOY_PORT}/", args, run_dir, envoy, es))
        envoy.stop()

        for threads in (1, 2):
            for cache in (True, False):
                portvakt = start_portvakt(run_dir, portvakt_edge_config(run_dir, threads, cache), f"portvakt-{threads}-{cache}")
                suffix = f"{threads} thread{'s' if threads > 1 else ''}"
                state = "cache on" if cache else "cache off"
                if (threads, cache) == (1, True):
                    results.append(paired)
                else:
                    results.append(measure(f"Portvakt RS256, {state}, {suffix}", f"http://127.0.0.1:{PORTVAKT_PORT}/", args, run_dir, portvakt, rs))
                if threads == 1:
                    results.append(measure(f"Portvakt ES256, {state}, {suffix}", f"http://127.0.0.1:{PORTVAKT_PORT}/", args, run_dir, portvakt, es))
                portvakt.stop()
        # Distinct tokens: a small cache, so almost every request is a miss (the hit ratio is kept).
        portvakt = start_portvakt(run_dir, portvakt_edge_config(run_dir, 1, True, cache_entries=1000), "portvakt-distinct")
        result = measure(f"Portvakt RS256, {args.distinct_tokens} distinct tokens (cache misses), 1 thread",
                         f"http://127.0.0.1:{PORTVAKT_PORT}/", args, run_dir, portvakt, distinct)
        metrics = urlopen(f"http://127.0.0.1:{PORTVAKT_ADMIN}/metrics")
        result["cache_hit_ratio"] = hit_ratio(metrics)
        results.append(result)
        portvakt.stop()
    finally:
        upstream.stop()


def urlopen(url, data=None, headers=None):
    import urllib.request
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def hit_ratio(metrics):
    values = {}
    for line in metrics.splitlines():
        for result in ("hit", "miss"):
            if line.startswith(f'portvakt_validation_cache_total{{result="{result}"}}'):
                values[result] = float(line.split()[-1])
    total = values.get("hit", 0) + values.get("miss", 0)
    return round(values.get("hit", 0) / total, 3) if total else None


def stack_config(run_dir):
    """The default config for the KRR and issuer cases: no rate limits (they would cap the
    measurement), no access log, and a client-credentials client for the issuer comparison."""
    config_dir = run_dir / "config"
    if config_dir.exists():
        shutil.rmtree(config_dir)
    shutil.copytree(ROOT / "config", config_dir)
    text = (config_dir / "portvakt.toml").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("rate_limit"))
    text = text.replace("access_log = true", "access_log = false").replace('level = "info"', 'level = "warn"')
    text = text.replace("[server]\n", f'[server]\nupgrade_socket = "{run_dir}/stack-upgrade.sock"\npid_file = "{run_dir}/stack.pid"\n')
    text = text.replace("grace_period_seconds = 3", "grace_period_seconds = 0")
    text += """
[[issuer.clients]]
client_id = "bench-client"
integration_type = "maskinporten"
auth_methods = ["client_secret_basic"]
client_secret = "bench-secret"
orgno = "991825827"
scopes = ["global/kontaktinformasjon.read"]
"""
    (config_dir / "portvakt.toml").write_text(text)
    return config_dir / "portvakt.toml"


def stack_cases(args, run_dir, results):
    for port in (8080, 9000, 9100, 9901):
        wait_free(port)
    stack = Process("portvakt-stack", [str(PORTVAKT), "serve", "--config", str(stack_config(run_dir))], run_dir, cwd=ROOT)
    try:
        start = time.monotonic()
        while "true" not in (urlopen_quiet("http://127.0.0.1:9901/readyz") or ""):
            if time.monotonic() - start > 30:
                raise RuntimeError("the stack never became ready")
            time.sleep(0.05)
        token = subprocess.run([str(PORTVAKT), "token", "--scope", "global/kontaktinformasjon.read", "--scope", "global/varslingsstatus.read",
                                "--scope", "global/sikkerdigitalpost.read", "--scope", "global/sertifikat.read"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        (run_dir / "machine.token").write_text(token + "\n")
        register = json.loads((ROOT / "config" / "register.json").read_text())
        ids = [p["personidentifikator"] for p in register["persons"][:1000]]
        behov = "".join(f"<ns:informasjonsbehov>{b}</ns:informasjonsbehov>" for b in ["Person", "Kontaktinfo", "Sertifikat", "SikkerDigitalPost", "VarslingsStatus"])
        for n in (1, 1000):
            (run_dir / f"rest-{n}.json").write_text(json.dumps({"personidentifikatorer": ids[:n]}))
            envelope = ('<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" '
                        'xmlns:ns="http://kontaktinfo.difi.no/xsd/oppslagstjeneste/16-02"><env:Header/><env:Body><ns:HentPersonerForespoersel>'
                        + behov + "".join(f"<ns:personidentifikator>{i}</ns:personidentifikator>" for i in ids[:n])
                        + "</ns:HentPersonerForespoersel></env:Body></env:Envelope>")
            (run_dir / f"soap-{n}.xml").write_text(envelope)
            rest_env = {"WRK_SCRIPT": str(HERE / "wrk-tokens.lua"), "TOKENS_FILE": str(run_dir / "machine.token"),
                        "BODY_FILE": str(run_dir / f"rest-{n}.json"), "METHOD": "POST"}
            soap_env = {"WRK_SCRIPT": str(HERE / "wrk-tokens.lua"), "TOKENS_FILE": str(run_dir / "machine.token"),
                        "BODY_FILE": str(run_dir / f"soap-{n}.xml"), "METHOD": "POST", "CONTENT_TYPE": "application/soap+xml; charset=utf-8"}
            results.append(measure(f"KRR: SOAP directly to the simulator, {n} person{'s' if n > 1 else ''}",
                                   "http://127.0.0.1:9100/kontaktinfo-external/ws-v5", args, run_dir, stack, soap_env))
            # A request signed as the facade signs it (its Timestamp lives 120 s, so it is made
            # just before the case): the simulator verifies it and answers signed and encrypted.
            (run_dir / f"ids-{n}.json").write_text(json.dumps(ids[:n]))
            # Each signed request is taken once: enough distinct ones for the warm-up and the run.
            count = 30000 if n == 1 else 3000
            subprocess.run([str(LOADGEN), "sign-soap", "--ids", str(run_dir / f"ids-{n}.json"), "--count", str(count),
                            "--out", str(run_dir / f"soap-signed-{n}.lines")], cwd=ROOT, check=True)
            signed_env = {k: v for k, v in soap_env.items() if k != "BODY_FILE"}
            signed_env.update(BODIES_FILE=str(run_dir / f"soap-signed-{n}.lines"), THREADS=str(args.threads))
            results.append(measure(f"KRR: signed SOAP directly to the simulator (WS-Security both ways), {n} person{'s' if n > 1 else ''}",
                                   "http://127.0.0.1:9100/kontaktinfo-external/ws-v5", args, run_dir, stack, signed_env))
            results.append(measure(f"KRR: REST through Portvakt (REST→signed SOAP→REST), {n} person{'s' if n > 1 else ''}",
                                   "http://127.0.0.1:8080/rest/v1/personer", args, run_dir, stack, rest_env))

        # The issuer: JWT-bearer grants (each assertion used once), client credentials, logins.
        results.append(loadgen_case(GRANTS, ["grants", "--issuer-id", "http://127.0.0.1:9000", "--endpoint", "http://127.0.0.1:9000/token"], args, stack))
        (run_dir / "cc.forms").write_text("grant_type=client_credentials&scope=global%2Fkontaktinformasjon.read\n")
        cc_env = {"WRK_SCRIPT": str(HERE / "wrk-form.lua"), "FORMS_FILE": str(run_dir / "cc.forms"),
                  "BASIC_AUTH": base64.b64encode(b"bench-client:bench-secret").decode()}
        results.append(measure("Issuer: client credentials (Portvakt, RS256 tokens)", "http://127.0.0.1:9000/token", args, run_dir, stack, cc_env))
        results.append(loadgen_case(LOGINS, ["logins", "--issuer", "http://127.0.0.1:9000"], args, stack))
    finally:
        stack.stop()

    if args.redis:
        redis_cases(args, run_dir, results)

    if args.node_provider:
        wait_free(9200)
        node = Process("oidc-provider", ["node", str(HERE / "oidc-provider" / "server.js")], run_dir, cwd=HERE / "oidc-provider")
        try:
            wait_port(9200)
            (run_dir / "node-cc.forms").write_text("grant_type=client_credentials&scope=bench%3Aread\n")
            env = {"WRK_SCRIPT": str(HERE / "wrk-form.lua"), "FORMS_FILE": str(run_dir / "node-cc.forms"),
                   "BASIC_AUTH": base64.b64encode(b"bench-client:bench-secret").decode()}
            results.append(measure("Issuer: client credentials (node-oidc-provider, RS256 JWT tokens)", "http://127.0.0.1:9200/token", args, run_dir, node, env))
        finally:
            node.stop()


GRANTS = "Issuer: JWT-bearer grants (Portvakt, RS256 x5c, RS256 tokens)"
LOGINS = "Issuer: authorization-code logins (authorize, login form, code + PKCE → tokens)"


def loadgen_case(case, command, args, process=None):
    """Run the issuer's load generator (assertions signed in rounds as the load runs, only the
    sending measured; logins through the form). Errors make the case failed: no ratio uses it."""
    log(f"{case}")
    cpu_before = process.cpu_seconds() if process else None
    out = subprocess.run([str(LOADGEN), *command, "--seconds", str(args.duration), "--concurrency", str(max(args.connections // 5, 1))],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    line = next((l for l in out.stdout.splitlines() if l.startswith("LOADGEN_JSON ")), None)
    if line is None:
        log(f"  failed: {out.stderr.strip()[:300]}")
        return {"case": case, "requests_per_second": 0, "p50_ms": None, "p99_ms": None, "p999_ms": None,
                "requests": 0, "errors": 1, "failed": out.stderr.strip()[:300] or "the load generator printed nothing"}
    figures = json.loads(line[len("LOADGEN_JSON "):])
    result = {"case": case, "requests_per_second": round(figures["per_second"], 1), "p50_ms": round(figures["p50_ms"], 3),
              "p99_ms": round(figures["p99_ms"], 3), "p999_ms": None, "requests": figures["completed"], "errors": figures["errors"]}
    cpu_after = process.cpu_seconds() if process else None
    if cpu_before is not None and cpu_after is not None and figures["completed"]:
        # The issuer's CPU while sending and (for grants) while idle between rounds: per request.
        result["cpu_us_per_request"] = round((cpu_after - cpu_before) * 1e6 / figures["completed"], 1)
    if figures["errors"]:
        result["failed"] = f"{figures['errors']} errors, the first: {figures['first_error']}"
        log(f"  FAILED: {result['failed'][:200]}")
    else:
        log(f"  {result['requests_per_second']} /s, p99 {result['p99_ms']} ms")
    return result


def instance_config(run_dir, name, ports, issuer_id, redis_port=None):
    """The stack config of `stack_config` on `ports` (gateway, issuer, simulator, admin) with
    the issuer identifier `issuer_id`, its state in the Redis at `redis_port` when given."""
    text = stack_config(run_dir).read_text()
    gateway, issuer, simulator, admin = ports
    text = text.replace('issuer = "http://127.0.0.1:9000"', 'issuer = "ISSUER_ID"')
    text = (text.replace("127.0.0.1:9000", f"127.0.0.1:{issuer}").replace("127.0.0.1:8080", f"127.0.0.1:{gateway}")
            .replace("127.0.0.1:9100", f"127.0.0.1:{simulator}").replace("127.0.0.1:9901", f"127.0.0.1:{admin}")
            .replace("ISSUER_ID", issuer_id))
    text = text.replace("stack-upgrade.sock", f"{name}-upgrade.sock").replace("stack.pid", f"{name}.pid")
    if redis_port:
        text += f'\n[issuer.store.redis]\nurl = "redis://127.0.0.1:{redis_port}"\n'
    # Outside config/ (stack_config rewrites that folder); relative paths resolve from there.
    path = run_dir / f"{name}.toml"
    path.write_text(text.replace('= "dev/', f'= "{run_dir}/config/dev/').replace('["dev/', f'["{run_dir}/config/dev/')
                    .replace('"register.json"', f'"{run_dir}/config/register.json"'))
    return path


def start_ready(name, config, admin_port, run_dir):
    process = Process(name, [str(PORTVAKT), "serve", "--config", str(config)], run_dir, cwd=ROOT)
    start = time.monotonic()
    while "true" not in (urlopen_quiet(f"http://127.0.0.1:{admin_port}/readyz") or ""):
        if time.monotonic() - start > 30:
            process.stop()
            raise RuntimeError(f"{name} never became ready")
        time.sleep(0.05)
    return process


def median_of(case, rounds):
    """A case's median round by requests per second, every round's figure beside it; any round
    with errors makes the case failed."""
    ordered = sorted(rounds, key=lambda r: r["requests_per_second"])
    result = dict(ordered[len(ordered) // 2], case=case)
    result["rounds"] = [r["requests_per_second"] for r in rounds]
    failed = [r["failed"] for r in rounds if r.get("failed")]
    if failed:
        result["failed"] = failed[0]
    result["errors"] = sum(r["errors"] for r in rounds)
    return result


def redis_cases(args, run_dir, results):
    """The issuer with its state in Redis (append-only file, fsync every second) against the
    same issuer in memory, both running, measured in alternating rounds (the machine's speed
    drifts more than the difference); then two instances on Redis against one."""
    redis_port = 6391
    wait_free(redis_port)
    data = run_dir / "redis"
    data.mkdir(exist_ok=True)
    redis = Process("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(data),
                              "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"], run_dir)
    memory_ports, a_ports, b_ports = (8082, 9002, 9102, 9903), (8080, 9000, 9100, 9901), (8081, 9001, 9101, 9902)
    started = []
    try:
        wait_port(redis_port)
        for port in memory_ports + a_ports + b_ports:
            wait_free(port)
        memory = start_ready("portvakt-memory", instance_config(run_dir, "memory", memory_ports, "http://127.0.0.1:9002"), 9903, run_dir)
        started.append(memory)
        a = start_ready("portvakt-redis-a", instance_config(run_dir, "redis-a", a_ports, "http://127.0.0.1:9000", redis_port), 9901, run_dir)
        started.append(a)
        targets = {"memory": ("http://127.0.0.1:9002", memory), "redis": ("http://127.0.0.1:9000", a)}
        rounds = {(kind, store): [] for kind in ("grants", "logins") for store in targets}
        for _ in range(args.rounds):
            for store, (base, process) in targets.items():
                rounds[("grants", store)].append(loadgen_case(f"{GRANTS} [{store}]", ["grants", "--issuer-id", base, "--endpoint", f"{base}/token"], args, process))
                rounds[("logins", store)].append(loadgen_case(f"{LOGINS} [{store}]", ["logins", "--issuer", base], args, process))
        results.append(median_of(GRANTS + ", in memory (paired with Redis)", rounds[("grants", "memory")]))
        results.append(median_of(GRANTS + ", state in Redis", rounds[("grants", "redis")]))
        results.append(median_of(LOGINS + ", in memory (paired with Redis)", rounds[("logins", "memory")]))
        results.append(median_of(LOGINS + ", state in Redis", rounds[("logins", "redis")]))
        memory.stop()
        b = start_ready("portvakt-redis-b", instance_config(run_dir, "redis-b", b_ports, "http://127.0.0.1:9000", redis_port), 9902, run_dir)
        started.append(b)
        both = ["--endpoint", "http://127.0.0.1:9000/token", "--endpoint", "http://127.0.0.1:9001/token"]
        results.append(loadgen_case(GRANTS + ", two instances on Redis", ["grants", "--issuer-id", "http://127.0.0.1:9000"] + both, args))
        results.append(loadgen_case(LOGINS + ", two instances on Redis (code redeemed at the other)",
                                    ["logins", "--issuer", "http://127.0.0.1:9000", "--issuer", "http://127.0.0.1:9001"], args))
    finally:
        for process in started:
            process.stop()
        redis.stop()


def urlopen_quiet(url):
    try:
        return urlopen(url)
    except Exception:  # noqa: BLE001 - readiness polling
        return None


def find(results, case):
    return next((r for r in results if r["case"] == case), None)


def ratios(results):
    """The ratios the goals are stated in, all from this run."""
    out = {}

    def ratio(name, ours, theirs):
        a, b = find(results, ours), find(results, theirs)
        failed = [r for r in (a, b) if r and (r.get("failed") or r.get("errors"))]
        if failed:
            out[name] = {"failed": "; ".join(f"{r['case']}: {r.get('failed') or str(r['errors']) + ' errors'}" for r in failed),
                         "ours": ours, "theirs": theirs}
        elif a and b and b["requests_per_second"]:
            out[name] = {"ratio": round(a["requests_per_second"] / b["requests_per_second"], 2),
                         "ours": ours, "theirs": theirs, "p99_ours_ms": a["p99_ms"], "p99_theirs_ms": b["p99_ms"]}

    best = PORTVAKT_BEST
    ratio("vs HAProxy jwt_verify (goal ≥ 1.5)", best, "HAProxy jwt_verify RS256")
    ratio("vs Envoy jwt_authn (goal ≥ 2.5)", best, "Envoy jwt_authn RS256")
    ratio("vs nginx plain proxying (goal ≥ 0.8)", best, "nginx reverse proxy, no auth")
    by_round = (find(results, best) or {}).get("ratios_to_nginx_by_round")
    if by_round and "vs nginx plain proxying (goal ≥ 0.8)" in out:
        out["vs nginx plain proxying (goal ≥ 0.8)"]["by_round"] = by_round
    ratio("vs pingora-proxy bare, no auth", best, "pingora-proxy bare, no auth (Pingora's proxy engine alone)")
    ratio("cache off vs HAProxy jwt_verify", "Portvakt RS256, cache off, 1 thread", "HAProxy jwt_verify RS256")
    ratio("cache off vs Envoy jwt_authn", "Portvakt RS256, cache off, 1 thread", "Envoy jwt_authn RS256")
    ratio("ES256 cache off vs HAProxy ES256", "Portvakt ES256, cache off, 1 thread", "HAProxy jwt_verify ES256")
    ratio("ES256 cache off vs Envoy ES256", "Portvakt ES256, cache off, 1 thread", "Envoy jwt_authn ES256")
    for n in ("1 person", "1000 persons"):
        ratio(f"KRR {n}: through Portvakt vs plain SOAP directly", f"KRR: REST through Portvakt (REST→signed SOAP→REST), {n}", f"KRR: SOAP directly to the simulator, {n}")
        ratio(f"KRR {n}: through Portvakt vs signed SOAP directly", f"KRR: REST through Portvakt (REST→signed SOAP→REST), {n}", f"KRR: signed SOAP directly to the simulator (WS-Security both ways), {n}")
    ratio("issuer client credentials vs node-oidc-provider", "Issuer: client credentials (Portvakt, RS256 tokens)", "Issuer: client credentials (node-oidc-provider, RS256 JWT tokens)")
    ratio("issuer JWT-bearer grants vs node-oidc-provider client credentials", GRANTS, "Issuer: client credentials (node-oidc-provider, RS256 JWT tokens)")
    ratio("grants: state in Redis vs in memory (goal ≥ 0.8)", GRANTS + ", state in Redis", GRANTS + ", in memory (paired with Redis)")
    ratio("logins: state in Redis vs in memory (goal ≥ 0.8)", LOGINS + ", state in Redis", LOGINS + ", in memory (paired with Redis)")
    for name in ("grants: state in Redis vs in memory (goal ≥ 0.8)", "logins: state in Redis vs in memory (goal ≥ 0.8)"):
        if name in out and "ratio" in out[name]:
            ours, theirs = find(results, out[name]["ours"]), find(results, out[name]["theirs"])
            out[name]["by_round"] = [round(x / y, 3) for x, y in zip(ours["rounds"], theirs["rounds"]) if y]
    ratio("grants: two instances vs one, on Redis", GRANTS + ", two instances on Redis", GRANTS + ", state in Redis")
    ratio("logins: two instances vs one, on Redis", LOGINS + ", two instances on Redis (code redeemed at the other)", LOGINS + ", state in Redis")
    return out


def machine():
    model = ""
    try:
        model = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        kib = int(next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")))
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    def version(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "not found"
    return {"cpu": model, "cores": os.cpu_count(), "memory": memory, "kernel": platform.release(),
            "nginx": version(["nginx", "-v"]), "haproxy": version(["haproxy", "-v"]), "wrk": version(["wrk", "--version"]),
            "envoy": version([ARGS.envoy, "--version"]) if ARGS.envoy else "not found", "node": version(["node", "--version"])}


def markdown(report):
    lines = [f"Run {report['started']} on {report['machine']['cpu']} ({report['machine']['cores']} cores, {report['machine']['memory']}, "
             f"Linux {report['machine']['kernel']}). Load: `{report['load']}`; every proxy has one worker thread unless the case says otherwise.", "",
             "| case | requests/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | errors |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["results"]:
        cpu = r.get("cpu_us_per_request", "")
        extra = f" (cache hit ratio {r['cache_hit_ratio']})" if r.get("cache_hit_ratio") is not None else ""
        if r.get("rounds_requests_per_second"):
            extra += f" (median of {len(r['rounds_requests_per_second'])} alternating rounds: " + ", ".join(f"{v:,}" for v in r["rounds_requests_per_second"]) + ")"
        lines.append(f"| {r['case']}{extra} | {r['requests_per_second']:,} | {r['p50_ms']} | {r['p99_ms']} | {r['p999_ms'] if r['p999_ms'] is not None else ''} | {cpu} | {r['errors']} |")
    lines += ["", "| ratio (same run) | value | p99 ours / theirs (ms) |", "| --- | ---: | --- |"]
    for name, r in report["ratios"].items():
        if "failed" in r:
            lines.append(f"| {name} | **failed**: {r['failed'][:200]} | |")
            continue
        rounds = f" (rounds: {', '.join(f'{v}×' for v in r['by_round'])})" if r.get("by_round") else ""
        lines.append(f"| {name}{rounds} | {r['ratio']}× | {r['p99_ours_ms']} / {r['p99_theirs_ms']} |")
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items() if k in ("nginx", "haproxy", "envoy", "wrk", "node")) + "."]
    return "\n".join(lines) + "\n"


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=8, help="seconds of measured load per case")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of nginx and Portvakt (the closest comparison)")
    parser.add_argument("--distinct-tokens", type=int, default=4000)
    parser.add_argument("--redis", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the issuer with its state in Redis, one instance and two")
    parser.add_argument("--envoy", default=shutil.which("envoy") or "")
    parser.add_argument("--node-provider", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--only", choices=["edge", "stack"], default=None)
    ARGS = args = parser.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    run_dir = HERE / "results" / started.strftime("run-%Y%m%dT%H%M%SZ")
    run_dir.mkdir(parents=True)
    results = []
    if args.only in (None, "edge"):
        edge_cases(args, run_dir, results)
    if args.only in (None, "stack"):
        stack_cases(args, run_dir, results)
    report = {
        "started": started.isoformat(timespec="seconds"),
        "command": os.environ.get("BENCH_COMMAND") or " ".join(["benches/load/bench.py"] + sys.argv[1:]),
        "load": f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s (after {args.warmup} s of warm-up)",
        "machine": machine(),
        "results": results,
        "ratios": ratios(results),
    }
    (run_dir / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    table = markdown(report)
    (run_dir / "results.md").write_text(table)
    shutil.copy(run_dir / "results.json", HERE / "results" / "latest.json")
    write_docs(report, table)
    print(table)


def write_docs(report, table):
    docs = ROOT / "docs" / "benchmarks.md"
    intro = (docs.read_text().split("<!-- results -->")[0] if docs.exists() else "# Benchmarks\n\n")
    docs.write_text(intro + "<!-- results -->\n\n" + f"Command: `{report['command']}`\n\n" + table)
    (ROOT / "docs" / "benchmarks.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
