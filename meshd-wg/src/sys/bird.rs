//! A client for BIRD 2's control socket (the one `birdc` uses), blocking and bounded in time.
//!
//! meshd only reads from BIRD: [`BirdClient::connect_restricted`] sends `restrict` before anything
//! else, so even a bug in meshd cannot disable a protocol or reconfigure the router (BIRD answers
//! 8007 "Access denied" to every command that would change something). Debian 12's BIRD 2.0.12 has no
//! server-side restricted sockets (2.16 added them), so the client must ask itself.
//!
//! The replies are read by the sans-IO [`ReplyReader`]; this file only moves lines.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshd_routing::bird::{Reply, ReplyReader};

/// The longest a reply line may be; BIRD's own limit for a CLI line is far below it.
const MAX_LINE: usize = 64 * 1024;
/// The most lines one reply may have before the client gives up (a full routing table is not
/// something meshd asks for).
const MAX_REPLY_LINES: usize = 100_000;
/// Code of the reply to `restrict`.
const ACCESS_RESTRICTED: u16 = 16;

/// One connection to BIRD's control socket.
pub struct BirdClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl BirdClient {
    /// Connects, reads the welcome line and makes the connection read-only. `timeout` bounds every
    /// read and write, so a hung BIRD costs at most that long per call.
    pub fn connect_restricted(path: &Path, timeout: Duration) -> io::Result<BirdClient> {
        let mut client = BirdClient::connect(path, timeout)?;
        let reply = client.command("restrict")?;
        if reply.code() != ACCESS_RESTRICTED {
            return Err(io::Error::other(format!(
                "BIRD at {} answered `restrict` with {:04} {:?}, not 0016 \"Access restricted\"",
                path.display(),
                reply.code(),
                reply.message()
            )));
        }
        Ok(client)
    }

    /// Connects with full access, as `birdc` without `-r` does. meshd itself never uses it; the lab
    /// does, to stand in for an operator.
    pub fn connect(path: &Path, timeout: Duration) -> io::Result<BirdClient> {
        let stream = UnixStream::connect(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot connect to BIRD's control socket {}: {e}", path.display()),
            )
        })?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let mut client = BirdClient {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
        };
        let welcome = client.read_reply()?;
        if !welcome.is_success() {
            return Err(io::Error::other(format!(
                "BIRD at {} greeted with {:04} {:?}",
                path.display(),
                welcome.code(),
                welcome.message()
            )));
        }
        Ok(client)
    }

    /// Sends one command and reads its whole reply. An error reply (8xxx, 9xxx) is a reply, not an
    /// `Err`; `Err` means the connection failed or BIRD did not speak the protocol.
    pub fn command(&mut self, command: &str) -> io::Result<Reply> {
        if command.contains('\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a BIRD command is one line",
            ));
        }
        self.writer.write_all(format!("{command}\n").as_bytes())?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> io::Result<Reply> {
        let mut reader = ReplyReader::new();
        let mut line = String::new();
        for _ in 0..MAX_REPLY_LINES {
            line.clear();
            let n = Read::take(&mut self.reader, MAX_LINE as u64)
                .read_line(&mut line)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("reading from BIRD at {}: {e}", self.path.display()),
                    )
                })?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("BIRD at {} closed the connection", self.path.display()),
                ));
            }
            let text = line.strip_suffix('\n').unwrap_or(&line);
            match reader.feed(text) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "BIRD at {} sent a reply of more than {MAX_REPLY_LINES} lines",
                self.path.display()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    /// A fake BIRD that answers each request line with the next canned reply.
    fn fake_bird(name: &str, replies: Vec<&'static str>) -> (PathBuf, thread::JoinHandle<Vec<String>>) {
        let dir = std::env::temp_dir().join(format!("meshd-bird-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bird.ctl");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"0001 BIRD 2.0.12 ready.\n").unwrap();
            let mut requests = Vec::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            for reply in replies {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                requests.push(line.trim_end().to_string());
                stream.write_all(reply.as_bytes()).unwrap();
            }
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
            requests
        });
        (path, handle)
    }

    #[test]
    fn restricted_client_sends_restrict_first_then_reads_replies() {
        let (path, bird) = fake_bird(
            "restrict",
            vec![
                "0016 Access restricted\n",
                "2002-Name       Proto      Table      State  Since         Info\n\
                 1002-isp        BGP        ---        up     02:35:17.679  Established   \n\
                 0000 \n",
            ],
        );
        let mut client = BirdClient::connect_restricted(&path, Duration::from_secs(5)).unwrap();
        let reply = client.command("show protocols isp").unwrap();
        let rows = meshd_routing::bird::protocols(&reply);
        assert!(rows[0].bgp_established());
        drop(client);
        assert_eq!(bird.join().unwrap(), vec!["restrict", "show protocols isp"]);
    }

    #[test]
    fn a_bird_that_does_not_restrict_is_refused() {
        let (path, bird) = fake_bird("norestrict", vec!["9001 syntax error\n"]);
        let e = BirdClient::connect_restricted(&path, Duration::from_secs(5))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("restrict"), "{e}");
        bird.join().unwrap();
    }

    #[test]
    fn a_missing_socket_names_the_path() {
        let e = BirdClient::connect_restricted(Path::new("/nonexistent/bird.ctl"), Duration::from_secs(1))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/nonexistent/bird.ctl"), "{e}");
    }

    #[test]
    fn a_silent_bird_times_out() {
        let dir = std::env::temp_dir().join(format!("meshd-bird-silent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bird.ctl");
        let listener = UnixListener::bind(&path).unwrap();
        let hold = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = stream.read(&mut buf);
        });
        let start = crate::sys::clock::now();
        assert!(BirdClient::connect(&path, Duration::from_millis(200)).is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
        hold.join().unwrap();
    }
}
