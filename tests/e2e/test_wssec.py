"""WS-Security at the simulator, against independent implementations: zeep (its WS-Security
signature, on libxmlsec1) and python-xmlsec sign requests that the simulator accepts; libxmlsec1
decrypts its answers (with the content key `cryptography` unwraps) and python-xmlsec, signxml and
the xmlsec1 tool verify them. Its refusals carry the WS-Security 1.1 fault codes."""

import copy
import datetime

import pytest
import xmlsec
from lxml import etree
from zeep import Client

from conftest import SIMULATOR, register_cases
from wssec_tools import (
    DEV,
    NS,
    decrypt_answer,
    der_base64,
    fault_of,
    made_certificate,
    pem,
    post,
    signature_value,
    verify_with_signxml,
    verify_with_xmlsec,
    verify_with_xmlsec1,
    xmlsec_signed_request,
    zeep_request,
)


def test_zeep_signed_requests_get_answers_that_libxmlsec1_decrypts_and_three_verifiers_accept(stack, tmp_path):
    pid = register_cases()["active, e-mail and mobile, mailbox and certificate"]
    request = zeep_request(pid)
    answer = post(SIMULATOR, request)
    assert answer.status_code == 200, answer.text
    assert pid.encode() not in answer.content, "the answer's Body is encrypted"
    doc = decrypt_answer(etree.fromstring(answer.content), pem("krr-facade.key.pem"))
    security = doc.find("env:Header/wsse:Security", NS)
    # §5.5's header order.
    assert [etree.QName(child).localname for child in security] == [
        "EncryptedKey",
        "BinarySecurityToken",
        "Signature",
        "Timestamp",
        "SignatureConfirmation",
    ]
    confirmation = security.find("wsse11:SignatureConfirmation", NS)
    assert confirmation.get("Value") == signature_value(request)
    token = security.find("wsse:BinarySecurityToken", NS).text
    assert token == der_base64(pem("oppslag-server.cert.pem"))
    verify_with_xmlsec(doc, pem("oppslag-server.cert.pem"), 3)
    verify_with_signxml(doc, pem("oppslag-server.cert.pem"), 3)
    verify_with_xmlsec1(
        etree.tostring(doc),
        DEV / "oppslag-server.cert.pem",
        tmp_path,
        [("env", "Body"), ("wsu", "Timestamp"), ("wsse11", "SignatureConfirmation")],
    )
    person = doc.find("env:Body/ns:HentPersonerRespons/m:Person", NS)
    assert person.find("m:personidentifikator", NS).text == pid
    assert person.find("m:Kontaktinformasjon/m:Epostadresse", NS).text


def test_an_unsigned_request_still_gets_a_plain_answer(stack):
    client = Client(f"{SIMULATOR}?wsdl")
    envelope = client.create_message(
        client.service, "HentPersoner", informasjonsbehov=["Person"], personidentifikator=["23079421936"]
    )
    answer = post(SIMULATOR, envelope)
    assert answer.status_code == 200
    assert b"EncryptedData" not in answer.content and b"23079421936" in answer.content


@pytest.mark.parametrize(
    "digest, prefix_list",
    [
        (xmlsec.constants.TransformSha1, None),
        (xmlsec.constants.TransformSha256, None),
        (xmlsec.constants.TransformSha256, ["env", "#default"]),
    ],
)
def test_a_dotnet_style_request_signed_by_python_xmlsec_is_accepted(stack, digest, prefix_list):
    request = xmlsec_signed_request("23079421936", "991825827", digest, prefix_list)
    answer = post(SIMULATOR, request)
    assert answer.status_code == 200, answer.text
    doc = decrypt_answer(etree.fromstring(answer.content), pem("krr-facade.key.pem"))
    verify_with_xmlsec(doc, pem("oppslag-server.cert.pem"), 3)
    assert doc.find(".//m:Person/m:personidentifikator", NS).text == "23079421936"


def test_the_simulator_refuses_bad_security_headers_with_ws_security_fault_codes(stack):
    pid = "23079421936"
    sender = "env:Sender"
    # rsa-sha1 (zeep's own default) is refused.
    answer = post(SIMULATOR, zeep_request(pid, signature_method=xmlsec.constants.TransformRsaSha1))
    assert fault_of(answer)[:2] == (sender, "wsse:InvalidSecurity")
    # A Body changed after signing.
    tampered = etree.tostring(zeep_request(pid)).replace(pid.encode(), b"08077000292")
    code, subcode, reason = fault_of(post(SIMULATOR, tampered))
    assert (code, subcode) == (sender, "wsse:FailedCheck") and "not valid" in reason
    # A Timestamp that expired long ago.
    stale = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    code, subcode, _ = fault_of(post(SIMULATOR, zeep_request(pid, created=stale)))
    assert (code, subcode) == (sender, "wsu:MessageExpired")
    # A certificate from another CA, and an expired one from the right CA.
    key, cert = made_certificate()
    code, subcode, reason = fault_of(post(SIMULATOR, zeep_request(pid, key=key, cert=cert)))
    assert (code, subcode) == (sender, "wsse:FailedAuthentication") and "trusted CA" in reason
    key, cert = made_certificate(pem("test-ca.key.pem"), pem("test-ca.cert.pem"), days=(-30, -1))
    code, subcode, _ = fault_of(post(SIMULATOR, zeep_request(pid, key=key, cert=cert)))
    assert (code, subcode) == (sender, "wsse:FailedAuthentication")
    # The signed Body wrapped into a header, a forged one in its place.
    doc = zeep_request(pid)
    body = doc.find("env:Body", NS)
    forged = copy.deepcopy(body)
    forged.attrib.pop(f"{{{NS['wsu']}}}Id")
    forged.find(".//ns:personidentifikator", NS).text = "08077000292"
    wrapper = etree.SubElement(doc.find("env:Header", NS), "{urn:w}Wrap")
    doc.remove(body)
    wrapper.append(body)
    doc.append(forged)
    code, subcode, reason = fault_of(post(SIMULATOR, doc))
    assert (code, subcode) == (sender, "wsse:FailedCheck") and "not one of the parts the signature must cover" in reason
