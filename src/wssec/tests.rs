//! Both ends of the link in one process, with the development certificates and certificates made
//! here: a round trip, and every refusal the profile asks for (wrapping, tampering, missing
//! references, foreign and expired certificates, stale Timestamps, a wrong SignatureConfirmation,
//! an unpinned service certificate, an answer encrypted to another key, weak algorithms).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::client::{ClientSecurity, SignedRequest, UNDISCLOSED};
use super::server::{Mode, ServerSecurity};
use super::{Certificate, Credentials, FaultKind, Window, WssError};
use crate::pki::TrustAnchors;
use crate::soap::model::{Header, Informasjonsbehov, Person, Request, Response, Status};
use crate::soap::read;

const WINDOW: Window = Window { max_ttl: Duration::from_secs(2000), skew: Duration::from_secs(300) };
const SERVER_WINDOW: Window = Window { max_ttl: Duration::from_secs(1800), skew: Duration::from_secs(300) };

fn dev(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dev").join(name)
}

fn client() -> ClientSecurity {
    ClientSecurity::new(
        Credentials::load(&dev("krr-facade.cert.pem"), &dev("krr-facade.key.pem")).unwrap(),
        Certificate::load(&dev("oppslag-server.cert.pem")).unwrap(),
        WINDOW,
    )
}

fn server_with(certificate: &Path, key: &Path) -> ServerSecurity {
    ServerSecurity::new(
        Mode::Required,
        Credentials::load(certificate, key).unwrap(),
        TrustAnchors::load(&[dev("test-ca.cert.pem")]).unwrap(),
        SERVER_WINDOW,
    )
}

fn server() -> ServerSecurity {
    server_with(&dev("oppslag-server.cert.pem"), &dev("oppslag-server.key.pem"))
}

fn request() -> Request {
    Request::HentPersoner {
        informasjonsbehov: vec![Informasjonsbehov::Person],
        personidentifikatorer: vec!["23079421936".into()],
    }
}

fn acting_for() -> Header {
    Header { paa_vegne_av: Some("991825827".into()), ..Header::default() }
}

fn answer() -> Response {
    Response::HentPersoner(vec![Person::bare("23079421936", Status::Aktiv)])
}

