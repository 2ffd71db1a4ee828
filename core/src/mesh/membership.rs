//! What a node keeps on disk to be a member across restarts without its token: the network it
//! joined, the controller (key and address) and its own place in the network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::message::NetworkId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub network: String,
    pub name: String,
    #[serde(with = "key_base64")]
    pub controller_key: [u8; 32],
    pub controller: SocketAddr,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub ipv4_block: (Ipv4Addr, u8),
    pub ipv6_block: Option<(Ipv6Addr, u8)>,
    pub mtu: u16,
    /// The network's id as the controller gave it at the join; `None` in a membership saved by an
    /// older meshd, which then believes a `Removed` for its network's name.
    #[serde(default, with = "id_hex", skip_serializing_if = "Option::is_none")]
    pub network_id: Option<NetworkId>,
}

/// A network id as 32 hex digits in JSON.
mod id_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::NetworkId;

    pub fn serialize<S: Serializer>(id: &Option<NetworkId>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_str(&id.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NetworkId>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl Membership {
    /// The addresses the interface carries, with the block's prefix length so the kernel routes the
    /// whole block to the interface.
    pub fn interface_addresses(&self) -> Vec<(IpAddr, u8)> {
        let mut out = vec![(IpAddr::V4(self.ipv4), self.ipv4_block.1)];
        if let (Some(v6), Some((_, len))) = (self.ipv6, self.ipv6_block) {
            out.push((IpAddr::V6(v6), len));
        }
        out
    }

    /// Whether a `Removed` for `network` with `id` is about this membership.
    pub fn is_network(&self, network: &str, id: NetworkId) -> bool {
        network == self.network && self.network_id.is_none_or(|own| own == id)
    }
}

/// Public keys as base64 text in JSON, as `wg(8)` shows them.
pub mod key_base64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(key))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| serde::de::Error::custom(format!("key is not base64: {e}")))?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| serde::de::Error::custom("key is not 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_with_a_readable_key() {
        let m = Membership {
            network: "lab".into(),
            name: "n1".into(),
            controller_key: [7; 32],
            controller: "192.0.2.1:51820".parse().unwrap(),
            ipv4: "203.0.113.2".parse().unwrap(),
            ipv6: None,
            ipv4_block: ("203.0.113.0".parse().unwrap(), 24),
            ipv6_block: None,
            mtu: 1420,
            network_id: Some(NetworkId([0x5a; 16])),
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            text.contains("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="),
            "{text}"
        );
        assert!(text.contains(&"5a".repeat(16)), "{text}");
        assert_eq!(serde_json::from_str::<Membership>(&text).unwrap(), m);
        // A membership saved before networks had ids reads back without one.
        let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
        old.as_object_mut().unwrap().remove("network_id");
        let old: Membership = serde_json::from_value(old).unwrap();
        assert_eq!(old.network_id, None);
        assert!(old.is_network("lab", NetworkId([1; 16])));
        assert!(m.is_network("lab", NetworkId([0x5a; 16])));
        assert!(!m.is_network("lab", NetworkId([1; 16])));
        assert!(!m.is_network("other", NetworkId([0x5a; 16])));
        assert_eq!(
            m.interface_addresses(),
            vec![("203.0.113.2".parse().unwrap(), 24)]
        );
    }
}
