//! Verifying the one signature of a message: algorithms on allow-lists before any work, the
//! signature itself by bergshamra with a key from configuration, and then the binding: every
//! reference must resolve to one of the structural nodes expected, each exactly once.

use bergshamra::c14n::C14nMode;
use bergshamra::core::algorithm;
use bergshamra::xml::nodeset::NodeSet;
use bergshamra::xml::uppsala::{Document, NodeId};
use bergshamra::{DsigContext, KeysManager, VerifyResult};

use super::message::{attribute, elements, is, only};
use super::{NS_DSIG, WssError};

/// Signature methods accepted: RSA with SHA-2. rsa-sha1 is refused (§5.5).
const SIGNATURE_METHODS: [&str; 3] = [algorithm::RSA_SHA256, algorithm::RSA_SHA384, algorithm::RSA_SHA512];
const DIGESTS: [&str; 3] = [algorithm::SHA256, algorithm::SHA384, algorithm::SHA512];

/// What a signature must cover: these nodes, and nothing else.
pub(super) struct Expected<'a> {
    pub targets: &'a [(NodeId, &'static str)],
    /// SHA-1 digests under an RSA-SHA-2 signature, as Difi's .NET client sends them.
    pub sha1_digests: bool,
}

/// Verify `signature` (the structural one of the Security header) with `key`.
pub(super) fn verify(
    doc: &Document<'_>,
    xml: &str,
    signature: NodeId,
    key: bergshamra::Key,
    expected: &Expected<'_>,
) -> Result<(), WssError> {
    check_algorithms(doc, signature, expected)?;
    // bergshamra verifies the first Signature of the document: it must be this one, alone.
    let signatures = doc.get_elements_by_tag_name_ns(NS_DSIG, "Signature");
    if signatures.as_slice() != [signature] {
        return Err(WssError::invalid("the message must hold exactly one ds:Signature, in wsse:Security"));
    }
    let mut keys = KeysManager::new();
    keys.add_key(key);
    let mut context = DsigContext::new(keys);
    // Strict mode allows only references to ancestors and siblings of the signature, which a
    // WS-Security Body never is; the binding to the structural nodes is checked below instead.
    context.strict_verification = false;
    let verified = bergshamra::dsig::verify::verify_document_with_source(&context, doc, Some(xml))
        .map_err(|e| WssError::failed(format!("the signature cannot be verified: {e}")))?;
    let references = match verified {
        VerifyResult::Valid { signature_node, references, .. } if signature_node == signature => references,
        VerifyResult::Valid { .. } => return Err(WssError::failed("another signature than the header's was verified")),
        VerifyResult::Invalid { reason } => {
            return Err(WssError::failed(format!("the signature is not valid: {reason}")));
        }
    };
    if references.len() != expected.targets.len() || references.iter().any(|r| !r.digest_verified) {
        return Err(WssError::failed("the signature's references are not the ones expected"));
    }
    for (target, what) in expected.targets {
        let covering = references.iter().filter(|r| r.resolved_node == Some(*target)).count();
        if covering != 1 {
            return Err(WssError::failed(format!("the signature does not cover the message's {what}")));
        }
    }
    Ok(())
}

/// Before any digest is computed, the signature must have exactly the profile's shape, since
/// bergshamra acts on whatever it finds: SignedInfo holds a CanonicalizationMethod (exclusive
/// C14N, never `#WithComments`), an allowed SignatureMethod and the References; each Reference
/// names an element by id and holds exactly one Transform (exclusive C14N), an allowed
/// DigestMethod and its DigestValue. No attribute is given twice or in another namespace, so
/// what is checked here is what bergshamra reads.
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
        [list] if is(doc, *list, algorithm::EXC_C14N, "InclusiveNamespaces") => Ok(()),
        _ => Err(WssError::invalid("exclusive C14N takes an InclusiveNamespaces prefix list and nothing else")),
    }
}

/// In the signature, an attribute appears once by its local name, and those that steer
/// bergshamra (`Algorithm`, `URI`, `Type`) only without a namespace: it reads attributes by
/// local name, in any namespace. (`wsu:Id` on a SecurityTokenReference, as WSS4J writes it, is fine.)
fn check_attributes(doc: &Document<'_>, signature: NodeId) -> Result<(), WssError> {
    let mut nodes = vec![signature];
    nodes.extend(doc.descendants(signature));
    for node in nodes {
        let Some(element) = doc.element(node) else { continue };
        for (index, attribute) in element.attributes.iter().enumerate() {
            let namespaced = attribute.name.namespace_uri.is_some()
                && matches!(&*attribute.name.local_name, "Algorithm" | "URI" | "Type");
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

/// The exclusive canonical form of `node`: the bytes its digest covered (bar an inclusive
/// prefix list), standalone with every namespace it uses. What the message says is read from it.
pub(super) fn canonical(doc: &Document<'_>, node: NodeId) -> Result<String, WssError> {
    let subtree = NodeSet::tree_without_comments(node, doc);
    let bytes = bergshamra::c14n::canonicalize_doc(doc, C14nMode::Exclusive, Some(&subtree), &[] as &[&str])
        .map_err(|e| WssError::failed(format!("the signed part cannot be canonicalized: {e}")))?;
    String::from_utf8(bytes).map_err(|_| WssError::failed("the signed part is not UTF-8"))
}