/// A certificate and key made here: issued by the test CA (valid or expired), or self-signed.
fn made(dir: &Path, name: &str, issued: bool, expired: bool) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let certificate = if issued {
        let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(dev("test-ca.key.pem")).unwrap()).unwrap();
        let ca = rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(dev("test-ca.cert.pem")).unwrap(), ca_key)
            .unwrap();
        params.signed_by(&key, &ca).unwrap()
    } else {
        params.self_signed(&key).unwrap()
    };
    let (cert_path, key_path) = (dir.join(format!("{name}.cert.pem")), dir.join(format!("{name}.key.pem")));
    std::fs::write(&cert_path, certificate.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn refused<T>(result: Result<T, WssError>, kind: FaultKind, words: &str) {
    match result {
        Ok(_) => panic!("accepted; expected {kind:?} ({words})"),
        Err(e) => {
            assert_eq!(e.kind, kind, "{}", e.message);
            assert!(e.message.contains(words), "{:?} does not say {words:?}", e.message);
        }
    }
}

#[test]
fn a_signed_request_and_its_sealed_answer_round_trip() {
    let (client, server) = (client(), server());
    for header in [Header::default(), acting_for()] {
        let signed = client.sign(&header, &request(), now()).unwrap();
        let verified = server.verify(&signed.xml, now()).unwrap();
        assert_eq!(verified.orgno.as_deref(), Some("910076787"));
        let (read_header, read_request) = read::request(&verified.envelope).unwrap();
        assert_eq!((read_header.paa_vegne_av, read_request), (header.paa_vegne_av.clone(), request()));

        let sealed = server.seal(&answer(), &verified, now()).unwrap();
        assert!(!sealed.contains("23079421936"), "the answer's Body is encrypted");
        let body = client.open(&sealed, &signed, now()).unwrap();
        assert_eq!(read::response(&body).unwrap().unwrap(), answer());
    }
}

/// A signed request with `edit` applied to its text.
fn tampered(edit: impl Fn(&str) -> String) -> String {
    edit(&client().sign(&acting_for(), &request(), now()).unwrap().xml)
}

fn body_of(xml: &str) -> (usize, usize) {
    let start = xml.find("<env:Body").unwrap();
    let end = xml.find("</env:Body>").unwrap() + "</env:Body>".len();
    (start, end)
}

#[test]
fn requests_that_were_changed_after_signing_are_refused() {
    let server = server();
    let body = tampered(|xml| xml.replace("23079421936", "08077000292"));
    refused(server.verify(&body, now()), FaultKind::FailedCheck, "not valid");
    let expires = tampered(|xml| {
        let at = xml.find("<wsu:Expires>").unwrap() + "<wsu:Expires>".len();
        format!("{}2099{}", &xml[..at], &xml[at + 4..])
    });
    refused(server.verify(&expires, now()), FaultKind::FailedCheck, "not valid");
    let header = tampered(|xml| xml.replace("991825827", "974760673"));
    refused(server.verify(&header, now()), FaultKind::FailedCheck, "not valid");
}

#[test]
fn signature_wrapping_is_refused() {
    let server = server();
    // XSW: the signed Body moves into a header block; a forged Body takes its place.
    let wrapped = tampered(|xml| {
        let (start, end) = body_of(xml);
        let signed_body = &xml[start..end];
        let forged = signed_body.replace("23079421936", "08077000292").replacen("wsu:Id=\"", "wsu:Id=\"x", 1);
        let header_end = xml.find("</env:Header>").unwrap();
        format!(
            "{}<w:Wrap xmlns:w=\"urn:w\">{signed_body}</w:Wrap>{}{forged}{}",
            &xml[..header_end],
            &xml[header_end..start],
            &xml[end..]
        )
    });
    refused(server.verify(&wrapped, now()), FaultKind::FailedCheck, "not one of the parts the signature must cover");
    // The same, keeping the signed Body's id on the forged one: ids must be unique.
    let duplicated = tampered(|xml| {
        let (start, end) = body_of(xml);
        let signed_body = &xml[start..end];
        let forged = signed_body.replace("23079421936", "08077000292");
        let header_end = xml.find("</env:Header>").unwrap();
        format!(
            "{}<w:Wrap xmlns:w=\"urn:w\">{signed_body}</w:Wrap>{}{forged}{}",
            &xml[..header_end],
            &xml[header_end..start],
            &xml[end..]
        )
    });
    assert!(server.verify(&duplicated, now()).is_err());
    // Two Bodies, the signed one second.
    let two = tampered(|xml| {
        let (start, _) = body_of(xml);
        format!("{}<env:Body><ns:HentPrintSertifikatForespoersel/></env:Body>{}", &xml[..start], &xml[start..])
    });
    refused(server.verify(&two, now()), FaultKind::InvalidSecurity, "exactly a Header and a Body");
    // A second signature ahead of the header's.
    let second = tampered(|xml| {
        let security = xml.find("<wsse:Security").unwrap();
        let signature = &xml[xml.find("<ds:Signature>").unwrap()..xml.find("</ds:Signature>").unwrap() + 15];
        format!("{}<w:Decoy xmlns:w=\"urn:w\">{signature}</w:Decoy>{}", &xml[..security], &xml[security..])
    });
    refused(server.verify(&second, now()), FaultKind::InvalidSecurity, "exactly one ds:Signature");
    // An Oppslagstjenesten header added after signing is not covered.
    let unsigned_header = client().sign(&Header::default(), &request(), now()).unwrap().xml.replace(
        "</env:Header>",
        "<ns:Oppslagstjenesten><ns:PaaVegneAv>991825827</ns:PaaVegneAv></ns:Oppslagstjenesten></env:Header>",
    );
    refused(server.verify(&unsigned_header, now()), FaultKind::InvalidSecurity, "references");
}

#[test]
fn weak_or_unexpected_algorithms_are_refused_before_any_digest() {
    let server = server();
    let rsa_sha1 = tampered(|xml| {
        xml.replace("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2000/09/xmldsig#rsa-sha1")
    });
    refused(server.verify(&rsa_sha1, now()), FaultKind::InvalidSecurity, "rsa-sha1 is refused");
    let comments = tampered(|xml| {
        xml.replacen(
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"",
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#WithComments\"",
            1,
        )
    });
    refused(server.verify(&comments, now()), FaultKind::InvalidSecurity, "WithComments is refused");
    let transform = tampered(|xml| {
        xml.replacen(
            "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"></ds:Transform>",
            "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\"></ds:Transform>",
            1,
        )
    });
    refused(server.verify(&transform, now()), FaultKind::InvalidSecurity, "REC-xpath-19991116");
}

#[test]
fn certificates_from_another_ca_or_out_of_date_and_stale_timestamps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = server();
    for (name, issued, expired, kind, words) in [
        ("foreign", false, false, FaultKind::FailedAuthentication, "does not lead to a trusted CA"),
        ("expired", true, true, FaultKind::FailedAuthentication, "valid from"),
    ] {
        let (cert, key) = made(dir.path(), name, issued, expired);
        let other = ClientSecurity::new(
            Credentials::load(&cert, &key).unwrap(),
            Certificate::load(&dev("oppslag-server.cert.pem")).unwrap(),
            WINDOW,
        );
        let signed = other.sign(&Header::default(), &request(), now()).unwrap();
        refused(server.verify(&signed.xml, now()), kind, words);
    }
    let signed = client().sign(&Header::default(), &request(), now()).unwrap();
    refused(server.verify(&signed.xml, now() + chrono::Duration::minutes(10)), FaultKind::MessageExpired, "expired");
    let ahead = client().sign(&Header::default(), &request(), now() + chrono::Duration::minutes(10)).unwrap();
    refused(server.verify(&ahead.xml, now()), FaultKind::MessageExpired, "future");
    // The signature names a token that is not the header's.
    let elsewhere = signed.xml.replacen("<wsse:Reference URI=\"#X509-", "<wsse:Reference URI=\"#Y509-", 1);
    refused(server.verify(&elsewhere, now()), FaultKind::InvalidSecurityToken, "not the header's BinarySecurityToken");
}

