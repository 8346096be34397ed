//! A synthetic register, generated deterministically from a seed: valid mod-11 check digits on
//! every fødselsnummer and d-nummer, and every case the rules distinguish. Never a real person:
//! the numbers are random draws, and the same seed always gives the same file.

use std::collections::HashSet;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};

use super::register::{Entry, PrintProvider, RegisterFile};
use crate::error::{Context, Error, Result};
use crate::personid::check_digits;
use crate::soap::model::{Channel, Kontaktinformasjon, Reservasjon, SikkerDigitalPostAdresse, Status};

/// SplitMix64: small, fast and the same everywhere, which is all a fixture generator needs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The cases the register must cover; the first persons take each once, the rest are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    Full,
    NoMailbox,
    OnlyEmail,
    OnlyMobile,
    Reserved,
    Expired,
    NoContact,
    MailboxWithoutCertificate,
    Deleted,
}

const PROFILES: [(Profile, u64); 9] = [
    (Profile::Full, 26),
    (Profile::NoMailbox, 20),
    (Profile::OnlyEmail, 8),
    (Profile::OnlyMobile, 8),
    (Profile::Reserved, 8),
    (Profile::Expired, 12),
    (Profile::NoContact, 4),
    (Profile::MailboxWithoutCertificate, 8),
    (Profile::Deleted, 6),
];

const FIRST_NAMES: [&str; 12] =
    ["ola", "kari", "per", "anne", "nils", "ingrid", "ahmed", "fatima", "sven", "marit", "jonas", "sara"];
const LAST_NAMES: [&str; 10] =
    ["nordmann", "hansen", "johansen", "olsen", "larsen", "berg", "haugen", "bakken", "dahl", "lund"];
/// Mailbox providers' organisation numbers (Digipost, e-Boks).
const PROVIDERS: [&str; 2] = ["984661185", "996460320"];
const LANGUAGES: [&str; 4] = ["nb", "nn", "en", "se"];

/// An 11-digit number with valid check digits; `d_number` adds 4 to the first digit of the day.
fn personal_number(rng: &mut Rng, d_number: bool) -> String {
    loop {
        let year = 1930 + rng.below(76) as u32; // 1930–2005
        let month = 1 + rng.below(12) as u32;
        let day = 1 + rng.below(28) as u32;
        // The individnummer's range tells the century (domain notes §9).
        let individ = if year < 2000 { rng.below(500) as u32 } else { 500 + rng.below(500) as u32 };
        let yy = year % 100;
        let dd = if d_number { day + 40 } else { day };
        let first_nine = [
            dd / 10,
            dd % 10,
            month / 10,
            month % 10,
            yy / 10,
            yy % 10,
            individ / 100,
            individ / 10 % 10,
            individ % 10,
        ];
        if let Some((k1, k2)) = check_digits(&first_nine) {
            let mut number: String = first_nine.iter().map(|d| char::from(b'0' + *d as u8)).collect();
            number.push(char::from(b'0' + k1 as u8));
            number.push(char::from(b'0' + k2 as u8));
            return number;
        }
    }
}

fn at(reference: DateTime<FixedOffset>, days_ago: i64, rng: &mut Rng) -> DateTime<FixedOffset> {
    reference - Duration::days(days_ago) - Duration::seconds(rng.below(86_400) as i64)
}

fn channel(value: String, reference: DateTime<FixedOffset>, age_days: (i64, i64), rng: &mut Rng) -> Channel {
    let updated = at(reference, age_days.0 + rng.below((age_days.1 - age_days.0) as u64) as i64, rng);
    let verified = rng.chance(60).then(|| {
        let since = (reference - updated).num_days().max(1);
        at(reference, rng.below(since as u64) as i64, rng).max(updated)
    });
    // An expired channel stays expired: its verification is as old as its update.
    let verified = if age_days.0 > 540 { verified.map(|_| updated) } else { verified };
    Channel { value, sist_oppdatert: Some(updated), sist_verifisert: verified }
}

/// A self-signed certificate for a citizen's digital post, deterministic for its index.
fn certificate(seed: u64, index: u64, common_name: &str) -> Result<String> {
    let mut rng = Rng(seed ^ index.wrapping_mul(0xA076_1D64_78BD_642F));
    let mut key_seed = [0u8; 32];
    for chunk in key_seed.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    let pair = Ed25519KeyPair::from_seed_unchecked(&key_seed).context("certificate key")?;
    let pkcs8 = pair.to_pkcs8().context("certificate key: cannot encode")?;
    let key = rcgen::KeyPair::try_from(pkcs8.as_ref()).context("certificate key")?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CountryName, "NO");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "Portvakt synthetic register");
    params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&rng.next().to_be_bytes()));
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2034, 1, 1);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyEncipherment, rcgen::KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).context("certificate")?;
    Ok(STANDARD.encode(cert.der()))
}

