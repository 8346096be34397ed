//! The KRR REST API's wire types: the request body of `POST /rest/v1/personer` and the
//! PersonResource answer, with the original's field names, enums and timestamp form.

use serde::{Deserialize, Serialize};

use super::access::Access;
use crate::personid::{self, PidError};
use crate::soap::MAX_PERSONS;
use crate::soap::model::{Channel, Person, Status};
use crate::soap::time::rest_timestamp;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonerRequest {
    pub personidentifikatorer: Vec<String>,
}

/// One refused identifier, named in the 400 answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct InvalidId {
    pub personidentifikator: String,
    pub reason: String,
}

/// Check the list: 1..1000 identifiers, each 11 digits with valid check digits. Duplicates
/// collapse (one person per distinct id, in request order).
pub fn check_ids(ids: Vec<String>) -> Result<Vec<String>, (String, Vec<InvalidId>)> {
    if ids.is_empty() {
        return Err(("personidentifikatorer must hold at least one identifier".into(), Vec::new()));
    }
    if ids.len() > MAX_PERSONS {
        return Err((
            format!("personidentifikatorer holds {} identifiers; at most {MAX_PERSONS} are allowed", ids.len()),
            Vec::new(),
        ));
    }
    let invalid: Vec<InvalidId> = ids
        .iter()
        .filter_map(|id| {
            personid::validate(id).err().map(|e| InvalidId {
                personidentifikator: id.chars().take(32).collect(),
                reason: match e {
                    PidError::NotElevenDigits => "not 11 digits".into(),
                    PidError::CheckDigits => "the check digits are wrong".into(),
                },
            })
        })
        .collect();
    if !invalid.is_empty() {
        return Err((format!("{} personidentifikator(er) are not valid", invalid.len()), invalid));
    }
    let mut seen = std::collections::HashSet::new();
    Ok(ids.into_iter().filter(|id| seen.insert(id.clone())).collect())
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Kontaktinformasjon {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epostadresse: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epostadresse_oppdatert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epostadresse_sist_verifisert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobiltelefonnummer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobiltelefonnummer_oppdatert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobiltelefonnummer_sist_verifisert: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct DigitalPost {
    pub postkasseadresse: String,
    pub postkasseleverandoeradresse: String,
}

/// PersonResource: keys for absent data are left out, never `null`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PersonResource {
    pub personidentifikator: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservasjon: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub varslingsstatus: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kontaktinformasjon: Option<Kontaktinformasjon>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digital_post: Option<DigitalPost>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sertifikat: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Personer {
    pub personer: Vec<PersonResource>,
}

fn channel_fields(channel: Option<&Channel>) -> (Option<String>, Option<String>, Option<String>) {
    match channel {
        None => (None, None, None),
        Some(c) => (
            Some(c.value.clone()),
            c.sist_oppdatert.as_ref().map(rest_timestamp),
            c.sist_verifisert.as_ref().map(rest_timestamp),
        ),
    }
}

/// The REST view of a SOAP Person, keeping only what `access` allows. A SLETTET or
/// IKKE_REGISTRERT person has no reservation (domain notes, open point 5) and no contact data.
pub fn person_resource(person: &Person, access: &Access) -> PersonResource {
    let active = person.status == Some(Status::Aktiv);
    let kontaktinformasjon =
        person.kontaktinformasjon.as_ref().filter(|k| access.kontaktinformasjon && active && !k.is_empty()).map(|k| {
            let (epostadresse, epostadresse_oppdatert, epostadresse_sist_verifisert) =
                channel_fields(k.epostadresse.as_ref());
            let (mobiltelefonnummer, mobiltelefonnummer_oppdatert, mobiltelefonnummer_sist_verifisert) =
                channel_fields(k.mobiltelefonnummer.as_ref());
            Kontaktinformasjon {
                epostadresse,
                epostadresse_oppdatert,
                epostadresse_sist_verifisert,
                mobiltelefonnummer,
                mobiltelefonnummer_oppdatert,
                mobiltelefonnummer_sist_verifisert,
            }
        });
    PersonResource {
        personidentifikator: person.personidentifikator.clone(),
        reservasjon: person.reservasjon.filter(|_| active).map(|r| r.name()),
        status: person.status.map(|s| s.name()),
        varslingsstatus: person.varslingsstatus.filter(|_| access.varslingsstatus).map(|v| v.name()),
        kontaktinformasjon,
        digital_post: person.sikker_digital_post_adresse.as_ref().filter(|_| access.digital_post && active).map(|d| {
            DigitalPost {
                postkasseadresse: d.postkasseadresse.clone(),
                postkasseleverandoeradresse: d.postkasseleverandoer_adresse.clone(),
            }
        }),
        sertifikat: person.x509_sertifikat.clone().filter(|_| access.sertifikat && active),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked_one_by_one() {
        let (message, invalid) = check_ids(vec!["23079421936".into(), "123".into(), "23079421937".into()]).unwrap_err();
        assert!(message.contains("2 personidentifikator"));
        assert_eq!(invalid[0], InvalidId { personidentifikator: "123".into(), reason: "not 11 digits".into() });
        assert_eq!(invalid[1].reason, "the check digits are wrong");
        assert!(check_ids(vec![]).is_err());
        assert!(check_ids(vec!["23079421936".into(); 1001]).is_err());
        assert_eq!(check_ids(vec!["23079421936".into(), "23079421936".into()]).unwrap().len(), 1);
    }
}
