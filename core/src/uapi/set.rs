//! Parsing requests, in particular `set=1`.

use super::{Request, UapiError, hex::decode_key};
use crate::node::{PeerUpdate, SetDevice};

/// Reads one request line by line (without the trailing `\n`). The server feeds lines until
/// [`feed_line`](Self::feed_line) returns a request, then answers and starts a new parser. After an
/// error the server answers with the error's errno and closes the connection.
#[derive(Debug, Default)]
pub struct RequestParser {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Start,
    Get,
    Set(SetDevice),
}

/// More lines than any sane configuration has; bounds what a local client can make the daemon hold.
const MAX_LINES: usize = 1 << 20;

impl RequestParser {
    pub fn new() -> Self {
        RequestParser::default()
    }

    /// Takes the next line. Returns `Ok(Some(request))` at the empty line that ends a request.
    pub fn feed_line(&mut self, line: &str) -> Result<Option<Request>, UapiError> {
        match &mut self.state {
            State::Start => {
                self.state = match line {
                    "get=1" => State::Get,
                    "set=1" => State::Set(SetDevice::default()),
                    _ => {
                        return Err(UapiError::protocol(format!(
                            "expected get=1 or set=1, got {line:?}"
                        )));
                    }
                };
                Ok(None)
            }
            State::Get if line.is_empty() => {
                self.state = State::Start;
                Ok(Some(Request::Get))
            }
            State::Get => Err(UapiError::protocol("get=1 takes no keys")),
            State::Set(_) if line.is_empty() => match std::mem::take(&mut self.state) {
                State::Set(set) => Ok(Some(Request::Set(set))),
                _ => unreachable!("matched State::Set above"),
            },
            State::Set(set) => {
                let (key, value) = line
                    .split_once('=')
                    .ok_or_else(|| UapiError::protocol(format!("line without '=': {:?}", shorten(line))))?;
                apply(set, key, value)?;
                Ok(None)
            }
        }
    }
}

fn apply(set: &mut SetDevice, key: &str, value: &str) -> Result<(), UapiError> {
    let lines = set.peers.iter().map(|p| 1 + p.allowed_ips.len()).sum::<usize>();
    if lines > MAX_LINES {
        return Err(UapiError::invalid("request too large"));
    }
    if key == "public_key" {
        let public_key = *decode_key(value).ok_or_else(|| invalid_value(key, value))?;
        set.peers.push(PeerUpdate::new(public_key));
        return Ok(());
    }
    let Some(peer) = set.peers.last_mut() else {
        return match key {
            "private_key" => {
                let k = decode_key(value).ok_or_else(|| invalid_value(key, value))?;
                set.private_key = Some(if k.iter().all(|&b| b == 0) { None } else { Some(k) });
                Ok(())
            }
            "listen_port" => {
                set.listen_port = Some(value.parse().map_err(|_| invalid_value(key, value))?);
                Ok(())
            }
            "fwmark" => {
                set.fwmark = Some(value.parse().map_err(|_| invalid_value(key, value))?);
                Ok(())
            }
            "replace_peers" => {
                set.replace_peers = parse_true(key, value)?;
                Ok(())
            }
            _ => Err(UapiError::invalid(format!("unknown interface key {key:?}"))),
        };
    };
    match key {
        "remove" => peer.remove = parse_true(key, value)?,
        "update_only" => peer.update_only = parse_true(key, value)?,
        "preshared_key" => {
            let k = decode_key(value).ok_or_else(|| invalid_value(key, value))?;
            peer.preshared_key = Some(if k.iter().all(|&b| b == 0) { None } else { Some(k) });
        }
        "endpoint" => peer.endpoint = Some(value.parse().map_err(|_| invalid_value(key, value))?),
        "persistent_keepalive_interval" => {
            peer.persistent_keepalive_interval = Some(value.parse().map_err(|_| invalid_value(key, value))?)
        }
        "replace_allowed_ips" => peer.replace_allowed_ips = parse_true(key, value)?,
        "allowed_ip" => {
            // wg(8) always sends an explicit length; a bare address would silently mean a host route.
            if !value.contains('/') {
                return Err(invalid_value(key, value));
            }
            peer.allowed_ips
                .push(value.parse().map_err(|_| invalid_value(key, value))?);
        }
        "protocol_version" if value == "1" => {}
        "protocol_version" => {
            return Err(UapiError::invalid(format!(
                "unsupported protocol_version {value:?}"
            )));
        }
        _ => return Err(UapiError::invalid(format!("unknown peer key {key:?}"))),
    }
    Ok(())
}

fn parse_true(key: &str, value: &str) -> Result<bool, UapiError> {
    // The protocol only ever sends "true"; "false" is accepted as the no-op it reads as.
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid_value(key, value)),
    }
}

fn invalid_value(key: &str, value: &str) -> UapiError {
    if key.contains("key") {
        UapiError::invalid(format!("{key} is not 64 hex digits"))
    } else {
        UapiError::invalid(format!("{key}={value:?}"))
    }
}

