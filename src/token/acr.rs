//! Authentication levels. ID-porten's `Level3`/`Level4` and the new platform's
//! `idporten-loa-substantial`/`-high` name the same two levels; a higher one satisfies a lower.

use std::fmt;

use serde::{Deserialize, Deserializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Acr {
    /// MinID and other "substantial" eIDs.
    Level3,
    /// BankID, Buypass, Commfides: "high".
    Level4,
}

impl Acr {
    pub fn parse(value: &str) -> Option<Acr> {
        match value {
            "Level3" | "idporten-loa-substantial" => Some(Acr::Level3),
            "Level4" | "idporten-loa-high" => Some(Acr::Level4),
            _ => None,
        }
    }

    /// The name the old ID-porten put in `acr`.
    pub fn name(self) -> &'static str {
        match self {
            Acr::Level3 => "Level3",
            Acr::Level4 => "Level4",
        }
    }
}

impl fmt::Display for Acr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Acr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Acr::parse(&value).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown acr {value:?}: expected Level3, Level4, idporten-loa-substantial or idporten-loa-high"
            ))
        })
    }
}

impl serde::Serialize for Acr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_vocabularies_name_the_same_levels() {
        assert_eq!(Acr::parse("idporten-loa-high"), Some(Acr::Level4));
        assert_eq!(Acr::parse("Level3"), Acr::parse("idporten-loa-substantial"));
        assert!(Acr::Level4 > Acr::Level3);
        assert_eq!(Acr::parse("level4"), None);
    }
}
