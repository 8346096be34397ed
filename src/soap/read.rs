//! Reading Oppslagstjenesten messages: requests (the simulator) and responses (the KRR facade).
//! Strict on structure and order, lenient on the spellings the domain notes list.

use super::model::{
    Channel, Fault, FaultCode, Header, Informasjonsbehov, Kontaktinformasjon, Person, Request, Reservasjon, Response,
    SikkerDigitalPostAdresse, Status, Varslingsstatus,
};
use super::time::parse_xs_date_time;
use super::xml::{Cursor, Element, Limits, Ns, XmlError};
use super::{MAX_PERSONS, NS_OPPSLAG};
use crate::telemetry::excerpt;

/// Depth and element-count limits: a 1,000-person answer has about 15,000 elements.
fn limits() -> Limits {
    Limits { max_depth: 16, max_elements: 40_000 }
}

/// Find the Envelope's Body payload after checking the envelope and reading the header.
fn open_envelope(cursor: &mut Cursor<'_>) -> Result<(Header, Element), Fault> {
    let root = cursor.root().map_err(|e| Fault::sender(format!("the request is not XML: {e}")))?;
    if root.is(Ns::Soap11, "Envelope") {
        return Err(Fault::new(FaultCode::VersionMismatch, "SOAP 1.1 is not supported: send a SOAP 1.2 envelope"));
    }
    if root.local == "Envelope" && root.ns != Ns::Soap12 {
        return Err(Fault::new(FaultCode::VersionMismatch, format!("{} is not a SOAP 1.2 Envelope", root.name())));
    }
    if !root.is(Ns::Soap12, "Envelope") {
        return Err(Fault::sender(format!("the request is not a SOAP envelope (its root is {})", root.name())));
    }
    let sender = |e: XmlError| Fault::sender(format!("malformed envelope: {e}"));
    let mut header = Header::default();
    let mut child = cursor.next_child().map_err(sender)?.ok_or_else(|| Fault::sender("the envelope has no Body"))?;
    if child.is(Ns::Soap12, "Header") {
        while let Some(block) = cursor.next_child().map_err(sender)? {
            let must_understand = matches!(block.qualified_attr(Ns::Soap12, "mustUnderstand"), Some("true" | "1"));
            if block.is(Ns::Oppslag, "Oppslagstjenesten") {
                header.paa_vegne_av = read_paa_vegne_av(cursor).map_err(sender)?;
            } else if block.ns.uri() == crate::wssec::NS_WSSE && block.local == "Security" {
                // Checked, on its own parse, by `wssec`; the caller decides whether it is understood.
                header.security = Some(must_understand);
                cursor.skip().map_err(sender)?;
            } else if must_understand {
                return Err(Fault::new(
                    FaultCode::MustUnderstand,
                    format!("header block {} is not understood", block.name()),
                ));
            } else {
                cursor.skip().map_err(sender)?;
            }
        }
        child = cursor.next_child().map_err(sender)?.ok_or_else(|| Fault::sender("the envelope has no Body"))?;
    }
    if !child.is(Ns::Soap12, "Body") {
        return Err(Fault::sender(format!("expected the Body, found {}", child.name())));
    }
    let payload = cursor.next_child().map_err(sender)?.ok_or_else(|| Fault::sender("the Body is empty"))?;
    Ok((header, payload))
}

fn read_paa_vegne_av(cursor: &mut Cursor<'_>) -> Result<Option<String>, XmlError> {
    let mut value = None;
    while let Some(element) = cursor.next_child()? {
        if element.is(Ns::Oppslag, "PaaVegneAv") {
            value = Some(cursor.text(&element)?.trim().to_owned());
        } else {
            return Err(XmlError::new(format!("unexpected {} in Oppslagstjenesten", element.name())));
        }
    }
    Ok(value)
}

