//! WS-Security 1.1 on the Oppslagstjenesten link, as `domain/README.md` §5.5 describes it: the
//! client (the KRR facade) signs requests and opens signed and encrypted answers; the server
//! (the simulator) verifies signed requests and answers signed, then encrypted.
//!
//! bergshamra does the exclusive C14N and the XML-Enc block ciphers; RSA (signatures and key
//! transport) and digests are aws-lc's. This layer owns the message layout, the signature
//! checks and the policy around them, which is where XML security goes wrong:
//! - one parse of the message, verified and then read from the very nodes the signature
//!   resolved to (the structural Timestamp, Body, header and SignatureConfirmation), so that
//!   signature wrapping fails;
//! - algorithms on allow-lists (exclusive C14N only, RSA-SHA-2 signatures, SHA-2 digests; SHA-1
//!   digests only where the domain notes say the real service takes them);
//! - keys from configuration: the pinned service certificate, or a client certificate that
//!   chains to the configured CAs; never a certificate trusted because a message carries it.
//!
//! Nothing outside this module names bergshamra.

pub mod client;
mod crypt;
mod message;
pub mod server;
mod signature;
mod template;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub use client::ClientSecurity;
pub use server::{Mode, ServerSecurity, VerifiedRequest};

pub const NS_WSSE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
pub const NS_WSU: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
pub const NS_WSSE11: &str = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd";
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const X509V3: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3";
const BASE64_BINARY: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";
const ENCRYPTED_KEY_TOKEN: &str = "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1#EncryptedKey";
const CONTENT: &str = "http://www.w3.org/2001/04/xmlenc#Content";

/// A certificate larger than this is refused unread (virksomhetssertifikater are about 2 KiB).
const MAX_CERT_BYTES: usize = 16 * 1024;

/// The WS-Security 1.1 fault codes a bad security header is answered with (SOAP 1.2 subcodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The header is missing, malformed, or not the layout the profile asks for.
    InvalidSecurity,
    /// The security token (the certificate) cannot be read.
    InvalidSecurityToken,
    /// The certificate does not chain to a trusted CA, or is outside its validity period.
    FailedAuthentication,
    /// A signature, digest or decryption is wrong.
    FailedCheck,
    /// The Timestamp has expired, or is not yet valid.
    MessageExpired,
    /// Not the sender's fault: the service cannot take the message now (a `Receiver` fault).
    Busy,
}

impl FaultKind {
    /// The qualified WS-Security fault code: (prefix, namespace, local name); none for `Busy`.
    pub fn qname(self) -> Option<(&'static str, &'static str, &'static str)> {
        Some(match self {
            FaultKind::InvalidSecurity => ("wsse", NS_WSSE, "InvalidSecurity"),
            FaultKind::InvalidSecurityToken => ("wsse", NS_WSSE, "InvalidSecurityToken"),
            FaultKind::FailedAuthentication => ("wsse", NS_WSSE, "FailedAuthentication"),
            FaultKind::FailedCheck => ("wsse", NS_WSSE, "FailedCheck"),
            FaultKind::MessageExpired => ("wsu", NS_WSU, "MessageExpired"),
            FaultKind::Busy => return None,
        })
    }
}

/// Why a message failed WS-Security: the fault code and a message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WssError {
    pub kind: FaultKind,
    pub message: String,
}

impl WssError {
    fn new(kind: FaultKind, message: impl Into<String>) -> WssError {
        WssError { kind, message: message.into() }
    }

    fn invalid(message: impl Into<String>) -> WssError {
        WssError::new(FaultKind::InvalidSecurity, message)
    }

    fn failed(message: impl Into<String>) -> WssError {
        WssError::new(FaultKind::FailedCheck, message)
    }
}

/// An X.509 certificate as the messages name it, with its RSA key.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    base64: String,
    issuer: String,
    serial: String,
    /// SubjectPublicKeyInfo: content keys are encrypted to it.
    spki: Vec<u8>,
    /// The PKCS#1 RSAPublicKey inside it: signatures are verified with it.
    rsa_public_key: Vec<u8>,
}

