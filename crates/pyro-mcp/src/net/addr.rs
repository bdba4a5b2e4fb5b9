//! The guest network's fixed addresses: the guest, its gateway (the supervisor's user-mode
//! stack, also its DNS server) and their MACs.

use std::net::Ipv4Addr;

/// The guest's address, its gateway (the supervisor's stack, also its DNS server) and MACs.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const PREFIX_LEN: u8 = 24;
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x70, 0x79, 0x02];
pub const GATEWAY_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x70, 0x79, 0x01];