/// Close Body and Envelope and check nothing follows the payload.
fn close_envelope(cursor: &mut Cursor<'_>) -> Result<(), XmlError> {
    if let Some(extra) = cursor.next_child()? {
        return Err(XmlError::new(format!("the Body holds more than one element ({})", extra.name())));
    }
    if let Some(extra) = cursor.next_child()? {
        return Err(XmlError::new(format!("unexpected {} after the Body", extra.name())));
    }
    cursor.finish()
}

/// The simulator's side: an incoming request, or the fault to answer with.
pub fn request(xml: &str) -> Result<(Header, Request), Fault> {
    let mut cursor = Cursor::new(xml, limits());
    let (header, payload) = open_envelope(&mut cursor)?;
    let sender = |e: XmlError| Fault::sender(format!("invalid request: {e}"));
    if payload.ns != Ns::Oppslag {
        return Err(Fault::sender(format!(
            "{} is not an Oppslagstjenesten 16-02 request (namespace {NS_OPPSLAG})",
            payload.name()
        )));
    }
    let request = match payload.local.as_str() {
        "HentPersonerForespoersel" => {
            let mut informasjonsbehov = Vec::new();
            let mut ids: Vec<String> = Vec::new();
            while let Some(element) = cursor.next_child().map_err(sender)? {
                match (element.ns == Ns::Oppslag, element.local.as_str()) {
                    (true, "informasjonsbehov") if ids.is_empty() => {
                        let value = cursor.text(&element).map_err(sender)?;
                        let parsed = Informasjonsbehov::parse(value.trim()).ok_or_else(|| {
                            Fault::sender(format!("informasjonsbehov {:?} is not defined", excerpt(&value, 40)))
                        })?;
                        informasjonsbehov.push(parsed);
                    }
                    (true, "informasjonsbehov") => {
                        return Err(Fault::sender("informasjonsbehov must come before every personidentifikator"));
                    }
                    (true, "personidentifikator") => {
                        if ids.len() == MAX_PERSONS {
                            return Err(Fault::sender(format!("more than {MAX_PERSONS} personidentifikatorer")));
                        }
                        let id = cursor.text(&element).map_err(sender)?.trim().to_owned();
                        match crate::personid::validate(&id) {
                            Ok(()) => ids.push(id),
                            Err(e) => {
                                return Err(Fault::sender(format!(
                                    "personidentifikator {:?} is invalid: {e}",
                                    excerpt(&id, 40)
                                )));
                            }
                        }
                    }
                    _ => {
                        return Err(Fault::sender(format!(
                            "unexpected element {} in HentPersonerForespoersel",
                            element.name()
                        )));
                    }
                }
            }
            if ids.is_empty() {
                return Err(Fault::sender("HentPersonerForespoersel needs at least one personidentifikator"));
            }
            Request::HentPersoner { informasjonsbehov, personidentifikatorer: ids }
        }
        "HentEndringerForespoersel" => {
            let fra = payload
                .attr("fraEndringsNummer")
                .ok_or_else(|| Fault::sender("fraEndringsNummer is required"))?
                .trim()
                .parse::<i64>()
                .map_err(|_| Fault::sender("fraEndringsNummer must be an xs:long"))?;
            let mut informasjonsbehov = Vec::new();
            while let Some(element) = cursor.next_child().map_err(sender)? {
                if !element.is(Ns::Oppslag, "informasjonsbehov") {
                    return Err(Fault::sender(format!(
                        "unexpected element {} in HentEndringerForespoersel",
                        element.name()
                    )));
                }
                let value = cursor.text(&element).map_err(sender)?;
                informasjonsbehov.push(Informasjonsbehov::parse(value.trim()).ok_or_else(|| {
                    Fault::sender(format!("informasjonsbehov {:?} is not defined", excerpt(&value, 40)))
                })?);
            }
            Request::HentEndringer { fra_endrings_nummer: fra, informasjonsbehov }
        }
        "HentPrintSertifikatForespoersel" => {
            if let Some(element) = cursor.next_child().map_err(sender)? {
                return Err(Fault::sender(format!(
                    "HentPrintSertifikatForespoersel is empty, found {}",
                    element.name()
                )));
            }
            Request::HentPrintSertifikat
        }
        other => return Err(Fault::sender(format!("unknown operation {other}"))),
    };
    close_envelope(&mut cursor).map_err(sender)?;
    Ok((header, request))
}

