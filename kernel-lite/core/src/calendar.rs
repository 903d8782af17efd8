//! The wall clock's arithmetic: a CMOS real-time-clock reading (BCD or binary, 12- or 24-hour)
//! to milliseconds since the Unix epoch.

const STATUS_B_BINARY: u8 = 1 << 2;
const STATUS_B_24_HOUR: u8 = 1 << 1;
const PM: u8 = 0x80;

/// Converts the RTC's registers `[second, minute, hour, day, month, year, century]` read with
/// status register B `register_b` to milliseconds since 1970-01-01 UTC, or `None` when a field
/// is out of range (a clock that was never set, or a torn read).
pub fn rtc_reading_to_unix_ms(reading: [u8; 7], register_b: u8) -> Option<u64> {
    let binary = register_b & STATUS_B_BINARY != 0;
    let decode = |value: u8| -> Option<u64> {
        if binary {
            Some(u64::from(value))
        } else if value >> 4 > 9 || value & 0x0f > 9 {
            None
        } else {
            Some(u64::from(value >> 4) * 10 + u64::from(value & 0x0f))
        }
    };
    let [second, minute, hour_raw, day, month, year, century] = reading;
    let mut hour = decode(hour_raw & !PM)?;
    if register_b & STATUS_B_24_HOUR == 0 {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour %= 12;
        if hour_raw & PM != 0 {
            hour += 12;
        }
    }
    // Firmware that does not keep the century register leaves it zero: assume the 2000s.
    let century = decode(century)
        .filter(|century| (19..=99).contains(century))
        .unwrap_or(20);
    let (second, minute) = (decode(second)?, decode(minute)?);
    let (day, month) = (decode(day)?, decode(month)?);
    let year = century * 100 + decode(year)?;
    if second > 59
        || minute > 59
        || hour > 23
        || !(1..=31).contains(&day)
        || !(1..=12).contains(&month)
        || year < 1970
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (year ≥ 1970), after
/// Howard Hinnant's `days_from_civil`.
pub fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 26), 20_783);
    }

    #[test]
    fn bcd_and_binary_readings_agree() {
        // 2026-11-26 13:47:42 UTC = 1 795 700 862 s.
        let bcd = [0x42, 0x47, 0x13, 0x26, 0x11, 0x26, 0x20];
        let binary = [42, 47, 13, 26, 11, 26, 20];
        let want = Some(1_795_700_862_000);
        assert_eq!(rtc_reading_to_unix_ms(bcd, STATUS_B_24_HOUR), want);
        assert_eq!(
            rtc_reading_to_unix_ms(binary, STATUS_B_24_HOUR | STATUS_B_BINARY),
            want
        );
        // 1 pm on a 12-hour clock.
        let twelve_hour = [0x42, 0x47, PM | 0x01, 0x26, 0x11, 0x26, 0x20];
        assert_eq!(rtc_reading_to_unix_ms(twelve_hour, 0), want);
        let no_century = [0x42, 0x47, 0x13, 0x26, 0x11, 0x26, 0x00];
        assert_eq!(rtc_reading_to_unix_ms(no_century, STATUS_B_24_HOUR), want);
    }

    #[test]
    fn nonsense_is_refused() {
        for reading in [
            [0x60, 0, 0, 1, 1, 0x26, 0x20],
            [0, 0, 0x24, 1, 1, 0x26, 0x20],
            [0, 0, 0, 0, 1, 0x26, 0x20],
            [0, 0, 0, 1, 0x13, 0x26, 0x20],
            [0x0a, 0, 0, 1, 1, 0x26, 0x20],
            [0xff; 7],
        ] {
            assert_eq!(
                rtc_reading_to_unix_ms(reading, STATUS_B_24_HOUR),
                None,
                "{reading:x?}"
            );
        }
    }
}
