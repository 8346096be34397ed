//! Writing Oppslagstjenesten messages with quick-xml's writer: XSD element order, every value
//! escaped by the writer.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use super::model::{Channel, Fault, Header, Informasjonsbehov, Person, Request, Response};
use super::time::xs_date_time;
use super::xml::XmlError;
use super::{NS_BEGREP, NS_OPPSLAG, NS_SOAP12};

/// A writer into memory: the only failure is a bug, kept as an error rather than a panic.
struct Out {
    writer: Writer<Vec<u8>>,
    failed: Option<std::io::Error>,
}

impl Out {
    fn new(capacity: usize) -> Out {
        let mut out = Out { writer: Writer::new(Vec::with_capacity(capacity)), failed: None };
        out.event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        out
    }

    fn event(&mut self, event: Event<'_>) {
        if self.failed.is_none()
            && let Err(e) = self.writer.write_event(event)
        {
            self.failed = Some(e);
        }
    }

    fn start(&mut self, name: &str, attrs: &[(&str, &str)]) {
        let mut start = BytesStart::new(name);
        for (key, value) in attrs {
            start.push_attribute((*key, *value));
        }
        self.event(Event::Start(start));
    }

    fn end(&mut self, name: &str) {
        self.event(Event::End(BytesEnd::new(name)));
    }

    fn empty(&mut self, name: &str) {
        self.event(Event::Empty(BytesStart::new(name)));
    }

    /// XML written elsewhere and trusted to be well-formed: a WS-Security header template.
    fn raw(&mut self, xml: &str) {
        if self.failed.is_none() {
            self.writer.get_mut().extend_from_slice(xml.as_bytes());
        }
    }

    fn text_element(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.start(name, attrs);
        self.event(Event::Text(BytesText::new(text)));
        self.end(name);
    }

    fn finish(self) -> Result<String, XmlError> {
        if let Some(e) = self.failed {
            return Err(XmlError::new(format!("cannot write XML: {e}")));
        }
        String::from_utf8(self.writer.into_inner()).map_err(|_| XmlError::new("the XML written is not UTF-8"))
    }
}

/// What a message signed with WS-Security adds: the namespaces its header uses (declared on the
/// Envelope), the `wsse:Security` header itself, and the `wsu:Id`s of the parts it signs.
pub struct Secured<'a> {
    pub namespaces: &'a [(&'a str, &'a str)],
    pub security: &'a str,
    pub body_id: &'a str,
    pub header_id: &'a str,
}

impl Out {
    fn envelope(&mut self, namespaces: &[(&str, &str)], secured: Option<&Secured<'_>>) {
        let mut attrs = vec![("xmlns:env", NS_SOAP12)];
        attrs.extend_from_slice(namespaces);
        if let Some(secured) = secured {
            attrs.extend_from_slice(secured.namespaces);
        }
        self.start("env:Envelope", &attrs);
    }

    fn body(&mut self, secured: Option<&Secured<'_>>) {
        match secured {
            Some(secured) => self.start("env:Body", &[("wsu:Id", secured.body_id)]),
            None => self.start("env:Body", &[]),
        }
    }
}

/// A request envelope, with the `Oppslagstjenesten` header when acting for someone.
pub fn request(header: &Header, request: &Request, secured: Option<&Secured<'_>>) -> Result<String, XmlError> {
    let ids = match request {
        Request::HentPersoner { personidentifikatorer, .. } => personidentifikatorer.len(),
        _ => 0,
    };
    let mut out = Out::new(512 + ids * 56 + secured.map_or(0, |s| s.security.len() + 512));
    out.envelope(&[("xmlns:ns", NS_OPPSLAG)], secured);
    if header.paa_vegne_av.is_none() && secured.is_none() {
        out.empty("env:Header");
    } else {
        out.start("env:Header", &[]);
        if let Some(secured) = secured {
            out.raw(secured.security);
        }
        if let Some(org) = &header.paa_vegne_av {
            match secured {
                Some(secured) => out.start("ns:Oppslagstjenesten", &[("wsu:Id", secured.header_id)]),
                None => out.start("ns:Oppslagstjenesten", &[]),
            }
            out.text_element("ns:PaaVegneAv", &[], org);
            out.end("ns:Oppslagstjenesten");
        }
        out.end("env:Header");
    }
    out.body(secured);
    let informasjonsbehov = |out: &mut Out, values: &[Informasjonsbehov]| {
        for value in values {
            out.text_element("ns:informasjonsbehov", &[], value.name());
        }
    };
    match request {
        Request::HentPersoner { informasjonsbehov: values, personidentifikatorer } => {
            out.start("ns:HentPersonerForespoersel", &[]);
            informasjonsbehov(&mut out, values);
            for id in personidentifikatorer {
                out.text_element("ns:personidentifikator", &[], id);
            }
            out.end("ns:HentPersonerForespoersel");
        }
        Request::HentEndringer { fra_endrings_nummer, informasjonsbehov: values } => {
            let fra = fra_endrings_nummer.to_string();
            out.start("ns:HentEndringerForespoersel", &[("fraEndringsNummer", &fra)]);
            informasjonsbehov(&mut out, values);
            out.end("ns:HentEndringerForespoersel");
        }
        Request::HentPrintSertifikat => out.empty("ns:HentPrintSertifikatForespoersel"),
    }
    out.end("env:Body");
    out.end("env:Envelope");
    out.finish()
}

