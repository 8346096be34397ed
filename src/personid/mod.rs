//! Norwegian identity numbers: fødselsnummer and d-nummer (check digits, masking) and
//! organisation numbers. Shared by the issuer (login form), KRR (lookups) and the logs.

use std::borrow::Cow;
use std::fmt;

const W1: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
const W2: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

/// Why a personidentifikator was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidError {
    NotElevenDigits,
    CheckDigits,
}

impl fmt::Display for PidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PidError::NotElevenDigits => "not 11 digits",
            PidError::CheckDigits => "the check digits are wrong",
        })
    }
}

impl std::error::Error for PidError {}

fn mod11(digits: &[u32], weights: &[u32]) -> Option<u32> {
    let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        k => Some(k),
    }
}

/// The two check digits for the first nine digits, or `None` when no valid number has them.
pub fn check_digits(first_nine: &[u32; 9]) -> Option<(u32, u32)> {
    let k1 = mod11(first_nine, &W1)?;
    let mut ten = [0u32; 10];
    ten[..9].copy_from_slice(first_nine);
    ten[9] = k1;
    let k2 = mod11(&ten, &W2)?;
    Some((k1, k2))
}

/// Validate a fødselsnummer or d-nummer: 11 ASCII digits and both mod-11 check digits. The
/// date digits are not interpreted, so d-numre and synthetic numbers pass on check digits alone.
pub fn validate(pid: &str) -> Result<(), PidError> {
    let bytes = pid.as_bytes();
    if bytes.len() != 11 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(PidError::NotElevenDigits);
    }
    let digits: Vec<u32> = bytes.iter().map(|b| u32::from(b - b'0')).collect();
    let mut first_nine = [0u32; 9];
    first_nine.copy_from_slice(&digits[..9]);
    match check_digits(&first_nine) {
        Some((k1, k2)) if k1 == digits[9] && k2 == digits[10] => Ok(()),
        _ => Err(PidError::CheckDigits),
    }
}

pub fn is_valid(pid: &str) -> bool {
    validate(pid).is_ok()
}

/// A d-nummer has 4 added to the first digit of the day.
pub fn is_d_number(pid: &str) -> bool {
    matches!(pid.as_bytes().first(), Some(b'4'..=b'7'))
}

/// Mask for logs: the birth date stays (as in Oppslagstjenesten's own examples), the
/// individnummer and check digits do not: `23079421936` → `230794*****`.
pub fn mask(pid: &str) -> String {
    let keep: String = pid.chars().take(6).collect();
    format!("{keep}*****")
}

/// Mask every run of exactly 11 digits in free text (paths, messages) before it is logged.
pub fn mask_in_text(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == 11 {
                let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
                buf.push_str(&text[copied..start + 6]);
                buf.push_str("*****");
                copied = i;
            }
        } else {
            i += 1;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
    }
}

/// A Norwegian organisation number: 9 digits with a mod-11 check digit.
pub fn is_orgno(value: &str) -> bool {
    const W: [u32; 8] = [3, 2, 7, 6, 5, 4, 3, 2];
    let bytes = value.as_bytes();
    if bytes.len() != 9 || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let digits: Vec<u32> = bytes.iter().map(|b| u32::from(b - b'0')).collect();
    mod11(&digits[..8], &W) == Some(digits[8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_test_identities_pass() {
        for pid in
            ["23079421936", "23079410918", "23079422568", "08077000292", "03015561903", "08023549930", "01010146468"]
        {
            assert_eq!(validate(pid), Ok(()), "{pid}");
        }
    }

    #[test]
    fn wrong_numbers_are_refused_for_the_right_reason() {
        assert_eq!(validate("12345678900"), Err(PidError::CheckDigits));
        assert_eq!(validate("23079421937"), Err(PidError::CheckDigits));
        assert_eq!(validate("2307942193"), Err(PidError::NotElevenDigits));
        assert_eq!(validate("2307942193a"), Err(PidError::NotElevenDigits));
        assert_eq!(validate("２３０７９４２１９３６"), Err(PidError::NotElevenDigits));
    }

    #[test]
    fn worked_example_check_digits() {
        assert_eq!(check_digits(&[2, 3, 0, 7, 9, 4, 2, 1, 9]), Some((3, 6)));
    }

    #[test]
    fn masking_hides_the_individual_part() {
        assert_eq!(mask("23079421936"), "230794*****");
        assert_eq!(mask_in_text("/x/23079421936?y=1"), "/x/230794*****?y=1");
        assert_eq!(mask_in_text("id 123456789012 and 23079421936."), "id 123456789012 and 230794*****.");
        assert!(matches!(mask_in_text("no numbers"), Cow::Borrowed(_)));
    }

    #[test]
    fn organisation_numbers() {
        assert!(is_orgno("991825827"));
        assert!(is_orgno("984661185"));
        assert!(!is_orgno("991825828"));
        assert!(!is_orgno("99182582"));
    }
}
