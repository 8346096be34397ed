//! Time on the wire: reading `xs:dateTime`, and Oslo time as the two formats write it: the SOAP service's `xs:dateTime` with
//! milliseconds and a full offset, and KRR REST's form with an hour-only offset. Written by hand:
//! chrono's format strings cost an eighth of a 1,000-person lookup (perf).

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, Offset, TimeZone, Timelike};
use chrono_tz::Europe::Oslo;

/// `2016-02-18T13:12:00.000+01:00`
pub fn xs_date_time(value: &DateTime<FixedOffset>) -> String {
    let (local, offset) = oslo(value);
    format!(
        "{}.{:03}{}:{:02}",
        date_and_time(&local),
        local.timestamp_subsec_millis().min(999),
        hour_offset(offset),
        offset.abs() % 3600 / 60
    )
}

/// `2018-06-29T10:14:52+02`
pub fn rest_timestamp(value: &DateTime<FixedOffset>) -> String {
    let (local, offset) = oslo(value);
    format!("{}{}", date_and_time(&local), hour_offset(offset))
}

/// `xs:dateTime`, with or without fractions; without an offset it is Oslo time.
pub fn parse_xs_date_time(value: &str) -> Result<DateTime<FixedOffset>, super::xml::XmlError> {
    let value = value.trim();
    if let Ok(parsed) = DateTime::parse_from_rfc3339(value) {
        return Ok(parsed);
    }
    let naive = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
        .map_err(|_| super::xml::XmlError::new(format!("{value:?} is not an xs:dateTime")))?;
    Oslo.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.fixed_offset())
        .ok_or_else(|| super::xml::XmlError::new(format!("{value:?} does not exist in Oslo time")))
}

/// Oslo time. Before 1895 Oslo kept local mean time (+00:53:28), which neither form can write
/// (their offsets are in whole minutes or hours), so such times are written in UTC.
fn oslo(value: &DateTime<FixedOffset>) -> (DateTime<chrono_tz::Tz>, i32) {
    let local = value.with_timezone(&Oslo);
    let offset = local.offset().fix().local_minus_utc();
    if offset % 3600 != 0 {
        return (value.with_timezone(&chrono_tz::UTC), 0);
    }
    (local, offset)
}

fn date_and_time(local: &DateTime<chrono_tz::Tz>) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    )
}

fn hour_offset(offset: i32) -> String {
    format!("{}{:02}", if offset < 0 { '-' } else { '+' }, offset.abs() / 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_oslo_time() {
        let summer = DateTime::parse_from_rfc3339("2018-06-29T08:14:52.123456Z").unwrap();
        assert_eq!(xs_date_time(&summer), "2018-06-29T10:14:52.123+02:00");
        assert_eq!(rest_timestamp(&summer), "2018-06-29T10:14:52+02");
        let winter = DateTime::parse_from_rfc3339("2016-02-18T12:12:00Z").unwrap();
        assert_eq!(xs_date_time(&winter), "2016-02-18T13:12:00.000+01:00");
        assert_eq!(rest_timestamp(&winter), "2016-02-18T13:12:00+01");
        let mean_time = parse_xs_date_time("1009-02-18T13:12:00").unwrap();
        assert_eq!(xs_date_time(&mean_time), "1009-02-18T12:18:32.000+00:00");
        assert_eq!(parse_xs_date_time(&xs_date_time(&mean_time)).unwrap(), mean_time);
    }
}
