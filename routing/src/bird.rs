//! BIRD 2's control-socket protocol, sans IO: replies put together line by line, and the table of
//! `show protocols` read from them. The ingress node uses it, read-only (after `restrict`), to learn
//! whether the upstream BGP session is Established.
//!
//! The protocol (BIRD's `nest/cli.c`, stable for third-party clients by the user guide): a request is
//! one line; a reply is lines that start with a four-digit code followed by `-` (more lines follow) or
//! a space (the last line). A continuation line of the same code may start with a single space
//! instead of the code. Lines that start with `+` are asynchronous messages, not part of any reply.
//! Code classes: `0xxx` success, `1xxx` table entry, `2xxx` table heading, `8xxx` run-time error,
//! `9xxx` parse error.
//!
//! ```text
//! >> show protocols
//! << 2002-Name       Proto      Table      State  Since         Info
//! << 1002-device1    Device     ---        up     02:35:13.302
//! <<  isp        BGP        ---        up     02:35:17.679  Established
//! << 0000
//! ```

use core::fmt;

/// One line of a reply: its code (inherited for a space-led continuation) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine {
    pub code: u16,
    pub text: String,
}

/// A whole reply: every line, the last one's code deciding success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub lines: Vec<ReplyLine>,
}

impl Reply {
    /// The code of the final line.
    pub fn code(&self) -> u16 {
        self.lines.last().map_or(0, |l| l.code)
    }

    /// `0xxx`: the command succeeded (for `configure`, 0003 "Reconfigured" and 0004 "in progress" are
    /// both success).
    pub fn is_success(&self) -> bool {
        self.code() < 1000
    }

    /// The final line's text: the error message of an `8xxx`/`9xxx` reply.
    pub fn message(&self) -> &str {
        self.lines.last().map_or("", |l| l.text.as_str())
    }

    /// The lines with `code`.
    pub fn lines_with(&self, code: u16) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(move |l| l.code == code)
            .map(|l| l.text.as_str())
    }
}

/// A line that is not the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BirdError {
    /// Neither `NNNN-`, `NNNN `, a space-led continuation after a code, nor an asynchronous `+` line.
    Malformed(String),
}

impl fmt::Display for BirdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BirdError::Malformed(line) => write!(f, "not a BIRD control-socket line: {line:?}"),
        }
    }
}

impl std::error::Error for BirdError {}

/// Puts replies together from the lines read off the socket.
#[derive(Debug, Default)]
pub struct ReplyReader {
    lines: Vec<ReplyLine>,
}

impl ReplyReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one line (without its newline). Returns the reply it completes, if it is the last one.
    pub fn feed(&mut self, line: &str) -> Result<Option<Reply>, BirdError> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('+') {
            return Ok(None);
        }
        let bytes = line.as_bytes();
        let coded = bytes.len() >= 5 && bytes[..4].iter().all(u8::is_ascii_digit);
        if coded && matches!(bytes[4], b'-' | b' ') {
            let code = line[..4]
                .parse::<u16>()
                .map_err(|_| BirdError::Malformed(line.into()))?;
            self.lines.push(ReplyLine {
                code,
                text: line[5..].trim_end().to_string(),
            });
            if bytes[4] == b' ' {
                return Ok(Some(Reply {
                    lines: std::mem::take(&mut self.lines),
                }));
            }
            return Ok(None);
        }
        // `0000` alone (BIRD writes "0000 " but a trimmed line has no space) ends a reply too.
        if bytes.len() == 4 && bytes.iter().all(u8::is_ascii_digit) {
            let code = line
                .parse::<u16>()
                .map_err(|_| BirdError::Malformed(line.into()))?;
            self.lines.push(ReplyLine {
                code,
                text: String::new(),
            });
            return Ok(Some(Reply {
                lines: std::mem::take(&mut self.lines),
            }));
        }
        if let (Some(rest), Some(prev)) = (line.strip_prefix(' '), self.lines.last()) {
            let code = prev.code;
            self.lines.push(ReplyLine {
                code,
                text: rest.trim_end().to_string(),
            });
            return Ok(None);
        }
        Err(BirdError::Malformed(line.into()))
    }
}

/// Code of the rows of `show protocols`.
pub const PROTOCOL_LIST: u16 = 1002;

/// One row of `show protocols`. Columns are split on whitespace, not by position: a name longer than
/// its column shifts the rest, and `Since` may hold a space (with `timeformat protocol iso long`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolRow {
    pub name: String,
    pub proto: String,
    pub table: String,
    pub state: String,
    /// `Since` and `Info` together, as the words after `State`.
    pub rest: Vec<String>,
}

impl ProtocolRow {
    /// A BGP protocol that is up with its session Established.
    pub fn bgp_established(&self) -> bool {
        self.proto == "BGP" && self.state == "up" && self.rest.iter().any(|w| w == "Established")
    }
}

