//! IPv4, IPv6 and UDP views: never panic, never read past the lengths the headers state, and parse
//! the trimmed packet to the same view.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd_packet::IpPacket;
use meshd_packet::udp::UdpPacket;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = IpPacket::parse(data) else { return };
    let total = packet.total_len();
    assert!(total <= data.len());
    assert!(packet.payload().len() <= total);

    // Link padding after the stated length must not change the view.
    let trimmed = IpPacket::parse(&data[..total]).expect("a packet trimmed to its total length parses");
    assert_eq!(trimmed.source(), packet.source());
    assert_eq!(trimmed.destination(), packet.destination());
    assert_eq!(trimmed.payload(), packet.payload());

    if packet.protocol() == 17 {
        if let Ok(udp) = UdpPacket::new_checked(packet.payload()) {
            assert!(udp.len() <= packet.payload().len());
            assert_eq!(udp.payload().len(), udp.len() - 8);
            let _ = (udp.source_port(), udp.destination_port(), udp.checksum());
        }
    }
});