/// A line cut to a length fit for an error message.
fn shorten(line: &str) -> &str {
    if line.len() > 80 {
        &line[..line.floor_char_boundary(80)]
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uapi::{EINVAL, EPROTO, encode_key};

    fn parse(text: &str) -> Result<Request, UapiError> {
        let mut parser = RequestParser::new();
        for line in text.split('\n') {
            if let Some(req) = parser.feed_line(line)? {
                return Ok(req);
            }
        }
        panic!("request did not end with an empty line: {text:?}");
    }

    fn key(b: u8) -> String {
        encode_key(&[b; 32])
    }

    #[test]
    fn get() {
        assert_eq!(parse("get=1\n\n").unwrap(), Request::Get);
    }

    #[test]
    fn set_with_everything_wg_sends() {
        let text = format!(
            "set=1\nprivate_key={}\nlisten_port=51820\nfwmark=4660\nreplace_peers=true\n\
             public_key={}\npreshared_key={}\nendpoint=[2001:db8::1]:51821\n\
             persistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=10.1.2.3/24\n\
             allowed_ip=2001:db8:1::/48\nprotocol_version=1\n\
             public_key={}\nremove=true\n\n",
            key(1),
            key(2),
            key(3),
            key(4)
        );
        let Request::Set(set) = parse(&text).unwrap() else {
            panic!("not a set")
        };
        assert_eq!(set.private_key.as_ref().unwrap().as_deref(), Some(&[1u8; 32]));
        assert_eq!(set.listen_port, Some(51820));
        assert_eq!(set.fwmark, Some(4660));
        assert!(set.replace_peers);
        assert_eq!(set.peers.len(), 2);
        let p = &set.peers[0];
        assert_eq!(p.public_key, [2; 32]);
        assert_eq!(p.preshared_key.as_ref().unwrap().as_deref(), Some(&[3u8; 32]));
        assert_eq!(p.endpoint, Some("[2001:db8::1]:51821".parse().unwrap()));
        assert_eq!(p.persistent_keepalive_interval, Some(25));
        assert!(p.replace_allowed_ips);
        assert_eq!(
            p.allowed_ips,
            vec!["10.1.2.0/24".parse().unwrap(), "2001:db8:1::/48".parse().unwrap()]
        );
        assert!(!p.remove);
        assert!(set.peers[1].remove);
        assert_eq!(set.peers[1].public_key, [4; 32]);
    }

    #[test]
    fn zero_keys_mean_remove() {
        let text = format!(
            "set=1\nprivate_key={}\npublic_key={}\npreshared_key={}\n\n",
            key(0),
            key(9),
            key(0)
        );
        let Request::Set(set) = parse(&text).unwrap() else {
            panic!("not a set")
        };
        assert_eq!(set.private_key, Some(None));
        assert_eq!(set.peers[0].preshared_key, Some(None));
    }

    #[test]
    fn errors_carry_the_right_errno_and_no_key_material() {
        let bad_first = parse("hello=1\n\n").unwrap_err();
        assert_eq!(bad_first.errno(), EPROTO);
        let no_eq = parse("set=1\nprivate_key\n\n").unwrap_err();
        assert_eq!(no_eq.errno(), EPROTO);

        let secret = "ab".repeat(31) + "zz";
        let err = parse(&format!("set=1\nprivate_key={secret}\n\n")).unwrap_err();
        assert_eq!(err.errno(), EINVAL);
        assert!(
            !err.to_string().contains(&secret),
            "the error must not echo a key: {err}"
        );

        for text in [
            "set=1\nlisten_port=65536\n\n".to_string(),
            "set=1\nfrobnicate=1\n\n".to_string(),
            format!("set=1\npublic_key={}\nallowed_ip=10.0.0.0/33\n\n", key(5)),
            format!("set=1\npublic_key={}\nallowed_ip=10.0.0.1\n\n", key(5)),
            format!("set=1\npublic_key={}\nendpoint=example.org:1\n\n", key(5)),
            format!("set=1\npublic_key={}\nprotocol_version=2\n\n", key(5)),
            format!("set=1\npublic_key={}\nremove=yes\n\n", key(5)),
            format!("set=1\npublic_key={}\nlisten_port=1\n\n", key(5)),
        ] {
            assert_eq!(parse(&text).unwrap_err().errno(), EINVAL, "{text:?}");
        }
    }

    #[test]
    fn parser_is_reusable_after_a_request() {
        let mut parser = RequestParser::new();
        assert_eq!(parser.feed_line("get=1").unwrap(), None);
        assert_eq!(parser.feed_line("").unwrap(), Some(Request::Get));
        assert_eq!(parser.feed_line("set=1").unwrap(), None);
        assert!(matches!(parser.feed_line("").unwrap(), Some(Request::Set(_))));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(lines in proptest::collection::vec("[a-z_=0-9:./\\[\\]]{0,80}", 0..20)) {
            let mut parser = RequestParser::new();
            for line in &lines {
                if parser.feed_line(line).is_err() {
                    break;
                }
            }
        }
    }
}
