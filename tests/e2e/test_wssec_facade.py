"""The KRR facade's WS-Security against independent implementations: its signed requests verify
in python-xmlsec, signxml and the xmlsec1 tool; answers signed by python-xmlsec and encrypted
by libxmlsec1 are accepted, and changed ones are refused with a 502 that names the reason."""

import requests

from conftest import GATEWAY, Portvakt, machine_token, register_cases
from wssec_tools import FakeService


def test_the_facade_speaks_ws_security_with_independent_implementations(own_config, tmp_path):
    service = FakeService(tmp_path)
    text = own_config.read_text().replace(
        'soap_endpoint = "http://127.0.0.1:9100/', f'soap_endpoint = "http://127.0.0.1:{service.port}/'
    )
    own_config.write_text(text)
    portvakt = Portvakt(own_config.parent.parent, ["--config", str(own_config)], tmp_path / "log").wait_ready()
    try:
        pid = register_cases()["active, e-mail and mobile, mailbox and certificate"]
        token = machine_token(["global/kontaktinformasjon.read"])

        def lookup():
            return requests.post(
                f"{GATEWAY}/rest/v1/personer",
                json={"personidentifikatorer": [pid]},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )

        answer = lookup()
        assert answer.status_code == 200, (answer.text, service.errors)
        assert answer.json()["personer"][0]["personidentifikator"] == pid
        assert answer.json()["personer"][0]["kontaktinformasjon"]["epostadresse"]
        assert service.verified == 1
        for mode, words in [
            ("tampered", "does not decrypt to a message signed by the pinned service certificate"),
            ("unpinned", "not the pinned service certificate"),
            ("unconfirmed", "SignatureConfirmation"),
            ("other-recipient", "encrypted to another certificate"),
        ]:
            service.mode = mode
            refused = lookup()
            assert refused.status_code == 502, (mode, refused.text)
            description = refused.json()["error_description"]
            assert "WS-Security" in description and words in description, (mode, description)
            assert pid not in refused.text
        assert not service.errors, service.errors
    finally:
        portvakt.stop()
        service.stop()