/// A request signed by the facade, verified, and answered by `server`.
fn exchange(server: &ServerSecurity) -> (SignedRequest, String) {
    let signed = client().sign(&Header::default(), &request(), now()).unwrap();
    let verified = self::server().verify(&signed.xml, now()).unwrap();
    let sealed = server.seal(&answer(), &verified, now()).unwrap();
    (signed, sealed)
}

#[test]
fn answers_from_an_unpinned_certificate_or_for_another_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    // Signed by a certificate of the same CA, but not the pinned one.
    let (cert, key) = made(dir.path(), "impostor", true, false);
    let (signed, sealed) = exchange(&server_with(&cert, &key));
    refused(
        client.open(&sealed, &signed, now()),
        FaultKind::InvalidSecurityToken,
        "not the pinned service certificate",
    );
    // Encrypted to another certificate than the facade's.
    let (other_cert, other_key) = made(dir.path(), "someone-else", true, false);
    let someone_else = ClientSecurity::new(
        Credentials::load(&other_cert, &other_key).unwrap(),
        Certificate::load(&dev("oppslag-server.cert.pem")).unwrap(),
        WINDOW,
    );
    let signed_by_other = someone_else.sign(&Header::default(), &request(), now()).unwrap();
    let for_other = server().seal(&answer(), &server().verify(&signed_by_other.xml, now()).unwrap(), now()).unwrap();
    refused(
        client.open(&for_other, &signed_by_other, now()),
        FaultKind::FailedCheck,
        "encrypted to another certificate",
    );
}

