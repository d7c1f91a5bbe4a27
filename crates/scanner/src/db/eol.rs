//! End-of-life dates of distribution releases: an image on a release that no longer gets
//! security fixes is vulnerable whatever its package list says (Eraser's
//! `deleteEOLImages`). The dates are those the distributions publish, as Trivy carries them.

use crate::os::Family;

/// `(family, release, year, month, day)`; the release stops being supported on that day.
const END_OF_LIFE: &[(Family, &str, i32, u32, u32)] = &[
    (Family::Debian, "7", 2018, 5, 31),
    (Family::Debian, "8", 2020, 6, 30),
    (Family::Debian, "9", 2022, 6, 30),
    (Family::Debian, "10", 2024, 6, 30),
    (Family::Debian, "11", 2026, 8, 14),
    (Family::Debian, "12", 2028, 6, 10),
    (Family::Debian, "13", 3000, 1, 1),
    (Family::Ubuntu, "14.04", 2019, 4, 25),
    (Family::Ubuntu, "16.04", 2021, 4, 30),
    (Family::Ubuntu, "18.04", 2023, 5, 31),
    (Family::Ubuntu, "20.04", 2025, 5, 31),
    (Family::Ubuntu, "22.04", 2027, 4, 23),
    (Family::Ubuntu, "24.04", 2034, 3, 31),
    (Family::Alpine, "3.15", 2023, 11, 1),
    (Family::Alpine, "3.16", 2024, 5, 23),
    (Family::Alpine, "3.17", 2024, 11, 22),
    (Family::Alpine, "3.18", 2025, 5, 9),
    (Family::Alpine, "3.19", 2025, 11, 1),
    (Family::Alpine, "3.20", 2026, 4, 1),
    (Family::Alpine, "3.21", 2026, 12, 5),
];

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whether `release` of `family` is past its end of life on day `today` (days since the
/// epoch); `None` when the release is not in the table (unknown releases count as
/// supported, as Trivy treats them).
pub fn is_end_of_life(family: Family, release: &str, today: i64) -> Option<bool> {
    END_OF_LIFE
        .iter()
        .find(|(f, r, ..)| *f == family && *r == release)
        .map(|&(_, _, y, m, d)| today >= days_from_civil(y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 3, 1), 19_783);
        let day = days_from_civil(2026, 12, 4);
        assert_eq!(is_end_of_life(Family::Debian, "11", day), Some(true));
        assert_eq!(is_end_of_life(Family::Debian, "12", day), Some(false));
        assert_eq!(is_end_of_life(Family::Alpine, "3.21", day), Some(false));
        assert_eq!(is_end_of_life(Family::Alpine, "3.99", day), None);
    }
}
