//! Oppslagstjenesten 16-02's messages as Rust types: what the simulator answers and what the
//! KRR facade reads. Element names and order are the XSD's.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// `informasjonsbehov`, in the XSD's enumeration order (which is also the order sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Informasjonsbehov {
    Person,
    Kontaktinfo,
    Sertifikat,
    SikkerDigitalPost,
    VarslingsStatus,
}

impl Informasjonsbehov {
    pub const ALL: [Informasjonsbehov; 5] = [
        Informasjonsbehov::Person,
        Informasjonsbehov::Kontaktinfo,
        Informasjonsbehov::Sertifikat,
        Informasjonsbehov::SikkerDigitalPost,
        Informasjonsbehov::VarslingsStatus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Informasjonsbehov::Person => "Person",
            Informasjonsbehov::Kontaktinfo => "Kontaktinfo",
            Informasjonsbehov::Sertifikat => "Sertifikat",
            Informasjonsbehov::SikkerDigitalPost => "SikkerDigitalPost",
            Informasjonsbehov::VarslingsStatus => "VarslingsStatus",
        }
    }

    pub fn parse(value: &str) -> Option<Informasjonsbehov> {
        Informasjonsbehov::ALL.into_iter().find(|i| i.name() == value)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Aktiv,
    Slettet,
    IkkeRegistrert,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Aktiv => "AKTIV",
            Status::Slettet => "SLETTET",
            Status::IkkeRegistrert => "IKKE_REGISTRERT",
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        [Status::Aktiv, Status::Slettet, Status::IkkeRegistrert].into_iter().find(|s| s.name() == value)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Reservasjon {
    Ja,
    Nei,
}

impl Reservasjon {
    pub fn name(self) -> &'static str {
        match self {
            Reservasjon::Ja => "JA",
            Reservasjon::Nei => "NEI",
        }
    }

    pub fn parse(value: &str) -> Option<Reservasjon> {
        match value {
            "JA" => Some(Reservasjon::Ja),
            "NEI" => Some(Reservasjon::Nei),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Varslingsstatus {
    KanIkkeVarsles,
    KanVarsles,
}

impl Varslingsstatus {
    pub fn name(self) -> &'static str {
        match self {
            Varslingsstatus::KanIkkeVarsles => "KAN_IKKE_VARSLES",
            Varslingsstatus::KanVarsles => "KAN_VARSLES",
        }
    }

    pub fn parse(value: &str) -> Option<Varslingsstatus> {
        match value {
            "KAN_IKKE_VARSLES" => Some(Varslingsstatus::KanIkkeVarsles),
            "KAN_VARSLES" => Some(Varslingsstatus::KanVarsles),
            _ => None,
        }
    }
}

/// One contact channel (`Mobiltelefonnummer` or `Epostadresse`) with its timestamps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sist_oppdatert: Option<DateTime<FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sist_verifisert: Option<DateTime<FixedOffset>>,
}

impl Channel {
    /// Freshness: the later of updated and verified.
    pub fn freshness(&self) -> Option<DateTime<FixedOffset>> {
        self.sist_oppdatert.max(self.sist_verifisert)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kontaktinformasjon {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobiltelefonnummer: Option<Channel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epostadresse: Option<Channel>,
}

impl Kontaktinformasjon {
    pub fn is_empty(&self) -> bool {
        self.mobiltelefonnummer.is_none() && self.epostadresse.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SikkerDigitalPostAdresse {
    pub postkasseadresse: String,
    pub postkasseleverandoer_adresse: String,
}

/// `m:Person`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub personidentifikator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservasjon: Option<Reservasjon>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub varslingsstatus: Option<Varslingsstatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kontaktinformasjon: Option<Kontaktinformasjon>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sikker_digital_post_adresse: Option<SikkerDigitalPostAdresse>,
    /// Base64 DER, as in the XML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_sertifikat: Option<String>,
}

impl Person {
    pub fn bare(personidentifikator: &str, status: Status) -> Person {
        Person {
            personidentifikator: personidentifikator.to_owned(),
            reservasjon: None,
            status: Some(status),
            varslingsstatus: None,
            kontaktinformasjon: None,
            sikker_digital_post_adresse: None,
            x509_sertifikat: None,
        }
    }
}

/// The SOAP header as read: the optional `Oppslagstjenesten` block, and whether a
/// `wsse:Security` block came along.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// A `wsse:Security` header block was there (read only by `wssec`): whether it must be understood.
    pub security: Option<bool>,
    pub paa_vegne_av: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    HentPersoner { informasjonsbehov: Vec<Informasjonsbehov>, personidentifikatorer: Vec<String> },
    HentEndringer { fra_endrings_nummer: i64, informasjonsbehov: Vec<Informasjonsbehov> },
    HentPrintSertifikat,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    HentPersoner(Vec<Person>),
    HentEndringer { fra: i64, til: i64, seneste: i64, persons: Vec<Person> },
    HentPrintSertifikat { postkasseleverandoer_adresse: String, x509_sertifikat: String },
}

/// SOAP 1.2 fault codes used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultCode {
    VersionMismatch,
    MustUnderstand,
    Sender,
    Receiver,
}

impl FaultCode {
    pub fn name(self) -> &'static str {
        match self {
            FaultCode::VersionMismatch => "VersionMismatch",
            FaultCode::MustUnderstand => "MustUnderstand",
            FaultCode::Sender => "Sender",
            FaultCode::Receiver => "Receiver",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub code: FaultCode,
    /// A qualified subcode under `code`, such as WS-Security's `wsse:FailedCheck`.
    pub subcode: Option<Subcode>,
    pub reason: String,
}

/// A fault subcode: its prefix, namespace and local name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subcode {
    pub prefix: &'static str,
    pub namespace: &'static str,
    pub local: &'static str,
}

impl Fault {
    pub fn new(code: FaultCode, reason: impl Into<String>) -> Fault {
        Fault { code, subcode: None, reason: reason.into() }
    }

    pub fn sender(reason: impl Into<String>) -> Fault {
        Fault::new(FaultCode::Sender, reason)
    }

    pub fn receiver(reason: impl Into<String>) -> Fault {
        Fault::new(FaultCode::Receiver, reason)
    }
}
