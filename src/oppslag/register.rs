//! The contact register behind the simulator, and Oppslagstjenesten's rules for what it
//! delivers: informasjonsbehov, status, reservation and the 18-month notification rule.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use chrono::{DateTime, FixedOffset, Months, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::soap::MAX_PERSONS;
use crate::soap::model::{
    Informasjonsbehov, Kontaktinformasjon, Person, Reservasjon, Response, SikkerDigitalPostAdresse, Status,
    Varslingsstatus,
};

/// eForvaltningsforskriften § 32: contact information older than this cannot be used to notify.
pub const FRESHNESS_MONTHS: u32 = 18;

/// The register's data file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegisterFile {
    pub description: String,
    /// The timestamps below are as of this moment (see `rebase_timestamps`).
    pub reference_time: DateTime<FixedOffset>,
    pub print: PrintProvider,
    /// Citizens' encryption certificates (base64 DER), referred to by index.
    pub certificates: Vec<String>,
    pub persons: Vec<Entry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrintProvider {
    pub postkasseleverandoer_adresse: String,
    pub x509_sertifikat: String,
}

/// One person as the register holds them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub personidentifikator: String,
    /// `AKTIV` or `SLETTET`; persons not in the register are `IKKE_REGISTRERT`.
    pub status: Status,
    pub reservasjon: Reservasjon,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kontaktinformasjon: Option<Kontaktinformasjon>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sikker_digital_post_adresse: Option<SikkerDigitalPostAdresse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sertifikat: Option<usize>,
    /// Kept by the register but never sent over SOAP (no informasjonsbehov carries it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spraak: Option<String>,
    /// Position in the change feed (`HentEndringer`); strictly increasing through the file.
    pub endringsnummer: i64,
}

pub struct Register {
    file: RegisterFile,
    by_id: HashMap<String, usize>,
}

impl Register {
    pub fn load(path: &Path, rebase: bool) -> Result<Register> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file: RegisterFile = serde_json::from_str(&text).with_context(|| path.display().to_string())?;
        let mut register = Register::new(file).with_context(|| path.display().to_string())?;
        if rebase {
            register.rebase(Utc::now().fixed_offset());
        }
        Ok(register)
    }

    /// Index and check a register: valid check digits, unique ids, an increasing change feed.
    pub fn new(file: RegisterFile) -> Result<Register> {
        let mut by_id = HashMap::with_capacity(file.persons.len());
        let mut last = i64::MIN;
        for (i, entry) in file.persons.iter().enumerate() {
            crate::personid::validate(&entry.personidentifikator).with_context(|| {
                format!("persons[{i}]: personidentifikator {}", crate::personid::mask(&entry.personidentifikator))
            })?;
            if entry.status == Status::IkkeRegistrert {
                return Err(Error::new(format!("persons[{i}]: a registered person cannot be IKKE_REGISTRERT")));
            }
            if by_id.insert(entry.personidentifikator.clone(), i).is_some() {
                return Err(Error::new(format!(
                    "persons[{i}]: {} appears twice",
                    crate::personid::mask(&entry.personidentifikator)
                )));
            }
            if entry.endringsnummer <= last {
                return Err(Error::new(format!("persons[{i}]: endringsnummer must increase through the file")));
            }
            last = entry.endringsnummer;
            if entry.sertifikat.is_some_and(|c| c >= file.certificates.len()) {
                return Err(Error::new(format!("persons[{i}]: sertifikat refers to a certificate that is not there")));
            }
        }
        Ok(Register { file, by_id })
    }

    /// Shift every timestamp so the register's reference time becomes `now`.
    fn rebase(&mut self, now: DateTime<FixedOffset>) {
        let shift = now - self.file.reference_time;
        let move_channel = |c: &mut Option<crate::soap::model::Channel>| {
            if let Some(c) = c {
                c.sist_oppdatert = c.sist_oppdatert.map(|t| t + shift);
                c.sist_verifisert = c.sist_verifisert.map(|t| t + shift);
            }
        };
        for entry in &mut self.file.persons {
            if let Some(k) = &mut entry.kontaktinformasjon {
                move_channel(&mut k.mobiltelefonnummer);
                move_channel(&mut k.epostadresse);
            }
        }
        self.file.reference_time = now;
    }

    pub fn len(&self) -> usize {
        self.file.persons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.file.persons.is_empty()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.file.persons
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.by_id.get(id).map(|i| &self.file.persons[*i])
    }

    /// The latest change number (`senesteEndringsNummer`).
    pub fn latest_change(&self) -> i64 {
        self.file.persons.last().map_or(0, |e| e.endringsnummer)
    }

    /// HentPersoner: one Person per distinct id, in request order; unknown ids are IKKE_REGISTRERT.
    pub fn hent_personer(
        &self,
        ids: &[String],
        requested: &[Informasjonsbehov],
        now: DateTime<FixedOffset>,
    ) -> Vec<Person> {
        let behov = effective(requested, &[Informasjonsbehov::Person]);
        let mut seen = BTreeSet::new();
        ids.iter()
            .filter(|id| seen.insert(id.as_str()))
            .map(|id| match self.get(id) {
                Some(entry) => self.render(entry, &behov, now, true),
                None => {
                    let mut person = Person::bare(id, Status::IkkeRegistrert);
                    if behov.contains(&Informasjonsbehov::VarslingsStatus) {
                        person.varslingsstatus = Some(Varslingsstatus::KanIkkeVarsles);
                    }
                    person
                }
            })
            .collect()
    }

    /// HentEndringer: up to 1,000 changes from `fra` (inclusive); the next page starts at til + 1.
    pub fn hent_endringer(&self, fra: i64, requested: &[Informasjonsbehov], now: DateTime<FixedOffset>) -> Response {
        let behov = effective(requested, &[Informasjonsbehov::Person, Informasjonsbehov::Kontaktinfo]);
        let start = self.file.persons.partition_point(|e| e.endringsnummer < fra);
        let page = &self.file.persons[start..(start + MAX_PERSONS).min(self.file.persons.len())];
        let seneste = self.latest_change();
        let til = page.last().map_or(seneste, |e| e.endringsnummer);
        Response::HentEndringer {
            fra,
            til,
            seneste,
            persons: page.iter().map(|entry| self.render(entry, &behov, now, false)).collect(),
        }
    }

    pub fn hent_print_sertifikat(&self) -> Response {
        Response::HentPrintSertifikat {
            postkasseleverandoer_adresse: self.file.print.postkasseleverandoer_adresse.clone(),
            x509_sertifikat: self.file.print.x509_sertifikat.clone(),
        }
    }

    /// Whether the person's contact information is older than 18 months (or missing).
    pub fn contact_expired(entry: &Entry, now: DateTime<FixedOffset>) -> bool {
        let Some(cutoff) = now.checked_sub_months(Months::new(FRESHNESS_MONTHS)) else { return true };
        let freshest = entry.kontaktinformasjon.as_ref().and_then(|k| {
            [k.mobiltelefonnummer.as_ref(), k.epostadresse.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|c| c.freshness())
                .max()
        });
        freshest.is_none_or(|t| t < cutoff)
    }

    /// A person as HentPersoner (`notify` = apply varslingsstatus) or HentEndringer sees them.
    fn render(
        &self,
        entry: &Entry,
        behov: &BTreeSet<Informasjonsbehov>,
        now: DateTime<FixedOffset>,
        notify: bool,
    ) -> Person {
        let mut person = Person::bare(&entry.personidentifikator, entry.status);
        let varsling = (notify && behov.contains(&Informasjonsbehov::VarslingsStatus)).then(|| {
            if entry.status != Status::Aktiv
                || entry.reservasjon == Reservasjon::Ja
                || Register::contact_expired(entry, now)
            {
                Varslingsstatus::KanIkkeVarsles
            } else {
                Varslingsstatus::KanVarsles
            }
        });
        person.varslingsstatus = varsling;
        if entry.status != Status::Aktiv {
            // SLETTET carries only personidentifikator and status (and varslingsstatus if asked).
            return person;
        }
        person.reservasjon = Some(entry.reservasjon);
        if varsling == Some(Varslingsstatus::KanIkkeVarsles) {
            return person;
        }
        if behov.contains(&Informasjonsbehov::Kontaktinfo) {
            person.kontaktinformasjon = entry.kontaktinformasjon.clone().filter(|k| !k.is_empty());
        }
        if behov.contains(&Informasjonsbehov::SikkerDigitalPost) {
            person.sikker_digital_post_adresse = entry.sikker_digital_post_adresse.clone();
        }
        if behov.contains(&Informasjonsbehov::Sertifikat) {
            person.x509_sertifikat = entry.sertifikat.map(|i| self.file.certificates[i].clone());
        }
        person
    }
}

