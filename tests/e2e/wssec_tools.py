"""Independent WS-Security for the end-to-end tests: signing, verifying, decrypting and
sealing SOAP messages with zeep, python-xmlsec (libxmlsec1), signxml, the xmlsec1 tool and
`cryptography`, and a stand-in Oppslagstjenesten built on them."""

import base64
import copy
import datetime
import os
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
import signxml
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from zeep import Client
from zeep.wsse.signature import BinarySignature, MemorySignature
from zeep.wsse.utils import WSU, get_security_header

from conftest import ROOT, SIMULATOR

DEV = ROOT / "config" / "dev"
NS = {
    "env": "http://www.w3.org/2003/05/soap-envelope",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
    "wsse11": "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
    "ns": "http://kontaktinfo.difi.no/xsd/oppslagstjeneste/16-02",
    "m": "http://begrep.difi.no",
}
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
SOAP = {"Content-Type": "application/soap+xml; charset=utf-8"}


def q(prefix, local):
    return etree.QName(NS[prefix], local)


def stamp(at):
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def pem(name):
    return (DEV / name).read_bytes()


def der_base64(cert_pem):
    return base64.b64encode(x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)).decode()


class TimestampedSignature(BinarySignature):
    """zeep's BinarySignature, with the wsu:Timestamp the service requires (zeep signs it)."""

    def __init__(self, key_pem, cert_pem, signature_method, digest_method, created=None, ttl=120):
        MemorySignature.__init__(self, key_pem, cert_pem, None, signature_method, digest_method)
        self.created = created
        self.ttl = ttl

    def apply(self, envelope, headers):
        security = get_security_header(envelope)
        created = self.created or datetime.datetime.now(datetime.timezone.utc)
        timestamp = WSU.Timestamp(
            WSU.Created(stamp(created)), WSU.Expires(stamp(created + datetime.timedelta(seconds=self.ttl)))
        )
        security.append(timestamp)
        return super().apply(envelope, headers)


def zeep_request(pid, key=None, cert=None, **signature):
    """A HentPersoner request built from the WSDL and signed by zeep (rsa-sha256, sha256)."""
    signer = TimestampedSignature(
        key or pem("krr-facade.key.pem"),
        cert or pem("krr-facade.cert.pem"),
        signature_method=signature.pop("signature_method", xmlsec.constants.TransformRsaSha256),
        digest_method=xmlsec.constants.TransformSha256,
        **signature,
    )
    client = Client(f"{SIMULATOR}?wsdl", wsse=signer)
    envelope = client.create_message(
        client.service, "HentPersoner", informasjonsbehov=["Kontaktinfo"], personidentifikator=[pid]
    )
    return envelope


def post(url, envelope):
    body = envelope if isinstance(envelope, bytes) else etree.tostring(envelope)
    return requests.post(url, data=body, headers=SOAP, timeout=10)


def signature_value(envelope):
    return "".join(envelope.find(".//ds:SignatureValue", NS).text.split())


def register_ids(ctx, doc):
    for node in doc.iter():
        if node.get(f"{{{NS['wsu']}}}Id"):
            ctx.register_id(node, "Id", NS["wsu"])


def verify_with_xmlsec(doc, cert_pem, references):
    """python-xmlsec (libxmlsec1): the one signature verifies with `cert_pem`, over `references`."""
    signature = doc.find(".//ds:Signature", NS)
    assert len(signature.findall("ds:SignedInfo/ds:Reference", NS)) == references
    ctx = xmlsec.SignatureContext()
    register_ids(ctx, doc)
    ctx.key = xmlsec.Key.from_memory(cert_pem, xmlsec.constants.KeyDataFormatCertPem)
    ctx.verify(signature)


def verify_with_signxml(doc, cert_pem, references):
    """signxml: pure Python XML-DSig, every reference resolved by its wsu:Id."""
    config = signxml.SignatureConfiguration(expect_references=references)
    verified = signxml.XMLVerifier().verify(
        copy.deepcopy(doc), x509_cert=cert_pem.decode(), id_attribute="Id", expect_config=config
    )
    assert len(verified) == references


