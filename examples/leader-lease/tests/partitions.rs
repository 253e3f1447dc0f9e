//! The service on three hosts of an nstest `Network`: one leader; cut off from the other two,
//! it steps down and they elect another; healed, the group has one leader again.

use std::time::{Duration, Instant};

use nstest::{Container, Network};

const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// A host's main: the node named after the host.
fn node() {
    leader_lease::run(&nstest::hostname(), &NODES)
}

/// `(role, term, leader)` of each node that answers.
fn statuses() -> Vec<(String, String, u64)> {
    NODES
        .iter()
        .filter_map(|n| {
            let s = leader_lease::ask(n, "STATUS")?;
            let mut w = s.split_whitespace();
            let (role, term) = (w.next()?.to_string(), w.next()?.parse().ok()?);
            Some((n.to_string(), role, term))
        })
        .collect()
}

/// Waits (10 s at most) until `check` holds of the statuses; they, then.
fn until(
    what: &str,
    check: impl Fn(&[(String, String, u64)]) -> bool,
) -> Vec<(String, String, u64)> {
    let start = Instant::now();
    loop {
        let s = statuses();
        if check(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never {what}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn leaders(s: &[(String, String, u64)]) -> Vec<(String, u64)> {
    s.iter()
        .filter(|(_, role, _)| role == "Leader")
        .map(|(n, _, t)| (n.clone(), *t))
        .collect()
}

#[nstest::test(timeout = "60s")]
fn a_leader_cut_off_from_the_majority_steps_down_and_another_is_elected() {
    let net = Network::new().unwrap();
    for name in NODES {
        Container::from_fn(node)
            .hostname(name)
            .network(&net)
            .spawn()
            .unwrap();
    }
    let s = until("one leader", |s| s.len() == 3 && leaders(s).len() == 1);
    let (old, old_term) = leaders(&s)[0].clone();
    let rest: Vec<&str> = NODES.iter().copied().filter(|n| *n != old).collect();

    // The leader is cut off from the other two; the test, in neither group, sees both sides.
    net.partition(&[&old], &rest).unwrap();
    let s = until("a new leader, and the old one stepped down", |s| {
        let l = leaders(s);
        s.len() == 3 && l.len() == 1 && l[0].0 != old && l[0].1 > old_term
    });
    let new = leaders(&s)[0].clone();

    net.heal().unwrap();
    let s = until("the old leader following the new term", |s| {
        s.len() == 3
            && leaders(s) == vec![new.clone()]
            && s.iter()
                .any(|(n, role, t)| *n == old && role == "Follower" && *t >= new.1)
    });
    println!(
        "{old} led term {old_term}; cut off, {} took term {}: {s:?}",
        new.0, new.1
    );
}

nstest::main!();
