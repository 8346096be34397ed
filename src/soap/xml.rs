//! A bounded, namespace-aware pull parser over quick-xml's streaming reader: no DTDs (so no
//! entity expansion and no XML bombs), only the five predefined entities and character
//! references, a depth limit and an element-count limit.

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct XmlError(pub String);

impl XmlError {
    pub fn new(message: impl Into<String>) -> XmlError {
        XmlError(message.into())
    }
}

/// A namespace. The ones Oppslagstjenesten uses are told apart without keeping (or comparing)
/// their URIs for every element, which perf showed costing as much as the parsing itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ns {
    None,
    Soap12,
    Soap11,
    Oppslag,
    Begrep,
    Other(Box<str>),
}

impl Ns {
    fn of(uri: &str) -> Ns {
        match uri {
            super::NS_SOAP12 => Ns::Soap12,
            super::NS_SOAP11 => Ns::Soap11,
            super::NS_OPPSLAG => Ns::Oppslag,
            super::NS_BEGREP => Ns::Begrep,
            other => Ns::Other(other.into()),
        }
    }

    pub fn uri(&self) -> &str {
        match self {
            Ns::None => "",
            Ns::Soap12 => super::NS_SOAP12,
            Ns::Soap11 => super::NS_SOAP11,
            Ns::Oppslag => super::NS_OPPSLAG,
            Ns::Begrep => super::NS_BEGREP,
            Ns::Other(uri) => uri,
        }
    }
}

/// An element start: its namespace, local name and attributes (namespace, local name, value).
#[derive(Debug, Clone)]
pub struct Element {
    pub ns: Ns,
    pub local: String,
    pub attrs: Vec<(Ns, String, String)>,
}

impl Element {
    pub fn is(&self, ns: Ns, local: &str) -> bool {
        self.ns == ns && self.local == local
    }

    /// An unqualified attribute's value (the schemas' attributes are unqualified).
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attrs.iter().find(|(ns, name, _)| *ns == Ns::None && name == local).map(|(_, _, v)| v.as_str())
    }

    pub fn qualified_attr(&self, ns: Ns, local: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, name, _)| *n == ns && name == local).map(|(_, _, v)| v.as_str())
    }

    pub fn name(&self) -> String {
        match &self.ns {
            Ns::None => self.local.clone(),
            ns => format!("{{{}}}{}", ns.uri(), self.local),
        }
    }
}

enum Item {
    Start(Element),
    End,
    Text(String),
    Eof,
}

pub struct Limits {
    pub max_depth: usize,
    pub max_elements: usize,
}

/// Attributes (namespace declarations included) on one element: SOAP messages have a handful.
const MAX_ATTRIBUTES: usize = 32;

pub struct Cursor<'a> {
    reader: NsReader<&'a [u8]>,
    depth: usize,
    elements: usize,
    limits: Limits,
    /// `<x/>` is reported as a start; its end comes with the next read.
    pending_end_of_empty: bool,
}

/// The namespace an element name resolved to (empty when unqualified).
fn namespace(resolve: ResolveResult<'_>) -> Result<Ns, XmlError> {
    match resolve {
        ResolveResult::Bound(ns) => Ok(Ns::of(ns.into_inner())),
        ResolveResult::Unbound => Ok(Ns::None),
        ResolveResult::Unknown(prefix) => {
            Err(XmlError::new(format!("the namespace prefix {prefix:?} is not declared")))
        }
    }
}