impl Certificate {
    pub fn from_der(der: Vec<u8>) -> Result<Certificate, WssError> {
        if der.len() > MAX_CERT_BYTES {
            return Err(WssError::new(FaultKind::InvalidSecurityToken, "the certificate is too large"));
        }
        let (issuer, serial, spki, rsa_public_key) = {
            let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| {
                WssError::new(FaultKind::InvalidSecurityToken, format!("the certificate cannot be read: {e}"))
            })?;
            let key = cert.public_key();
            if key.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
                return Err(WssError::new(FaultKind::InvalidSecurityToken, "the certificate's key is not an RSA key"));
            }
            (
                rfc2253(cert.issuer()),
                cert.tbs_certificate.serial.to_str_radix(10),
                key.raw.to_vec(),
                key.subject_public_key.data.to_vec(),
            )
        };
        Ok(Certificate { base64: STANDARD.encode(&der), der, issuer, serial, spki, rsa_public_key })
    }

    pub fn load(path: &Path) -> crate::error::Result<Certificate> {
        use crate::error::{Context, Error};
        let der = CertificateDer::from_pem_file(path).with_context(|| path.display().to_string())?;
        Certificate::from_der(der.to_vec()).map_err(|e| Error::new(format!("{}: {}", path.display(), e.message)))
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Does this `X509IssuerSerial` name this certificate? Stacks write the issuer's RDNs in
    /// either order and with or without spaces, so they are compared as a set.
    fn is_named_by(&self, issuer: &str, serial: &str) -> bool {
        let normal = |name: &str| {
            let mut parts = name.split(',').map(|part| part.trim().to_ascii_lowercase()).collect::<Vec<_>>();
            parts.sort();
            parts
        };
        serial.trim() == self.serial && normal(issuer) == normal(&self.issuer)
    }
}

/// An RFC 2253 name (most specific first), as X509IssuerName holds it.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for rdn in name.iter_rdn() {
        for attribute in rdn.iter() {
            let oid = attribute.attr_type();
            let key = x509_parser::objects::oid2abbrev(oid, x509_parser::objects::oid_registry())
                .map(str::to_owned)
                .unwrap_or_else(|_| oid.to_id_string());
            let value = attribute.as_str().unwrap_or_default();
            parts.push(format!("{key}={value}"));
        }
    }
    parts.reverse();
    parts.join(",")
}

/// A certificate with its private key: the facade's virksomhetssertifikat, or the service's.
pub struct Credentials {
    pub certificate: Certificate,
    /// Signs (RSA PKCS#1 v1.5 with SHA-256).
    signer: aws_lc_rs::rsa::KeyPair,
    /// Decrypts transported content keys (RSA-OAEP).
    decrypter: aws_lc_rs::rsa::OaepPrivateDecryptingKey,
}

impl Credentials {
    pub fn load(certificate: &Path, key: &Path) -> crate::error::Result<Credentials> {
        use crate::error::{Context, Error};
        use aws_lc_rs::rsa::{KeyPair, OaepPrivateDecryptingKey, PrivateDecryptingKey};
        use aws_lc_rs::signature::KeyPair as _;
        use rustls_pki_types::PrivateKeyDer;
        let certificate = Certificate::load(certificate)?;
        let unusable = || Error::new(format!("{}: not a usable RSA key (PKCS#8 PEM)", key.display()));
        let der = PrivateKeyDer::from_pem_file(key).with_context(|| key.display().to_string())?;
        let PrivateKeyDer::Pkcs8(pkcs8) = &der else { return Err(unusable()) };
        let signer = KeyPair::from_pkcs8(pkcs8.secret_pkcs8_der()).map_err(|_| unusable())?;
        let decrypter = PrivateDecryptingKey::from_pkcs8(pkcs8.secret_pkcs8_der())
            .ok()
            .and_then(|key| OaepPrivateDecryptingKey::new(key).ok())
            .ok_or_else(unusable)?;
        // A key that does not belong to its certificate would sign what nobody can verify.
        if signer.public_key().as_ref() != certificate.rsa_public_key.as_slice() {
            return Err(Error::new(format!("{} is not the key of its certificate", key.display())));
        }
        Ok(Credentials { certificate, signer, decrypter })
    }
}

/// How long a Timestamp may claim to live, and the clock skew allowed at either end.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub max_ttl: Duration,
    pub skew: Duration,
}

impl Window {
    fn check(&self, created: DateTime<Utc>, expires: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), WssError> {
        let expired = |message: String| WssError::new(FaultKind::MessageExpired, message);
        let skew = chrono::Duration::from_std(self.skew).unwrap_or_default();
        let max_ttl = chrono::Duration::from_std(self.max_ttl).unwrap_or_default();
        if expires <= created {
            return Err(WssError::invalid("the Timestamp expires before it was created"));
        }
        if expires - created > max_ttl {
            return Err(expired(format!(
                "the Timestamp lives {} s, more than the {} s allowed",
                (expires - created).num_seconds(),
                max_ttl.num_seconds()
            )));
        }
        if created > now + skew {
            return Err(expired(format!("the Timestamp was created in the future ({})", stamp(created))));
        }
        if expires + skew <= now {
            return Err(expired(format!("the Timestamp expired at {}", stamp(expires))));
        }
        Ok(())
    }
}

/// `xs:dateTime` in UTC with milliseconds, as WS-Security stacks write Created and Expires.
fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A fresh suffix for the `wsu:Id`s of one message.
fn fresh_id() -> String {
    let mut bytes = [0u8; 12];
    // The ids need only be unique within a message; a failing RNG leaves them fixed, not absent.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
