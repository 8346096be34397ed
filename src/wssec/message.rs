//! The structural view of a SOAP 1.2 message with a `wsse:Security` header, on one parse: which
//! node is the Body, the Timestamp, the token, the signature. These are the nodes a signature
//! must resolve to, and the only ones read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bergshamra::xml::uppsala::{Document, NodeId};
use chrono::{DateTime, Utc};

use super::{BASE64_BINARY, Certificate, FaultKind, NS_DSIG, NS_WSSE, NS_WSSE11, NS_WSU, NS_XENC, WssError, X509V3};
use crate::soap::NS_SOAP12;
use crate::soap::xml::{Limits, check_bounded};

/// The bounds of a message before it is parsed into a tree: a 1,000-person answer has about
/// 15,000 elements, and nothing in the profile nests deeper than 12.
fn limits() -> Limits {
    Limits { max_depth: 24, max_elements: 40_000 }
}

/// Parse a message after checking it against the bounds (no DTD, depth, element count).
pub(super) fn parse(xml: &str) -> Result<Document<'_>, WssError> {
    check_bounded(xml, limits()).map_err(|e| WssError::invalid(format!("the message is not acceptable XML: {e}")))?;
    bergshamra::xml::uppsala::parse(xml).map_err(|e| WssError::invalid(format!("the message is not XML: {e}")))
}

pub(super) fn is(doc: &Document<'_>, node: NodeId, namespace: &str, local: &str) -> bool {
    doc.element(node).is_some_and(|e| e.name.namespace_uri.as_deref() == Some(namespace) && e.name.local_name == local)
}

/// The element children of `node`, in order.
pub(super) fn elements(doc: &Document<'_>, node: NodeId) -> Vec<NodeId> {
    doc.children(node).into_iter().filter(|&child| doc.element(child).is_some()).collect()
}

/// The one child element `namespace:local` of `parent`; none or several is an error.
pub(super) fn only(doc: &Document<'_>, parent: NodeId, namespace: &str, local: &str) -> Result<NodeId, WssError> {
    let mut found = elements(doc, parent).into_iter().filter(|&c| is(doc, c, namespace, local));
    match (found.next(), found.next()) {
        (Some(node), None) => Ok(node),
        (None, _) => Err(WssError::invalid(format!("{} is missing in {}", local, name(doc, parent)))),
        (Some(_), Some(_)) => Err(WssError::invalid(format!("{} holds more than one {}", name(doc, parent), local))),
    }
}

pub(super) fn name(doc: &Document<'_>, node: NodeId) -> String {
    doc.element(node).map(|e| e.name.local_name.to_string()).unwrap_or_else(|| "(not an element)".into())
}

pub(super) fn attribute<'d>(doc: &'d Document<'_>, node: NodeId, local: &str) -> Option<&'d str> {
    doc.element(node)
        .and_then(|e| e.attributes.iter().find(|a| a.name.namespace_uri.is_none() && a.name.local_name == local))
        .map(|a| &*a.value)
}

pub(super) fn wsu_id<'d>(doc: &'d Document<'_>, node: NodeId) -> Option<&'d str> {
    doc.element(node).and_then(|e| e.get_attribute_ns(NS_WSU, "Id"))
}

/// `Algorithm` of the one `namespace:local` child of `parent`.
pub(super) fn algorithm<'d>(
    doc: &'d Document<'_>,
    parent: NodeId,
    namespace: &str,
    local: &str,
) -> Result<&'d str, WssError> {
    let method = only(doc, parent, namespace, local)?;
    attribute(doc, method, "Algorithm").ok_or_else(|| WssError::invalid(format!("{local} has no Algorithm")))
}

/// The text of an element, whitespace trimmed.
pub(super) fn text(doc: &Document<'_>, node: NodeId) -> String {
    doc.text_content_deep(node).trim().to_owned()
}

/// Base64 text (line breaks allowed), bounded before it is decoded.
pub(super) fn base64(doc: &Document<'_>, node: NodeId, what: &str, max_bytes: usize) -> Result<Vec<u8>, WssError> {
    let text = doc.text_content_deep(node);
    let mut bytes = text.into_bytes();
    bytes.retain(|b| !b.is_ascii_whitespace());
    if bytes.len() > max_bytes / 3 * 4 + 4 {
        return Err(WssError::invalid(format!("{what} is larger than {max_bytes} bytes")));
    }
    STANDARD.decode(bytes).map_err(|_| WssError::invalid(format!("{what} is not base64")))
}

/// The Envelope's parts: its Header, the one `wsse:Security` in it, the other header blocks,
/// and the Body.
pub(super) struct Envelope {
    pub security: NodeId,
    pub blocks: Vec<NodeId>,
    pub body: NodeId,
}

impl Envelope {
    pub fn read(doc: &Document<'_>) -> Result<Envelope, WssError> {
        let root = doc.document_element().ok_or_else(|| WssError::invalid("the message is empty"))?;
        if !is(doc, root, NS_SOAP12, "Envelope") {
            return Err(WssError::invalid("the message is not a SOAP 1.2 Envelope"));
        }
        let children = elements(doc, root);
        let (header, body) = match children.as_slice() {
            [header, body] if is(doc, *header, NS_SOAP12, "Header") && is(doc, *body, NS_SOAP12, "Body") => {
                (*header, *body)
            }
            _ => return Err(WssError::invalid("the Envelope must hold exactly a Header and a Body")),
        };
        let (mut securities, blocks): (Vec<NodeId>, Vec<NodeId>) =
            elements(doc, header).into_iter().partition(|&block| is(doc, block, NS_WSSE, "Security"));
        let security = match (securities.pop(), securities.is_empty()) {
            (Some(security), true) => security,
            (None, _) => return Err(WssError::invalid("the message has no wsse:Security header")),
            (Some(_), false) => return Err(WssError::invalid("the message has more than one wsse:Security header")),
        };
        Ok(Envelope { security, blocks, body })
    }
}