/// Duplicates collapse; no value at all means the documented default.
fn effective(requested: &[Informasjonsbehov], default: &[Informasjonsbehov]) -> BTreeSet<Informasjonsbehov> {
    if requested.is_empty() { default.iter().copied().collect() } else { requested.iter().copied().collect() }
}

/// One example of each kind of entry (for the README and for trying the API by hand).
pub fn cases(register: &Register) -> Vec<(&'static str, String)> {
    let now = Utc::now().fixed_offset();
    let find = |what: &'static str, test: &dyn Fn(&Entry) -> bool| {
        register.entries().iter().find(|e| test(e)).map(|e| (what, e.personidentifikator.clone()))
    };
    let active = |e: &Entry| e.status == Status::Aktiv && e.reservasjon == Reservasjon::Nei;
    let contact = |e: &Entry| e.kontaktinformasjon.clone().unwrap_or_default();
    [
        find("active, e-mail and mobile, mailbox and certificate", &|e| {
            active(e)
                && !Register::contact_expired(e, now)
                && contact(e).epostadresse.is_some()
                && contact(e).mobiltelefonnummer.is_some()
                && e.sertifikat.is_some()
        }),
        find("active, e-mail only", &|e| {
            active(e)
                && !Register::contact_expired(e, now)
                && contact(e).mobiltelefonnummer.is_none()
                && contact(e).epostadresse.is_some()
        }),
        find("active, mobile only", &|e| {
            active(e)
                && !Register::contact_expired(e, now)
                && contact(e).epostadresse.is_none()
                && contact(e).mobiltelefonnummer.is_some()
        }),
        find("active, mailbox without certificate", &|e| {
            active(e) && e.sikker_digital_post_adresse.is_some() && e.sertifikat.is_none()
        }),
        find("active, contact information older than 18 months", &|e| {
            active(e) && e.kontaktinformasjon.is_some() && Register::contact_expired(e, now)
        }),
        find("active, no contact information", &|e| active(e) && e.kontaktinformasjon.is_none()),
        find("reserved (reservasjon JA)", &|e| e.status == Status::Aktiv && e.reservasjon == Reservasjon::Ja),
        find("deleted (SLETTET)", &|e| e.status == Status::Slettet),
        find("d-nummer, active with contact information", &|e| {
            active(e)
                && crate::personid::is_d_number(&e.personidentifikator)
                && e.kontaktinformasjon.is_some()
                && !Register::contact_expired(e, now)
        }),
    ]
    .into_iter()
    .flatten()
    .collect()
}