/// The rows of a `show protocols` reply (the heading and malformed rows are skipped).
pub fn protocols(reply: &Reply) -> Vec<ProtocolRow> {
    reply
        .lines_with(PROTOCOL_LIST)
        .filter_map(|text| {
            let mut words = text.split_whitespace().map(str::to_string);
            Some(ProtocolRow {
                name: words.next()?,
                proto: words.next()?,
                table: words.next()?,
                state: words.next()?,
                rest: words.collect(),
            })
        })
        .collect()
}

/// Code of the lines of `show status` (router id, hostname, times).
pub const STATUS_REPORT: u16 = 1011;

/// When the BIRD that answered `show status` started (`Last reboot on ...`), as BIRD printed it.
/// A different value than before means BIRD was restarted in between.
pub fn last_reboot(reply: &Reply) -> Option<&str> {
    reply
        .lines_with(STATUS_REPORT)
        .find_map(|text| text.strip_prefix("Last reboot on "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds lines; returns every completed reply.
    fn read(lines: &[&str]) -> Vec<Reply> {
        let mut r = ReplyReader::new();
        lines.iter().filter_map(|l| r.feed(l).unwrap()).collect()
    }

    // From a BIRD 2.0.12 session (raw lines, newlines removed).
    const SHOW_PROTOCOLS: &[&str] = &[
        "2002-Name       Proto      Table      State  Since         Info",
        "1002-device1    Device     ---        up     02:35:13.302  ",
        " kmain      Kernel     master4    up     02:35:13.302  ",
        " mesh_static Static     master4    up     02:35:13.302  ",
        " isp        BGP        ---        up     02:35:17.679  Established   ",
        "0000 ",
    ];

    #[test]
    fn show_protocols_is_one_reply_with_every_row() {
        let replies = read(SHOW_PROTOCOLS);
        assert_eq!(replies.len(), 1);
        let reply = &replies[0];
        assert!(reply.is_success());
        let rows = protocols(reply);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["device1", "kmain", "mesh_static", "isp"]);
        // The over-long name shifted its row's columns; splitting on whitespace does not care.
        assert_eq!(rows[2].proto, "Static");
        let isp = rows.iter().find(|r| r.name == "isp").unwrap();
        assert!(isp.bgp_established());
        assert!(!rows[0].bgp_established());
    }

    #[test]
    fn a_session_that_is_not_established_is_not_healthy() {
        let replies = read(&[
            "2002-Name       Proto      Table      State  Since         Info",
            "1002-isp        BGP        ---        start  02:40:01.000  Active        Socket: Connection refused",
            "0000 ",
        ]);
        let rows = protocols(&replies[0]);
        assert_eq!(rows[0].state, "start");
        assert!(!rows[0].bgp_established());
    }

    #[test]
    fn iso_long_times_hold_a_space() {
        let replies = read(&[
            "1002-isp        BGP        ---        up     2026-11-22 02:39:13  Established",
            "0000 ",
        ]);
        let row = &protocols(&replies[0])[0];
        assert_eq!(row.rest, ["2026-11-22", "02:39:13", "Established"]);
        assert!(row.bgp_established());
    }

    #[test]
    fn banner_restrict_and_errors_are_replies_of_their_own() {
        let replies = read(&[
            "0001 BIRD 2.0.12 ready.",
            "0016 Access restricted",
            "8007 Access denied",
            "9001 syntax error, unexpected CF_SYM_UNDEFINED",
        ]);
        let codes: Vec<u16> = replies.iter().map(Reply::code).collect();
        assert_eq!(codes, [1, 16, 8007, 9001]);
        assert!(replies[1].is_success());
        assert!(!replies[2].is_success());
        assert_eq!(replies[2].message(), "Access denied");
    }

    #[test]
    fn continuations_and_async_lines() {
        let replies = read(&[
            "1000-BIRD 2.0.12",
            "1011-Router ID is 172.30.0.2",
            " Hostname is vm",
            "+0000 async message in between",
            "0013 Daemon is up and running",
        ]);
        assert_eq!(replies.len(), 1);
        let lines: Vec<&str> = replies[0].lines_with(1011).collect();
        assert_eq!(lines, ["Router ID is 172.30.0.2", "Hostname is vm"]);
        assert_eq!(replies[0].code(), 13);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut r = ReplyReader::new();
        assert!(r.feed(" continuation with nothing before").is_err());
        assert!(r.feed("12a4 x").is_err());
        assert!(r.feed("").is_err());
        assert!(r.feed("é").is_err());
        assert!(r.feed("00").is_err());
        // A trimmed final "0000" still ends the reply.
        assert!(r.feed("0000").unwrap().is_some());
    }

    #[test]
    fn last_reboot_is_read_from_show_status() {
        let replies = read(&[
            "1000-BIRD 2.0.12",
            "1011-Router ID is 172.30.0.2",
            " Hostname is vm",
            " Current server time is 2026-11-22 02:35:17.999",
            " Last reboot on 2026-11-22 02:35:13.302",
            " Last reconfiguration on 2026-11-22 02:35:13.302",
            "0013 Daemon is up and running",
        ]);
        assert_eq!(last_reboot(&replies[0]), Some("2026-11-22 02:35:13.302"));
        let replies = read(&["0013 Daemon is up and running"]);
        assert_eq!(last_reboot(&replies[0]), None);
    }
}
