//! How the CLI writes things for people: tables, ages, byte counts, durations, and stdout that does
//! not panic when the reader goes away (`meshd member list | head -1`).

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use meshd_core::token::{Utc, from_unix_secs};

/// Writes `text` to stdout. A closed pipe is not an error worth a message.
pub fn out(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes `value` as pretty JSON and a newline.
pub fn out_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(out(&text)?)
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `label:` padded so that values line up, then the value.
pub fn field(text: &mut String, label: &str, value: impl std::fmt::Display) {
    text.push_str(&format!("{:<14}{value}\n", format!("{label}:")));
}

/// A number of seconds as a short age: `12s ago`, `4m 12s ago`, `3h 5m ago`, `2d 3h ago`.
pub fn ago(secs: u64) -> String {
    format!("{} ago", span(secs))
}

/// A number of seconds as `45s`, `4m 12s`, `3h 5m`, `2d 3h`.
pub fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match () {
        _ if secs < 60 => format!("{s}s"),
        _ if secs < 3600 => format!("{m}m {s}s"),
        _ if secs < 86_400 => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A Unix time as `2025-06-01 12:00:00 UTC (3h 5m ago)`, or `(in 3h 5m)` for a time to come.
pub fn when(unix: i64, now: SystemTime) -> String {
    let at = from_unix_secs(unix);
    let relative = match now.duration_since(at) {
        Ok(past) => ago(past.as_secs()),
        Err(future) => format!("in {}", span(future.duration().as_secs())),
    };
    format!("{} ({relative})", Utc(at))
}

/// A byte count as `wg show` writes it: `0 B`, `1.50 KiB`, `3.21 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// Reads a duration such as `90s`, `30m`, `24h`, `7d`, `2w`, or a sum of them (`1h30m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration; give a number and a unit, s, m, h, d or w (for example 30m, \
             24h, 7d, or 1h30m)"
        )
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(if total == 0 && digits.is_empty() && !text.trim().is_empty() {
            format!("{text:?} is no time at all; give a duration such as 30m, 24h or 7d")
        } else {
            bad()
        });
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(1_209_600)));
        for bad in ["", "30", "m", "1x", "-1h", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("0m").unwrap_err().contains("no time"));
    }

    #[test]
    fn ages_and_bytes() {
        assert_eq!(ago(12), "12s ago");
        assert_eq!(ago(252), "4m 12s ago");
        assert_eq!(ago(3 * 3600 + 300), "3h 5m ago");
        assert_eq!(ago(2 * 86_400 + 3 * 3600), "2d 3h ago");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(5 << 30), "5.00 GiB");
    }

    #[test]
    fn tables_line_up() {
        let text = table(
            &["NAME", "IP", "LAST"],
            &[
                vec!["a".into(), "10.0.0.2".into(), "x".into()],
                vec!["Küche".into(), "10.0.0.10".into(), String::new()],
            ],
        );
        assert_eq!(
            text,
            "NAME   IP         LAST\na      10.0.0.2   x\nKüche  10.0.0.10\n"
        );
    }
}
