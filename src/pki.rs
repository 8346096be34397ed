//! Virksomhetssertifikater: chains checked against the configured trust anchors (the dev test
//! CA for the demo; Buypass and Commfides in production), and the organisation number read from
//! the certificate. The issuer checks the `x5c` of Maskinporten grants with it, the simulator the
//! certificate that signed a SOAP request.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::*;

/// A chain longer than this is refused unread.
const MAX_CHAIN: usize = 5;
const MAX_CERT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// The `x5c` value itself is wrong (not an array of base64 DER certificates).
    Malformed(String),
    /// The chain does not lead to a trust anchor, or a signature in it is wrong.
    Untrusted(String),
    /// The leaf certificate is outside its validity period.
    Expired(String),
}

/// The leaf certificate's key and what Portvakt reads from it.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub spki_der: Vec<u8>,
    pub orgno: Option<String>,
    pub subject: String,
}

#[derive(Default)]
pub struct TrustAnchors {
    anchors: Vec<Vec<u8>>,
}

impl TrustAnchors {
    pub fn load(paths: &[PathBuf]) -> crate::error::Result<TrustAnchors> {
        use crate::error::{Context, Error};
        let mut anchors = Vec::new();
        for path in paths {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .with_context(|| path.display().to_string())?
                .collect::<Result<_, _>>()
                .with_context(|| path.display().to_string())?;
            if certs.is_empty() {
                return Err(Error::new(format!("{} holds no certificate", path.display())));
            }
            for cert in certs {
                X509Certificate::from_der(&cert).with_context(|| path.display().to_string())?;
                anchors.push(cert.to_vec());
            }
        }
        Ok(TrustAnchors { anchors })
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Check an `x5c` chain (leaf first) at `now` and return the leaf.
    pub fn verify(&self, x5c: &serde_json::Value, now: i64) -> Result<Leaf, ChainError> {
        let entries = x5c
            .as_array()
            .ok_or_else(|| ChainError::Malformed("x5c must be a JSON array of base64 certificates".into()))?;
        if entries.is_empty() || entries.len() > MAX_CHAIN {
            return Err(ChainError::Malformed(format!("x5c must hold 1 to {MAX_CHAIN} certificates")));
        }
        let ders = entries
            .iter()
            .map(|entry| {
                let text = entry.as_str().ok_or_else(|| ChainError::Malformed("x5c entries must be strings".into()))?;
                if text.len() > MAX_CERT_BYTES * 4 / 3 + 4 {
                    return Err(ChainError::Malformed("an x5c certificate is too large".into()));
                }
                STANDARD.decode(text).map_err(|_| ChainError::Malformed("an x5c entry is not base64".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.verify_chain(&ders, now)
    }

    /// Check a chain of DER certificates (leaf first, at most five) at `now` and return the leaf.
    pub fn verify_chain(&self, ders: &[Vec<u8>], now: i64) -> Result<Leaf, ChainError> {
        if ders.is_empty() || ders.len() > MAX_CHAIN {
            return Err(ChainError::Malformed(format!("a chain must hold 1 to {MAX_CHAIN} certificates")));
        }
        if ders.iter().any(|der| der.len() > MAX_CERT_BYTES) {
            return Err(ChainError::Malformed("a certificate is too large".into()));
        }
        let certs = ders
            .iter()
            .map(|der| {
                X509Certificate::from_der(der)
                    .map(|(_, cert)| cert)
                    .map_err(|e| ChainError::Malformed(format!("an x5c entry is not a certificate: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let at = ASN1Time::from_timestamp(now).map_err(|e| ChainError::Untrusted(e.to_string()))?;
        let leaf = &certs[0];
        if is_ca(leaf) {
            return Err(ChainError::Untrusted(format!("{} is a CA certificate, not a client's", leaf.subject())));
        }
        if let Ok(Some(usage)) = leaf.key_usage()
            && !(usage.value.digital_signature() || usage.value.non_repudiation())
        {
            return Err(ChainError::Untrusted(format!("{} may not sign (key usage)", leaf.subject())));
        }
        check_client_usage(leaf)?;
        if !leaf.validity().is_valid_at(at) {
            return Err(ChainError::Expired(format!(
                "the certificate is valid from {} to {}",
                leaf.validity().not_before,
                leaf.validity().not_after
            )));
        }
        for (index, pair) in certs.windows(2).enumerate() {
            let (child, parent) = (&pair[0], &pair[1]);
            // The CA certificates below `parent` in the chain (the leaf is not one).
            check_issuing_ca(parent, index)?;
            if !parent.validity().is_valid_at(at) {
                return Err(ChainError::Untrusted(format!("{} is outside its validity period", parent.subject())));
            }
            if child.issuer() != parent.subject() || child.verify_signature(Some(parent.public_key())).is_err() {
                return Err(ChainError::Untrusted(format!(
                    "{} is not signed by {}",
                    child.subject(),
                    parent.subject()
                )));
            }
        }
        let last = &certs[certs.len() - 1];
        let last_der = &ders[ders.len() - 1];
        let mut anchor_refusal = None;
        let anchored = self.anchors.iter().any(|anchor_der| {
            if anchor_der == last_der {
                return true;
            }
            let Ok((_, anchor)) = X509Certificate::from_der(anchor_der) else { return false };
            let issued = anchor.validity().is_valid_at(at)
                && last.issuer() == anchor.subject()
                && last.verify_signature(Some(anchor.public_key())).is_ok();
            // The anchor's own constraints hold for the whole chain below it.
            match check_issuing_ca(&anchor, certs.len() - 1) {
                Err(refusal) if issued => {
                    anchor_refusal = Some(refusal);
                    false
                }
                _ => issued,
            }
        });
        if let Some(refusal) = anchor_refusal.filter(|_| !anchored) {
            return Err(refusal);
        }
        if !anchored {
            return Err(ChainError::Untrusted(format!(
                "the chain of {} does not lead to a trusted CA",
                leaf.subject()
            )));
        }
        Ok(Leaf { spki_der: leaf.public_key().raw.to_vec(), orgno: orgno(leaf), subject: leaf.subject().to_string() })
    }
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

/// RFC 5280 §4.2.1.9 and §4.2.1.3 for a certificate that issued the one below it: a CA
/// (basicConstraints CA=true), whose pathLenConstraint allows the `below` CA certificates under
/// it (the leaf not counted), and whose keyUsage, when present, has keyCertSign.
fn check_issuing_ca(cert: &X509Certificate<'_>, below: usize) -> Result<(), ChainError> {
    let subject = cert.subject();
    let constraints = match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => bc.value,
        Ok(_) => {
            return Err(ChainError::Untrusted(format!(
                "{subject} issued a certificate in the chain but is not a CA (basicConstraints CA=true is missing)"
            )));
        }
        Err(e) => return Err(ChainError::Untrusted(format!("{subject} has unreadable basicConstraints: {e}"))),
    };
    if let Some(limit) = constraints.path_len_constraint
        && below > limit as usize
    {
        return Err(ChainError::Untrusted(format!(
            "{subject} allows {limit} CA certificate(s) below it (pathLenConstraint), the chain has {below}"
        )));
    }
    match cert.key_usage() {
        Ok(Some(usage)) if !usage.value.key_cert_sign() => {
            Err(ChainError::Untrusted(format!("{subject} may not sign certificates (its keyUsage lacks keyCertSign)")))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(ChainError::Untrusted(format!("{subject} has an unreadable keyUsage: {e}"))),
    }
}

/// The leaf's extendedKeyUsage, when it has one, must allow client authentication (or any
/// use). Virksomhetssertifikater made to the SEID profiles carry id-kp-clientAuth on the
/// authentication certificate (often with emailProtection), the one a Maskinporten client signs
/// with; a certificate without the extension is not restricted (RFC 5280 §4.2.1.12). This is
/// from the profiles as recalled, not checked against the SEID documents here: a signing or seal
/// certificate whose EKU names neither is refused, as is a TLS server certificate (serverAuth).
fn check_client_usage(leaf: &X509Certificate<'_>) -> Result<(), ChainError> {
    match leaf.extended_key_usage() {
        Ok(Some(eku)) if !(eku.value.client_auth || eku.value.any) => Err(ChainError::Untrusted(format!(
            "{} is not for client authentication (its extendedKeyUsage lacks clientAuth)",
            leaf.subject()
        ))),
        Ok(_) => Ok(()),
        Err(e) => Err(ChainError::Untrusted(format!("{} has an unreadable extendedKeyUsage: {e}", leaf.subject()))),
    }
}

/// A virksomhetssertifikat names its organisation in `serialNumber` (the 9-digit number) or, in
/// newer profiles, in `organizationIdentifier` as `NTRNO-<number>`.
pub fn orgno(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject().iter_attributes().find_map(|attr| {
        let value = attr.as_str().ok()?;
        let candidate = match attr.attr_type().to_id_string().as_str() {
            "2.5.4.97" => value.strip_prefix("NTRNO-")?,
            "2.5.4.5" => value,
            _ => return None,
        };
        crate::personid::is_orgno(candidate).then(|| candidate.to_owned())
    })
}

/// Read the public key (SubjectPublicKeyInfo DER) from a PEM certificate or public key.
pub fn public_key_from_pem(pem: &[u8]) -> crate::error::Result<Vec<u8>> {
    use crate::error::Context;
    if let Ok(cert) = CertificateDer::from_pem_slice(pem) {
        let (_, parsed) = X509Certificate::from_der(&cert).context("not a certificate")?;
        return Ok(parsed.public_key().raw.to_vec());
    }
    rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(pem)
        .map(|spki| spki.to_vec())
        .context("neither a PEM certificate nor a PEM public key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dev(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/dev").join(path)
    }

    fn chain(path: &str) -> serde_json::Value {
        let cert = CertificateDer::from_pem_file(dev(path)).unwrap();
        json!([STANDARD.encode(cert.as_ref())])
    }

    #[test]
    fn the_demo_certificate_leads_to_the_test_ca() {
        let anchors = TrustAnchors::load(&[dev("test-ca.cert.pem")]).unwrap();
        let leaf = anchors.verify(&chain("demo-maskinporten.cert.pem"), crate::token::verify::unix_now()).unwrap();
        assert_eq!(leaf.orgno.as_deref(), Some("991825827"));
    }

    #[test]
    fn untrusted_expired_and_malformed_chains_are_told_apart() {
        let anchors = TrustAnchors::load(&[dev("test-ca.cert.pem")]).unwrap();
        let now = crate::token::verify::unix_now();
        let nobody = TrustAnchors::default();
        assert!(matches!(nobody.verify(&chain("demo-maskinporten.cert.pem"), now), Err(ChainError::Untrusted(_))));
        assert!(matches!(
            anchors.verify(&chain("demo-maskinporten.cert.pem"), now + 20 * 365 * 86400),
            Err(ChainError::Expired(_))
        ));
        assert!(matches!(anchors.verify(&json!("MIIB"), now), Err(ChainError::Malformed(_))));
        assert!(matches!(anchors.verify(&json!(["not base64!"]), now), Err(ChainError::Malformed(_))));
        // The CA's own certificate is trusted, but it is not a client's.
        assert!(matches!(anchors.verify(&chain("test-ca.cert.pem"), now), Err(ChainError::Untrusted(_))));
    }
}
