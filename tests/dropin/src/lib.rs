//! A greeting library with a command-line front end (`greet`), tested as crates usually are.

/// The greeting for `name`.
pub fn greeting(name: &str) -> String {
    format!("Hello, {name}!")
}

/// The names of a list, one per line, without blank lines or `#` comments.
pub fn names(list: &str) -> Vec<String> {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// The lengths of the names, as numbers.
pub fn lengths(list: &str) -> Vec<i32> {
    names(list).iter().map(|n| n.len() as i32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[nstest::test]
    fn greets_by_name() {
        assert_eq!(greeting("world"), "Hello, world!");
    }

    // The type-inference patterns that a dependency with `PartialEq` impls on std types (as
    // serde_json's `Value` has) breaks: they must compile with nstest linked.
    #[nstest::test]
    fn an_empty_list_has_no_lengths() {
        let v = lengths("# only a comment\n");
        assert_eq!(v, vec![]);
    }

    #[nstest::test]
    fn lengths_sum_up() {
        let buf: Vec<u8> = lengths("ab\ncde\n").iter().map(|&l| l as u8).collect();
        assert_eq!(5u8, buf.iter().sum());
        let total: u64 = 5;
        let n: u8 = 5;
        assert_eq!(total, n as _);
    }
}