/// The children of `wsse:Security`, each allowed at most once; anything else is refused.
#[derive(Default)]
pub(super) struct SecurityParts {
    pub encrypted_key: Option<NodeId>,
    pub token: Option<NodeId>,
    pub signature: Option<NodeId>,
    pub timestamp: Option<NodeId>,
    pub confirmation: Option<NodeId>,
}

impl SecurityParts {
    pub fn read(doc: &Document<'_>, security: NodeId) -> Result<SecurityParts, WssError> {
        let mut parts = SecurityParts::default();
        for child in elements(doc, security) {
            let slot = if is(doc, child, NS_XENC, "EncryptedKey") {
                &mut parts.encrypted_key
            } else if is(doc, child, NS_WSSE, "BinarySecurityToken") {
                &mut parts.token
            } else if is(doc, child, NS_DSIG, "Signature") {
                &mut parts.signature
            } else if is(doc, child, NS_WSU, "Timestamp") {
                &mut parts.timestamp
            } else if is(doc, child, NS_WSSE11, "SignatureConfirmation") {
                &mut parts.confirmation
            } else {
                return Err(WssError::invalid(format!("wsse:Security holds an unexpected {}", name(doc, child))));
            };
            if slot.replace(child).is_some() {
                return Err(WssError::invalid(format!("wsse:Security holds more than one {}", name(doc, child))));
            }
        }
        Ok(parts)
    }
}

pub(super) fn required(part: Option<NodeId>, what: &str) -> Result<NodeId, WssError> {
    part.ok_or_else(|| WssError::invalid(format!("wsse:Security has no {what}")))
}

/// `wsu:Created` and `wsu:Expires` of a Timestamp.
pub(super) fn timestamp(doc: &Document<'_>, node: NodeId) -> Result<(DateTime<Utc>, DateTime<Utc>), WssError> {
    let read = |local: &str| -> Result<DateTime<Utc>, WssError> {
        let value = text(doc, only(doc, node, NS_WSU, local)?);
        DateTime::parse_from_rfc3339(&value)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| WssError::invalid(format!("Timestamp {local} is not an xs:dateTime")))
    };
    Ok((read("Created")?, read("Expires")?))
}

/// The X.509 certificate of a `wsse:BinarySecurityToken`.
pub(super) fn token_certificate(doc: &Document<'_>, token: NodeId) -> Result<Certificate, WssError> {
    if attribute(doc, token, "ValueType") != Some(X509V3) {
        return Err(WssError::new(FaultKind::InvalidSecurityToken, "the BinarySecurityToken is not an X509v3 token"));
    }
    if attribute(doc, token, "EncodingType").is_some_and(|encoding| encoding != BASE64_BINARY) {
        return Err(WssError::new(FaultKind::InvalidSecurityToken, "the BinarySecurityToken is not Base64Binary"));
    }
    let der = base64(doc, token, "the BinarySecurityToken", super::MAX_CERT_BYTES)
        .map_err(|e| WssError::new(FaultKind::InvalidSecurityToken, e.message))?;
    Certificate::from_der(der)
}

/// How a signature's KeyInfo names its key.
pub(super) enum KeyReference {
    /// `wsse:Reference URI="#…"`: a BinarySecurityToken of the header, by its `wsu:Id`.
    Direct(String),
    /// `wsse:KeyIdentifier ValueType="…#X509v3"`: the certificate itself.
    Embedded(Certificate),
}

pub(super) fn key_reference(doc: &Document<'_>, signature: NodeId) -> Result<KeyReference, WssError> {
    let key_info = only(doc, signature, NS_DSIG, "KeyInfo")?;
    let reference = only(doc, key_info, NS_WSSE, "SecurityTokenReference")?;
    let children = elements(doc, reference);
    match children.as_slice() {
        [direct] if is(doc, *direct, NS_WSSE, "Reference") => {
            let uri = attribute(doc, *direct, "URI").unwrap_or_default();
            let id = uri.strip_prefix('#').ok_or_else(|| {
                WssError::invalid("the SecurityTokenReference must point into the message (URI=\"#…\")")
            })?;
            Ok(KeyReference::Direct(id.to_owned()))
        }
        [identifier] if is(doc, *identifier, NS_WSSE, "KeyIdentifier") => {
            if attribute(doc, *identifier, "ValueType") != Some(X509V3) {
                return Err(WssError::new(
                    FaultKind::InvalidSecurityToken,
                    "only an X509v3 KeyIdentifier names the certificate itself",
                ));
            }
            let der = base64(doc, *identifier, "the KeyIdentifier", super::MAX_CERT_BYTES)
                .map_err(|e| WssError::new(FaultKind::InvalidSecurityToken, e.message))?;
            Ok(KeyReference::Embedded(Certificate::from_der(der)?))
        }
        _ => Err(WssError::invalid(
            "the signature's SecurityTokenReference must hold one wsse:Reference or one X509v3 wsse:KeyIdentifier",
        )),
    }
}
