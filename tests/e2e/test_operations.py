"""Operating the stack: reload without restart, a zero-downtime upgrade under load, SIGTERM
with requests in flight. Each test runs its own process on a copy of the default config."""

import http.client
import http.server
import json
import signal
import socketserver
import threading
import time

import requests

from conftest import ADMIN, GATEWAY, Portvakt, machine_token, register_cases, wait_until


def personer(token, ids):
    return requests.post(
        f"{GATEWAY}/rest/v1/personer",
        json={"personidentifikatorer": ids},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_a_reload_changes_a_routes_scopes_and_a_bad_config_is_refused(own_config, tmp_path):
    portvakt = Portvakt(own_config.parent.parent, ["--config", str(own_config)], tmp_path / "log").wait_ready()
    try:
        pid = register_cases()["active, e-mail only"]
        contact = machine_token(["global/kontaktinformasjon.read"])
        certificate = machine_token(["global/sertifikat.read"])
        assert personer(contact, [pid]).status_code == 200
        # Narrow the KRR route to the certificate scope, then reload through the admin listener.
        text = own_config.read_text()
        start = text.index('name = "krr-personer"')
        scopes_at = text.index("scopes_any = [", start)
        end = text.index("]", scopes_at) + 1
        own_config.write_text(text[:scopes_at] + 'scopes_any = ["global/sertifikat.read"]' + text[end:])
        answer = requests.post(f"{ADMIN}/reload", timeout=10)
        assert answer.status_code == 200 and answer.json()["reloaded"], answer.text
        denied = personer(contact, [pid])
        assert denied.status_code == 403 and denied.json()["scope"] == "global/sertifikat.read"
        assert personer(certificate, [pid]).status_code == 200
        # A broken config is refused with the reason, and the running one keeps serving.
        own_config.write_text(own_config.read_text() + "\n[gateway.nonsense]\nkey = 1\n")
        answer = requests.post(f"{ADMIN}/reload", timeout=10)
        assert answer.status_code == 422
        assert "nonsense" in answer.json()["error"]
        assert personer(certificate, [pid]).status_code == 200
        assert "configuration reload refused" in portvakt.logs()
        # SIGHUP reloads too: put the scopes back.
        own_config.write_text(text)
        portvakt.signal(signal.SIGHUP)
        wait_until("the SIGHUP reload", lambda: personer(contact, [pid]).status_code == 200)
    finally:
        portvakt.stop()


def notable(log):
    """The lines of a log worth reading after a failure: warnings, errors, failed requests."""
    keep = ("WARN", "ERROR", "status=0", "status=5", "SIGQUIT", "shutdown", "grace")
    return "\n".join([line for line in log.splitlines() if any(k in line for k in keep)][-80:])


def load(token, stop, results):
    """Load until `stop` is set, each request on a fresh connection."""
    url = f"{GATEWAY}/authlevel/rest/v1/sikkerhetsnivaa"
    while not stop.is_set():
        try:
            answer = requests.post(url, json={"personidentifikator": "23079421936"}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            results.append(answer.status_code)
        except requests.RequestException as error:
            results.append(repr(error))


def test_an_upgrade_under_load_fails_no_request(own_config, tmp_path):
    root = own_config.parent.parent
    old = Portvakt(root, ["--config", str(own_config)], tmp_path / "old.log").wait_ready()
    new = None
    results, stop = [], threading.Event()
    try:
        token = machine_token(["global/idporten.authlevel.read"])
        workers = [threading.Thread(target=load, args=(token, stop, results)) for _ in range(4)]
        for worker in workers:
            worker.start()
        wait_until("some load", lambda: len(results) > 50)
        new = Portvakt(root, ["--config", str(own_config), "--upgrade"], tmp_path / "new.log")
        wait_until("the upgrade socket", lambda: (tmp_path / "upgrade.sock").exists())
        old.signal(signal.SIGQUIT)
        # The load spans the whole hand-over: both processes accepting, then the old one closing.
        assert old.wait_exit() == 0, old.logs()
        served_after = len(results)
        wait_until("load on the new process alone", lambda: len(results) > served_after + 50)
        stop.set()
        for worker in workers:
            worker.join()
        failures = [r for r in results if r != 404]
        assert len(results) > 500
        assert failures == [], (
            f"{len(failures)} of {len(results)} requests failed: {failures[:5]}\n"
            f"--- old process ---\n{notable(old.logs())}\n--- new process ---\n{notable(new.logs())}"
        )
        assert requests.post(
            f"{GATEWAY}/authlevel/rest/v1/sikkerhetsnivaa",
            json={"personidentifikator": "23079421936"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).status_code == 404, "the new process serves"
    finally:
        stop.set()
        old.stop()
        if new:
            new.stop()


class Slow(http.server.BaseHTTPRequestHandler):
    """An upstream that takes a second to answer, and counts the requests that reached it."""

    arrived = 0
    lock = threading.Lock()

    def do_GET(self):
        with Slow.lock:
            Slow.arrived += 1
        time.sleep(1)  # the upstream's own slowness, not a wait in the test
        body = b'{"slow": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def refused(url):
    try:
        requests.get(url, timeout=2)
        return False
    except requests.ConnectionError:
        return True


def test_sigterm_lets_requests_in_flight_finish_and_exits_zero(own_config, tmp_path):
    upstream = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = upstream.server_address[1]
    own_config.write_text(
        own_config.read_text()
        + f'\n[[gateway.routes]]\nname = "slow"\npath = "/slow"\nupstreams = ["http://127.0.0.1:{port}"]\ntoken = "machine"\n'
    )
    portvakt = Portvakt(own_config.parent.parent, ["--config", str(own_config)], tmp_path / "log").wait_ready()
    try:
        token = machine_token(["global/kontaktinformasjon.read"])
        results = []

        def slow_request():
            try:
                results.append(requests.get(f"{GATEWAY}/slow", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code)
            except requests.RequestException as error:
                results.append(repr(error))

        requests_in_flight = [threading.Thread(target=slow_request) for _ in range(5)]
        for request in requests_in_flight:
            request.start()
        wait_until("five requests at the upstream", lambda: Slow.arrived >= 5)
        portvakt.signal(signal.SIGTERM)
        # New connections are refused at once; the five in flight still get their answers.
        wait_until("the listener to close", lambda: refused(f"{GATEWAY}/slow"))
        for request in requests_in_flight:
            request.join()
        assert results == [200] * 5, results
        assert portvakt.wait_exit() == 0, portvakt.logs()
    finally:
        portvakt.stop()
        upstream.shutdown()


def test_ctrl_c_drains_and_a_connection_open_at_that_moment_may_still_send_its_request(own_config, tmp_path):
    portvakt = Portvakt(own_config.parent.parent, ["--config", str(own_config)], tmp_path / "log").wait_ready()
    try:
        token = machine_token(["global/idporten.authlevel.read"])
        body = json.dumps({"personidentifikator": "23079421936"})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        # One answered request proves the connection accepted; it now idles, waiting for the next.
        connection = http.client.HTTPConnection("127.0.0.1", 8080, timeout=10)
        connection.request("POST", "/authlevel/rest/v1/sikkerhetsnivaa", body=body, headers=headers)
        first = connection.getresponse()
        first.read()
        assert first.status == 404
        portvakt.signal(signal.SIGINT)
        wait_until("the listener to close", lambda: refused(f"{GATEWAY}/authlevel/rest/v1/sikkerhetsnivaa"))
        # The moment pingora-proxy would drop every connection without a request; the gateway
        # answers this one's request (then closes) instead of resetting it.
        wait_until("the listener's clean-up", lambda: "open connections get their next answer" in portvakt.logs())
        connection.request("POST", "/authlevel/rest/v1/sikkerhetsnivaa", body=body, headers=headers)
        second = connection.getresponse()
        assert second.status == 404, second.read()
        assert second.getheader("Connection", "").lower() == "close"
        connection.close()
        assert portvakt.wait_exit() == 0, portvakt.logs()
    finally:
        portvakt.stop()
