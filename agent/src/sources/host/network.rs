//! `/proc/net/dev`: per-interface traffic.
//!
//! Two header lines, then `name: rx(8 counters) tx(8 counters)`:
//! bytes packets errs drop fifo frame compressed multicast | bytes packets
//! errs drop fifo colls carrier compressed. Very old kernels glued large byte
//! counts to the colon (`eth0:123456`), so the name is split at the colon,
//! not at whitespace.
//!
//! The file shows the network namespace of whoever reads it, so the host
//! source reads `proc/1/net/dev` (the host's init namespace once `/proc` is
//! the host's) and only falls back to `proc/net/dev`.

use opentelemetry_proto::tonic::metrics::v1::Metric;

use super::HostError;
use super::cpu::truncate;
use super::metric_set::{Kind, MetricBuilder, Stamp, str_attr};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Interfaces of well-formed lines, and the first malformed line, if any.
pub fn parse(text: &str) -> (Vec<Interface>, Option<HostError>) {
    let mut out = Vec::new();
    let mut problem = None;
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue; // the two header lines have no colon
        };
        let name = name.trim();
        if name.contains('|') {
            continue;
        }
        let mut c = [0u64; 16];
        let mut n = 0;
        let mut bad = None;
        for (i, f) in rest.split_ascii_whitespace().take(16).enumerate() {
            match f.parse() {
                Ok(v) => c[i] = v,
                Err(_) => {
                    bad = Some(format!("counter {} is not a number: {f:?}", i + 1));
                    break;
                }
            }
            n = i + 1;
        }
        if bad.is_none() && n < 16 {
            bad = Some(format!("only {n} of 16 counters"));
        }
        if let Some(reason) = bad {
            problem.get_or_insert_with(|| HostError::Parse {
                file: "proc/net/dev",
                reason: format!("{reason} in line {:?}", truncate(line)),
            });
            continue;
        }
        out.push(Interface {
            name: name.to_string(),
            rx_bytes: c[0],
            rx_packets: c[1],
            rx_errors: c[2],
            rx_dropped: c[3],
            tx_bytes: c[8],
            tx_packets: c[9],
            tx_errors: c[10],
            tx_dropped: c[11],
        });
    }
    (out, problem)
}

/// `system.network.{io,packets,errors,dropped}` for the interfaces `keep`
/// accepts.
pub fn metrics(
    ifaces: &[Interface],
    keep: impl Fn(&str) -> bool,
    stamp: Stamp,
    out: &mut Vec<Metric>,
) {
    let mut io = MetricBuilder::new(
        Kind::Counter,
        "system.network.io",
        "Bytes received and transmitted",
        "By",
        stamp,
    );
    let mut packets = MetricBuilder::new(
        Kind::Counter,
        "system.network.packets",
        "Packets received and transmitted",
        "{packet}",
        stamp,
    );
    let mut errors = MetricBuilder::new(
        Kind::Counter,
        "system.network.errors",
        "Receive and transmit errors",
        "{error}",
        stamp,
    );
    let mut dropped = MetricBuilder::new(
        Kind::Counter,
        "system.network.dropped",
        "Packets dropped on receive and transmit",
        "{packet}",
        stamp,
    );
    for i in ifaces.iter().filter(|i| keep(&i.name)) {
        let attrs = |direction: &str| {
            vec![
                str_attr("network.interface.name", i.name.as_str()),
                str_attr("network.io.direction", direction),
            ]
        };
        io.point(attrs("receive"), i.rx_bytes);
        io.point(attrs("transmit"), i.tx_bytes);
        packets.point(attrs("receive"), i.rx_packets);
        packets.point(attrs("transmit"), i.tx_packets);
        errors.point(attrs("receive"), i.rx_errors);
        errors.point(attrs("transmit"), i.tx_errors);
        dropped.point(attrs("receive"), i.rx_dropped);
        dropped.point(attrs("transmit"), i.tx_dropped);
    }
    for m in [io, packets, errors, dropped] {
        m.finish(out);
    }
}