fn channel(out: &mut Out, name: &str, channel: &Channel) {
    let updated = channel.sist_oppdatert.as_ref().map(xs_date_time);
    let verified = channel.sist_verifisert.as_ref().map(xs_date_time);
    let mut attrs = Vec::new();
    if let Some(updated) = &updated {
        attrs.push(("sistOppdatert", updated.as_str()));
    }
    if let Some(verified) = &verified {
        attrs.push(("sistVerifisert", verified.as_str()));
    }
    out.text_element(name, &attrs, &channel.value);
}

fn person(out: &mut Out, person: &Person) {
    out.start("ns2:Person", &[]);
    out.text_element("ns2:personidentifikator", &[], &person.personidentifikator);
    if let Some(reservasjon) = person.reservasjon {
        out.text_element("ns2:reservasjon", &[], reservasjon.name());
    }
    if let Some(status) = person.status {
        out.text_element("ns2:status", &[], status.name());
    }
    if let Some(varslingsstatus) = person.varslingsstatus {
        out.text_element("ns2:varslingsstatus", &[], varslingsstatus.name());
    }
    if let Some(kontakt) = person.kontaktinformasjon.as_ref().filter(|k| !k.is_empty()) {
        out.start("ns2:Kontaktinformasjon", &[]);
        if let Some(mobile) = &kontakt.mobiltelefonnummer {
            channel(out, "ns2:Mobiltelefonnummer", mobile);
        }
        if let Some(email) = &kontakt.epostadresse {
            channel(out, "ns2:Epostadresse", email);
        }
        out.end("ns2:Kontaktinformasjon");
    }
    if let Some(sdp) = &person.sikker_digital_post_adresse {
        out.start("ns2:SikkerDigitalPostAdresse", &[]);
        out.text_element("ns2:postkasseadresse", &[], &sdp.postkasseadresse);
        out.text_element("ns2:postkasseleverandoerAdresse", &[], &sdp.postkasseleverandoer_adresse);
        out.end("ns2:SikkerDigitalPostAdresse");
    }
    if let Some(cert) = &person.x509_sertifikat {
        out.text_element("ns2:X509Sertifikat", &[], cert);
    }
    out.end("ns2:Person");
}

/// A response envelope. Namespaces are declared on the payload, as Difi's service does.
pub fn response(response: &Response, secured: Option<&Secured<'_>>) -> Result<String, XmlError> {
    let persons = match response {
        Response::HentPersoner(p) => p.len(),
        Response::HentEndringer { persons, .. } => persons.len(),
        _ => 0,
    };
    let mut out = Out::new(512 + persons * 900 + secured.map_or(0, |s| s.security.len() + 512));
    out.envelope(&[], secured);
    match secured {
        Some(secured) => {
            out.start("env:Header", &[]);
            out.raw(secured.security);
            out.end("env:Header");
        }
        None => out.empty("env:Header"),
    }
    out.body(secured);
    let namespaces = [("xmlns:ns2", NS_BEGREP), ("xmlns:ns3", NS_OPPSLAG)];
    match response {
        Response::HentPersoner(persons) => {
            out.start("ns3:HentPersonerRespons", &namespaces);
            for p in persons {
                person(&mut out, p);
            }
            out.end("ns3:HentPersonerRespons");
        }
        Response::HentEndringer { fra, til, seneste, persons } => {
            let (fra, til, seneste) = (fra.to_string(), til.to_string(), seneste.to_string());
            let mut attrs = namespaces.to_vec();
            attrs.extend([
                ("fraEndringsNummer", fra.as_str()),
                ("tilEndringsNummer", til.as_str()),
                ("senesteEndringsNummer", seneste.as_str()),
            ]);
            out.start("ns3:HentEndringerRespons", &attrs);
            for p in persons {
                person(&mut out, p);
            }
            out.end("ns3:HentEndringerRespons");
        }
        Response::HentPrintSertifikat { postkasseleverandoer_adresse, x509_sertifikat } => {
            out.start("ns3:HentPrintSertifikatRespons", &namespaces);
            out.text_element("ns3:postkasseleverandoerAdresse", &[], postkasseleverandoer_adresse);
            out.text_element("ns3:X509Sertifikat", &[], x509_sertifikat);
            out.end("ns3:HentPrintSertifikatRespons");
        }
    }
    out.end("env:Body");
    out.end("env:Envelope");
    out.finish()
}

/// A SOAP 1.2 fault: neither signed nor encrypted, with an empty header.
pub fn fault(fault: &Fault) -> Result<String, XmlError> {
    let mut out = Out::new(512);
    out.start("env:Envelope", &[("xmlns:env", NS_SOAP12)]);
    out.empty("env:Header");
    out.start("env:Body", &[]);
    out.start("env:Fault", &[]);
    out.start("env:Code", &[]);
    out.text_element("env:Value", &[], &format!("env:{}", fault.code.name()));
    if let Some(subcode) = &fault.subcode {
        out.start("env:Subcode", &[]);
        let declaration = format!("xmlns:{}", subcode.prefix);
        out.text_element(
            "env:Value",
            &[(declaration.as_str(), subcode.namespace)],
            &format!("{}:{}", subcode.prefix, subcode.local),
        );
        out.end("env:Subcode");
    }
    out.end("env:Code");
    out.start("env:Reason", &[]);
    out.text_element("env:Text", &[("xml:lang", "en")], &fault.reason);
    out.end("env:Reason");
    out.end("env:Fault");
    out.end("env:Body");
    out.end("env:Envelope");
    out.finish()
}