/// The facade's side: a response, a fault, or an error when the XML itself is not acceptable.
pub fn response(xml: &str) -> Result<Result<Response, Fault>, XmlError> {
    let mut cursor = Cursor::new(xml, limits());
    let (_, payload) = open_envelope(&mut cursor).map_err(|f| XmlError::new(f.reason))?;
    if payload.is(Ns::Soap12, "Fault") {
        let fault = read_fault(&mut cursor)?;
        close_envelope(&mut cursor)?;
        return Ok(Err(fault));
    }
    if payload.ns != Ns::Oppslag {
        return Err(XmlError::new(format!("unexpected answer {}", payload.name())));
    }
    let response = match payload.local.as_str() {
        "HentPersonerRespons" => Response::HentPersoner(read_persons(&mut cursor)?),
        "HentEndringerRespons" => {
            let number = |name: &str| -> Result<i64, XmlError> {
                payload
                    .attr(name)
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| XmlError::new(format!("{name} is missing or not a number")))
            };
            let (fra, til, seneste) =
                (number("fraEndringsNummer")?, number("tilEndringsNummer")?, number("senesteEndringsNummer")?);
            Response::HentEndringer { fra, til, seneste, persons: read_persons(&mut cursor)? }
        }
        "HentPrintSertifikatRespons" => {
            let mut leverandoer = None;
            let mut sertifikat = None;
            while let Some(element) = cursor.next_child()? {
                match element.local.as_str() {
                    "postkasseleverandoerAdresse" | "postkasseleverandorAdresse" => {
                        leverandoer = Some(cursor.text(&element)?)
                    }
                    "X509Sertifikat" | "X509Certificate" => sertifikat = Some(cursor.text(&element)?),
                    _ => cursor.skip()?,
                }
            }
            Response::HentPrintSertifikat {
                postkasseleverandoer_adresse: leverandoer
                    .ok_or_else(|| XmlError::new("postkasseleverandoerAdresse is missing"))?,
                x509_sertifikat: sertifikat.ok_or_else(|| XmlError::new("X509Sertifikat is missing"))?,
            }
        }
        other => return Err(XmlError::new(format!("unexpected answer {other}"))),
    };
    close_envelope(&mut cursor)?;
    Ok(Ok(response))
}

fn read_fault(cursor: &mut Cursor<'_>) -> Result<Fault, XmlError> {
    let mut code = None;
    let mut reason = None;
    while let Some(element) = cursor.next_child()? {
        match (element.ns == Ns::Soap12, element.local.as_str()) {
            (true, "Code") => {
                while let Some(part) = cursor.next_child()? {
                    if part.is(Ns::Soap12, "Value") && code.is_none() {
                        let value = cursor.text(&part)?;
                        let local = value.trim().rsplit(':').next().unwrap_or_default().to_owned();
                        code = Some(match local.as_str() {
                            "VersionMismatch" => FaultCode::VersionMismatch,
                            "MustUnderstand" => FaultCode::MustUnderstand,
                            "Sender" => FaultCode::Sender,
                            _ => FaultCode::Receiver,
                        });
                    } else {
                        cursor.skip()?;
                    }
                }
            }
            (true, "Reason") => {
                while let Some(part) = cursor.next_child()? {
                    if part.is(Ns::Soap12, "Text") && reason.is_none() {
                        reason = Some(cursor.text(&part)?.trim().to_owned());
                    } else {
                        cursor.skip()?;
                    }
                }
            }
            _ => cursor.skip()?,
        }
    }
    Ok(Fault::new(code.unwrap_or(FaultCode::Receiver), reason.unwrap_or_else(|| "(no reason given)".into())))
}

