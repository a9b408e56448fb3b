//! Per-recipient IP access lists: the networks a recipient's requests must come from.

use std::net::IpAddr;

use ipnet::IpNet;

/// The most networks one list may hold.
pub const MAX_NETWORKS: usize = 256;

/// The networks of a list as written: CIDR ranges (`203.0.113.0/24`, `2001:db8::/32`) or
/// single addresses, IPv4 or IPv6. Host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`). An
/// empty list is refused: a recipient is unrestricted by having no list, never by an empty one.
pub fn parse_networks<S: AsRef<str>>(list: &[S]) -> Result<Vec<IpNet>, String> {
    if list.is_empty() {
        return Err("an IP access list needs at least one network; clear the list to lift the restriction".into());
    }
    if list.len() > MAX_NETWORKS {
        return Err(format!("an IP access list holds at most {MAX_NETWORKS} networks"));
    }
    let mut networks: Vec<IpNet> = list
        .iter()
        .map(|entry| {
            let entry = entry.as_ref().trim();
            entry
                .parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("'{entry}' is not an IP address or CIDR range"))
        })
        .collect::<Result<_, _>>()?;
    networks.sort();
    networks.dedup();
    Ok(networks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_parsed_and_normalised() {
        let parsed = parse_networks(&["10.1.2.3/8", "192.0.2.7", "2001:db8::1/32", " 10.0.0.0/8 "]).expect("valid");
        let shown: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        for bad in [&["10.0.0.0/33"][..], &["example.com"], &["10.0.0.1 10.0.0.2"], &[]] {
            assert!(parse_networks(bad).is_err(), "{bad:?}");
        }
        assert!(parse_networks(&vec!["10.0.0.1"; MAX_NETWORKS + 1]).is_err());
    }
}
