//! Verifying the one signature of a message: algorithms on allow-lists before any work, the
//! signature itself by bergshamra with a key from configuration, and then the binding: every
//! reference must resolve to one of the structural nodes expected, each exactly once.

use bergshamra::c14n::C14nMode;
use bergshamra::core::algorithm;
use bergshamra::xml::nodeset::NodeSet;
use bergshamra::xml::uppsala::{Document, NodeId};
use bergshamra::{DsigContext, KeysManager, VerifyResult};

use super::message::{algorithm as algorithm_of, attribute, elements, is, only};
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

/// Before any digest is computed: exclusive C14N only (never `#WithComments`), an allowed
/// signature method and digests, same-document references, and no transform but exclusive C14N.
fn check_algorithms(doc: &Document<'_>, signature: NodeId, expected: &Expected<'_>) -> Result<(), WssError> {
    let signed_info = only(doc, signature, NS_DSIG, "SignedInfo")?;
    let c14n = algorithm_of(doc, signed_info, NS_DSIG, "CanonicalizationMethod")?;
    if c14n != algorithm::EXC_C14N {
        return Err(WssError::invalid(format!("canonicalization {c14n} is refused: only exclusive C14N is accepted")));
    }
    let method = algorithm_of(doc, signed_info, NS_DSIG, "SignatureMethod")?;
    if !SIGNATURE_METHODS.contains(&method) {
        return Err(WssError::invalid(format!("signature method {method} is refused: RSA with SHA-2 is required")));
    }
    let references: Vec<NodeId> =
        elements(doc, signed_info).into_iter().filter(|&c| is(doc, c, NS_DSIG, "Reference")).collect();
    if references.len() != expected.targets.len() {
        return Err(WssError::invalid(format!(
            "the signature has {} references; {} are required ({})",
            references.len(),
            expected.targets.len(),
            expected.targets.iter().map(|(_, what)| *what).collect::<Vec<_>>().join(", ")
        )));
    }
    for reference in references {
        let uri = attribute(doc, reference, "URI").unwrap_or_default();
        if !uri.starts_with('#') || uri.len() < 2 {
            return Err(WssError::invalid(format!("reference {uri:?} does not name an element of the message")));
        }
        let transforms = elements(doc, reference).into_iter().find(|&c| is(doc, c, NS_DSIG, "Transforms"));
        for transform in transforms.map(|t| elements(doc, t)).unwrap_or_default() {
            let name = attribute(doc, transform, "Algorithm").unwrap_or_default();
            if !is(doc, transform, NS_DSIG, "Transform") || name != algorithm::EXC_C14N {
                return Err(WssError::invalid(format!(
                    "transform {name} of reference {uri} is refused: only exclusive C14N is accepted"
                )));
            }
        }
        let digest = algorithm_of(doc, reference, NS_DSIG, "DigestMethod")?;
        if !(DIGESTS.contains(&digest) || (expected.sha1_digests && digest == algorithm::SHA1)) {
            return Err(WssError::invalid(format!("digest {digest} of reference {uri} is refused")));
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