impl<'a> Cursor<'a> {
    pub fn new(xml: &'a str, limits: Limits) -> Cursor<'a> {
        let mut reader = NsReader::from_reader(xml.as_bytes());
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.expand_empty_elements = false;
        Cursor { reader, depth: 0, elements: 0, limits, pending_end_of_empty: false }
    }

    fn element(&mut self, ns: Result<Ns, XmlError>, start: &BytesStart<'_>) -> Result<Element, XmlError> {
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(XmlError::new(format!("more than {} elements", self.limits.max_elements)));
        }
        let ns = ns?;
        let local = start.local_name().into_inner().to_owned();
        let mut attrs = Vec::new();
        for (index, attr) in start.attributes().enumerate() {
            // Duplicate checks (quick-xml's here, and any tree parser's after this gate) cost the
            // square of an element's attributes: bound them.
            if index == MAX_ATTRIBUTES {
                return Err(XmlError::new(format!("an element with more than {MAX_ATTRIBUTES} attributes")));
            }
            let attr = attr.map_err(|e| XmlError::new(format!("a malformed attribute: {e}")))?;
            if attr.key.as_namespace_binding().is_some() {
                continue;
            }
            let (resolved, attr_local) = self.reader.resolver().resolve_attribute(attr.key);
            let attr_ns = match resolved {
                ResolveResult::Bound(ns) => Ns::of(ns.into_inner()),
                _ => Ns::None,
            };
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| XmlError::new(format!("an attribute value: {e}")))?
                .into_owned();
            attrs.push((attr_ns, attr_local.into_inner().to_owned(), value));
        }
        Ok(Element { ns, local, attrs })
    }

    fn item(&mut self) -> Result<Item, XmlError> {
        if self.pending_end_of_empty {
            self.pending_end_of_empty = false;
            self.depth -= 1;
            return Ok(Item::End);
        }
        loop {
            let (resolve, event) =
                self.reader.read_resolved_event().map_err(|e| XmlError::new(format!("malformed XML: {e}")))?;
            let resolve = namespace(resolve);
            match event {
                Event::Start(start) => {
                    self.depth += 1;
                    if self.depth > self.limits.max_depth {
                        return Err(XmlError::new(format!(
                            "the XML nests deeper than {} levels",
                            self.limits.max_depth
                        )));
                    }
                    return Ok(Item::Start(self.element(resolve, &start)?));
                }
                Event::Empty(start) => {
                    self.depth += 1;
                    if self.depth > self.limits.max_depth {
                        return Err(XmlError::new(format!(
                            "the XML nests deeper than {} levels",
                            self.limits.max_depth
                        )));
                    }
                    let element = self.element(resolve, &start)?;
                    self.pending_end_of_empty = true;
                    return Ok(Item::Start(element));
                }
                Event::End(_) => {
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Item::End);
                }
                Event::Text(text) => return Ok(Item::Text(text.xml10_content().into_owned())),
                Event::CData(data) => return Ok(Item::Text(data.into_inner().into_owned())),
                Event::GeneralRef(reference) => {
                    let resolved = match reference.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => match &*reference.xml10_content() {
                            "lt" => "<".into(),
                            "gt" => ">".into(),
                            "amp" => "&".into(),
                            "apos" => "'".into(),
                            "quot" => "\"".into(),
                            other => {
                                return Err(XmlError::new(format!(
                                    "the entity &{other}; is not defined (DTDs are not accepted)"
                                )));
                            }
                        },
                        Err(e) => return Err(XmlError::new(format!("a bad character reference: {e}"))),
                    };
                    return Ok(Item::Text(resolved));
                }
                Event::DocType(_) => return Err(XmlError::new("a DOCTYPE is not accepted (no DTDs, no entities)")),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => return Ok(Item::Eof),
            }
        }
    }

    /// The document's root element.
    pub fn root(&mut self) -> Result<Element, XmlError> {
        loop {
            match self.item()? {
                Item::Start(element) => return Ok(element),
                Item::Text(text) if text.trim().is_empty() => {}
                Item::Text(_) => return Err(XmlError::new("text before the root element")),
                Item::End | Item::Eof => return Err(XmlError::new("the document has no root element")),
            }
        }
    }

    /// The next child element of the element last opened, or `None` at its end. Text between
    /// children must be whitespace.
    pub fn next_child(&mut self) -> Result<Option<Element>, XmlError> {
        loop {
            match self.item()? {
                Item::Start(element) => return Ok(Some(element)),
                Item::End => return Ok(None),
                Item::Text(text) if text.trim().is_empty() => {}
                Item::Text(_) => return Err(XmlError::new("unexpected text between elements")),
                Item::Eof => return Err(XmlError::new("the document ends inside an element")),
            }
        }
    }

    /// The text content of the element just opened (which must hold no child elements).
    pub fn text(&mut self, element: &Element) -> Result<String, XmlError> {
        let mut text = String::new();
        loop {
            match self.item()? {
                Item::Text(t) => text.push_str(&t),
                Item::End => return Ok(text),
                Item::Start(child) => {
                    return Err(XmlError::new(format!(
                        "{} holds an element ({}) where text belongs",
                        element.local, child.local
                    )));
                }
                Item::Eof => return Err(XmlError::new("the document ends inside an element")),
            }
        }
    }

    /// Skip the rest of the element just opened.
    pub fn skip(&mut self) -> Result<(), XmlError> {
        let mut open = 1usize;
        while open > 0 {
            match self.item()? {
                Item::Start(_) => open += 1,
                Item::End => open -= 1,
                Item::Text(_) => {}
                Item::Eof => return Err(XmlError::new("the document ends inside an element")),
            }
        }
        Ok(())
    }

    /// After the root's end: nothing but whitespace and comments may follow.
    pub fn finish(&mut self) -> Result<(), XmlError> {
        loop {
            match self.item()? {
                Item::Eof => return Ok(()),
                Item::Text(text) if text.trim().is_empty() => {}
                _ => return Err(XmlError::new("content after the root element")),
            }
        }
    }
}

