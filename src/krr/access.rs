//! Which KRR data a token's scopes allow, and the informasjonsbehov to ask Oppslagstjenesten
//! for. The old scope names are canonical; the `krr:` names are the new platform's aliases.

use crate::soap::model::Informasjonsbehov;

/// Whose data a lookup is about: any person (`global/…`, machine tokens) or the citizen
/// holding the token (`user/…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    Global,
    User,
}

impl Audience {
    fn prefix(self) -> &'static str {
        match self {
            Audience::Global => "global",
            Audience::User => "user",
        }
    }
}

/// The fields a token may see. `personidentifikator`, `reservasjon` and `status` always.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub kontaktinformasjon: bool,
    pub varslingsstatus: bool,
    pub digital_post: bool,
    pub sertifikat: bool,
    pub spraak: bool,
}

impl Access {
    pub fn from_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>, audience: Audience) -> Access {
        let mut access = Access::default();
        let prefix = audience.prefix();
        for scope in scopes {
            let (alias, name) = match scope.strip_prefix("krr:") {
                Some(rest) => (true, rest),
                None => (false, scope),
            };
            let Some(name) = name.strip_prefix(prefix).and_then(|n| n.strip_prefix('/')) else { continue };
            match (alias, name) {
                (false, "kontaktinformasjon.read") => access.kontaktinformasjon = true,
                (false, "varslingsstatus.read") => access.varslingsstatus = true,
                (false, "sikkerdigitalpost.read") => access.digital_post = true,
                (false, "sertifikat.read") => access.sertifikat = true,
                (false, "spraak.read") => access.spraak = true,
                (true, "kontaktinformasjon.read") => {
                    access.kontaktinformasjon = true;
                    access.varslingsstatus = true;
                    access.spraak = true;
                }
                (true, "digitalpost.read") => {
                    access.digital_post = true;
                    access.sertifikat = true;
                }
                _ => {}
            }
        }
        access
    }

    /// The informasjonsbehov to send, in schema order; `Person` always (it is implicit anyway).
    pub fn informasjonsbehov(&self) -> Vec<Informasjonsbehov> {
        let mut values = vec![Informasjonsbehov::Person];
        if self.kontaktinformasjon {
            values.push(Informasjonsbehov::Kontaktinfo);
        }
        if self.sertifikat {
            values.push(Informasjonsbehov::Sertifikat);
        }
        if self.digital_post {
            values.push(Informasjonsbehov::SikkerDigitalPost);
        }
        if self.varslingsstatus {
            values.push(Informasjonsbehov::VarslingsStatus);
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_new_scope_names_map_to_the_same_fields() {
        let old = Access::from_scopes(
            ["global/kontaktinformasjon.read", "global/varslingsstatus.read", "global/spraak.read"],
            Audience::Global,
        );
        assert_eq!(old, Access::from_scopes(["krr:global/kontaktinformasjon.read"], Audience::Global));
        let post = Access::from_scopes(["krr:user/digitalpost.read"], Audience::User);
        assert!(post.digital_post && post.sertifikat && !post.kontaktinformasjon);
        assert_eq!(
            post.informasjonsbehov(),
            vec![Informasjonsbehov::Person, Informasjonsbehov::Sertifikat, Informasjonsbehov::SikkerDigitalPost]
        );
    }

    #[test]
    fn user_scopes_do_not_open_global_lookups() {
        assert_eq!(Access::from_scopes(["user/kontaktinformasjon.read"], Audience::Global), Access::default());
        assert_eq!(Access::from_scopes(["global/sertifikat.read"], Audience::User), Access::default());
    }
}
