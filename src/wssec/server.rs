//! The service's side (the simulator): verify a signed request as Oppslagstjenesten does, and
//! answer it signed, then encrypted to the certificate it was signed with.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use super::message::{self, Envelope, KeyReference, SecurityParts, is, required, wsu_id};
use super::signature::{self, Expected};
use super::template::{self, Ids, SECURITY_START};
use super::{Certificate, Credentials, FaultKind, Window, WssError, crypt};
use crate::pki::{ChainError, TrustAnchors};
use crate::replay::{FirstUse, ReplayGuard};
use crate::soap::model::Response;
use crate::soap::write::{self, Secured};
use crate::soap::{NS_OPPSLAG, NS_SOAP12};

/// An answer's Timestamp lives this long (§5.5).
const ANSWER_TTL: chrono::Duration = chrono::Duration::seconds(60);

/// What the service does with WS-Security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every request must be signed; answers are signed and encrypted.
    Required,
    /// A signed request gets a signed and encrypted answer; an unsigned one a plain answer.
    Optional,
    /// No WS-Security: a `wsse:Security` header that must be understood is a MustUnderstand fault.
    Off,
}

pub struct ServerSecurity {
    pub mode: Mode,
    credentials: Credentials,
    anchors: TrustAnchors,
    window: Window,
    /// The SHA-256 of each verified request's SignatureValue, while its Timestamp could pass.
    seen: ReplayGuard,
}

/// Requests remembered against replay; a guard this full refuses new ones (a Receiver fault).
const MAX_REMEMBERED: usize = 200_000;

/// A request whose signature holds: the signed parts as an envelope of their own (the only text
/// to read the request from), and what the answer needs.
pub struct VerifiedRequest {
    pub envelope: String,
    pub client: Certificate,
    /// The organisation number in the client's certificate, when it has one.
    pub orgno: Option<String>,
    signature_value: String,
}

impl ServerSecurity {
    pub fn new(mode: Mode, credentials: Credentials, anchors: TrustAnchors, window: Window) -> ServerSecurity {
        let seen = ReplayGuard::new(window.max_ttl + window.skew * 2, MAX_REMEMBERED);
        ServerSecurity { mode, credentials, anchors, window, seen }
    }

