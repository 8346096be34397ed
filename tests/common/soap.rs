//! SOAP messages checked against the published XSD with xmllint, independently of the code.

use std::path::PathBuf;
use std::process::Command;

use super::*;

/// Validate SOAP messages against the published 16-02 schemas (inside a strict SOAP 1.2
/// envelope schema) with xmllint. Panics naming the file and xmllint's complaint.
pub fn validate_soap(messages: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = messages
        .iter()
        .enumerate()
        .map(|(i, xml)| {
            let path = dir.path().join(format!("message-{i}.xml"));
            std::fs::write(&path, xml).unwrap();
            path
        })
        .collect();
    for chunk in files.chunks(200) {
        let output = Command::new("xmllint")
            .arg("--noout")
            .arg("--schema")
            .arg(project_path("tests/fixtures/oppslagstjeneste-envelope.xsd"))
            .args(chunk)
            .output()
            .expect("xmllint (Debian: libxml2-utils) must be installed to validate SOAP against the XSD");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let first_bad = chunk.iter().find(|f| !stderr.contains(&format!("{} validates", f.display())));
            let sample = first_bad.map(|f| std::fs::read_to_string(f).unwrap().chars().take(2000).collect::<String>());
            panic!("a SOAP message does not validate:\n{stderr}\n{}", sample.unwrap_or_default());
        }
    }
}
