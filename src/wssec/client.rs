//! The client's side (the KRR facade): sign every request; decrypt, then verify every answer
//! with the pinned service certificate before anything in it is read.

use bergshamra::xml::uppsala::{Document, NodeId};
use chrono::{DateTime, Utc};

use super::message::{self, Envelope, SecurityParts, attribute, elements, is, only, required};
use super::signature::{self, Expected};
use super::template::{self, Ids};
use super::{
    CONTENT, Certificate, Credentials, ENCRYPTED_KEY_TOKEN, NS_DSIG, NS_WSSE, NS_XENC, Window, WssError, crypt,
};
use crate::soap::NS_SOAP12;
use crate::soap::model::{Header, Request};
use crate::soap::write::{self, Secured};

/// A request's Timestamp lives this long (§5.5: the docs require 120 s).
const REQUEST_TTL: chrono::Duration = chrono::Duration::seconds(120);
/// An answer larger than this once decrypted is refused (1,000 persons with certificates take
/// about 3 MiB).
const MAX_PLAINTEXT_BYTES: usize = 32 * 1024 * 1024;

pub struct ClientSecurity {
    credentials: Credentials,
    /// Oppslagstjenesten's certificate, from configuration: the only key an answer verifies with.
    service: Certificate,
    window: Window,
}

/// A signed request, and what its answer must confirm.
#[derive(Clone)]
pub struct SignedRequest {
    pub xml: String,
    signature_value: String,
}

impl ClientSecurity {
    pub fn new(credentials: Credentials, service: Certificate, window: Window) -> ClientSecurity {
        ClientSecurity { credentials, service, window }
    }

    /// The request, signed over its Timestamp, Body and (when present) Oppslagstjenesten header.
    pub fn sign(&self, header: &Header, request: &Request, now: DateTime<Utc>) -> Result<SignedRequest, WssError> {
        let ids = Ids::fresh();
        let mut references = vec![ids.timestamp.as_str()];
        if header.paa_vegne_av.is_some() {
            references.push(ids.header.as_str());
        }
        references.push(ids.body.as_str());
        let security =
            template::security(&ids, &self.credentials.certificate.base64, now, now + REQUEST_TTL, &references, None);
        let secured = Secured {
            namespaces: &template::NAMESPACES,
            security: &security,
            body_id: &ids.body,
            header_id: &ids.header,
        };
        let unsigned = write::request(header, request, Some(&secured))
            .map_err(|e| WssError::failed(format!("the request cannot be written: {e}")))?;
        let (xml, signature_value) = signature::sign(&unsigned, &self.credentials)?;
        Ok(SignedRequest { xml, signature_value })
    }