def verify_with_xmlsec1(xml_bytes, cert_path, tmp_path, id_elements):
    """The xmlsec1 tool, with the wsu:Id of each signed element declared."""
    message = tmp_path / f"{uuid.uuid4()}.xml"
    message.write_bytes(xml_bytes)
    args = ["xmlsec1", "--verify", "--pubkey-cert-pem", str(cert_path)]
    for namespace, local in id_elements:
        args += ["--id-attr:Id", f"{NS[namespace]}:{local}"]
    done = subprocess.run(args + [str(message)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout + done.stderr


def decrypt_answer(doc, key_pem):
    """Unwrap the content key with `cryptography` (RSA-OAEP, MGF1-SHA1), then let libxmlsec1
    decrypt the Body's EncryptedData in place."""
    encrypted_key = doc.find(".//wsse:Security/xenc:EncryptedKey", NS)
    assert encrypted_key is not None, etree.tostring(doc)[:2000]
    method = encrypted_key.find("xenc:EncryptionMethod", NS).get("Algorithm")
    assert method == "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
    private = serialization.load_pem_private_key(key_pem, password=None)
    wrapped = base64.b64decode(encrypted_key.find("xenc:CipherData/xenc:CipherValue", NS).text)
    content_key = private.decrypt(
        wrapped, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    )
    data = doc.find("env:Body/xenc:EncryptedData", NS)
    assert data.get("Type") == "http://www.w3.org/2001/04/xmlenc#Content"
    reference = encrypted_key.find("xenc:ReferenceList/xenc:DataReference", NS).get("URI")
    assert reference == "#" + data.get("Id")
    ctx = xmlsec.EncryptionContext()
    ctx.key = xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataAes, content_key)
    ctx.decrypt(data)
    return doc


def fault_of(answer):
    doc = etree.fromstring(answer.content)
    code = doc.find(".//env:Fault/env:Code", NS)
    return (
        code.find("env:Value", NS).text,
        code.find("env:Subcode/env:Value", NS).text if code.find("env:Subcode", NS) is not None else None,
        doc.find(".//env:Fault/env:Reason/env:Text", NS).text,
    )


def xmlsec_signed_request(pid, paa_vegne_av, digest, prefix_list=None):
    """A request signed with python-xmlsec the way Difi's .NET client does it: rsa-sha256 over
    sha1 (or sha256) digests, the Oppslagstjenesten header signed too, a KeyIdentifier key."""
    envelope = etree.Element(q("env", "Envelope"), nsmap=NS)
    header = etree.SubElement(envelope, q("env", "Header"))
    security = etree.SubElement(header, q("wsse", "Security"))
    now = datetime.datetime.now(datetime.timezone.utc)
    timestamp = etree.SubElement(security, q("wsu", "Timestamp"), {q("wsu", "Id"): "TS-py"})
    etree.SubElement(timestamp, q("wsu", "Created")).text = stamp(now)
    etree.SubElement(timestamp, q("wsu", "Expires")).text = stamp(now + datetime.timedelta(minutes=30))
    oppslag = etree.SubElement(header, q("ns", "Oppslagstjenesten"), {q("wsu", "Id"): "HDR-py"})
    etree.SubElement(oppslag, q("ns", "PaaVegneAv")).text = paa_vegne_av
    body = etree.SubElement(envelope, q("env", "Body"), {q("wsu", "Id"): "BODY-py"})
    lookup = etree.SubElement(body, q("ns", "HentPersonerForespoersel"))
    etree.SubElement(lookup, q("ns", "informasjonsbehov")).text = "Person"
    etree.SubElement(lookup, q("ns", "personidentifikator")).text = pid

    signature = xmlsec.template.create(envelope, xmlsec.constants.TransformExclC14N, xmlsec.constants.TransformRsaSha256)
    security.append(signature)
    for target in ("#TS-py", "#HDR-py", "#BODY-py"):
        reference = xmlsec.template.add_reference(signature, digest, uri=target)
        transform = xmlsec.template.add_transform(reference, xmlsec.constants.TransformExclC14N)
        if prefix_list:
            # As WSS4J writes them: an InclusiveNamespaces PrefixList on each reference.
            xmlsec.template.transform_add_c14n_inclusive_namespaces(transform, prefix_list)
    key_info = xmlsec.template.ensure_key_info(signature)
    token_reference = etree.SubElement(key_info, q("wsse", "SecurityTokenReference"))
    identifier = etree.SubElement(token_reference, q("wsse", "KeyIdentifier"), {"ValueType": X509V3, "EncodingType": BASE64})
    identifier.text = der_base64(pem("krr-facade.cert.pem"))
    ctx = xmlsec.SignatureContext()
    register_ids(ctx, envelope)
    ctx.key = xmlsec.Key.from_memory(pem("krr-facade.key.pem"), xmlsec.constants.KeyDataFormatPem)
    ctx.sign(signature)
    return envelope


def made_certificate(issuer_key_pem=None, issuer_cert_pem=None, days=(-1, 365)):
    """A certificate with its key made by `cryptography`: issued by the given CA, or self-signed."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "made in the test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    if issuer_cert_pem:
        issuer = x509.load_pem_x509_certificate(issuer_cert_pem).subject
        signer = serialization.load_pem_private_key(issuer_key_pem, password=None)
    else:
        issuer, signer = name, key
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .sign(signer, hashes.SHA256())
    )
    return (
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        cert.public_bytes(serialization.Encoding.PEM),
    )


class FakeService:
    """Stands where Oppslagstjenesten would: verifies each of the facade's requests with three
    independent verifiers, has the simulator answer it unsigned, and answers the facade signed
    by python-xmlsec and encrypted by libxmlsec1 to the facade's certificate, or changed."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.mode = "sealed"
        self.verified = 0
        self.errors = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                try:
                    status, answer = service.answer(body)
                except Exception as error:  # reported by the test, not swallowed
                    service.errors.append(repr(error))
                    status, answer = 500, b""
                self.send_response(status)
                self.send_header("Content-Type", SOAP["Content-Type"])
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body):
        request = etree.fromstring(body)
        # The facade's request, in three verifiers: Timestamp and Body are signed.
        verify_with_xmlsec(request, pem("krr-facade.cert.pem"), 2)
        verify_with_signxml(request, pem("krr-facade.cert.pem"), 2)
        verify_with_xmlsec1(body, DEV / "krr-facade.cert.pem", self.tmp_path, [("env", "Body"), ("wsu", "Timestamp")])
        self.verified += 1
        # The simulator answers the same lookup unsigned.
        plain = copy.deepcopy(request)
        header = plain.find("env:Header", NS)
        header.remove(header.find("wsse:Security", NS))
        simulated = post(SIMULATOR, plain)
        answer = etree.fromstring(simulated.content)
        return 200, self.seal(answer, signature_value(request))

    def seal(self, answer, confirmed):
        now = datetime.datetime.now(datetime.timezone.utc)
        header = answer.find("env:Header", NS)
        body = answer.find("env:Body", NS)
        security = etree.SubElement(header, q("wsse", "Security"), nsmap={"wsse": NS["wsse"], "wsu": NS["wsu"]})
        security.set(q("env", "mustUnderstand"), "true")
        server_key, server_cert = pem("oppslag-server.key.pem"), pem("oppslag-server.cert.pem")
        if self.mode == "unpinned":
            server_key, server_cert = made_certificate(pem("test-ca.key.pem"), pem("test-ca.cert.pem"))
        token = etree.SubElement(
            security, q("wsse", "BinarySecurityToken"), {"ValueType": X509V3, "EncodingType": BASE64, q("wsu", "Id"): "X509-py"}
        )
        token.text = der_base64(server_cert)
        timestamp = etree.SubElement(security, q("wsu", "Timestamp"), {q("wsu", "Id"): "TS-py"})
        etree.SubElement(timestamp, q("wsu", "Created")).text = stamp(now)
        etree.SubElement(timestamp, q("wsu", "Expires")).text = stamp(now + datetime.timedelta(seconds=60))
        etree.SubElement(
            security,
            q("wsse11", "SignatureConfirmation"),
            {"Value": "bm90IG91cnM=" if self.mode == "unconfirmed" else confirmed, q("wsu", "Id"): "SC-py"},
            nsmap={"wsse11": NS["wsse11"]},
        )
        body.set(q("wsu", "Id"), "id-py")
        signature = xmlsec.template.create(answer, xmlsec.constants.TransformExclC14N, xmlsec.constants.TransformRsaSha256)
        token.addnext(signature)
        for target in ("#TS-py", "#id-py", "#SC-py"):
            reference = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256, uri=target)
            xmlsec.template.add_transform(reference, xmlsec.constants.TransformExclC14N)
        key_info = xmlsec.template.ensure_key_info(signature)
        token_reference = etree.SubElement(key_info, q("wsse", "SecurityTokenReference"))
        etree.SubElement(token_reference, q("wsse", "Reference"), {"URI": "#X509-py", "ValueType": X509V3})
        ctx = xmlsec.SignatureContext()
        register_ids(ctx, answer)
        ctx.key = xmlsec.Key.from_memory(server_key, xmlsec.constants.KeyDataFormatPem)
        ctx.sign(signature)
        if self.mode == "tampered":
            answer.find(".//m:personidentifikator", NS).text = "08077000292"
        # Encrypt the Body's content (aes256-cbc) with libxmlsec1, the key wrapped to the facade.
        content_key = os.urandom(32)
        recipient = x509.load_pem_x509_certificate(pem("krr-facade.cert.pem"))
        if self.mode == "other-recipient":
            _, other = made_certificate(pem("test-ca.key.pem"), pem("test-ca.cert.pem"))
            recipient = x509.load_pem_x509_certificate(other)
        wrapped = recipient.public_key().encrypt(
            content_key, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        )
        data = xmlsec.template.encrypted_data_create(
            answer, xmlsec.constants.TransformAes256Cbc, type=xmlsec.constants.TypeEncContent, ns="xenc", id="ED-py"
        )
        xmlsec.template.encrypted_data_ensure_cipher_value(data)
        data_key_info = xmlsec.template.encrypted_data_ensure_key_info(data, ns="ds")
        data_reference = etree.SubElement(
            data_key_info,
            q("wsse", "SecurityTokenReference"),
            {q("wsse11", "TokenType"): "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1#EncryptedKey"},
        )
        etree.SubElement(data_reference, q("wsse", "Reference"), {"URI": "#EK-py"})
        ctx = xmlsec.EncryptionContext()
        ctx.key = xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataAes, content_key)
        ctx.encrypt_xml(data, body)
        issuer = recipient.issuer.rfc4514_string()
        encrypted_key = etree.fromstring(
            f"""<xenc:EncryptedKey xmlns:xenc="{NS['xenc']}" xmlns:ds="{NS['ds']}" xmlns:wsse="{NS['wsse']}" Id="EK-py">
  <xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/>
  <ds:KeyInfo><wsse:SecurityTokenReference><ds:X509Data><ds:X509IssuerSerial>
    <ds:X509IssuerName>{issuer}</ds:X509IssuerName><ds:X509SerialNumber>{recipient.serial_number}</ds:X509SerialNumber>
  </ds:X509IssuerSerial></ds:X509Data></wsse:SecurityTokenReference></ds:KeyInfo>
  <xenc:CipherData><xenc:CipherValue>{base64.b64encode(wrapped).decode()}</xenc:CipherValue></xenc:CipherData>
  <xenc:ReferenceList><xenc:DataReference URI="#ED-py"/></xenc:ReferenceList>
</xenc:EncryptedKey>"""
        )
        security.insert(0, encrypted_key)
        return etree.tostring(answer, xml_declaration=True, encoding="UTF-8")

    def stop(self):
        self.server.shutdown()
