//! XML-DSig for the profile's one signature, on a single parse: algorithms and shape on
//! allow-lists before any work; each reference resolved by its id to one of the structural nodes
//! expected (each exactly once), canonicalized (exclusive C14N, bergshamra's), digested and
//! compared; then the canonical SignedInfo verified with the key from configuration (aws-lc).
//! The canonical form of each covered node is what the caller reads: one canonicalization
//! serves the digest and the reading. Signing is the same in reverse, also on one parse.

use std::collections::HashMap;

use aws_lc_rs::{digest, signature as rsa};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bergshamra::c14n::C14nMode;
use bergshamra::core::algorithm;
use bergshamra::xml::nodeset::NodeSet;
use bergshamra::xml::uppsala::{Document, NodeId};

use super::message::{attribute, elements, is, only};
use super::{Certificate, Credentials, NS_DSIG, WssError};

/// Signature methods accepted: RSA with SHA-2. rsa-sha1 is refused (§5.5).
const SIGNATURE_METHODS: [&str; 3] = [algorithm::RSA_SHA256, algorithm::RSA_SHA384, algorithm::RSA_SHA512];
const DIGESTS: [&str; 3] = [algorithm::SHA256, algorithm::SHA384, algorithm::SHA512];

/// What a signature must cover: these nodes, and nothing else.
pub(super) struct Expected<'a> {
    pub targets: &'a [(NodeId, &'static str)],
    /// SHA-1 digests under an RSA-SHA-2 signature, as Difi's .NET client sends them.
    pub sha1_digests: bool,
}