#[test]
fn answers_that_do_not_confirm_our_request_or_are_stale_or_changed_are_refused() {
    let client = client();
    let (signed, sealed) = exchange(&server());
    // Replayed to another request: the SignatureConfirmation is the first request's.
    let another = client.sign(&Header::default(), &request(), now()).unwrap();
    refused(client.open(&sealed, &another, now()), FaultKind::FailedCheck, "SignatureConfirmation");
    refused(client.open(&sealed, &signed, now() + chrono::Duration::minutes(10)), FaultKind::MessageExpired, "expired");
    // A changed ciphertext does not decrypt to the signed Body.
    let at = sealed.find("<xenc:EncryptedData").unwrap();
    let value = at + sealed[at..].find("<xenc:CipherValue>").unwrap() + "<xenc:CipherValue>".len() + 30;
    let flipped = format!(
        "{}{}{}",
        &sealed[..value],
        if &sealed[value..value + 1] == "A" { "B" } else { "A" },
        &sealed[value + 1..]
    );
    refused(client.open(&flipped, &signed, now()), FaultKind::FailedCheck, UNDISCLOSED);
    // A plain answer, or a fault-free unencrypted one, is not accepted in place of a sealed one.
    let plain = crate::soap::write::response(&answer(), None).unwrap();
    refused(client.open(&plain, &signed, now()), FaultKind::InvalidSecurity, "no wsse:Security");
    // Inside the encryption, the signed Body wrapped away and a forged one in its place.
    let decrypted = client.decrypt(&sealed).unwrap();
    let (start, end) = body_of(&decrypted);
    let signed_body = &decrypted[start..end];
    let forged = signed_body.replace("23079421936", "08077000292").replacen("wsu:Id=\"", "wsu:Id=\"x", 1);
    let header_end = decrypted.find("</env:Header>").unwrap();
    let wrapped = format!(
        "{}<w:Wrap xmlns:w=\"urn:w\">{signed_body}</w:Wrap>{}{forged}{}",
        &decrypted[..header_end],
        &decrypted[header_end..start],
        &decrypted[end..]
    );
    let checked = |text: &str| {
        let doc = super::message::parse(text).unwrap();
        client.check_signature(&doc).map(|_| ())
    };
    refused(checked(&wrapped), FaultKind::FailedCheck, "not one of the parts the signature must cover");
    assert!(checked(&decrypted).is_ok(), "the unchanged answer verifies");
    // Through `open`, the same answer re-encrypted gets the one undisclosed reason.
    let forged_content = &forged[forged.find('>').unwrap() + 1..forged.len() - "</env:Body>".len()];
    let sealed_wrapped = reencrypted(&sealed, forged_content).replacen(
        "</env:Header>",
        &format!("<w:Wrap xmlns:w=\"urn:w\">{signed_body}</w:Wrap></env:Header>"),
        1,
    );
    refused(client.open(&sealed_wrapped, &signed, now()), FaultKind::FailedCheck, UNDISCLOSED);
    // Re-encrypted unchanged, the same answer still opens: the refusal above is the wrapping's.
    let signed_content = &signed_body[signed_body.find('>').unwrap() + 1..signed_body.len() - "</env:Body>".len()];
    assert!(client.open(&reencrypted(&sealed, signed_content), &signed, now()).is_ok());
}

#[test]
fn a_request_whose_signature_leaves_out_the_body_is_refused() {
    use super::template::{self, Ids};
    use crate::soap::write::{self, Secured};
    let credentials = Credentials::load(&dev("krr-facade.cert.pem"), &dev("krr-facade.key.pem")).unwrap();
    let ids = Ids::fresh();
    let security = template::security(
        &ids,
        &credentials.certificate.base64,
        now(),
        now() + chrono::Duration::seconds(120),
        &[&ids.timestamp],
        None,
    );
    let secured = Secured { namespaces: &template::NAMESPACES, security: &security, body_id: &ids.body, header_id: "" };
    let unsigned = write::request(&Header::default(), &request(), Some(&secured)).unwrap();
    let (signed, _) = super::signature::sign(&unsigned, &credentials).unwrap();
    refused(
        server().verify(&signed, now()),
        FaultKind::InvalidSecurity,
        "1 references; 2 are required (Timestamp, Body)",
    );
}

/// `sealed` with `content` as its Body's content, encrypted to the facade under a fresh key
/// (anyone can do that with its certificate).
fn reencrypted(sealed: &str, content: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let facade = Certificate::load(&dev("krr-facade.cert.pem")).unwrap();
    let (key, ciphertext) = super::crypt::seal(content.as_bytes(), super::crypt::CONTENT_CIPHERS[0]).unwrap();
    let wrapped = super::crypt::wrap_key(&key, &facade).unwrap();
    let replace_value = |text: &str, after: &str, value: &str| {
        let at = text.find(after).unwrap();
        let from = at + text[at..].find("<xenc:CipherValue>").unwrap() + "<xenc:CipherValue>".len();
        let to = from + text[from..].find("</xenc:CipherValue>").unwrap();
        format!("{}{value}{}", &text[..from], &text[to..])
    };
    let with_key = replace_value(sealed, "<xenc:EncryptedKey", &STANDARD.encode(wrapped));
    replace_value(&with_key, "<xenc:EncryptedData", &STANDARD.encode(ciphertext))
}

/// A signed request with `edit` applied to its `ds:Signature` element.
fn signature_edited(edit: impl Fn(&str) -> String) -> String {
    tampered(|xml| {
        let start = xml.find("<ds:Signature>").unwrap();
        let end = xml.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        format!("{}{}{}", &xml[..start], edit(&xml[start..end]), &xml[end..])
    })
}

