"""The three access patterns on the default stack, each driven by a client library not written
here: joserfc signs the Maskinporten grant, authlib runs the citizen login (OAuth2 + PKCE),
zeep speaks SOAP to the simulator from its WSDL, requests does HTTP."""

from html.parser import HTMLParser
from urllib.parse import urljoin

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.common.security import generate_token
from zeep import Client

from conftest import ADMIN, GATEWAY, ISSUER, SIMULATOR, jwt_claims, machine_token, register_cases

KRR_GLOBAL = [
    "global/kontaktinformasjon.read",
    "global/varslingsstatus.read",
    "global/sikkerdigitalpost.read",
    "global/sertifikat.read",
]


class Forms(HTMLParser):
    """The forms of a page as served: action and every named input with its value."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action", ""), "fields": {}})
        elif tag == "input" and self.forms and attrs.get("name"):
            self.forms[-1]["fields"][attrs["name"]] = attrs.get("value", "")


def forms(html):
    parser = Forms()
    parser.feed(html)
    return parser.forms


def log_in(browser, url, pid, acr):
    """Open the authorization URL and submit the test IdP's login form; return the redirect."""
    page = browser.get(url, allow_redirects=False)
    if page.status_code == 303:  # an SSO session answered without the form
        return page.headers["location"]
    assert page.status_code == 200, page.text
    form = next(f for f in forms(page.text) if f["action"] == "/authorize/login")
    fields = dict(form["fields"], pid=pid, acr=acr)
    answer = browser.post(urljoin(ISSUER, form["action"]), data=fields, allow_redirects=False)
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def citizen_session(scope, pid, acr="Level3", prompt_login=False):
    """demo-rp's login with authlib: authorization code + PKCE S256 through the login form."""
    session = OAuth2Session(
        "demo-rp",
        "demo-rp-secret",
        scope=scope,
        redirect_uri="http://127.0.0.1:8765/callback",
        code_challenge_method="S256",
    )
    verifier = generate_token(64)
    extra = {"prompt": "login"} if prompt_login else {}
    url, state = session.create_authorization_url(f"{ISSUER}/authorize", code_verifier=verifier, acr_values=acr, **extra)
    location = log_in(requests.Session(), url, pid, acr)
    token = session.fetch_token(f"{ISSUER}/token", authorization_response=location, code_verifier=verifier, state=state)
    return session, token