/// Generate `count` persons from `seed`. The reference time is fixed (not "now"), so the same
/// arguments always give the same file; the simulator moves it to the present when it loads.
pub fn generate(count: usize, seed: u64) -> Result<RegisterFile> {
    if count < PROFILES.len() {
        return Err(Error::new(format!("generate at least {} persons, one per case", PROFILES.len())));
    }
    let reference = Utc
        .with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
        .single()
        .ok_or_else(|| Error::new("no reference time"))?
        .fixed_offset();
    let mut rng = Rng(seed);
    let certificates =
        (0..16).map(|i| certificate(seed, i, &format!("SDP test certificate {i}"))).collect::<Result<Vec<_>, _>>()?;
    let print = PrintProvider {
        postkasseleverandoer_adresse: "984661185".into(),
        x509_sertifikat: certificate(seed, 1000, "Print provider test certificate")?,
    };
    let total_weight: u64 = PROFILES.iter().map(|(_, w)| w).sum();
    let mut used = HashSet::new();
    let mut persons = Vec::with_capacity(count);
    let mut change = 1000 + rng.below(1000) as i64;
    for i in 0..count {
        let profile = if let Some((fixed, _)) = PROFILES.get(i) {
            *fixed
        } else {
            let mut roll = rng.below(total_weight);
            PROFILES
                .iter()
                .find(|(_, w)| {
                    if roll < *w {
                        true
                    } else {
                        roll -= w;
                        false
                    }
                })
                .map_or(Profile::Full, |(p, _)| *p)
        };
        // Every 12th person (and the second of the fixed cases) has a d-nummer.
        let d_number = i % 12 == 5 || (i >= PROFILES.len() && rng.chance(6));
        let pid = loop {
            let candidate = personal_number(&mut rng, d_number);
            if used.insert(candidate.clone()) {
                break candidate;
            }
        };
        change += 1 + rng.below(4) as i64;
        let first = *rng.pick(&FIRST_NAMES);
        let last = *rng.pick(&LAST_NAMES);
        let ages = if profile == Profile::Expired { (600, 2400) } else { (1, 500) };
        let email = || format!("{first}.{last}.{}@example.no", &pid[6..]);
        let mobile = |rng: &mut Rng| format!("+47{}{:07}", if rng.chance(50) { 4 } else { 9 }, rng.below(10_000_000));
        let kontakt = match profile {
            Profile::NoContact | Profile::Deleted => None,
            Profile::OnlyEmail => Some(Kontaktinformasjon {
                epostadresse: Some(channel(email(), reference, ages, &mut rng)),
                mobiltelefonnummer: None,
            }),
            Profile::OnlyMobile => Some(Kontaktinformasjon {
                mobiltelefonnummer: Some(channel(mobile(&mut rng), reference, ages, &mut rng)),
                epostadresse: None,
            }),
            _ => Some(Kontaktinformasjon {
                mobiltelefonnummer: Some(channel(mobile(&mut rng), reference, ages, &mut rng)),
                epostadresse: Some(channel(email(), reference, ages, &mut rng)),
            }),
        };
        let mailbox = matches!(
            profile,
            Profile::Full | Profile::Expired | Profile::MailboxWithoutCertificate | Profile::Reserved
        );
        let sdp = mailbox.then(|| SikkerDigitalPostAdresse {
            postkasseadresse: format!("{first}.{last}#{:04X}", rng.below(0x10000)),
            postkasseleverandoer_adresse: (*rng.pick(&PROVIDERS)).to_owned(),
        });
        let sertifikat = (mailbox && profile != Profile::MailboxWithoutCertificate)
            .then(|| rng.below(certificates.len() as u64) as usize);
        persons.push(Entry {
            personidentifikator: pid,
            status: if profile == Profile::Deleted { Status::Slettet } else { Status::Aktiv },
            reservasjon: if profile == Profile::Reserved { Reservasjon::Ja } else { Reservasjon::Nei },
            kontaktinformasjon: kontakt,
            sikker_digital_post_adresse: sdp,
            sertifikat,
            spraak: (profile != Profile::Deleted).then(|| (*rng.pick(&LANGUAGES)).to_owned()),
            endringsnummer: change,
        });
    }
    Ok(RegisterFile {
        description: format!(
            "Synthetic KRR register for Portvakt: {count} persons, seed {seed}. Generated by `portvakt register generate`; no real person's number."
        ),
        reference_time: reference,
        print,
        certificates,
        persons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oppslag::register::Register;

    #[test]
    fn the_same_seed_gives_the_same_register_and_every_number_is_valid() {
        let a = serde_json::to_string(&generate(60, 7).unwrap()).unwrap();
        let b = serde_json::to_string(&generate(60, 7).unwrap()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, serde_json::to_string(&generate(60, 8).unwrap()).unwrap());
        let register = Register::new(generate(60, 7).unwrap()).unwrap();
        assert_eq!(register.len(), 60);
        assert!(register.entries().iter().any(|e| crate::personid::is_d_number(&e.personidentifikator)));
        assert!(register.entries().iter().all(|e| crate::personid::is_valid(&e.personidentifikator)));
    }
}