#[test]
fn what_the_policy_checks_is_what_is_read() {
    let server = server();
    // An attribute given twice by its local name, once in another namespace: bergshamra would
    // read whichever comes first.
    let shadowed = signature_edited(|signature| {
        signature.replacen(
            "<ds:SignatureMethod Algorithm=",
            "<ds:SignatureMethod xmlns:x=\"urn:x\" x:Algorithm=\"http://www.w3.org/2000/09/xmldsig#rsa-sha1\" Algorithm=",
            1,
        )
    });
    refused(server.verify(&shadowed, now()), FaultKind::InvalidSecurity, "given twice or in another namespace");
    let file = signature_edited(|signature| {
        signature.replacen("<ds:Reference URI=", "<ds:Reference xmlns:x=\"urn:x\" x:URI=\"etc/passwd\" URI=", 1)
    });
    refused(server.verify(&file, now()), FaultKind::InvalidSecurity, "given twice or in another namespace");
    // A reference without Transforms would be digested with inclusive C14N.
    let no_transforms = signature_edited(|signature| {
        let start = signature.find("<ds:Transforms>").unwrap();
        let end = signature.find("</ds:Transforms>").unwrap() + "</ds:Transforms>".len();
        format!("{}{}", &signature[..start], &signature[end..])
    });
    refused(
        server.verify(&no_transforms, now()),
        FaultKind::InvalidSecurity,
        "must hold Transforms, DigestMethod and DigestValue",
    );
    // A second transform, or a parameter that is not a prefix list.
    let two = signature_edited(|signature| {
        signature.replacen(
            "</ds:Transforms>",
            "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>",
            1,
        )
    });
    refused(server.verify(&two, now()), FaultKind::InvalidSecurity, "exactly one Transform");
    let xslt = signature_edited(|signature| {
        signature.replacen(
            "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"></ds:Transform>",
            "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"><x:stylesheet xmlns:x=\"http://www.w3.org/1999/XSL/Transform\"/></ds:Transform>",
            1,
        )
    });
    refused(server.verify(&xslt, now()), FaultKind::InvalidSecurity, "nothing else");
    // An XPointer reference instead of a bare id.
    let xpointer = signature_edited(|signature| signature.replacen("URI=\"#TS-", "URI=\"#xpointer(id('TS-", 1));
    refused(server.verify(&xpointer, now()), FaultKind::InvalidSecurity, "by its id");
}

#[test]
fn a_signature_value_with_markup_is_refused_and_never_echoed() {
    let server = server();
    let injected = signature_edited(|signature| {
        signature.replacen("</ds:SignatureValue>", "<ds:x>&quot;/&gt;&lt;wsse:Foo&gt;</ds:x></ds:SignatureValue>", 1)
    });
    refused(server.verify(&injected, now()), FaultKind::InvalidSecurity, "SignatureValue");
}

#[test]
fn a_replayed_request_is_refused() {
    let server = server();
    let signed = client().sign(&Header::default(), &request(), now()).unwrap();
    server.verify(&signed.xml, now()).unwrap();
    refused(server.verify(&signed.xml, now()), FaultKind::InvalidSecurity, "replayed");
}

#[test]
fn a_prefix_list_is_short_and_never_in_another_namespace() {
    let server = server();
    let with_list = |list: &str| {
        signature_edited(|signature| {
            signature.replacen(
                "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"></ds:Transform>",
                &format!(
                    "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"><ec:InclusiveNamespaces \
                     xmlns:ec=\"http://www.w3.org/2001/10/xml-exc-c14n#\" {list}/></ds:Transform>"
                ),
                1,
            )
        })
    };
    let long: String = (0..20).map(|i| format!("p{i} ")).collect();
    refused(
        server.verify(&with_list(&format!("PrefixList=\"{long}\"")), now()),
        FaultKind::InvalidSecurity,
        "at most 16",
    );
    refused(server.verify(&with_list("PrefixList=\"a(b\""), now()), FaultKind::InvalidSecurity, "at most 16 prefixes");
    refused(
        server.verify(&with_list("xmlns:x=\"urn:x\" x:PrefixList=\"env\""), now()),
        FaultKind::InvalidSecurity,
        "another namespace",
    );
}