/// Walk a whole document under `limits` (no DTD, bounded depth and element count) without
/// reading it: the gate before a document goes to a parser without those bounds.
pub fn check_bounded(xml: &str, limits: Limits) -> Result<(), XmlError> {
    let mut cursor = Cursor::new(xml, limits);
    cursor.root()?;
    cursor.skip()?;
    cursor.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_depth: 8, max_elements: 100 }
    }

    #[test]
    fn reads_namespaced_elements_text_and_entities() {
        let xml = r#"<?xml version="1.0"?><a:r xmlns:a="urn:a" xmlns="urn:d"><c x="1 &amp; 2">t&lt;&#65;<![CDATA[<z>]]></c><e/></a:r>"#;
        let mut cursor = Cursor::new(xml, limits());
        let root = cursor.root().unwrap();
        assert!(root.is(Ns::Other("urn:a".into()), "r"));
        let c = cursor.next_child().unwrap().unwrap();
        assert!(c.is(Ns::Other("urn:d".into()), "c"));
        assert_eq!(c.attr("x"), Some("1 & 2"));
        assert_eq!(cursor.text(&c).unwrap(), "t<A<z>");
        let e = cursor.next_child().unwrap().unwrap();
        assert_eq!(e.local, "e");
        assert_eq!(cursor.text(&e).unwrap(), "");
        assert!(cursor.next_child().unwrap().is_none());
        cursor.finish().unwrap();
    }

    #[test]
    fn refuses_dtds_unknown_entities_and_deep_or_huge_documents() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert!(Cursor::new(bomb, limits()).root().unwrap_err().0.contains("DOCTYPE"));
        let mut cursor = Cursor::new("<a>&foo;</a>", limits());
        let root = cursor.root().unwrap();
        assert!(cursor.text(&root).unwrap_err().0.contains("not defined"));
        let deep = "<a>".repeat(20) + &"</a>".repeat(20);
        let mut cursor = Cursor::new(&deep, limits());
        let _ = cursor.root().unwrap();
        assert!(cursor.skip().unwrap_err().0.contains("deeper"));
        let many = format!("<a>{}</a>", "<b/>".repeat(200));
        let mut cursor = Cursor::new(&many, limits());
        let _ = cursor.root().unwrap();
        assert!(cursor.skip().unwrap_err().0.contains("more than"));
        let mut cursor = Cursor::new("<p:a/>", limits());
        assert!(cursor.root().unwrap_err().0.contains("not declared"));
    }
}
