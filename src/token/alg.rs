//! The JWS algorithms Portvakt verifies and signs with, and nothing else.
//!
//! `none` and the HMAC family are not representable: a token naming them is refused before any
//! key is looked up, which closes the classic "HS256 signed with the RSA public key" confusion.

use std::fmt;

use aws_lc_rs::signature::{self, VerificationAlgorithm};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// Which kind of public key an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

/// Why an `alg` header value was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AlgRefusal {
    #[error("alg \"none\" is refused: tokens must be signed")]
    None,
    #[error("alg \"{0}\" is refused: symmetric (HMAC) algorithms are never accepted")]
    Symmetric(String),
    #[error("alg \"{0}\" is not supported")]
    Unknown(String),
}

impl Alg {
    pub const ALL: [Alg; 9] =
        [Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256, Alg::PS384, Alg::PS512, Alg::ES256, Alg::ES384, Alg::EdDSA];

    pub fn parse(name: &str) -> Result<Alg, AlgRefusal> {
        Alg::ALL.into_iter().find(|alg| alg.name() == name).ok_or_else(|| {
            if name.eq_ignore_ascii_case("none") {
                AlgRefusal::None
            } else if name.starts_with("HS") {
                AlgRefusal::Symmetric(name.to_owned())
            } else {
                AlgRefusal::Unknown(name.chars().take(32).collect())
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn family(self) -> KeyFamily {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => KeyFamily::Rsa,
            Alg::ES256 => KeyFamily::EcP256,
            Alg::ES384 => KeyFamily::EcP384,
            Alg::EdDSA => KeyFamily::Ed25519,
        }
    }

    /// The aws-lc-rs verification algorithm; JWS ECDSA signatures are fixed-width `r‖s`.
    pub(crate) fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            Alg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Alg::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Alg::EdDSA => &signature::ED25519,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Alg {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Alg {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Alg::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refusals_are_specific() {
        for alg in Alg::ALL {
            assert_eq!(Alg::parse(alg.name()), Ok(alg));
        }
        assert_eq!(Alg::parse("none"), Err(AlgRefusal::None));
        assert_eq!(Alg::parse("NONE"), Err(AlgRefusal::None));
        assert_eq!(Alg::parse("HS256"), Err(AlgRefusal::Symmetric("HS256".into())));
        assert!(matches!(Alg::parse("RS1"), Err(AlgRefusal::Unknown(_))));
    }
}