def test_a_machine_token_and_a_krr_lookup(stack):
    cases = register_cases()
    full = cases["active, e-mail and mobile, mailbox and certificate"]
    reserved = cases["reserved (reservasjon JA)"]
    deleted = cases["deleted (SLETTET)"]
    token = machine_token(KRR_GLOBAL)
    answer = requests.post(
        f"{GATEWAY}/rest/v1/personer",
        json={"personidentifikatorer": [full, reserved, deleted]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    full_person, reserved_person, deleted_person = answer.json()["personer"]
    assert full_person["varslingsstatus"] == "KAN_VARSLES"
    assert {"kontaktinformasjon", "digital_post", "sertifikat"} <= full_person.keys()
    assert reserved_person["reservasjon"] == "JA" and "kontaktinformasjon" not in reserved_person
    assert deleted_person == {"personidentifikator": deleted, "status": "SLETTET", "varslingsstatus": "KAN_IKKE_VARSLES"}
    # With fewer scopes, fewer fields.
    contact_only = machine_token(["global/kontaktinformasjon.read"], kid=True)
    answer = requests.post(
        f"{GATEWAY}/rest/v1/personer",
        json={"personidentifikatorer": [full]},
        headers={"Authorization": f"Bearer {contact_only}"},
        timeout=10,
    )
    person = answer.json()["personer"][0]
    assert "kontaktinformasjon" in person and "sertifikat" not in person and "varslingsstatus" not in person


def test_a_citizen_logs_in_and_reads_their_own_entry(stack):
    pid = register_cases()["active, e-mail only"]
    session, token = citizen_session("openid profile user/kontaktinformasjon.read user/varslingsstatus.read", pid)
    assert jwt_claims(token["id_token"])["pid"] == pid
    answer = requests.get(f"{GATEWAY}/rest/v1/person", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    person = answer.json()
    assert person["personidentifikator"] == pid
    assert "epostadresse" in person["kontaktinformasjon"] and "mobiltelefonnummer" not in person["kontaktinformasjon"]
    info = session.get(f"{ISSUER}/userinfo", timeout=10).json()
    assert info["pid"] == pid
    # The refresh token rotates.
    refreshed = session.refresh_token(f"{ISSUER}/token")
    assert refreshed["refresh_token"] != token["refresh_token"]


def test_authlevel_before_and_after_a_level4_login(stack):
    pid = register_cases()["active, mobile only"]
    token = machine_token(["global/idporten.authlevel.read"])
    url = f"{GATEWAY}/authlevel/rest/v1/sikkerhetsnivaa"
    headers = {"Authorization": f"Bearer {token}"}

    def ask(body, **extra):
        return requests.post(url, json=body, headers=dict(headers, **extra), timeout=10)

    assert ask({"personidentifikator": pid}).status_code == 404, "never logged in"
    citizen_session("openid", pid, acr="Level3")
    assert ask({"personidentifikator": pid}).json() == {"personidentifikator": pid, "harbruktnivaa4": False}
    citizen_session("openid", pid, acr="Level4", prompt_login=True)
    assert ask({"personidentifikator": pid}).json() == {"personidentifikator": pid, "harbruktnivaa4": True}
    assert ask({"personidentifikator": pid, "fraDato": "2020-01-01"}).json()["harbruktnivaa4"] is True
    # Bad bodies are 400s naming the problem.
    for body, words in [
        ({"personidentifikator": pid, "fraDato": "2999-01-01"}, "future"),
        ({"personidentifikator": pid, "fraDato": "01.01.2020"}, "not a date"),
        ({"personidentifikator": "12345678900"}, "check digits"),
        ({}, "personidentifikator"),
    ]:
        answer = ask(body)
        assert answer.status_code == 400, body
        assert words in answer.json()["error_description"], answer.text
    wrong_type = requests.post(url, data="personidentifikator=1", headers=dict(headers, **{"Content-Type": "text/plain"}), timeout=10)
    assert wrong_type.status_code == 400
    # The wrong scope, and no token at all.
    krr_token = machine_token(["global/kontaktinformasjon.read"])
    answer = requests.post(url, json={"personidentifikator": pid}, headers={"Authorization": f"Bearer {krr_token}"}, timeout=10)
    assert answer.status_code == 403 and answer.json()["error"] == "insufficient_scope"
    assert requests.post(url, json={"personidentifikator": pid}, timeout=10).status_code == 401


def test_the_simulator_answers_an_independent_soap_client(stack):
    client = Client(f"{SIMULATOR}?wsdl")
    case = register_cases()["active, e-mail and mobile, mailbox and certificate"]
    answer = client.service.HentPersoner(
        informasjonsbehov=["Kontaktinfo", "SikkerDigitalPost", "VarslingsStatus"],
        personidentifikator=[case, "23079421936"],
    )
    registered, unknown = answer
    assert registered.personidentifikator == case
    assert registered.status == "AKTIV" and registered.varslingsstatus == "KAN_VARSLES"
    assert registered.Kontaktinformasjon.Epostadresse._value_1
    assert registered.SikkerDigitalPostAdresse.postkasseleverandoerAdresse
    assert registered.X509Sertifikat is None, "Sertifikat was not asked for"
    assert unknown.status == "IKKE_REGISTRERT"
    print_answer = client.service.HentPrintSertifikat()
    assert print_answer.postkasseleverandoerAdresse


def test_metrics_count_what_happened(stack):
    text = requests.get(f"{ADMIN}/metrics", timeout=5).text
    assert 'portvakt_gateway_requests_total{route="krr-personer",status="200"}' in text
    assert "portvakt_issuer_tokens_total" in text