    pub fn verify(&self, xml: &str, now: DateTime<Utc>) -> Result<VerifiedRequest, WssError> {
        let doc = message::parse(xml)?;
        let envelope = Envelope::read(&doc)?;
        let parts = SecurityParts::read(&doc, envelope.security)?;
        if parts.encrypted_key.is_some() || parts.confirmation.is_some() {
            return Err(WssError::invalid("a request's wsse:Security holds a Timestamp, a token and a Signature only"));
        }
        let signature = required(parts.signature, "Signature")?;
        let timestamp = required(parts.timestamp, "Timestamp")?;
        // The key is the header's BinarySecurityToken (a direct reference), or the certificate
        // a KeyIdentifier holds, as §5.5 allows both.
        let client = match message::key_reference(&doc, signature)? {
            KeyReference::Direct(id) => {
                let token = required(parts.token, "BinarySecurityToken")?;
                if wsu_id(&doc, token) != Some(id.as_str()) {
                    return Err(WssError::new(
                        FaultKind::InvalidSecurityToken,
                        format!("the signature's key #{id} is not the header's BinarySecurityToken"),
                    ));
                }
                message::token_certificate(&doc, token)?
            }
            KeyReference::Embedded(certificate) => certificate,
        };
        let leaf =
            self.anchors.verify_chain(std::slice::from_ref(&client.der), now.timestamp()).map_err(|e| match e {
                ChainError::Malformed(reason) => WssError::new(FaultKind::InvalidSecurityToken, reason),
                ChainError::Untrusted(reason) | ChainError::Expired(reason) => WssError::new(
                    FaultKind::FailedAuthentication,
                    format!("the signing certificate is refused: {reason}"),
                ),
            })?;
        let mut targets = vec![(timestamp, "Timestamp"), (envelope.body, "Body")];
        let oppslag_header: Vec<_> =
            envelope.blocks.iter().copied().filter(|&b| is(&doc, b, NS_OPPSLAG, "Oppslagstjenesten")).collect();
        match oppslag_header.as_slice() {
            [] => {}
            [block] => targets.push((*block, "Oppslagstjenesten header")),
            _ => return Err(WssError::invalid("the request has more than one Oppslagstjenesten header")),
        }
        let mut canonical =
            signature::verify(&doc, signature, &client, &Expected { targets: &targets, sha1_digests: true })?;
        let (created, expires) = message::timestamp(&doc, timestamp)?;
        self.window.check(created, expires, now)?;

        // The SignatureValue goes back in the answer's SignatureConfirmation: `verify` took it as
        // base64 text only.
        let signature_value: String = {
            let value = message::only(&doc, signature, super::NS_DSIG, "SignatureValue")?;
            message::text(&doc, value).chars().filter(|c| !c.is_ascii_whitespace()).collect()
        };
        // A signed request is taken once: the same one again, while its Timestamp could still
        // pass, is a replay.
        let seen = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, signature_value.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(seen.as_ref());
        match self.seen.first_use(key) {
            FirstUse::Yes => {}
            FirstUse::No => {
                return Err(WssError::invalid("this signed request was seen before: a replayed request is refused"));
            }
            FirstUse::Full => {
                return Err(WssError::new(
                    FaultKind::Busy,
                    "more signed requests arrive than the service can remember: retry shortly",
                ));
            }
        }
        // The signed parts as signed (their exclusive canonical forms): what the request is read from.
        let header = canonical.get_mut(2).map(std::mem::take).unwrap_or_default();
        let body = std::mem::take(&mut canonical[1]);
        let envelope =
            format!(r#"<env:Envelope xmlns:env="{NS_SOAP12}"><env:Header>{header}</env:Header>{body}</env:Envelope>"#);
        Ok(VerifiedRequest { envelope, client, orgno: leaf.orgno, signature_value })
    }

    /// The answer, signed over its Timestamp, Body and SignatureConfirmation, then its Body
    /// content encrypted (aes256-cbc) to the request's certificate.
    pub fn seal(&self, response: &Response, request: &VerifiedRequest, now: DateTime<Utc>) -> Result<String, WssError> {
        let ids = Ids::fresh();
        let security = template::security(
            &ids,
            &self.credentials.certificate.base64,
            now,
            now + ANSWER_TTL,
            &[&ids.timestamp, &ids.body, &ids.confirmation],
            Some(&request.signature_value),
        );
        let secured =
            Secured { namespaces: &template::NAMESPACES, security: &security, body_id: &ids.body, header_id: "" };
        let unsigned = write::response(response, Some(&secured))
            .map_err(|e| WssError::failed(format!("the answer cannot be written: {e}")))?;
        let (signed, _) = signature::sign(&unsigned, &self.credentials)?;

        // The layout is ours, so the Body's content and the header's start are found by the
        // exact text written above.
        let body_start = format!(r#"<env:Body wsu:Id="{}">"#, ids.body);
        let content_start = signed.find(&body_start).map(|at| at + body_start.len());
        let content_end = signed.rfind("</env:Body>");
        let security_start = signed.find(SECURITY_START).map(|at| at + SECURITY_START.len());
        let (Some(content_start), Some(content_end), Some(security_start)) =
            (content_start, content_end, security_start)
        else {
            return Err(WssError::failed("the signed answer does not have the layout written"));
        };
        let cipher = crypt::CONTENT_CIPHERS[0];
        let (key, sealed) = crypt::seal(&signed.as_bytes()[content_start..content_end], cipher)?;
        let wrapped = crypt::wrap_key(&key, &request.client)?;
        let encrypted_key =
            template::encrypted_key(&ids, &request.client.issuer, &request.client.serial, &STANDARD.encode(wrapped));
        let encrypted_data = template::encrypted_data(&ids, cipher, &STANDARD.encode(sealed));

        let mut answer = String::with_capacity(signed.len() / 2 + encrypted_data.len() + encrypted_key.len());
        answer.push_str(&signed[..security_start]);
        answer.push_str(&encrypted_key);
        answer.push_str(&signed[security_start..content_start]);
        answer.push_str(&encrypted_data);
        answer.push_str(&signed[content_end..]);
        Ok(answer)
    }
}
