//! A small replicated service: a fixed group of nodes elects one leader, which keeps its role
//! only while a majority answers its heartbeats (a lease). Cut off from the majority, it steps
//! down; the majority elects a new leader in a higher term. A node answers `STATUS` with its
//! role, term and the leader it knows.
//!
//! Every message is one line over a fresh TCP connection to port [`PORT`], answered with one
//! line: `HEARTBEAT <term> <leader>` → `OK <term>`, `VOTE <term> <candidate>` → `YES <term>` or
//! `NO <term>`, `STATUS` → `<role> <term> <leader or ->`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where every node listens.
pub const PORT: u16 = 7100;
/// How often a leader sends heartbeats.
pub const HEARTBEAT: Duration = Duration::from_millis(100);
/// How long a leader keeps its role without a majority's answer, and a follower waits for a
/// heartbeat before it stands for election.
pub const LEASE: Duration = Duration::from_millis(600);

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    Candidate,
    Leader,
}

#[derive(Debug)]
struct State {
    role: Role,
    term: u64,
    leader: Option<String>,
    voted: Option<(u64, String)>,
    /// When this node last heard a leader (a follower), or a majority (a leader).
    heard: Instant,
}

/// Runs the node `me` of the group `peers` (hostnames, `me` among them) forever.
pub fn run(me: &str, peers: &[&str]) -> ! {
    let state = Arc::new(Mutex::new(State {
        role: Role::Follower,
        term: 0,
        leader: None,
        voted: None,
        heard: Instant::now(),
    }));
    let listener = TcpListener::bind(("0.0.0.0", PORT)).expect("bind the node's port");
    {
        let state = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = answer(&state, conn);
            }
        });
    }
    let others: Vec<String> = peers
        .iter()
        .filter(|p| **p != me)
        .map(|p| p.to_string())
        .collect();
    let majority = peers.len() / 2 + 1;
    // Nodes stand for election at different times, so that one usually wins the first round.
    let rank = peers.iter().position(|p| *p == me).unwrap_or(0) as u32;
    loop {
        std::thread::sleep(HEARTBEAT);
        let (role, term, heard) = {
            let s = state.lock().unwrap();
            (s.role, s.term, s.heard)
        };
        match role {
            Role::Leader => {
                let acks = 1 + others
                    .iter()
                    .filter(|p| {
                        ask(p, &format!("HEARTBEAT {term} {me}"))
                            .is_some_and(|r| r == format!("OK {term}"))
                    })
                    .count();
                let mut s = state.lock().unwrap();
                if acks >= majority {
                    s.heard = Instant::now();
                } else if s.heard.elapsed() > LEASE && s.role == Role::Leader {
                    println!(
                        "{me}: no majority for {LEASE:?}: stepping down in term {}",
                        s.term
                    );
                    s.role = Role::Follower;
                    s.leader = None;
                }
            }
            Role::Follower | Role::Candidate => {
                if heard.elapsed() < LEASE + HEARTBEAT * (3 * rank) {
                    continue;
                }
                let term = {
                    let mut s = state.lock().unwrap();
                    s.role = Role::Candidate;
                    s.term += 1;
                    s.voted = Some((s.term, me.to_string()));
                    s.heard = Instant::now();
                    s.term
                };
                let votes = 1 + others
                    .iter()
                    .filter(|p| {
                        ask(p, &format!("VOTE {term} {me}"))
                            .is_some_and(|r| r == format!("YES {term}"))
                    })
                    .count();
                let mut s = state.lock().unwrap();
                if votes >= majority && s.term == term && s.role == Role::Candidate {
                    println!("{me}: leader in term {term} with {votes} votes");
                    s.role = Role::Leader;
                    s.leader = Some(me.to_string());
                    s.heard = Instant::now();
                }
            }
        }
    }
}

/// Answers one request.
fn answer(state: &Mutex<State>, conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut s = state.lock().unwrap();
    let reply = match words.as_slice() {
        ["HEARTBEAT", term, leader] => {
            let term: u64 = term.parse().unwrap_or(0);
            if term >= s.term {
                s.term = term;
                s.role = Role::Follower;
                s.leader = Some(leader.to_string());
                s.heard = Instant::now();
            }
            format!("OK {}", s.term)
        }
        ["VOTE", term, candidate] => {
            let term: u64 = term.parse().unwrap_or(0);
            // No vote while a live leader is heard from: a node cut off cannot depose it.
            let leader_alive = s.leader.is_some() && s.heard.elapsed() < LEASE;
            let free = s.voted.as_ref().is_none_or(|(t, _)| *t < term);
            if term > s.term && free && !leader_alive {
                s.term = term;
                s.role = Role::Follower;
                s.leader = None;
                s.voted = Some((term, candidate.to_string()));
                s.heard = Instant::now();
                format!("YES {term}")
            } else {
                format!("NO {}", s.term)
            }
        }
        ["STATUS"] => format!(
            "{:?} {} {}",
            s.role,
            s.term,
            s.leader.as_deref().unwrap_or("-")
        ),
        _ => "?".to_string(),
    };
    drop(s);
    (&conn).write_all(format!("{reply}\n").as_bytes())
}

/// Sends one request to `host` and reads its one-line answer (within 300 ms in all).
pub fn ask(host: &str, request: &str) -> Option<String> {
    let addr = (host, PORT).to_socket_addrs().ok()?.next()?;
    let conn = TcpStream::connect_timeout(&addr, Duration::from_millis(150)).ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(150)))
        .ok()?;
    (&conn).write_all(format!("{request}\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).ok()?;
    Some(line.trim().to_string())
}