/// Verify `signature` (the structural one of the Security header) with `key`'s certificate.
/// Returns the canonical form of each target, in the order of `expected.targets`.
pub(super) fn verify(
    doc: &Document<'_>,
    signature: NodeId,
    key: &Certificate,
    expected: &Expected<'_>,
) -> Result<Vec<String>, WssError> {
    check_algorithms(doc, signature, expected)?;
    let signatures = doc.get_elements_by_tag_name_ns(NS_DSIG, "Signature");
    if signatures.as_slice() != [signature] {
        return Err(WssError::invalid("the message must hold exactly one ds:Signature, in wsse:Security"));
    }
    let ids = id_map(doc)?;
    let signed_info = only(doc, signature, NS_DSIG, "SignedInfo")?;
    // The SignedInfo first: it is small, and only the key's holder gets past it to the
    // digests, whose cost grows with the message.
    let c14n_method = only(doc, signed_info, NS_DSIG, "CanonicalizationMethod")?;
    let signed = c14n(doc, signed_info, &prefix_list(doc, c14n_method))?;
    let method = attribute(doc, only(doc, signed_info, NS_DSIG, "SignatureMethod")?, "Algorithm").unwrap_or_default();
    let value_node = only(doc, signature, NS_DSIG, "SignatureValue")?;
    if !elements(doc, value_node).is_empty() {
        return Err(WssError::invalid("the SignatureValue must be base64 text"));
    }
    let value = super::message::base64(doc, value_node, "the SignatureValue", 1024)?;
    rsa::UnparsedPublicKey::new(verification_algorithm(method)?, &key.rsa_public_key)
        .verify(signed.as_bytes(), &value)
        .map_err(|_| {
            WssError::failed("the signature is not valid: the SignatureValue does not verify with the certificate")
        })?;
    let mut canonical: Vec<Option<String>> = vec![None; expected.targets.len()];
    for reference in elements(doc, signed_info).into_iter().filter(|&r| is(doc, r, NS_DSIG, "Reference")) {
        let uri = attribute(doc, reference, "URI").unwrap_or_default();
        let node = uri.strip_prefix('#').and_then(|id| ids.get(id)).copied();
        let slot = expected.targets.iter().position(|(target, _)| Some(*target) == node);
        let Some(slot) = slot else {
            return Err(WssError::failed(format!("reference {uri} is not one of the parts the signature must cover")));
        };
        if canonical[slot].is_some() {
            return Err(WssError::failed(format!("the {} is referenced twice", expected.targets[slot].1)));
        }
        // The shape was checked above: Transforms (one Transform), DigestMethod, DigestValue.
        let parts = elements(doc, reference);
        let [transforms, method, stated] = parts.as_slice() else {
            return Err(WssError::invalid(format!(
                "reference {uri} must hold Transforms, DigestMethod and DigestValue"
            )));
        };
        let transform = only(doc, *transforms, NS_DSIG, "Transform")?;
        let text = c14n(doc, expected.targets[slot].0, &prefix_list(doc, transform))?;
        let method = attribute(doc, *method, "Algorithm").unwrap_or_default();
        let computed = digest::digest(digest_algorithm(method)?, text.as_bytes());
        let stated = super::message::base64(doc, *stated, "a DigestValue", 64)?;
        if stated.as_slice() != computed.as_ref() {
            return Err(WssError::failed(format!(
                "the signature is not valid: the digest of the {} does not match",
                expected.targets[slot].1
            )));
        }
        canonical[slot] = Some(text);
    }
    let canonical: Vec<String> = canonical
        .into_iter()
        .zip(expected.targets)
        .map(|(text, (_, what))| {
            text.ok_or_else(|| WssError::failed(format!("the signature does not cover the message's {what}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(canonical)
}

/// Sign our own `template` (written with `template::security`): fill each empty DigestValue
/// with its reference's digest and the SignatureValue over the canonical SignedInfo. Returns
/// the signed text and the SignatureValue.
pub(super) fn sign(template: &str, credentials: &Credentials) -> Result<(String, String), WssError> {
    let failed = |what: &str| WssError::failed(format!("the message cannot be signed: {what}"));
    let doc = bergshamra::xml::uppsala::parse(template).map_err(|e| failed(&e.to_string()))?;
    let ids = id_map(&doc)?;
    let signature = doc
        .get_elements_by_tag_name_ns(NS_DSIG, "Signature")
        .first()
        .copied()
        .ok_or_else(|| failed("the template has no ds:Signature"))?;
    let signed_info = only(&doc, signature, NS_DSIG, "SignedInfo")?;
    let mut digests = Vec::new();
    for reference in elements(&doc, signed_info).into_iter().filter(|&r| is(&doc, r, NS_DSIG, "Reference")) {
        let uri = attribute(&doc, reference, "URI").unwrap_or_default();
        let node = uri.strip_prefix('#').and_then(|id| ids.get(id)).copied().ok_or_else(|| failed(uri))?;
        let text = c14n(&doc, node, &[])?;
        digests.push(STANDARD.encode(digest::digest(&digest::SHA256, text.as_bytes())));
    }
    drop(doc);
    let mut signed = String::with_capacity(template.len() + 512);
    let mut rest = template;
    for value in &digests {
        let at = rest.find(EMPTY_DIGEST).ok_or_else(|| failed("fewer DigestValues than references"))?;
        signed.push_str(&rest[..at]);
        signed.push_str(&format!("<ds:DigestValue>{value}</ds:DigestValue>"));
        rest = &rest[at + EMPTY_DIGEST.len()..];
    }
    signed.push_str(rest);
    // The SignedInfo is written in canonical form but for the namespace declaration the
    // Envelope carries, which exclusive C14N puts on it.
    let start = signed.find("<ds:SignedInfo>").ok_or_else(|| failed("no SignedInfo"))?;
    let end = start
        + signed[start..].find("</ds:SignedInfo>").ok_or_else(|| failed("no SignedInfo"))?
        + "</ds:SignedInfo>".len();
    let canonical_signed_info =
        signed[start..end].replacen("<ds:SignedInfo>", &format!("<ds:SignedInfo xmlns:ds=\"{NS_DSIG}\">"), 1);
    let mut value = vec![0u8; credentials.signer.public_modulus_len()];
    credentials
        .signer
        .sign(
            &rsa::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            canonical_signed_info.as_bytes(),
            &mut value,
        )
        .map_err(|_| failed("RSA signing failed"))?;
    let value = STANDARD.encode(value);
    if !signed.contains(EMPTY_SIGNATURE) {
        return Err(failed("the template has no empty SignatureValue"));
    }
    let signed = signed.replacen(EMPTY_SIGNATURE, &format!("<ds:SignatureValue>{value}</ds:SignatureValue>"), 1);
    Ok((signed, value))
}

pub(super) const EMPTY_DIGEST: &str = "<ds:DigestValue></ds:DigestValue>";
pub(super) const EMPTY_SIGNATURE: &str = "<ds:SignatureValue></ds:SignatureValue>";

/// Every element's id (`Id`, `ID` or `id` in any namespace): an id given twice is refused, so a
/// reference cannot be made to resolve to a copy.
fn id_map(doc: &Document<'_>) -> Result<HashMap<String, NodeId>, WssError> {
    let mut ids = HashMap::new();
    let root = doc.root();
    for node in doc.descendants(root) {
        let Some(element) = doc.element(node) else { continue };
        for attribute in &element.attributes {
            if matches!(&*attribute.name.local_name, "Id" | "ID" | "id")
                && ids.insert(attribute.value.to_string(), node).is_some_and(|other| other != node)
            {
                return Err(WssError::invalid(format!(
                    "the id {:?} is given to more than one element",
                    attribute.value
                )));
            }
        }
    }
    Ok(ids)
}

/// The `PrefixList` of an exclusive C14N method's `InclusiveNamespaces`, if it has one.
fn prefix_list(doc: &Document<'_>, method: NodeId) -> Vec<String> {
    elements(doc, method)
        .first()
        .and_then(|&list| attribute(doc, list, "PrefixList"))
        .map(|list| list.split_ascii_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn digest_algorithm(uri: &str) -> Result<&'static digest::Algorithm, WssError> {
    Ok(match uri {
        algorithm::SHA256 => &digest::SHA256,
        algorithm::SHA384 => &digest::SHA384,
        algorithm::SHA512 => &digest::SHA512,
        algorithm::SHA1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        other => return Err(WssError::invalid(format!("digest {other} is refused"))),
    })
}

fn verification_algorithm(uri: &str) -> Result<&'static rsa::RsaParameters, WssError> {
    Ok(match uri {
        algorithm::RSA_SHA256 => &rsa::RSA_PKCS1_2048_8192_SHA256,
        algorithm::RSA_SHA384 => &rsa::RSA_PKCS1_2048_8192_SHA384,
        algorithm::RSA_SHA512 => &rsa::RSA_PKCS1_2048_8192_SHA512,
        other => return Err(WssError::invalid(format!("signature method {other} is refused"))),
    })
}

/// The exclusive canonical form of `node` (comments left out).
fn c14n(doc: &Document<'_>, node: NodeId, prefixes: &[String]) -> Result<String, WssError> {
    let subtree = NodeSet::tree_without_comments(node, doc);
    let bytes = bergshamra::c14n::canonicalize_doc(doc, C14nMode::Exclusive, Some(&subtree), prefixes)
        .map_err(|e| WssError::failed(format!("a signed part cannot be canonicalized: {e}")))?;
    String::from_utf8(bytes).map_err(|_| WssError::failed("a signed part is not UTF-8"))
}

/// Before any digest is computed, the signature must have exactly the profile's shape: SignedInfo holds a CanonicalizationMethod (exclusive
/// C14N, never `#WithComments`), an allowed SignatureMethod and the References; each Reference
/// names an element by id and holds exactly one Transform (exclusive C14N), an allowed
/// DigestMethod and its DigestValue. No attribute is given twice or in another namespace, so
/// what is checked here is what is read after.
fn check_algorithms(doc: &Document<'_>, signature: NodeId, expected: &Expected<'_>) -> Result<(), WssError> {
    check_attributes(doc, signature)?;
    let signed_info = only(doc, signature, NS_DSIG, "SignedInfo")?;
    let children = elements(doc, signed_info);
    let [c14n, method, references @ ..] = children.as_slice() else {
        return Err(WssError::invalid("SignedInfo must hold CanonicalizationMethod, SignatureMethod and References"));
    };
    if !is(doc, *c14n, NS_DSIG, "CanonicalizationMethod")
        || !is(doc, *method, NS_DSIG, "SignatureMethod")
        || !references.iter().all(|&r| is(doc, r, NS_DSIG, "Reference"))
    {
        return Err(WssError::invalid(
            "SignedInfo must hold CanonicalizationMethod, SignatureMethod and References, in that order",
        ));
    }
    let c14n_algorithm = attribute(doc, *c14n, "Algorithm").unwrap_or_default();
    if c14n_algorithm != algorithm::EXC_C14N {
        return Err(WssError::invalid(format!(
            "canonicalization {c14n_algorithm} is refused: only exclusive C14N is accepted"
        )));
    }
    only_prefix_list(doc, *c14n)?;
    let method_algorithm = attribute(doc, *method, "Algorithm").unwrap_or_default();
    if !SIGNATURE_METHODS.contains(&method_algorithm) || !elements(doc, *method).is_empty() {
        return Err(WssError::invalid(format!(
            "signature method {method_algorithm} is refused: RSA with SHA-2 is required"
        )));
    }
    if references.len() != expected.targets.len() {
        return Err(WssError::invalid(format!(
            "the signature has {} references; {} are required ({})",
            references.len(),
            expected.targets.len(),
            expected.targets.iter().map(|(_, what)| *what).collect::<Vec<_>>().join(", ")
        )));
    }
    for &reference in references {
        let uri = attribute(doc, reference, "URI").unwrap_or_default();
        let id = uri.strip_prefix('#').unwrap_or_default();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(WssError::invalid(format!(
                "reference {uri:?} does not name an element of the message by its id"
            )));
        }
        let parts = elements(doc, reference);
        let [transforms, digest, value] = parts.as_slice() else {
            return Err(WssError::invalid(format!(
                "reference {uri} must hold Transforms, DigestMethod and DigestValue"
            )));
        };
        if !is(doc, *transforms, NS_DSIG, "Transforms")
            || !is(doc, *digest, NS_DSIG, "DigestMethod")
            || !is(doc, *value, NS_DSIG, "DigestValue")
        {
            return Err(WssError::invalid(format!(
                "reference {uri} must hold Transforms, DigestMethod and DigestValue"
            )));
        }
        let transform = match elements(doc, *transforms).as_slice() {
            [transform] if is(doc, *transform, NS_DSIG, "Transform") => *transform,
            _ => return Err(WssError::invalid(format!("reference {uri} must have exactly one Transform"))),
        };
        let name = attribute(doc, transform, "Algorithm").unwrap_or_default();
        if name != algorithm::EXC_C14N {
            return Err(WssError::invalid(format!(
                "transform {name} of reference {uri} is refused: only exclusive C14N is accepted"
            )));
        }
        only_prefix_list(doc, transform)?;
        if !elements(doc, *value).is_empty() {
            return Err(WssError::invalid(format!("the DigestValue of reference {uri} must be text")));
        }
        let digest_algorithm = attribute(doc, *digest, "Algorithm").unwrap_or_default();
        if !(DIGESTS.contains(&digest_algorithm) || (expected.sha1_digests && digest_algorithm == algorithm::SHA1)) {
            return Err(WssError::invalid(format!("digest {digest_algorithm} of reference {uri} is refused")));
        }
    }
    Ok(())
}

/// Exclusive C14N takes one parameter, an `InclusiveNamespaces` prefix list; nothing else.
fn only_prefix_list(doc: &Document<'_>, method: NodeId) -> Result<(), WssError> {
    match elements(doc, method).as_slice() {
        [] => Ok(()),
        [list] if is(doc, *list, algorithm::EXC_C14N, "InclusiveNamespaces") => {
            // Canonicalization costs prefixes × elements: a list has a few short prefixes.
            let prefixes = attribute(doc, *list, "PrefixList").unwrap_or_default();
            let tokens: Vec<&str> = prefixes.split_ascii_whitespace().collect();
            let ncname = |t: &str| {
                t == "#default"
                    || (t.len() <= 64
                        && t.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            };
            if tokens.len() > MAX_PREFIXES || !tokens.iter().all(|t| ncname(t)) {
                return Err(WssError::invalid(format!(
                    "an InclusiveNamespaces PrefixList holds at most {MAX_PREFIXES} prefixes (or #default)"
                )));
            }
            Ok(())
        }
        _ => Err(WssError::invalid("exclusive C14N takes an InclusiveNamespaces prefix list and nothing else")),
    }
}

/// Prefixes an `InclusiveNamespaces` may list.
const MAX_PREFIXES: usize = 16;

/// In the signature, an attribute appears once by its local name, and those that steer
/// verification (`Algorithm`, `URI`, `Type`, `PrefixList`) only without a namespace: a verifier that reads
/// attributes by local name (libxmlsec1 and bergshamra do) sees what is checked here. (`wsu:Id`
/// on a SecurityTokenReference, as WSS4J writes it, is fine.)
fn check_attributes(doc: &Document<'_>, signature: NodeId) -> Result<(), WssError> {
    let mut nodes = vec![signature];
    nodes.extend(doc.descendants(signature));
    for node in nodes {
        let Some(element) = doc.element(node) else { continue };
        for (index, attribute) in element.attributes.iter().enumerate() {
            let namespaced = attribute.name.namespace_uri.is_some()
                && matches!(&*attribute.name.local_name, "Algorithm" | "URI" | "Type" | "PrefixList");
            let repeated = element.attributes[..index].iter().any(|a| a.name.local_name == attribute.name.local_name);
            if namespaced || repeated {
                return Err(WssError::invalid(format!(
                    "the signature's {} has an attribute {} given twice or in another namespace",
                    element.name.local_name, attribute.name.local_name
                )));
            }
        }
    }
    Ok(())
}
