//! Oppslagstjenesten's SOAP 1.2 contract (16-02, "v5"): the message model, a bounded XML
//! reader, and writing and reading of every message. The simulator (`oppslag`) and the KRR
//! facade (`krr`) both speak through this module, so the two sides cannot drift apart.

pub mod model;
pub mod read;
pub mod time;
pub mod write;
pub mod xml;

pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const NS_SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const NS_OPPSLAG: &str = "http://kontaktinfo.difi.no/xsd/oppslagstjeneste/16-02";
pub const NS_BEGREP: &str = "http://begrep.difi.no";

/// `personidentifikator` 1..1000 in a request; `Person` 1..1000 in an answer.
pub const MAX_PERSONS: usize = 1000;

pub const CONTENT_TYPE: &str = "application/soap+xml; charset=utf-8";

/// The published WSDL and schemas (see `schema/README.md`).
pub const WSDL: &str = include_str!("schema/oppslagstjeneste-ws-16-02.wsdl");
pub const XSD_WS: &str = include_str!("schema/oppslagstjeneste-ws-16-02.xsd");
pub const XSD_METADATA: &str = include_str!("schema/oppslagstjeneste-metadata-16-02.xsd");

#[cfg(test)]
mod tests {
    use super::model::*;
    use super::{read, write};

    fn sample_person() -> Person {
        let at = super::time::parse_xs_date_time("2016-02-18T13:12:00.000+01:00").unwrap();
        Person {
            personidentifikator: "08077000292".into(),
            reservasjon: Some(Reservasjon::Nei),
            status: Some(Status::Aktiv),
            varslingsstatus: Some(Varslingsstatus::KanVarsles),
            kontaktinformasjon: Some(Kontaktinformasjon {
                mobiltelefonnummer: Some(Channel {
                    value: "+4799999999".into(),
                    sist_oppdatert: Some(at),
                    sist_verifisert: Some(at),
                }),
                epostadresse: Some(Channel {
                    value: "a&b<c>@example.no".into(),
                    sist_oppdatert: Some(at),
                    sist_verifisert: None,
                }),
            }),
            sikker_digital_post_adresse: Some(SikkerDigitalPostAdresse {
                postkasseadresse: "id.porten.testuser#2346".into(),
                postkasseleverandoer_adresse: "984661185".into(),
            }),
            x509_sertifikat: Some("MIIE7jCCA9agAwIBAgIK".into()),
        }
    }

    #[test]
    fn a_request_round_trips_with_every_value_escaped() {
        let header = Header { paa_vegne_av: Some("991825827".into()), ..Header::default() };
        let request = Request::HentPersoner {
            informasjonsbehov: vec![Informasjonsbehov::Person, Informasjonsbehov::Kontaktinfo],
            personidentifikatorer: vec!["23079421936".into(), "08077000292".into()],
        };
        let xml = write::request(&header, &request, None).unwrap();
        assert!(xml.contains("<ns:PaaVegneAv>991825827</ns:PaaVegneAv>"));
        assert_eq!(read::request(&xml).unwrap(), (header, request));
    }

    #[test]
    fn a_response_round_trips() {
        let response =
            Response::HentPersoner(vec![sample_person(), Person::bare("23079421936", Status::IkkeRegistrert)]);
        let xml = write::response(&response, None).unwrap();
        assert!(xml.contains("a&amp;b&lt;c&gt;@example.no"));
        assert!(xml.contains("sistOppdatert=\"2016-02-18T13:12:00.000+01:00\""));
        assert_eq!(read::response(&xml).unwrap().unwrap(), response);
    }

    #[test]
    fn faults_round_trip_and_soap_11_is_a_version_mismatch() {
        let xml = write::fault(&Fault::sender("more than 1000 personidentifikatorer")).unwrap();
        let fault = read::response(&xml).unwrap().unwrap_err();
        assert_eq!(fault.code, FaultCode::Sender);
        assert_eq!(fault.reason, "more than 1000 personidentifikatorer");
        let soap11 = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>"#;
        assert_eq!(read::request(soap11).unwrap_err().code, FaultCode::VersionMismatch);
    }

    #[test]
    fn malformed_requests_are_sender_faults() {
        let envelope = |body: &str| {
            format!(
                r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" xmlns:ns="http://kontaktinfo.difi.no/xsd/oppslagstjeneste/16-02"><e:Body>{body}</e:Body></e:Envelope>"#
            )
        };
        for (body, words) in [
            (
                "<ns:HentPersonerForespoersel><ns:personidentifikator>123</ns:personidentifikator></ns:HentPersonerForespoersel>",
                "invalid",
            ),
            (
                "<ns:HentPersonerForespoersel><ns:informasjonsbehov>Alt</ns:informasjonsbehov><ns:personidentifikator>23079421936</ns:personidentifikator></ns:HentPersonerForespoersel>",
                "not defined",
            ),
            (
                "<ns:HentPersonerForespoersel><ns:personidentifikator>23079421936</ns:personidentifikator><ns:informasjonsbehov>Person</ns:informasjonsbehov></ns:HentPersonerForespoersel>",
                "before",
            ),
            ("<x:HentPersonerForespoersel xmlns:x=\"urn:other\"/>", "not an Oppslagstjenesten"),
            ("<ns:Slett/>", "unknown operation"),
            ("<ns:HentEndringerForespoersel fraEndringsNummer=\"x\"/>", "xs:long"),
        ] {
            let fault = read::request(&envelope(body)).unwrap_err();
            assert_eq!(fault.code, FaultCode::Sender, "{body}");
            assert!(fault.reason.contains(words), "{body}: {}", fault.reason);
        }
        let many =
            (0..1001).map(|_| "<ns:personidentifikator>23079421936</ns:personidentifikator>").collect::<String>();
        let fault =
            read::request(&envelope(&format!("<ns:HentPersonerForespoersel>{many}</ns:HentPersonerForespoersel>")))
                .unwrap_err();
        assert!(fault.reason.contains("more than 1000"));
    }
}
