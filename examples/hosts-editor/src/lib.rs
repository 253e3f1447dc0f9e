//! Edits `/etc/hosts`: the kind of code whose tests must not touch the real one.
//!
//! Its tests (`tests/system.rs`) run each in an nstest container, where `/etc/hosts` is the
//! container's own and throwaway.

use std::io;
use std::net::IpAddr;
use std::path::Path;

/// Maps `name` to `ip` in the hosts file at `path`: replaces the line that names it, or adds one.
pub fn set_host(path: &Path, ip: IpAddr, name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad host name {name:?}"),
        ));
    }
    let text = std::fs::read_to_string(path).or_else(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Ok(String::new())
        } else {
            Err(e)
        }
    })?;
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| {
            let mut fields = l.split('#').next().unwrap_or("").split_whitespace();
            fields.next();
            !fields.any(|n| n == name)
        })
        .map(str::to_string)
        .collect();
    lines.push(format!("{ip}\t{name}"));
    // Written aside and renamed: a reader never sees half a file.
    let tmp = path.with_extension("hosts-editor.tmp");
    std::fs::write(&tmp, lines.join("\n") + "\n")?;
    std::fs::rename(&tmp, path)
}

/// The address `name` maps to in the hosts file at `path`, if any.
pub fn lookup(path: &Path, name: &str) -> io::Result<Option<IpAddr>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().find_map(|l| {
        let mut fields = l.split('#').next()?.split_whitespace();
        let ip = fields.next()?.parse().ok()?;
        fields.any(|n| n == name).then_some(ip)
    }))
}
