//! The `wsse:Security` headers Portvakt writes, as templates `signature::sign` fills: empty
//! `DigestValue`s and `SignatureValue`. The prefixes are declared on the
//! Envelope (`NAMESPACES`). Values from elsewhere (an issuer name, a confirmed signature value)
//! are escaped.

use chrono::{DateTime, Utc};

use super::{BASE64_BINARY, CONTENT, ENCRYPTED_KEY_TOKEN, NS_DSIG, NS_WSSE, NS_WSSE11, NS_WSU, NS_XENC, X509V3, stamp};
use bergshamra::core::algorithm;

/// The prefixes the templates use, declared on the Envelope.
pub(super) const NAMESPACES: [(&str, &str); 5] = [
    ("xmlns:wsse", NS_WSSE),
    ("xmlns:wsu", NS_WSU),
    ("xmlns:wsse11", NS_WSSE11),
    ("xmlns:ds", NS_DSIG),
    ("xmlns:xenc", NS_XENC),
];

/// The `wsu:Id`s of one message.
pub(super) struct Ids {
    pub token: String,
    pub timestamp: String,
    pub body: String,
    pub header: String,
    pub confirmation: String,
    pub key: String,
    pub data: String,
}

impl Ids {
    pub fn fresh() -> Ids {
        let suffix = super::fresh_id();
        Ids {
            token: format!("X509-{suffix}"),
            timestamp: format!("TS-{suffix}"),
            body: format!("id-{suffix}"),
            header: format!("HDR-{suffix}"),
            confirmation: format!("SC-{suffix}"),
            key: format!("EK-{suffix}"),
            data: format!("ED-{suffix}"),
        }
    }
}

/// The opening tag of the Security header; the EncryptedKey of an answer goes right after it.
pub(super) const SECURITY_START: &str = r#"<wsse:Security env:mustUnderstand="true">"#;

/// A Security header: BinarySecurityToken, Signature over `references`, Timestamp, and for an
/// answer the SignatureConfirmation of the request's signature.
pub(super) fn security(
    ids: &Ids,
    certificate_base64: &str,
    created: DateTime<Utc>,
    expires: DateTime<Utc>,
    references: &[&str],
    confirmation: Option<&str>,
) -> String {
    let mut xml = String::with_capacity(2048 + certificate_base64.len());
    xml.push_str(SECURITY_START);
    xml.push_str(&format!(
        r#"<wsse:BinarySecurityToken EncodingType="{BASE64_BINARY}" ValueType="{X509V3}" wsu:Id="{}">{certificate_base64}</wsse:BinarySecurityToken>"#,
        ids.token
    ));
    xml.push_str(r#"<ds:Signature><ds:SignedInfo>"#);
    // SignedInfo in canonical form (empty elements written out in full), so that what is signed
    // is this text with the namespace declaration exclusive C14N adds.
    xml.push_str(&format!(
        r#"<ds:CanonicalizationMethod Algorithm="{}"></ds:CanonicalizationMethod><ds:SignatureMethod Algorithm="{}"></ds:SignatureMethod>"#,
        algorithm::EXC_C14N,
        algorithm::RSA_SHA256
    ));
    for reference in references {
        xml.push_str(&format!(
            r##"<ds:Reference URI="#{reference}"><ds:Transforms><ds:Transform Algorithm="{}"></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm="{}"></ds:DigestMethod>{}</ds:Reference>"##,
            algorithm::EXC_C14N,
            algorithm::SHA256,
            super::signature::EMPTY_DIGEST
        ));
    }
    xml.push_str(&format!(
        r##"</ds:SignedInfo>{}<ds:KeyInfo><wsse:SecurityTokenReference><wsse:Reference URI="#{}" ValueType="{X509V3}"/></wsse:SecurityTokenReference></ds:KeyInfo></ds:Signature>"##,
        super::signature::EMPTY_SIGNATURE,
        ids.token
    ));
    xml.push_str(&format!(
        r#"<wsu:Timestamp wsu:Id="{}"><wsu:Created>{}</wsu:Created><wsu:Expires>{}</wsu:Expires></wsu:Timestamp>"#,
        ids.timestamp,
        stamp(created),
        stamp(expires)
    ));
    if let Some(value) = confirmation {
        let value = escape(value);
        xml.push_str(&format!(r#"<wsse11:SignatureConfirmation wsu:Id="{}" Value="{value}"/>"#, ids.confirmation));
    }
    xml.push_str("</wsse:Security>");
    xml
}

/// The EncryptedKey of an answer: the content key for the recipient named by issuer and serial.
pub(super) fn encrypted_key(ids: &Ids, issuer: &str, serial: &str, wrapped_base64: &str) -> String {
    format!(
        r##"<xenc:EncryptedKey Id="{key}"><xenc:EncryptionMethod Algorithm="{transport}"><ds:DigestMethod Algorithm="{sha1}"/></xenc:EncryptionMethod><ds:KeyInfo><wsse:SecurityTokenReference><ds:X509Data><ds:X509IssuerSerial><ds:X509IssuerName>{issuer}</ds:X509IssuerName><ds:X509SerialNumber>{serial}</ds:X509SerialNumber></ds:X509IssuerSerial></ds:X509Data></wsse:SecurityTokenReference></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{wrapped_base64}</xenc:CipherValue></xenc:CipherData><xenc:ReferenceList><xenc:DataReference URI="#{data}"/></xenc:ReferenceList></xenc:EncryptedKey>"##,
        key = ids.key,
        data = ids.data,
        transport = super::crypt::KEY_TRANSPORT,
        sha1 = algorithm::SHA1,
        issuer = escape(issuer),
    )
}

/// The Body's EncryptedData, whose key is the EncryptedKey of the header.
pub(super) fn encrypted_data(ids: &Ids, cipher: &str, sealed_base64: &str) -> String {
    format!(
        r##"<xenc:EncryptedData Id="{data}" Type="{CONTENT}"><xenc:EncryptionMethod Algorithm="{cipher}"/><ds:KeyInfo><wsse:SecurityTokenReference wsse11:TokenType="{ENCRYPTED_KEY_TOKEN}"><wsse:Reference URI="#{key}"/></wsse:SecurityTokenReference></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{sealed_base64}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>"##,
        data = ids.data,
        key = ids.key,
    )
}

/// For text and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
