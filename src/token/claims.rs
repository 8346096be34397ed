//! Claim sets as they arrive on the wire: ID-porten, Maskinporten and RFC 9068 access tokens.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// `consumer` / `supplier` of a Maskinporten token: an ISO 6523 identifier such as
/// `{"authority": "iso6523-actorid-upis", "ID": "0192:991825827"}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Iso6523 {
    pub authority: String,
    #[serde(rename = "ID")]
    pub id: String,
}

impl Iso6523 {
    pub const AUTHORITY: &'static str = "iso6523-actorid-upis";
    /// ICD 0192 is the Norwegian organisation-number register.
    pub const NORWEGIAN_ORGNO: &'static str = "0192";

    pub fn norwegian(orgno: &str) -> Iso6523 {
        Iso6523 { authority: Self::AUTHORITY.into(), id: format!("{}:{orgno}", Self::NORWEGIAN_ORGNO) }
    }

    /// The organisation number, when the identifier is a Norwegian one.
    pub fn orgno(&self) -> Option<&str> {
        self.id.strip_prefix("0192:")
    }
}

/// An access token's claims: what the issuer writes (into a JWT, an opaque token's record and
/// its introspection answer) and what the gateway reads, one struct so that the two cannot
/// drift apart. Unknown claims are ignored when read; absent ones are left out when written.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AccessClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    /// Written as a string when there is one audience (as ID-porten does), a list when several.
    #[serde(default, deserialize_with = "string_or_list", serialize_with = "one_or_list")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aud: Vec<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
    pub jti: Option<String>,
    /// RFC 8693 / ID-porten: one space-delimited string.
    pub scope: Option<String>,
    /// The array form some issuers use instead of `scope`.
    #[serde(default, deserialize_with = "string_or_list", skip_serializing_if = "Vec::is_empty")]
    pub scp: Vec<String>,
    pub client_id: Option<String>,
    pub pid: Option<String>,
    pub acr: Option<String>,
    pub consumer: Option<Iso6523>,
    pub client_amr: Option<String>,
    /// `Bearer`; introspection answers say `refresh_token` for refresh tokens (not for APIs).
    pub token_type: Option<String>,
    /// Maskinporten's delegation: the supplier acting for `consumer`, and who vouched for it.
    /// These three are written by the issuer and read by no one here, so another issuer's
    /// token with them in another shape is not refused for it (they read as absent).
    #[serde(default, deserialize_with = "lenient")]
    pub supplier: Option<Iso6523>,
    #[serde(default, deserialize_with = "lenient")]
    pub delegation_source: Option<String>,
    /// ID-porten's flat form of the client's organisation number.
    #[serde(default, deserialize_with = "lenient")]
    pub client_orgno: Option<String>,
    /// The key or certificate the token is bound to (RFC 9449 §6, RFC 8705 §3). Read strictly:
    /// a binding of an odd shape must not read as no binding.
    pub cnf: Option<Confirmation>,
}

/// `cnf`: a DPoP key's thumbprint (`jkt`) or a client certificate's (`x5t#S256`), or another
/// confirmation method (`jwk`, `kid`, …), kept so that it is not mistaken for none.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Confirmation {
    pub jkt: Option<String>,
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: Option<String>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl AccessClaims {
    /// Scopes from `scope` (space-delimited) and `scp` (array), without duplicates.
    pub fn scopes(&self) -> Vec<String> {
        let mut scopes: Vec<String> = Vec::new();
        let from_scope = self.scope.iter().flat_map(|s| s.split_ascii_whitespace());
        for scope in from_scope.chain(self.scp.iter().map(String::as_str)) {
            if !scope.is_empty() && !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
        scopes
    }
}

/// A JSON string or an array of strings, as `aud` (RFC 7519 §4.1.3) and `scp` may be.
pub fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(value)) => vec![value],
        Some(OneOrMany::Many(values)) => values,
    })
}

/// A claim of the expected shape, or absent when it has another: for claims only passed on.
fn lenient<'de, D: Deserializer<'de>, T: de::DeserializeOwned>(deserializer: D) -> Result<Option<T>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(value.and_then(|value| serde_json::from_value(value).ok()))
}

fn one_or_list<S: Serializer>(values: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    match values {
        [one] => serializer.serialize_str(one),
        many => many.serialize(serializer),
    }
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, an integer or a fraction.
pub fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<serde_json::Number>::deserialize(deserializer)?;
    match value {
        None => Ok(None),
        Some(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && f.abs() < 1e15) {
                Ok(Some(f.floor() as i64))
            } else {
                Err(de::Error::custom("a NumericDate must be a number of seconds"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_id_porten_and_rfc9068_shapes() {
        let claims: AccessClaims = serde_json::from_str(
            r#"{"iss":"https://x/","aud":"a","exp":1.9e9,"scope":"a b a","scp":["c","b"],
                "consumer":{"authority":"iso6523-actorid-upis","ID":"0192:991825827"}}"#,
        )
        .unwrap();
        assert_eq!(claims.aud, vec!["a"]);
        assert_eq!(claims.exp, Some(1_900_000_000));
        assert_eq!(claims.scopes(), vec!["a", "b", "c"]);
        assert_eq!(claims.consumer.unwrap().orgno(), Some("991825827"));
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let claims = AccessClaims {
            iss: Some("https://issuer/".into()),
            aud: vec!["unspecified".into()],
            exp: Some(1_900_000_000),
            scope: Some("a b".into()),
            consumer: Some(Iso6523::norwegian("991825827")),
            ..AccessClaims::default()
        };
        let written = serde_json::to_value(&claims).unwrap();
        assert_eq!(written["aud"], "unspecified", "one audience is a string");
        assert!(written.get("pid").is_none() && written.get("scp").is_none(), "absent claims are left out");
        let again: AccessClaims = serde_json::from_value(written).unwrap();
        assert_eq!((again.aud, again.exp, again.consumer), (claims.aud, claims.exp, claims.consumer));
        let two = AccessClaims { aud: vec!["a".into(), "b".into()], ..AccessClaims::default() };
        assert_eq!(serde_json::to_value(&two).unwrap()["aud"], serde_json::json!(["a", "b"]));
    }

    #[test]
    fn claims_only_passed_on_do_not_refuse_a_token_for_their_shape() {
        let claims: AccessClaims =
            serde_json::from_str(r#"{"iss":"x","supplier":"991825827","client_orgno":991825827}"#).unwrap();
        assert_eq!((claims.supplier, claims.client_orgno), (None, None));
        assert!(serde_json::from_str::<AccessClaims>(r#"{"consumer":"991825827"}"#).is_err(), "consumer is read");
    }

    #[test]
    fn a_binding_of_another_kind_is_kept_and_never_read_as_none() {
        let now = 1_900_000_000 - 100;
        for (cnf, jkt, unchecked) in [
            (json!({"jkt": "abc"}), Some("abc"), false),
            (json!({"x5t#S256": "def"}), None, false),
            (json!({"jwk": {"kty": "EC"}}), None, true),
            (json!({}), None, true),
        ] {
            let claims: AccessClaims =
                serde_json::from_value(json!({"iss": "x", "exp": 1_900_000_000, "cnf": cnf})).unwrap();
            let token = crate::token::VerifiedToken::from_claims("x".into(), claims, now, 0).unwrap();
            assert_eq!((token.jkt.as_deref(), token.unchecked_binding), (jkt, unchecked), "{cnf}");
        }
    }

    #[test]
    fn refuses_a_date_that_is_not_a_number() {
        assert!(serde_json::from_str::<AccessClaims>(r#"{"exp":"tomorrow"}"#).is_err());
    }
}