fn read_persons(cursor: &mut Cursor<'_>) -> Result<Vec<Person>, XmlError> {
    let mut persons = Vec::new();
    while let Some(element) = cursor.next_child()? {
        if !element.is(Ns::Begrep, "Person") {
            return Err(XmlError::new(format!("unexpected {} among the persons", element.name())));
        }
        if persons.len() == MAX_PERSONS {
            return Err(XmlError::new(format!("more than {MAX_PERSONS} persons")));
        }
        persons.push(read_person(cursor)?);
    }
    Ok(persons)
}

fn channel(cursor: &mut Cursor<'_>, element: &Element) -> Result<Channel, XmlError> {
    let date = |name: &str| element.attr(name).map(parse_xs_date_time).transpose();
    Ok(Channel {
        sist_oppdatert: date("sistOppdatert")?,
        sist_verifisert: date("sistVerifisert")?,
        value: cursor.text(element)?.trim().to_owned(),
    })
}

fn read_person(cursor: &mut Cursor<'_>) -> Result<Person, XmlError> {
    let mut person = Person {
        personidentifikator: String::new(),
        reservasjon: None,
        status: None,
        varslingsstatus: None,
        kontaktinformasjon: None,
        sikker_digital_post_adresse: None,
        x509_sertifikat: None,
    };
    let invalid =
        |what: &str, value: &str| XmlError::new(format!("{what} {:?} is not a valid value", excerpt(value, 40)));
    while let Some(element) = cursor.next_child()? {
        if element.ns != Ns::Begrep {
            cursor.skip()?;
            continue;
        }
        match element.local.as_str() {
            "personidentifikator" => person.personidentifikator = cursor.text(&element)?.trim().to_owned(),
            "reservasjon" => {
                let v = cursor.text(&element)?;
                person.reservasjon = Some(Reservasjon::parse(v.trim()).ok_or_else(|| invalid("reservasjon", &v))?);
            }
            "status" => {
                let v = cursor.text(&element)?;
                person.status = Some(Status::parse(v.trim()).ok_or_else(|| invalid("status", &v))?);
            }
            "varslingsstatus" => {
                let v = cursor.text(&element)?;
                person.varslingsstatus =
                    Some(Varslingsstatus::parse(v.trim()).ok_or_else(|| invalid("varslingsstatus", &v))?);
            }
            "Kontaktinformasjon" => {
                let mut kontakt = Kontaktinformasjon::default();
                while let Some(part) = cursor.next_child()? {
                    match part.local.as_str() {
                        "Mobiltelefonnummer" => kontakt.mobiltelefonnummer = Some(channel(cursor, &part)?),
                        "Epostadresse" => kontakt.epostadresse = Some(channel(cursor, &part)?),
                        _ => cursor.skip()?,
                    }
                }
                person.kontaktinformasjon = Some(kontakt);
            }
            "SikkerDigitalPostAdresse" => {
                let mut adresse = None;
                let mut leverandoer = None;
                while let Some(part) = cursor.next_child()? {
                    match part.local.as_str() {
                        "postkasseadresse" => adresse = Some(cursor.text(&part)?.trim().to_owned()),
                        "postkasseleverandoerAdresse" | "postkasseleverandorAdresse" => {
                            leverandoer = Some(cursor.text(&part)?.trim().to_owned())
                        }
                        _ => cursor.skip()?,
                    }
                }
                if let (Some(postkasseadresse), Some(postkasseleverandoer_adresse)) = (adresse, leverandoer) {
                    person.sikker_digital_post_adresse =
                        Some(SikkerDigitalPostAdresse { postkasseadresse, postkasseleverandoer_adresse });
                }
            }
            "X509Sertifikat" | "X509Certificate" => {
                let value: String = cursor.text(&element)?.split_whitespace().collect();
                person.x509_sertifikat = Some(value);
            }
            _ => cursor.skip()?,
        }
    }
    if person.personidentifikator.is_empty() {
        return Err(XmlError::new("a Person has no personidentifikator"));
    }
    Ok(person)
}