    /// Decrypt and verify an answer to `sent`; the verified Body comes back as an envelope of its
    /// own, the only text to read the answer from.
    ///
    /// What the header says in the clear (recipient, signer, algorithms) is refused by name.
    /// From decryption until the signature holds, every refusal reads the same, with the detail
    /// in the log only: anyone can encrypt to our certificate, and telling a bad padding from bad
    /// XML would let them probe what decrypts (a padding oracle on aes-cbc).
    pub fn open(&self, xml: &str, sent: &SignedRequest, now: DateTime<Utc>) -> Result<String, WssError> {
        let decrypted = self.decrypt(xml)?;
        let doc = message::parse(&decrypted).map_err(undisclosed)?;
        let signed = self.check_signature(&doc).map_err(undisclosed)?;
        // From here on the answer is the service's own: its faults can be named.
        let (created, expires) = message::timestamp(&doc, signed.timestamp)?;
        self.window.check(created, expires, now)?;
        let confirmed = attribute(&doc, signed.confirmation, "Value").unwrap_or_default();
        if confirmed != sent.signature_value {
            return Err(WssError::failed("the SignatureConfirmation does not confirm our request's signature"));
        }
        Ok(format!(r#"<env:Envelope xmlns:env="{NS_SOAP12}">{}</env:Envelope>"#, signed.body))
    }

    /// The decrypted answer's signature: by the pinned certificate, over exactly its Timestamp,
    /// Body and SignatureConfirmation.
    pub(super) fn check_signature(&self, doc: &Document<'_>) -> Result<Signed, WssError> {
        let envelope = Envelope::read(doc)?;
        let parts = SecurityParts::read(doc, envelope.security)?;
        let signature = required(parts.signature, "Signature")?;
        let timestamp = required(parts.timestamp, "Timestamp")?;
        let confirmation = required(parts.confirmation, "SignatureConfirmation")?;
        let targets = [(timestamp, "Timestamp"), (envelope.body, "Body"), (confirmation, "SignatureConfirmation")];
        let mut canonical =
            signature::verify(doc, signature, &self.service, &Expected { targets: &targets, sha1_digests: false })?;
        // The Body as signed: its exclusive canonical form, the one text the answer is read from.
        let body = std::mem::take(&mut canonical[1]);
        Ok(Signed { timestamp, body, confirmation })
    }

    /// The answer with its Body decrypted in place: the header's EncryptedKey must be for our
    /// certificate and list the Body's EncryptedData, and that must be the Body's only content.
    pub(super) fn decrypt(&self, xml: &str) -> Result<String, WssError> {
        let doc = message::parse(xml)?;
        let envelope = Envelope::read(&doc)?;
        let parts = SecurityParts::read(&doc, envelope.security)?;
        let key_node = parts.encrypted_key.ok_or_else(|| WssError::invalid("the answer is not encrypted"))?;
        let data = match elements(&doc, envelope.body).as_slice() {
            [data] if is(&doc, *data, NS_XENC, "EncryptedData") => *data,
            _ => return Err(WssError::invalid("the answer's Body must hold one xenc:EncryptedData")),
        };
        if attribute(&doc, data, "Type") != Some(CONTENT) {
            return Err(WssError::invalid("the Body's EncryptedData must encrypt its content (Type …#Content)"));
        }
        let data_id = attribute(&doc, data, "Id").unwrap_or_default();
        let key_id = attribute(&doc, key_node, "Id").unwrap_or_default();
        check_key_reference(&doc, data, key_id)?;
        check_reference_list(&doc, key_node, data_id)?;
        self.check_recipient(&doc, key_node)?;

        let transport = message::algorithm(&doc, key_node, NS_XENC, "EncryptionMethod")?;
        if transport != crypt::KEY_TRANSPORT {
            return Err(WssError::invalid(format!("key transport {transport} is refused: rsa-oaep-mgf1p is required")));
        }
        let method = only(&doc, key_node, NS_XENC, "EncryptionMethod")?;
        if let Some(digest) = elements(&doc, method).into_iter().find(|&c| is(&doc, c, NS_DSIG, "DigestMethod"))
            && attribute(&doc, digest, "Algorithm") != Some(bergshamra::core::algorithm::SHA1)
        {
            return Err(WssError::invalid("rsa-oaep-mgf1p takes SHA-1 as its OAEP digest"));
        }
        let cipher = message::algorithm(&doc, data, NS_XENC, "EncryptionMethod")?;
        if !crypt::CONTENT_CIPHERS.contains(&cipher) {
            return Err(WssError::invalid(format!("content encryption {cipher} is refused")));
        }
        let wrapped = message::base64(&doc, cipher_value(&doc, key_node)?, "the EncryptedKey's CipherValue", 1024)?;
        let sealed =
            message::base64(&doc, cipher_value(&doc, data)?, "the EncryptedData's CipherValue", MAX_PLAINTEXT_BYTES)?;
        self.check_signer(&doc, &parts)?;
        let key = crypt::unwrap_key(&wrapped, &self.credentials, cipher).map_err(undisclosed)?;
        let plaintext = crypt::open(&key, cipher, &sealed).map_err(undisclosed)?;
        let plaintext = std::str::from_utf8(&plaintext)
            .map_err(|_| undisclosed(WssError::failed("the decrypted Body is not UTF-8")))?;
        let range = doc.node_range(data).ok_or_else(|| WssError::failed("the EncryptedData cannot be located"))?;
        let mut decrypted = String::with_capacity(xml.len() + plaintext.len());
        decrypted.push_str(&xml[..range.start]);
        decrypted.push_str(plaintext);
        decrypted.push_str(&xml[range.end..]);
        Ok(decrypted)
    }

    /// The answer is checked with the pinned certificate whatever it carries; one whose token
    /// is another certificate is refused by name, before a signature check would fail on it.
    fn check_signer(&self, doc: &Document<'_>, parts: &SecurityParts) -> Result<(), WssError> {
        let token = message::token_certificate(doc, required(parts.token, "BinarySecurityToken")?)?;
        if token.der != self.service.der {
            return Err(WssError::new(
                super::FaultKind::InvalidSecurityToken,
                format!(
                    "the answer is signed by {} (serial {}), not the pinned service certificate",
                    token.issuer, token.serial
                ),
            ));
        }
        Ok(())
    }

    /// The EncryptedKey must name our certificate (`X509IssuerSerial`): an answer encrypted to
    /// another key is refused by name.
    fn check_recipient(&self, doc: &Document<'_>, key_node: NodeId) -> Result<(), WssError> {
        let key_info = only(doc, key_node, NS_DSIG, "KeyInfo")?;
        let reference = only(doc, key_info, NS_WSSE, "SecurityTokenReference")?;
        let data = only(doc, reference, NS_DSIG, "X509Data")?;
        let issuer_serial = only(doc, data, NS_DSIG, "X509IssuerSerial")?;
        let issuer = message::text(doc, only(doc, issuer_serial, NS_DSIG, "X509IssuerName")?);
        let serial = message::text(doc, only(doc, issuer_serial, NS_DSIG, "X509SerialNumber")?);
        if !self.credentials.certificate.is_named_by(&issuer, &serial) {
            return Err(WssError::failed(format!(
                "the answer is encrypted to another certificate ({issuer}, serial {serial}), not ours"
            )));
        }
        Ok(())
    }
}

/// The signed parts of an answer whose signature holds.
pub(super) struct Signed {
    timestamp: NodeId,
    body: String,
    confirmation: NodeId,
}

/// One reason for every refusal between decryption and a valid signature; the detail is logged.
fn undisclosed(refusal: WssError) -> WssError {
    tracing::warn!(reason = %refusal.message, "an answer from Oppslagstjenesten was refused after decryption");
    WssError::failed(UNDISCLOSED)
}

pub(super) const UNDISCLOSED: &str =
    "the answer does not decrypt to a message signed by the pinned service certificate";

fn cipher_value(doc: &Document<'_>, node: NodeId) -> Result<NodeId, WssError> {
    only(doc, only(doc, node, NS_XENC, "CipherData")?, NS_XENC, "CipherValue")
}

/// The EncryptedData's KeyInfo, when present, must point at the header's EncryptedKey.
fn check_key_reference(doc: &Document<'_>, data: NodeId, key_id: &str) -> Result<(), WssError> {
    let Some(key_info) = elements(doc, data).into_iter().find(|&c| is(doc, c, NS_DSIG, "KeyInfo")) else {
        return Ok(());
    };
    let reference = only(doc, key_info, NS_WSSE, "SecurityTokenReference")?;
    if attribute(doc, reference, "TokenType").is_some_and(|t| t != ENCRYPTED_KEY_TOKEN) {
        return Err(WssError::invalid("the EncryptedData's key must be the header's EncryptedKey"));
    }
    let uri = attribute(doc, only(doc, reference, NS_WSSE, "Reference")?, "URI").unwrap_or_default();
    if uri.strip_prefix('#') != Some(key_id) || key_id.is_empty() {
        return Err(WssError::invalid("the EncryptedData names another key than the header's EncryptedKey"));
    }
    Ok(())
}

/// The EncryptedKey's ReferenceList must list exactly the Body's EncryptedData.
fn check_reference_list(doc: &Document<'_>, key_node: NodeId, data_id: &str) -> Result<(), WssError> {
    let list = only(doc, key_node, NS_XENC, "ReferenceList")?;
    let listed: Vec<&str> = elements(doc, list)
        .into_iter()
        .map(|r| if is(doc, r, NS_XENC, "DataReference") { attribute(doc, r, "URI").unwrap_or_default() } else { "" })
        .collect();
    if data_id.is_empty() || listed.as_slice() != [format!("#{data_id}").as_str()] {
        return Err(WssError::invalid("the EncryptedKey's ReferenceList must name exactly the Body's EncryptedData"));
    }
    Ok(())
}
